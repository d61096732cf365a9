import type { Database } from '../../db/pg.ts';
import type { Logger } from '../../log.ts';
import { tracingEnabled, withSpan } from '../../tracing.ts';
import { exponentialBackoff, retryLaterSet, WorkTable, type WorkColumns } from '../work.ts';
import { describe, isApplicationError, untilNoLostRace } from './errors.ts';
import { byOrderThenConsumer, eventsIn, inOwedOrder, ownedKey, readHistory } from './history.ts';
import { commit, failingUnits, planUnits, rangesOf, type PlannedUnits, type Unit } from './plan.ts';
import { consumerSpans } from './spans.ts';
import { json, type Guard } from './statement.ts';
import type { ConsumerGroup } from './types.ts';

/** A (consumer, order) owed on its own: a work item whose key is `work_key`, retried by the owner of its partition. */
export interface OwedRow extends WorkColumns {
  work_key: string;
  consumer: string;
  order_id: string;
  part: number;
  seq: number;
  upto: number;
  version: number;
  origin: 'failure' | 'upgrade' | 'rebuild';
  first_failed_at: Date;
  last_failed_at: Date;
}

/** Owed orders as a work table: the shared helpers list them and make them due now (an operator's replay). */
export const owedTable = (db: Database) => new WorkTable<OwedRow>(db, 'consumer_failures', 'work_key', 'text', (r) => r.work_key);

/** When an owed order is tried again after its `attempts`-th failure: from 2 s, doubling, at most 5 minutes apart. */
export const owedBackoffMs = exponentialBackoff(2000, 300_000);

/** An owed order applied: the row goes, if nothing moved it meanwhile. */
const OWED_DONE = `
  DELETE FROM consumer_failures f USING jsonb_to_recordset($1::jsonb) AS i(consumer text, order_id uuid, version int)
  WHERE f.consumer = i.consumer AND f.order_id = i.order_id AND f.version = i.version
  RETURNING 1`;

/** Retried as far as the group got, and failed again: attempts count on, due again after the backoff. */
const OWED_FAILED = `
  UPDATE consumer_failures f SET attempts = f.attempts + 1, ${retryLaterSet('i.error', 'i.delay_ms')}, last_failed_at = now(), version = f.version + 1, origin = 'failure'
  FROM jsonb_to_recordset($1::jsonb) AS i(consumer text, order_id uuid, version int, error text, delay_ms float8)
  WHERE f.consumer = i.consumer AND f.order_id = i.order_id AND f.version = i.version`;

/*
 * The owed rows a retry takes. A rebuild owes every order to each view it rebuilds, so the table
 * can hold millions of rows while one runs: the statements that run over and over (an owner's poll,
 * each of the rebuild's batches) read them through partial indexes and stop at their limit, instead
 * of reading and sorting every owed row each time, which made a rebuild's time grow with the square
 * of the orders (test/views/views.owed-plans.test.ts).
 */
const OWED_COLUMNS = 'f.consumer, f.order_id, f.seq, f.version, f.attempts';

/**
 * An owner's due rows in its partitions: failures (index consumer_failures_part_idx), then a
 * rebuild's rows only once no rebuild holds its lease (it stopped: the owners finish its work).
 */
export const PARTS_OWED = `
  (SELECT ${OWED_COLUMNS} FROM consumer_failures f
   WHERE f.part = ANY($2::smallint[]) AND f.due_at <= now() AND f.origin <> 'rebuild' AND f.consumer = ANY($1::text[])
   LIMIT $3)
  UNION ALL
  (SELECT ${OWED_COLUMNS} FROM consumer_failures f
   WHERE f.origin = 'rebuild' AND f.part = ANY($2::smallint[]) AND f.due_at <= now() AND f.consumer = ANY($1::text[])
     AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.name = 'views-rebuild' AND l.until > now())
   ORDER BY f.order_id LIMIT $3)
  LIMIT $3`;

/** The rebuild's next rows, by order (an order's views together), through consumer_failures_rebuild_idx. */
export const REBUILD_OWED = `
  SELECT ${OWED_COLUMNS} FROM consumer_failures f
  WHERE f.origin = 'rebuild' AND f.consumer = ANY($1::text[])
  ORDER BY f.order_id LIMIT $2`;

/** An operator's replay (one consumer, one order, or all): due rows, a running rebuild's left to it. */
const ANY_OWED = `
  SELECT ${OWED_COLUMNS} FROM consumer_failures f
  WHERE f.consumer = ANY($1::text[]) AND ($2::smallint[] IS NULL OR f.part = ANY($2::smallint[])) AND ($3::uuid IS NULL OR f.order_id = $3)
    AND f.due_at <= now()
    AND (f.origin <> 'rebuild' OR NOT EXISTS (SELECT 1 FROM leases l WHERE l.name = 'views-rebuild' AND l.until > now()))
  ORDER BY f.order_id LIMIT $4`;

