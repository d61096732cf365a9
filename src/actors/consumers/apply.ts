import type { Database } from '../../db/pg.ts';
import type { Logger } from '../../log.ts';
import { ATTR, tracingEnabled, withSpan } from '../../tracing.ts';
import { describe, isApplicationError, untilNoLostRace } from './errors.ts';
import { EVENT_COLUMNS, eventsIn, historyOf, inOwedOrder, ownedKey, type HistoryRow } from './history.ts';
import { commit, failingUnits, planUnits, type PlannedUnits, type Unit } from './plan.ts';
import { owedBackoffMs } from './owed.ts';
import { consumerSpans } from './spans.ts';
import { json, type Guard } from './statement.ts';
import { dueIn } from '../work.ts';
import type { Carried, ConsumerGroup } from './types.ts';
import { withFields } from '../../objects.ts';

export interface PartitionsApplied {
  /** Journal events read past the positions, per partition. */
  byPart: Map<number, number>;
  /** Partitions that had more than one batch holds: read them again. */
  more: number[];
  /** (consumer, event) pairs applied. */
  applied: number;
  /** The next batch, when the statement read it ahead (see READ_AHEAD). */
  ahead?: ReadAhead;
  /** When (ms since the epoch) each event of the batch was decided (its journal `at`), in the batch's order. */
  decidedAt: number[];
}

interface BatchRow extends HistoryRow {
  /** Set on the rows of the batch (the others are the orders' earlier events). */
  b_part: number | null;
  b_version: number | null;
  b_tx: string | null;
  b_pos: string | null;
}

/**
 * One read per batch: the next events of each partition after the group's position, oldest first,
 * from transactions that every snapshot sees as finished (older than the oldest one still
 * running: a transaction that commits later can never write an event behind a position already
 * passed); and every event of their orders up to them (the earlier ones fold the consumers'
 * state), with the orders' owed rows. The batch's rows carry their partition and position.
 * Each order's history is an index probe of its own (the lateral, kept from being flattened by its
 * ORDER BY): a join the planner may turn into a scan of the whole journal when it is small would
 * make every batch cost as much as the journal is long. `positions` is a relation of part,
 * version, tx and pos for the group `$1`; `$2` the partitions, `$3` the events read at most per
 * partition, `$4` the consumers whose owed rows come with the orders.
 */
const readBatch = (positions: string) => `
  WITH b AS (
    SELECT p.part, p.version, x.order_id, x.seq, x.tx, x.pos
    FROM ${positions} p
    CROSS JOIN LATERAL (
      SELECT j.order_id, j.seq, j.tx, j.pos FROM order_journal j
      WHERE j.part = p.part AND (j.tx, j.pos) > (p.tx, p.pos) AND j.tx < pg_snapshot_xmin(pg_current_snapshot())
      ORDER BY j.tx, j.pos LIMIT $3
    ) x
    WHERE p.part = ANY($2::smallint[])
  ), u AS (
    SELECT order_id, max(seq) AS hi FROM b GROUP BY order_id
  )
  SELECT ${EVENT_COLUMNS}, b.part::int AS b_part, b.version AS b_version, b.tx::text AS b_tx, b.pos::text AS b_pos,
         CASE WHEN j.seq = 1 THEN (SELECT jsonb_agg(jsonb_build_object('consumer', f.consumer, 'seq', f.seq, 'upto', f.upto, 'version', f.version))
                                   FROM consumer_failures f WHERE f.order_id = j.order_id AND f.consumer = ANY($4::text[])) END AS owed
  FROM u CROSS JOIN LATERAL (
    SELECT * FROM order_journal j WHERE j.order_id = u.order_id AND j.seq <= u.hi ORDER BY j.seq
  ) j
  LEFT JOIN b ON b.order_id = j.order_id AND b.seq = j.seq
  ORDER BY j.order_id, j.seq`;

const READ_BATCH = readBatch('(SELECT part, version, tx, pos FROM consumer_positions WHERE grp = $1)');

/**
 * The next batch, read by the statement that writes this one: the same read, from the positions
 * that statement moves the partitions to (`$5`: part, version, tx, pos) and, for the others, from
 * where they are. It runs in that statement's snapshot, so it sees neither what the statement
 * writes (hence the positions as parameters) nor what commits after it started.
 */
const READ_AHEAD = readBatch(`(
    SELECT p.part, coalesce(n.version, p.version) AS version, coalesce(n.tx::xid8, p.tx) AS tx, coalesce(n.pos, p.pos) AS pos
    FROM consumer_positions p LEFT JOIN jsonb_to_recordset($5::jsonb) AS n(part smallint, version int, tx text, pos bigint) ON n.part = p.part
    WHERE p.grp = $1)`);

