import { randomUUID } from 'node:crypto';
import { retryOwed } from '../actors/consumers/owed.ts';
import { EVENTS_GROUP, partitionSql } from '../actors/partitions.ts';
import type { Database, Sql } from '../db/pg.ts';
import type { Logger } from '../log.ts';
import { viewConsumers } from './registry.ts';
import { lockViewStatus } from './status.ts';
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

/** How long the rebuild's claim on its owed orders lasts without renewal (live owners take over after). */
const REBUILD_LEASE_MS = 60_000;

/**
 * Empties the views, in one transaction: their tables and their owed orders; then every order is
 * owed to them from its first event (origin 'rebuild'), and the group's positions are bumped so a
 * live batch read before the reset reads again instead of writing to the emptied views. The owed
 * rows are written first, before the views' locks (no one sees them before the commit), so the
 * locks are held only for the orders placed meanwhile, the truncation and the notes: live delivery
 * waits that long, not as long as writing a row per order and view takes. The views' tables are
 * locked in the order a delivery writes them; a deadlock with a delivery is resolved by PostgreSQL
 * and the reset runs again. While the rebuild's lease is held, the live owners leave the rebuild's
 * owed orders to it.
 */
export async function resetViews(db: Database, views: readonly ViewDefinition[], ordersTotal: number, holder: string, attempt = 1): Promise<void> {
  try {
    await reset(db, views, ordersTotal, holder);
  } catch (err) {
    if ((err as { code?: unknown }).code === '40P01' && attempt < 5) return resetViews(db, views, ordersTotal, holder, attempt + 1);
    throw err;
  }
}

/**
 * Owes orders to the consumers from their first event, as a rebuild's rows. A row already owed is
 * left as it is (`ahead`: written before the views' locks, it must lock no row a live delivery may
 * be updating) or starts over. Ahead, a plain insert of the orders `NOT EXISTS` finds unowed would
 * skip the conflict checks, but the planner, seeing the table as empty as it was, makes that
 * anti-join a sequential scan per order over the rows the statement has written so far: the
 * square of the orders (150,000 orders had not finished in 5 minutes, against 15 s this way).
 */
const OWE_FROM_START = (which: string, ahead: boolean) => `
  INSERT INTO consumer_failures (consumer, order_id, part, seq, upto, attempts, last_error, first_failed_at, last_failed_at, origin)
  SELECT c, o.id, ${partitionSql('o.id', '(SELECT count(*) FROM event_partitions)')}, 1, o.version, 0, 'owed to a rebuild', now(), now(), 'rebuild'
  FROM orders o CROSS JOIN unnest($1::text[]) AS c
  ${which}
  ON CONFLICT (consumer, order_id) ${
    ahead
      ? 'DO NOTHING'
      : `DO UPDATE SET part = EXCLUDED.part, seq = 1, upto = EXCLUDED.upto, attempts = 0, last_error = EXCLUDED.last_error,
    first_failed_at = now(), last_failed_at = now(), origin = 'rebuild', due_at = now(), lease_until = NULL, version = consumer_failures.version + 1`
  }`;

async function reset(db: Database, views: readonly ViewDefinition[], ordersTotal: number, holder: string): Promise<void> {
  const consumers = views.map((v) => consumerNameOf(v.name));
  const tables = views.flatMap((v) => v.tables);
  await db.transaction(async (tx) => {
    // Every order there is now, ahead of the locks (an order already owed is seen to under them).
    await tx.query(OWE_FROM_START('', true), [consumers]);
    await tx.query(`LOCK TABLE ${tables.map((t) => `"${t}"`).join(', ')} IN ACCESS EXCLUSIVE MODE`);
    // The orders placed since, and those owed on a failure (before or since): they start over.
    // This statement sees the rows above.
    await tx.query(
      OWE_FROM_START(`WHERE NOT EXISTS (SELECT 1 FROM consumer_failures f WHERE f.consumer = c AND f.order_id = o.id AND f.origin = 'rebuild')`, false),
      [consumers],
    );
    // Owed rows of orders that are gone.
    await tx.query(`DELETE FROM consumer_failures WHERE consumer = ANY($1::text[]) AND origin <> 'rebuild'`, [consumers]);
    await tx.query(`TRUNCATE ${tables.map((t) => `"${t}"`).join(', ')}`);
    await tx.query('UPDATE consumer_positions SET version = version + 1 WHERE grp = $1', [EVENTS_GROUP]);
    await tx.query(
      `INSERT INTO leases (name, holder, until) VALUES ('views-rebuild', $1, now() + make_interval(secs => $2::float8 / 1000))
       ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, until = EXCLUDED.until`,
      [holder, REBUILD_LEASE_MS],
    );
    await tx.query(
      `INSERT INTO view_status (view, rebuild_started_at, rebuild_updated_at, rebuild_finished_at, rebuild_orders_done, rebuild_orders_total)
       SELECT v, now(), now(), NULL, 0, $2 FROM unnest($1::text[]) AS v ORDER BY v
       ON CONFLICT (view) DO UPDATE SET rebuild_started_at = now(), rebuild_updated_at = now(), rebuild_finished_at = NULL,
         rebuild_orders_done = 0, rebuild_orders_total = $2`,
      [views.map((v) => v.name), ordersTotal],
    );
  });
}

