import type { Database } from '../../db/pg.ts';
import { JOURNAL_COLUMNS, toJournalEntry, type JournalRow } from '../order-repository.ts';
import { JournalGap } from './errors.ts';
import type { ConsumerGroup, OrderEvent } from './types.ts';

interface Owed {
  consumer: string;
  seq: number;
  upto: number;
  version: number;
}

export interface HistoryRow extends JournalRow {
  traceparent: string | null;
  passed?: boolean | null;
  owed: Owed[] | null;
}

/** Every event of each order up to `upto` (all of them when null), with the orders' owed rows. */
export interface History {
  events: Map<string, (OrderEvent & { passed: boolean })[]>;
  owed: Map<string, Owed>;
}

export const ownedKey = (consumer: string, orderId: string) => `${consumer}\u0000${orderId}`;

/**
 * The one order in which statements send owed rows (consumer_failures) to be written, by consumer,
 * then order: a live batch owing more of some orders and a rebuild (or a replay) applying them. On
 * a large table (a rebuild's) their plans take the rows in the order sent (a nested loop over the
 * input, by the primary key), so the two wait for each other instead of deadlocking; a deadlock
 * that a plan of another shape still meets is retried as any lost race is (`untilNoLostRace`).
 */
export function inOwedOrder<T extends { consumer: string; order_id: string }>(rows: T[]): T[] {
  return rows.sort((a, b) => compare(a.consumer, b.consumer) || compare(a.order_id, b.order_id));
}

/** Rows by order, then consumer: the order in which batches apply orders (an owner's poll reads owed rows so). */
export function byOrderThenConsumer<T extends { consumer: string; order_id: string }>(rows: T[]): T[] {
  return rows.sort((a, b) => compare(a.order_id, b.order_id) || compare(a.consumer, b.consumer));
}

const compare = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** The journal's columns as consumers read them: with the trace context each event was recorded in. */
export const EVENT_COLUMNS = `${JOURNAL_COLUMNS}, j.traceparent`;

/**
 * Reads the orders' journals (the earlier events fold the consumers' state) and the orders the
 * consumers owe on their own. `passed`: the group's position in the event's partition is at or
 * past it.
 */
export async function readHistory(db: Database, group: ConsumerGroup, upto: Map<string, number | null>): Promise<History> {
  const ids = [...upto.keys()];
  return historyOf(await db.query<HistoryRow>(
    `SELECT ${EVENT_COLUMNS}, (j.tx, j.pos) <= (p.tx, p.pos) AS passed,
            CASE WHEN j.seq = 1 THEN (SELECT jsonb_agg(jsonb_build_object('consumer', f.consumer, 'seq', f.seq, 'upto', f.upto, 'version', f.version))
                                      FROM consumer_failures f WHERE f.order_id = j.order_id AND f.consumer = ANY($4::text[])) END AS owed
     FROM unnest($1::uuid[], $2::int[]) AS u(order_id, upto)
     CROSS JOIN LATERAL (SELECT * FROM order_journal j WHERE j.order_id = u.order_id AND (u.upto IS NULL OR j.seq <= u.upto) ORDER BY j.seq) j
     LEFT JOIN consumer_positions p ON p.grp = $3 AND p.part = j.part
     ORDER BY j.order_id, j.seq`,
    [ids, ids.map((id) => upto.get(id) ?? null), group.name, group.consumers.map((c) => c.name)],
  ));
}

/** The orders' events (in order, checked for gaps) and owed rows, from rows of the journal. */
export function historyOf(rows: readonly HistoryRow[]): History {
  const events = new Map<string, (OrderEvent & { passed: boolean })[]>();
  const owed = new Map<string, Owed>();
  for (const row of rows) {
    const list = events.get(row.order_id) ?? [];
    if (row.seq !== list.length + 1) throw new JournalGap(`order ${row.order_id} has seq ${row.seq} where ${list.length + 1} was due`);
    // Set on the new entry, not spread into another object with them: see `withFields` (src/objects.ts).
    list.push(Object.assign(toJournalEntry(row), { orderId: row.order_id, traceparent: row.traceparent, passed: row.passed === true }));
    events.set(row.order_id, list);
    for (const o of row.owed ?? []) owed.set(ownedKey(o.consumer, row.order_id), o);
  }
  return { events, owed };
}

/** The events `from..upto` of each order, from its history. */
export function eventsIn(ranges: ReadonlyMap<string, { lo: number; hi: number }>, history: History): OrderEvent[] {
  return [...ranges].flatMap(([orderId, { lo, hi }]) => (history.events.get(orderId) ?? []).slice(lo - 1, hi));
}