/**
 * What the statement that wrote a batch read of the next one (see READ_AHEAD): the rows of
 * `parts` past the positions it wrote, as of when it ran (`readAt`, ms since the epoch).
 */
export interface ReadAhead {
  parts: number[];
  /** The most events it read per partition: one that has as many may have more. */
  limitPerPart: number;
  rows: BatchRow[];
  readAt: number;
}

/** A READ_AHEAD row as it came back through JSON: the event's time is a string there. */
const fromJson = (row: Record<string, unknown>): BatchRow => ({ ...(row as unknown as BatchRow), at: new Date(String(row.at)) });

/** Rows in each order's sequence, as a read returns them (the rows of a statement's read come in no set order). */
const byOrder = (rows: BatchRow[]) => rows.sort((a, b) => (a.order_id < b.order_id ? -1 : a.order_id > b.order_id ? 1 : a.seq - b.seq));

/** Whether position (tx, pos) comes after (tx2, pos2). */
const after = (tx: string, pos: string, tx2: string, pos2: string) => {
  const a = BigInt(tx);
  const b = BigInt(tx2);
  return a > b || (a === b && BigInt(pos) > BigInt(pos2));
};

const MOVE_POSITIONS = `
  UPDATE consumer_positions c SET tx = i.tx::xid8, pos = i.pos, version = c.version + 1, updated_at = now()
  FROM jsonb_to_recordset($1::jsonb) AS i(part smallint, version int, tx text, pos bigint)
  WHERE c.grp = $2 AND c.part = i.part AND c.version = i.version
  RETURNING 1`;

/** An owed order whose newer events the group passed: they are owed too (the row moves with them). */
const OWE_MORE = `
  UPDATE consumer_failures f SET upto = greatest(f.upto, i.upto), version = f.version + 1
  FROM jsonb_to_recordset($1::jsonb) AS i(consumer text, order_id uuid, version int, upto int)
  WHERE f.consumer = i.consumer AND f.order_id = i.order_id AND f.version = i.version
  RETURNING 1`;

const NEWLY_OWED = `
  INSERT INTO consumer_failures (consumer, order_id, part, seq, upto, attempts, last_error, first_failed_at, last_failed_at, origin, due_at)
  SELECT i.consumer, i.order_id, p.part, i.seq, i.upto, 1, i.error, now(), now(), 'failure', ${dueIn('i.delay_ms')}
  FROM jsonb_to_recordset($1::jsonb) AS i(consumer text, order_id uuid, seq int, upto int, error text, delay_ms float8)
  JOIN LATERAL (SELECT j.part FROM order_journal j WHERE j.order_id = i.order_id AND j.seq = i.seq) p ON true
  ON CONFLICT (consumer, order_id) DO NOTHING
  RETURNING 1`;

/**
 * Applies, for each partition, the next events after the group's position (at most
 * `limitPerPart`), in one statement with the new positions. A consumer that owes an order on its
 * own (it failed on it, or it is being rebuilt) skips that order's events, which become owed too.
 * When the batch fails for a consumer's reason, the failing (consumer, order) units are found and
 * owed on their own, and the rest is applied. Positions are checked against what was read: a
 * delivery that lost a race (two replicas during a hand-over) reads again. `carry` gives what else
 * the batch's statement may write (see `Carried`); it is settled whether or not the statement commits.
 */