/**
 * Rebuilds views from the journal while the service keeps running: empties them and owes them
 * every order (`resetViews`), then applies the owed orders, `batchOrders` at a time, through the
 * views' own code, as far as live delivery's positions got (live delivery applies the rest as it
 * reads on). An order that gets new events meanwhile meets the rebuild at its owed row, whose
 * version both check, so the result equals what the live views would be. If the rebuild stops,
 * its lease runs out and the partitions' owners finish it.
 */
export async function rebuildViews(db: Database, views: readonly ViewDefinition[], opts: RebuildOptions): Promise<RebuildResult> {
  const batchOrders = opts.batchOrders ?? 500;
  const started = performance.now();
  const names = views.map((v) => v.name);
  const holder = `rebuild-${randomUUID()}`;
  const [{ n: ordersTotal }] = (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM orders')) as [{ n: number }];
  await resetViews(db, views, ordersTotal, holder);
  // The reset owes every order to each view at once: statistics taken before it would have the
  // planner read these rows as the few they were (each batch scanning all of them); autovacuum
  // would see to it only after its naptime.
  await db.query('ANALYZE consumer_failures');
  const group = { name: EVENTS_GROUP, consumers: viewConsumers(db, views) };
  const progress: RebuildProgress = { ordersDone: 0, ordersTotal, eventsApplied: 0, elapsedMs: 0 };
  opts.onProgress?.({ ...progress });
  let unitsDone = 0;
  for (;;) {
    const r = await retryOwed(db, group, { rebuild: true, limit: batchOrders * views.length }, opts.log);
    if (r.done + r.failed === 0) break;
    unitsDone += r.done + r.failed;
    progress.eventsApplied += r.events;
    progress.ordersDone = Math.min(ordersTotal, Math.floor(unitsDone / views.length));
    progress.elapsedMs = performance.now() - started;
    await noteRebuildProgress(db, names, progress.ordersDone, holder);
    opts.onProgress?.({ ...progress });
  }
  progress.ordersDone = ordersTotal;
  await noteRebuildFinished(db, names, progress.ordersDone, holder);
  const [{ n: failedOrders }] = (await db.query<{ n: number }>(
    'SELECT count(DISTINCT order_id)::int AS n FROM consumer_failures WHERE consumer = ANY($1::text[]) AND attempts > 0',
    [views.map((v) => consumerNameOf(v.name))],
  )) as [{ n: number }];
  return { ...progress, elapsedMs: performance.now() - started, views: names, failedOrders };
}

/**
 * Notes a rebuild's progress in view_status and renews its lease, in one statement. The rows are
 * locked in name order first (`lockViewStatus`), as every writer of several of them does.
 */
export async function noteRebuildProgress(db: Sql, views: readonly string[], ordersDone: number, holder: string): Promise<void> {
  await db.query(
    `WITH locked AS MATERIALIZED (${lockViewStatus('$1')}),
     renewed AS (UPDATE leases SET until = now() + make_interval(secs => $3::float8 / 1000) WHERE name = 'views-rebuild' AND holder = $4)
     UPDATE view_status s SET rebuild_updated_at = now(), rebuild_orders_done = $2 FROM locked WHERE s.view = locked.view`,
    [views, ordersDone, REBUILD_LEASE_MS, holder],
  );
}

/** Notes a rebuild finished (the views no longer need one) and gives up its lease; rows locked in name order. */
export async function noteRebuildFinished(db: Sql, views: readonly string[], ordersDone: number, holder: string): Promise<void> {
  await db.query(
    `WITH locked AS MATERIALIZED (${lockViewStatus('$1')}),
     done AS (DELETE FROM leases WHERE name = 'views-rebuild' AND holder = $3)
     UPDATE view_status s SET rebuild_updated_at = now(), rebuild_finished_at = now(), rebuild_needed = false, rebuild_orders_done = $2
     FROM locked WHERE s.view = locked.view`,
    [views, ordersDone, holder],
  );
}