export interface OwedFilter {
  /** Only owed orders in these partitions (an owner's). */
  parts?: readonly number[];
  consumer?: string;
  orderId?: string;
  /**
   * The rebuild's own rows (every one, due or not: it passes true); without it, a rebuild's rows
   * are left to it while its lease is held.
   */
  rebuild?: boolean;
  limit: number;
}

/**
 * Retries the orders consumers owe on their own (they failed on them, or are being rebuilt) that are
 * due (`due_at`; an operator's replay makes them due now with the work tables' `dueNow`), as far
 * as the group's positions got: from the first owed event to the last one the group passed (the
 * group's own reading applies the later ones once the order is no longer owed). Each applied order's
 * row goes in the statement that applies it, checked against its version, so an order whose newer
 * events the group passed meanwhile is read again. Returns how many owed orders were done, failed
 * again, and whether more were due than `limit`.
 */
export async function retryOwed(db: Database, group: ConsumerGroup, filter: OwedFilter, log: Logger): Promise<{ done: number; failed: number; more: boolean; events: number }> {
  const names = group.consumers.map((c) => c.name).filter((n) => !filter.consumer || n === filter.consumer);
  const [text, params] = filter.rebuild
    ? [REBUILD_OWED, [names, filter.limit]]
    : filter.parts && !filter.consumer && !filter.orderId
      ? [PARTS_OWED, [names, filter.parts, filter.limit]]
      : [ANY_OWED, [names, filter.parts ?? null, filter.orderId ?? null, filter.limit]];
  return untilNoLostRace(async () => {
    const readAt = Date.now();
    const rows = await db.query<Pick<OwedRow, 'consumer' | 'order_id' | 'seq' | 'version' | 'attempts'>>(text, params);
    if (rows.length === 0) return { done: 0, failed: 0, more: false, events: 0 };
    byOrderThenConsumer(rows);
    const history = await readHistory(db, group, new Map(rows.map((r) => [r.order_id, null])));
    const byName = new Map(group.consumers.map((c) => [c.name, c]));
    const units: (Unit & { version: number; attempts: number })[] = [];
    const done: { consumer: string; order_id: string; version: number }[] = [];
    for (const r of rows) {
      const consumer = byName.get(r.consumer);
      if (!consumer) continue;
      // The events the group's position passed; the others are read by the group once the row goes.
      const passed = (history.events.get(r.order_id) ?? []).filter((e) => e.passed).length;
      done.push({ consumer: r.consumer, order_id: r.order_id, version: r.version });
      if (passed >= r.seq) units.push({ consumer, orderId: r.order_id, from: r.seq, upto: passed, version: r.version, attempts: r.attempts });
    }
    const key = (u: { consumer: string; order_id: string }) => ownedKey(u.consumer, u.order_id);
    const spans = tracingEnabled() ? consumerSpans('events.retry-owed', history, eventsIn(rangesOf(units), history), readAt, { 'baedal.owed': rows.length }) : undefined;
    try {
      return await withSpan(spans?.batch, async () => {
        let failed: { unit: (typeof units)[number]; err: unknown }[] = [];
        let planned: PlannedUnits;
        try {
          planned = planUnits(units, history, spans);
        } catch (err) {
          planned = { effects: [], events: 0, plans: [] };
          failed = [{ unit: units[0]!, err }];
        }
        try {
          if (failed.length > 0) throw failed[0]!.err;
          await commit(db, planned, [{ text: OWED_DONE, params: [json(inOwedOrder(done))], expect: done.length }]);
        } catch (err) {
          if (!isApplicationError(err)) throw err;
          spans?.endConsumers(err);
          const failing = await failingUnits(db, units, history);
          if (failing.size === 0) throw err;
          failed = [...failing].map(([unit, e]) => ({ unit: unit as (typeof units)[number], err: e }));
          const bad = new Set(failed.map((f) => ownedKey(f.unit.consumer.name, f.unit.orderId)));
          const rest = units.filter((u) => !bad.has(ownedKey(u.consumer.name, u.orderId)));
          planned = planUnits(rest, history, spans);
          const stillDone = done.filter((d) => !bad.has(key(d)));
          const again = failed.map(({ unit, err: e }) => ({ consumer: unit.consumer.name, order_id: unit.orderId, version: unit.version, error: describe(e).slice(0, 2000), delay_ms: owedBackoffMs(unit.attempts + 1) }));
          const guards: Guard[] = [{ text: `${OWED_FAILED} RETURNING 1`, params: [json(inOwedOrder(again))], expect: again.length }];
          if (stillDone.length > 0) guards.push({ text: OWED_DONE, params: [json(inOwedOrder(stillDone))], expect: stillDone.length });
          await commit(db, planned, guards);
          for (const f of failed) log.warn({ err: describe(f.err), consumer: f.unit.consumer.name, orderId: f.unit.orderId }, 'consumer failed again on an owed order');
        }
        spans?.end();
        return { done: done.length - failed.length, failed: failed.length, more: rows.length >= filter.limit, events: planned.events };
      });
    } catch (err) {
      spans?.end(err);
      throw err;
    }
  });
}