export async function applyPartitions(
  db: Database,
  group: ConsumerGroup,
  parts: readonly number[],
  opts: {
    limitPerPart: number;
    log: Logger;
    carry?: () => Carried | undefined;
    /** What the previous batch's statement read of this one (`parts` are its parts): used instead of a read, once. */
    ahead?: ReadAhead;
    /** Partitions whose next events the statement that writes this batch also reads, at most `limitPerPart` each (see READ_AHEAD). */
    readAhead?: () => { parts: number[]; limitPerPart: number };
  },
): Promise<PartitionsApplied> {
  if (parts.length === 0) return { byPart: new Map(), more: [], applied: 0, decidedAt: [] };
  const consumerNames = group.consumers.map((c) => c.name);
  return untilNoLostRace(async (attempt) => {
    // A batch read ahead is used once: a lost race reads again.
    const ahead = attempt === 1 ? opts.ahead : undefined;
    const readAt = ahead?.readAt ?? Date.now();
    const rows = ahead ? ahead.rows : await db.query<BatchRow>(READ_BATCH, [group.name, parts, opts.limitPerPart, consumerNames]);
    if (rows.length === 0) return { byPart: new Map(), more: [], applied: 0, decidedAt: [] };
    const ends = new Map<number, { version: number; tx: string; pos: string; n: number }>();
    const range = new Map<string, { lo: number; hi: number }>();
    for (const r of rows) {
      if (r.b_part === null) continue;
      const end = ends.get(r.b_part);
      const later = !end || after(r.b_tx!, r.b_pos!, end.tx, end.pos);
      ends.set(r.b_part, { version: r.b_version!, tx: later ? r.b_tx! : end.tx, pos: later ? r.b_pos! : end.pos, n: (end?.n ?? 0) + 1 });
      const o = range.get(r.order_id);
      range.set(r.order_id, { lo: Math.min(o?.lo ?? r.seq, r.seq), hi: Math.max(o?.hi ?? r.seq, r.seq) });
    }
    const history = historyOf(rows);
    const units: Unit[] = [];
    const skipped: { consumer: string; order_id: string; version: number; upto: number }[] = [];
    for (const consumer of group.consumers) {
      for (const [orderId, { lo, hi }] of range) {
        const owed = history.owed.get(ownedKey(consumer.name, orderId));
        if (owed) skipped.push({ consumer: consumer.name, order_id: orderId, version: owed.version, upto: hi });
        else units.push({ consumer, orderId, from: lo, upto: hi });
      }
    }
    // By partition: two deliveries of the same partitions (a hand-over) move their positions in one order.
    const positions = [...ends].sort(([a], [b]) => a - b).map(([part, e]) => ({ part, version: e.version, tx: e.tx, pos: e.pos }));
    const guards = (failed: { unit: Unit; err: unknown }[]): Guard[] => {
      const out: Guard[] = [{ text: MOVE_POSITIONS, params: [json(positions), group.name], expect: positions.length }];
      if (skipped.length > 0) out.push({ text: OWE_MORE, params: [json(inOwedOrder(skipped))], expect: skipped.length });
      if (failed.length > 0) {
        const owed = failed.map(({ unit, err }) => ({ consumer: unit.consumer.name, order_id: unit.orderId, seq: unit.from, upto: unit.upto, error: describe(err).slice(0, 2000), delay_ms: owedBackoffMs(1) }));
        out.push({ text: NEWLY_OWED, params: [json(owed)], expect: owed.length });
      }
      return out;
    };
    const limitRead = ahead?.limitPerPart ?? opts.limitPerPart;
    // Rows read ahead came through JSON: their `at` is a string there.
    const decidedAt = rows.filter((r) => r.b_part !== null).map((r) => new Date(r.at).getTime());
    const result = (applied: number, next?: ReadAhead): PartitionsApplied => ({
      decidedAt,
      byPart: new Map([...ends].map(([part, e]) => [part, e.n])),
      more: [...ends].filter(([, e]) => e.n >= limitRead).map(([part]) => part),
      applied,
      ...(next && { ahead: next }),
    });
    // Read ahead only when this statement changes no owed row (a read in it would not see the change).
    // The read is in the statement either way (of no partition then), so that its text, prepared once
    // per connection, does not come in twice as many shapes.
    const aheadOf = opts.readAhead?.();
    const readsAhead = aheadOf !== undefined && skipped.length === 0 && aheadOf.parts.length > 0;
    const readNext = aheadOf
      ? {
          text: READ_AHEAD,
          params: [group.name, readsAhead ? aheadOf.parts : [], aheadOf.limitPerPart, consumerNames, json(positions.map((p) => ({ ...p, version: p.version + 1 })))],
        }
      : undefined;
    const spans = tracingEnabled()
      ? consumerSpans('events.apply', history, eventsIn(range, history), readAt, { [ATTR.partitions]: ends.size, 'baedal.batch.attempt': attempt })
      : undefined;
    try {
      return await withSpan(spans?.batch, async () => {
        let planned: PlannedUnits | undefined;
        const carried = opts.carry?.();
        try {
          planned = planUnits(units, history, spans);
          const sentAt = Date.now();
          const next = await commit(db, planned, guards([]), carried?.effect, readNext);
          carried?.settle(true);
          spans?.end();
          return result(planned.events, readsAhead ? withFields(aheadOf, { rows: byOrder(next.map(fromJson)), readAt: sentAt }) : undefined);
        } catch (err) {
          carried?.settle(false);
          if (!isApplicationError(err)) throw err;
          spans?.endConsumers(err);
          // Some consumer failed on some order: owe those units on their own, apply the rest.
          const failing = await failingUnits(db, units, history);
          if (failing.size === 0) throw err;
          for (const [unit, why] of failing) {
            opts.log.warn({ err: describe(why), consumer: unit.consumer.name, orderId: unit.orderId }, 'consumer failed on an order; it stays owed');
          }
          const rest = units.filter((u) => !failing.has(u));
          planned = planUnits(rest, history, spans);
          await commit(db, planned, guards([...failing].map(([unit, e]) => ({ unit, err: e }))));
          spans?.end();
          return result(planned.events);
        }
      });
    } catch (err) {
      spans?.end(err);
      throw err;
    }
  });
}
