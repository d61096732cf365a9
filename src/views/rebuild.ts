import { deliver } from '../actors/consumers.ts';
import type { Database } from '../db/pg.ts';
import type { Logger } from '../log.ts';
import { viewConsumers } from './registry.ts';
import { consumerNameOf, type ViewDefinition } from './view.ts';

export interface RebuildProgress {
  ordersDone: number;
  /** The orders there were when the rebuild started; orders placed since may take it past 100 %. */
  ordersTotal: number;
  eventsApplied: number;
  elapsedMs: number;
}

export interface RebuildResult extends RebuildProgress {
  views: string[];
  /** Orders a view could not apply: recorded in consumer_failures (GET /admin/failed-events). */
  failedOrders: number;
}

export interface RebuildOptions {
  /** Orders per transaction. */
  batchOrders?: number;
  onProgress?(progress: RebuildProgress): void;
  log: Logger;
}

/**
 * Empties the views, in one transaction: their tables, their checkpoints and their recorded
 * failures. It locks the views' tables, then `consumer_checkpoints`, in the order a delivery takes
 * them (it writes the views in registry order and its checkpoints last): a delivery half-way
 * through finishes first, one that starts after waits at its first view statement, and none can
 * deadlock with the reset. Plain reads of other tables go on; deliveries pause for the moment
 * this takes.
 */
export async function resetViews(db: Database, views: readonly ViewDefinition[], ordersTotal: number, attempt = 1): Promise<void> {
  try {
    await reset(db, views, ordersTotal);
  } catch (err) {
    // A delivery that took a view's table lock before this reset asked for it can deadlock with
    // it; PostgreSQL then gives one of the two up. If it is the reset, it simply runs again.
    if ((err as { code?: unknown }).code === '40P01' && attempt < 5) return resetViews(db, views, ordersTotal, attempt + 1);
    throw err;
  }
}

async function reset(db: Database, views: readonly ViewDefinition[], ordersTotal: number): Promise<void> {
  const consumers = views.map((v) => consumerNameOf(v.name));
  const tables = views.flatMap((v) => v.tables);
  await db.transaction(async (tx) => {
    // In the order deliveries take them (view tables in registry order, checkpoints last), so a
    // delivery half-way through finishes first and none can deadlock with the reset.
    await tx.query(`LOCK TABLE ${tables.map((t) => `"${t}"`).join(', ')} IN ACCESS EXCLUSIVE MODE`);
    await tx.query('LOCK TABLE consumer_checkpoints IN EXCLUSIVE MODE');
    await tx.query('DELETE FROM consumer_checkpoints WHERE consumer = ANY($1::text[])', [consumers]);
    await tx.query('DELETE FROM consumer_failures WHERE consumer = ANY($1::text[])', [consumers]);
    await tx.query(`TRUNCATE ${tables.map((t) => `"${t}"`).join(', ')}`);
    await tx.query(
      `INSERT INTO view_status (view, rebuild_started_at, rebuild_updated_at, rebuild_finished_at, rebuild_orders_done, rebuild_orders_total)
       SELECT v, now(), now(), NULL, 0, $2 FROM unnest($1::text[]) AS v
       ON CONFLICT (view) DO UPDATE SET rebuild_started_at = now(), rebuild_updated_at = now(), rebuild_finished_at = NULL,
         rebuild_orders_done = 0, rebuild_orders_total = $2`,
      [views.map((v) => v.name), ordersTotal],
    );
  });
}

/**
 * Rebuilds views from the journal while the service keeps running: empties them, then walks every
 * order (by id, `batchOrders` at a time) and delivers it to each view's consumer up to its current
 * version, through the same code and the same checkpoint as live delivery. Live events and the
 * replay meet at the per-order checkpoint: whichever writes it second rolls back, reads again, finds the events
 * applied and applies only what is newer, so the result equals what the live views would be.
 * Orders placed during the rebuild reach the views live, or through the walk, or both (harmless).
 */
export async function rebuildViews(db: Database, views: readonly ViewDefinition[], opts: RebuildOptions): Promise<RebuildResult> {
  const batchOrders = opts.batchOrders ?? 500;
  const started = performance.now();
  const names = views.map((v) => v.name);
  const [{ n: ordersTotal }] = (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM orders')) as [{ n: number }];
  await resetViews(db, views, ordersTotal);
  const consumers = viewConsumers(db, views);
  const progress: RebuildProgress = { ordersDone: 0, ordersTotal, eventsApplied: 0, elapsedMs: 0 };
  opts.onProgress?.({ ...progress });
  let after: string | null = null;
  for (;;) {
    const orders: { id: string; version: number }[] = await db.query<{ id: string; version: number }>(
      'SELECT id, version FROM orders WHERE $1::uuid IS NULL OR id > $1::uuid ORDER BY id LIMIT $2',
      [after, batchOrders],
    );
    if (orders.length === 0) break;
    const refs = orders.map((o) => ({ orderId: o.id, seq: o.version }));
    progress.eventsApplied += await deliver(db, { name: 'rebuild', consumers }, refs, opts.log);
    after = orders.at(-1)!.id;
    progress.ordersDone += orders.length;
    progress.elapsedMs = performance.now() - started;
    await db.query('UPDATE view_status SET rebuild_updated_at = now(), rebuild_orders_done = $2 WHERE view = ANY($1::text[])', [names, progress.ordersDone]);
    opts.onProgress?.({ ...progress });
  }
  await db.query(
    'UPDATE view_status SET rebuild_updated_at = now(), rebuild_finished_at = now(), rebuild_needed = false, rebuild_orders_done = $2 WHERE view = ANY($1::text[])',
    [names, progress.ordersDone],
  );
  const [{ n: failedOrders }] = (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM consumer_failures WHERE consumer = ANY($1::text[])', [
    views.map((v) => consumerNameOf(v.name)),
  ])) as [{ n: number }];
  return { ...progress, elapsedMs: performance.now() - started, views: names, failedOrders };
}
