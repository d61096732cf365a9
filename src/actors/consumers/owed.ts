import type { Database } from '../../db/pg.ts';
import type { Logger } from '../../log.ts';
import { tracingEnabled, withSpan } from '../../tracing.ts';
import { exponentialBackoff, retryLaterSet, WorkTable, type WorkColumns } from '../work.ts';
import { describe, isApplicationError, untilNoLostRace } from './errors.ts';
import { eventsIn, ownedKey, readHistory } from './history.ts';
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

export interface OwedFilter {
  /** Only owed orders in these partitions (an owner's). */
  parts?: readonly number[];
  consumer?: string;
  orderId?: string;
  /** Orders a rebuild owes are left to the rebuild while it runs (its lease is held); it passes true. */
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
  return untilNoLostRace(async () => {
    const readAt = Date.now();
    const rows = await db.query<Pick<OwedRow, 'consumer' | 'order_id' | 'seq' | 'version' | 'attempts'>>(
      `SELECT f.consumer, f.order_id, f.seq, f.version, f.attempts FROM consumer_failures f
       WHERE f.consumer = ANY($1::text[]) AND ($2::smallint[] IS NULL OR f.part = ANY($2::smallint[])) AND ($3::uuid IS NULL OR f.order_id = $3)
         AND f.due_at <= now()
         AND ($4::boolean OR f.origin <> 'rebuild' OR NOT EXISTS (SELECT 1 FROM leases l WHERE l.name = 'views-rebuild' AND l.until > now()))
       ORDER BY f.order_id LIMIT $5`,
      [names, filter.parts ?? null, filter.orderId ?? null, filter.rebuild ?? false, filter.limit],
    );
    if (rows.length === 0) return { done: 0, failed: 0, more: false, events: 0 };
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
          await commit(db, planned, [{ text: OWED_DONE, params: [json(done)], expect: done.length }]);
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
          const guards: Guard[] = [{ text: `${OWED_FAILED} RETURNING 1`, params: [json(again)], expect: again.length }];
          if (stillDone.length > 0) guards.push({ text: OWED_DONE, params: [json(stillDone)], expect: stillDone.length });
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
