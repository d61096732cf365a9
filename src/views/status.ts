import { Gauge, type Registry } from 'prom-client';
import type { Database, Sql } from '../db/pg.ts';
import { backlogQuery, EVENTS_GROUP } from '../actors/partitions.ts';
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
  /** Journaled events the view has not applied yet (at most the measure's scan limit per partition). */
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
  /** False when a partition had more events behind than the measure scans: `eventsBehind` and `lagSeconds` are then lower bounds. */
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
  incomplete: boolean;
  applied_at: Date | null;
  rebuild_needed: boolean | null;
  rebuild_started_at: Date | null;
  rebuild_updated_at: Date | null;
  rebuild_finished_at: Date | null;
  rebuild_orders_done: number | null;
  rebuild_orders_total: number | null;
}

/**
 * Measures how far each view trails the journal, cheaply: the events past the group's position in
 * each partition (an index probe per partition when it keeps up, at most `scanLimit` read per
 * partition), plus the events of orders the view owes on its own (it failed on them, or is being
 * rebuilt). A view's lag is the age of the oldest of those. When a partition has more than
 * `scanLimit` events behind, both figures are lower bounds and `complete` is false.
 */
export async function measureViews(db: Database, views: readonly string[], scanLimit = 10_000): Promise<ViewsStatus> {
  const rows = await db.query<Row>(
    `WITH g AS (${backlogQuery('$3', '$2')}), f AS (
       SELECT consumer, order_id, seq FROM consumer_failures WHERE consumer = ANY(ARRAY(SELECT 'view.' || v FROM unnest($1::text[]) AS v)) LIMIT $2
     ), owed AS (
       SELECT f.consumer, count(*)::int AS n, min(j.at) AS oldest
       FROM f JOIN order_journal j ON j.order_id = f.order_id AND j.seq >= f.seq
       JOIN consumer_positions p ON p.grp = $3 AND p.part = j.part AND (j.tx, j.pos) <= (p.tx, p.pos)
       GROUP BY f.consumer
     )
     SELECT k.view, g.behind + coalesce(o.n, 0) AS behind, least(g.oldest, o.oldest) AS oldest,
            coalesce(greatest(0, extract(epoch FROM now() - least(g.oldest, o.oldest))), 0)::float8 AS lag_seconds,
            now() AS measured_at, (g.full OR (SELECT count(*) FROM f) >= $2) AS incomplete,
            s.applied_at, s.rebuild_needed, s.rebuild_started_at, s.rebuild_updated_at, s.rebuild_finished_at,
            s.rebuild_orders_done, s.rebuild_orders_total
     FROM unnest($1::text[]) WITH ORDINALITY AS k(view, n)
     CROSS JOIN g
     LEFT JOIN owed o ON o.consumer = 'view.' || k.view
     LEFT JOIN view_status s ON s.view = k.view
     ORDER BY k.n`,
    [views, scanLimit, EVENTS_GROUP],
  );
  const measuredAt = rows[0]?.measured_at ?? new Date();
  return {
    measuredAt: measuredAt.toISOString(),
    complete: !(rows[0]?.incomplete ?? false),
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
  const gauges: [name: string, help: string, value: (v: ViewState) => number][] = [
    ['baedal_view_lag_seconds', 'Age of the oldest journaled event a read model (view) has not applied yet; 0 when it is caught up', (v) => v.lagSeconds],
    ['baedal_view_events_behind', 'Journaled events a read model (view) has not applied yet', (v) => v.eventsBehind],
  ];
  for (const [name, help, value] of gauges) {
    new Gauge({
      name,
      help,
      labelNames: ['view'] as const,
      registers: [registry],
      async collect() {
        const status = await measure();
        if (status) for (const v of status.views) this.set({ view: v.view }, value(v));
      },
    });
  }
}

/**
 * Locks the rows of view_status named in the text[] parameter `param`, in the views' name order.
 * Every statement that writes several of these rows takes their locks in this one order: a process
 * noting when its views applied events (`noteApplied`) and a rebuild noting its progress then wait
 * for each other and never deadlock (in any other order, the first statement of a rebuild that met
 * one of the second would fail).
 */
export const lockViewStatus = (param: string) => `SELECT view FROM view_status WHERE view = ANY(${param}::text[]) ORDER BY view FOR UPDATE`;

/** Notes in view_status that the views applied events now: one statement, its rows written in name order. */
export async function noteApplied(db: Sql, views: readonly string[]): Promise<void> {
  await db.query(
    `INSERT INTO view_status (view, applied_at) SELECT v, now() FROM unnest($1::text[]) AS v ORDER BY v
     ON CONFLICT (view) DO UPDATE SET applied_at = greatest(view_status.applied_at, EXCLUDED.applied_at)`,
    [views],
  );
}
