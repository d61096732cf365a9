import { Gauge, type Registry } from 'prom-client';
import type { Database } from '../db/pg.ts';
import { consumerNameOf } from './view.ts';

export interface ViewRebuild {
  startedAt: string;
  /** The last progress the rebuild reported; a rebuild whose process died stops moving here. */
  updatedAt: string;
  /** Null while it runs (or if it was interrupted: then run it again). */
  finishedAt: string | null;
  ordersDone: number;
  ordersTotal: number;
}

export interface ViewState {
  view: string;
  consumer: string;
  /** Journaled events the view has not applied yet (among the unsettled ones the measure scans). */
  eventsBehind: number;
  /** How old the oldest of those events is; 0 when the view is caught up. */
  lagSeconds: number;
  oldestUnappliedAt: string | null;
  /** When the view last applied events (to within a second); null if it never did. */
  lastAppliedAt: string | null;
  /** The view is missing orders that existed before it was introduced: rebuild it. */
  rebuildNeeded: boolean;
  lastRebuild: ViewRebuild | null;
}

export interface ViewsStatus {
  measuredAt: string;
  /** False when there were more unsettled events than the measure scans: `eventsBehind` and `lagSeconds` are then lower bounds. */
  complete: boolean;
  views: ViewState[];
}

export interface ViewStatusReader {
  /** The status as measured at most `maxAgeMs` ago (one measure at a time, shared by all callers). */
  read(): Promise<ViewsStatus>;
  /** One view's entry of `read()`. */
  of(view: string): Promise<ViewState>;
}

interface Row {
  view: string;
  behind: number;
  oldest: Date | null;
  lag_seconds: number;
  measured_at: Date;
  unsettled: number;
  applied_at: Date | null;
  rebuild_needed: boolean | null;
  rebuild_started_at: Date | null;
  rebuild_updated_at: Date | null;
  rebuild_finished_at: Date | null;
  rebuild_orders_done: number | null;
  rebuild_orders_total: number | null;
}

/**
 * Measures how far each view trails the journal, cheaply: only events not yet settled (applied by
 * every consumer, as the sweeper marks them) can be owed, and the partial index on them is in time
 * order. A view's lag is the age of the oldest of those its checkpoint has not reached. It looks at
 * the `scanLimit` oldest and the `scanLimit` newest: a view that stopped shows among the first, a
 * view that keeps up but trails by a moment among the last. With more unsettled events than that
 * (the sweeper behind), both figures are lower bounds and `complete` is false.
 */
export async function measureViews(db: Database, views: readonly string[], scanLimit = 10_000): Promise<ViewsStatus> {
  const rows = await db.query<Row>(
    `WITH oldest AS (
       SELECT j.order_id, j.seq, j.at FROM order_journal j WHERE j.settled_at IS NULL ORDER BY j.at LIMIT $2
     ), newest AS (
       SELECT j.order_id, j.seq, j.at FROM order_journal j WHERE j.settled_at IS NULL ORDER BY j.at DESC LIMIT $2
     ), unsettled AS (
       SELECT * FROM oldest UNION SELECT * FROM newest
     ), owed AS (
       SELECT k.view, u.at
       FROM unsettled u CROSS JOIN unnest($1::text[]) AS k(view)
       LEFT JOIN consumer_checkpoints cp ON cp.consumer = 'view.' || k.view AND cp.order_id = u.order_id
       WHERE coalesce(cp.seq, 0) < u.seq
     )
     SELECT k.view, count(o.at)::int AS behind, min(o.at) AS oldest,
            coalesce(greatest(0, extract(epoch FROM now() - min(o.at))), 0)::float8 AS lag_seconds,
            now() AS measured_at, (SELECT count(*)::int FROM oldest) AS unsettled,
            s.applied_at, s.rebuild_needed, s.rebuild_started_at, s.rebuild_updated_at, s.rebuild_finished_at,
            s.rebuild_orders_done, s.rebuild_orders_total
     FROM unnest($1::text[]) WITH ORDINALITY AS k(view, n)
     LEFT JOIN owed o ON o.view = k.view
     LEFT JOIN view_status s ON s.view = k.view
     GROUP BY k.view, k.n, s.view
     ORDER BY k.n`,
    [views, scanLimit],
  );
  const measuredAt = rows[0]?.measured_at ?? new Date();
  return {
    measuredAt: measuredAt.toISOString(),
    complete: (rows[0]?.unsettled ?? 0) < scanLimit,
    views: rows.map((r) => ({
      view: r.view,
      consumer: consumerNameOf(r.view),
      eventsBehind: r.behind,
      lagSeconds: Math.round(r.lag_seconds * 1000) / 1000,
      oldestUnappliedAt: r.oldest?.toISOString() ?? null,
      lastAppliedAt: r.applied_at?.toISOString() ?? null,
      rebuildNeeded: r.rebuild_needed ?? false,
      lastRebuild: r.rebuild_started_at
        ? {
            startedAt: r.rebuild_started_at.toISOString(),
            updatedAt: (r.rebuild_updated_at ?? r.rebuild_started_at).toISOString(),
            finishedAt: r.rebuild_finished_at?.toISOString() ?? null,
            ordersDone: r.rebuild_orders_done ?? 0,
            ordersTotal: r.rebuild_orders_total ?? 0,
          }
        : null,
    })),
  };
}

/** Reads the status through a cache, so answers and scrapes cost at most one measure per `maxAgeMs`. */
export function viewStatusReader(db: Database, views: readonly string[], opts: { maxAgeMs?: number; scanLimit?: number } = {}): ViewStatusReader {
  const maxAgeMs = opts.maxAgeMs ?? 1000;
  let cached: { at: number; status: ViewsStatus } | undefined;
  let measuring: Promise<ViewsStatus> | undefined;
  const read = async (): Promise<ViewsStatus> => {
    if (cached && Date.now() - cached.at < maxAgeMs) return cached.status;
    measuring ??= measureViews(db, views, opts.scanLimit)
      .then((status) => {
        cached = { at: Date.now(), status };
        return status;
      })
      .finally(() => {
        measuring = undefined;
      });
    return measuring;
  };
  return {
    read,
    async of(view) {
      const found = (await read()).views.find((v) => v.view === view);
      if (!found) throw new Error(`no view named ${view}`);
      return found;
    },
  };
}

/** `baedal_view_lag_seconds{view}` and `baedal_view_events_behind{view}`, read at scrape time. */
export function registerViewMetrics(registry: Registry, reader: ViewStatusReader): void {
  if (registry.getSingleMetric('baedal_view_lag_seconds')) return;
  const measure = () => reader.read().catch(() => undefined);
  new Gauge({
    name: 'baedal_view_lag_seconds',
    help: 'Age of the oldest journaled event a read model (view) has not applied yet; 0 when it is caught up',
    labelNames: ['view'] as const,
    registers: [registry],
    async collect() {
      const status = await measure();
      if (status) for (const v of status.views) this.set({ view: v.view }, v.lagSeconds);
    },
  });
  new Gauge({
    name: 'baedal_view_events_behind',
    help: 'Journaled events a read model (view) has not applied yet',
    labelNames: ['view'] as const,
    registers: [registry],
    async collect() {
      const status = await measure();
      if (status) for (const v of status.views) this.set({ view: v.view }, v.eventsBehind);
    },
  });
}
