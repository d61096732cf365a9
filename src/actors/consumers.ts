import type { Database, Sql } from '../db/pg.ts';
import type { Logger } from '../log.ts';
import { JOURNAL_COLUMNS, toJournalEntry, type JournalEntry, type JournalRow } from './order-repository.ts';

/** A journaled event, as consumers see it. */
export interface OrderEvent extends JournalEntry {
  orderId: string;
}

/** Points at one journaled event; what travels over BullMQ (ids only, no personal data). */
export interface EventRef {
  orderId: string;
  seq: number;
}

/** One order's events that a consumer has not applied yet, in seq order, with its state so far. */
export interface OrderEvents<S> {
  orderId: string;
  /** What the consumer kept about the order after the events it applied before; null at first. */
  state: S | null;
  events: OrderEvent[];
}

export interface Applied<S> {
  /** The new state of each order, in the order of the batch. */
  states: (S | null)[];
  /** Runs after the transaction commits (e.g. schedule the work the consumer recorded). */
  afterCommit?: () => void;
}

/**
 * Something that reacts to order events: a saga step, a view, a notifier. It folds each order's
 * events in seq order; its checkpoint (last applied seq and state per order) is written in the
 * same transaction as its effects, so a repeated or reordered delivery is harmless and nothing
 * grows per event. Consumers are independent: each has its own queue, checkpoint and failures.
 */
export interface Consumer<S = unknown> {
  name: string;
  apply(tx: Sql, batch: OrderEvents<S>[]): Promise<Applied<S>>;
}

export type AnyConsumer = Consumer<any>;

/**
 * Consumers that share one queue and, when all goes well, one transaction per batch: one read of
 * the journal and their checkpoints, each consumer's statements, one checkpoint write. When one of
 * them fails on a batch, each is applied on its own (and then order by order), so a failing
 * consumer never holds back another.
 */
export interface ConsumerGroup {
  name: string;
  consumers: readonly AnyConsumer[];
}

const consumersOf = (target: AnyConsumer | ConsumerGroup): readonly AnyConsumer[] => ('consumers' in target ? target.consumers : [target]);

interface Row extends Partial<JournalRow> {
  cp_order_id: string;
  cps: Record<string, [number, unknown]>;
}

/** Thrown when the journal does not continue where the checkpoint stopped (must not happen). */
class CheckpointGap extends Error {}

/** Another delivery applied some of the same events first: read again and apply what is left. */
class CheckpointMoved extends Error {}

/** How often a batch is read again after another delivery moved its checkpoints first. */
const CONFLICT_RETRIES = 8;

const READ_OWED = `
  WITH b AS (SELECT * FROM unnest($2::uuid[], $3::int[]) AS b(order_id, upto)),
  c AS (
    SELECT b.order_id, b.upto,
           coalesce(jsonb_object_agg(cp.consumer, jsonb_build_array(cp.seq, cp.state)) FILTER (WHERE cp.consumer IS NOT NULL), '{}') AS cps,
           CASE WHEN count(cp.consumer) < $4 THEN 0 ELSE min(cp.seq) END AS low
    FROM b LEFT JOIN consumer_checkpoints cp ON cp.order_id = b.order_id AND cp.consumer = ANY($1::text[])
    GROUP BY b.order_id, b.upto
  )
  SELECT c.order_id AS cp_order_id, c.cps, ${JOURNAL_COLUMNS}
  FROM c LEFT JOIN order_journal j ON j.order_id = c.order_id AND j.seq > c.low AND j.seq <= c.upto
  ORDER BY c.order_id, j.seq`;

/**
 * Writes the new checkpoints of a batch, each only if it is still what the batch was read at
 * (`expected`; 0: none yet), and clears the failures of those orders. The count written tells
 * whether another delivery got there first.
 */
const WRITE_CHECKPOINTS = `
  WITH input AS (
    SELECT * FROM jsonb_to_recordset($1::jsonb) AS i(consumer text, order_id uuid, expected int, seq int, state jsonb)
  ), moved AS (
    UPDATE consumer_checkpoints c SET seq = i.seq, state = i.state, updated_at = now()
    FROM input i WHERE i.expected > 0 AND c.consumer = i.consumer AND c.order_id = i.order_id AND c.seq = i.expected
    RETURNING 1
  ), created AS (
    INSERT INTO consumer_checkpoints (consumer, order_id, seq, state)
    SELECT consumer, order_id, seq, state FROM input WHERE expected = 0
    ON CONFLICT (consumer, order_id) DO UPDATE SET seq = EXCLUDED.seq, state = EXCLUDED.state, updated_at = now()
    WHERE consumer_checkpoints.seq = 0
    RETURNING 1
  ), cleared AS (
    DELETE FROM consumer_failures f USING input i WHERE f.consumer = i.consumer AND f.order_id = i.order_id
  )
  SELECT (SELECT count(*) FROM moved)::int + (SELECT count(*) FROM created)::int AS n`;

/**
 * Applies, in one transaction, every event of the referenced orders up to the referenced seq that
 * each consumer has not applied yet: read from the journal after its checkpoint, so a lost or
 * reordered message never leaves a gap, and a repeated one changes nothing. The checkpoints are
 * written last, checked against what was read: a delivery that lost a race to another rolls back
 * and reads again. Returns the number of (consumer, event) pairs applied.
 */
export async function applyEvents(db: Database, target: AnyConsumer | ConsumerGroup, refs: readonly EventRef[]): Promise<number> {
  const consumers = consumersOf(target);
  const upto = new Map<string, number>();
  for (const r of refs) upto.set(r.orderId, Math.max(upto.get(r.orderId) ?? 0, r.seq));
  if (upto.size === 0) return 0;
  const orderIds = [...upto.keys()].sort();
  const seqs = orderIds.map((id) => upto.get(id)!);
  const names = consumers.map((c) => c.name);
  for (let attempt = 1; ; attempt += 1) {
    const rows = await db.query<Row>(READ_OWED, [names, orderIds, seqs, names.length]);
    const batches = consumers.map(() => [] as (OrderEvents<unknown> & { from: number })[]);
    for (const row of rows) {
      if (row.seq == null) continue; // nothing new for this order
      consumers.forEach((consumer, k) => {
        const [from, state] = row.cps[consumer.name] ?? [0, null];
        if (row.seq! <= from) return;
        const batch = batches[k]!;
        let current = batch.at(-1);
        if (!current || current.orderId !== row.cp_order_id) {
          current = { orderId: row.cp_order_id, state: state ?? null, events: [], from };
          batch.push(current);
        }
        const expected = current.from + current.events.length + 1;
        if (row.seq !== expected) throw new CheckpointGap(`${consumer.name}: order ${row.cp_order_id} has seq ${row.seq} where ${expected} was due`);
        current.events.push({ ...toJournalEntry(row as JournalRow), orderId: row.cp_order_id });
      });
    }
    if (batches.every((b) => b.length === 0)) return 0;
    const after: (() => void)[] = [];
    try {
      await db.transaction(async (tx) => {
        const checkpoints: { consumer: string; order_id: string; expected: number; seq: number; state: unknown }[] = [];
        for (const [k, consumer] of consumers.entries()) {
          const batch = batches[k]!;
          if (batch.length === 0) continue;
          const result = await consumer.apply(tx, batch);
          if (result.afterCommit) after.push(result.afterCommit);
          batch.forEach((b, i) =>
            checkpoints.push({ consumer: consumer.name, order_id: b.orderId, expected: b.from, seq: b.from + b.events.length, state: result.states[i] ?? null }),
          );
        }
        const [written] = await tx.query<{ n: number }>(WRITE_CHECKPOINTS, [JSON.stringify(checkpoints)]);
        if (written!.n !== checkpoints.length) throw new CheckpointMoved();
      });
    } catch (err) {
      if ((err instanceof CheckpointMoved || isConflict(err)) && attempt < CONFLICT_RETRIES) {
        await new Promise((resolve) => setTimeout(resolve, Math.random() * 5 * attempt));
        continue;
      }
      throw err;
    }
    for (const run of after) run();
    return batches.reduce((n, b) => n + b.reduce((m, o) => m + o.events.length, 0), 0);
  }
}

/** PostgreSQL gave up one of two transactions that waited on each other: try again. */
function isConflict(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === '40P01' || code === '40001';
}

/**
 * Delivers a batch to a consumer or a group. When it fails as a whole, each consumer of a group is
 * tried on its own, then each order on its own, so one poisoned order cannot hold back the others;
 * the orders that still fail are recorded in `consumer_failures` (visible to operators, retried
 * later by the sweeper) instead of failing the job. Infrastructure errors (PostgreSQL unreachable)
 * and lost races that kept repeating propagate, so the job is retried.
 */
export async function deliver(db: Database, target: AnyConsumer | ConsumerGroup, refs: readonly EventRef[], log: Logger): Promise<number> {
  try {
    return await applyEvents(db, target, refs);
  } catch (err) {
    if (!isApplicationError(err)) throw err;
    const consumers = consumersOf(target);
    if (consumers.length > 1) {
      let applied = 0;
      for (const consumer of consumers) applied += await deliver(db, consumer, refs, log);
      return applied;
    }
    const consumer = consumers[0]!;
    const byOrder = new Map<string, EventRef[]>();
    for (const r of refs) byOrder.set(r.orderId, [...(byOrder.get(r.orderId) ?? []), r]);
    if (byOrder.size === 1) {
      const [orderId, orderRefs] = [...byOrder][0]!;
      await recordFailure(db, consumer.name, orderId, err);
      log.warn({ err: describe(err), consumer: consumer.name, orderId }, 'consumer failed on an order; it stays owed');
      return 0;
    }
    let applied = 0;
    for (const orderRefs of byOrder.values()) applied += await deliver(db, consumer, orderRefs, log);
    return applied;
  }
}

/** Errors that belong to one batch's data or code, as opposed to PostgreSQL being unreachable. */
function isApplicationError(err: unknown): boolean {
  if (err instanceof CheckpointMoved || isConflict(err)) return false;
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && /^(08|53|57P)/.test(code)) return false; // connection, resources, shutdown
  if (typeof code === 'string' && /^(ECONN|ETIMEDOUT|EPIPE)/.test(code)) return false;
  if (err instanceof Error && /Connection terminated|timeout exceeded when trying to connect/i.test(err.message)) return false;
  return true;
}

function describe(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}

/** Records that the consumer is stuck on the order: `seq` is the first event it still owes. */
async function recordFailure(db: Database, consumer: string, orderId: string, err: unknown): Promise<void> {
  await db.query(
    `INSERT INTO consumer_failures (consumer, order_id, seq, attempts, error, first_failed_at, last_failed_at)
     VALUES ($1, $2, coalesce((SELECT seq FROM consumer_checkpoints WHERE consumer = $1 AND order_id = $2), 0) + 1, 1, $3, now(), now())
     ON CONFLICT (consumer, order_id) DO UPDATE SET seq = EXCLUDED.seq, attempts = consumer_failures.attempts + 1,
       error = EXCLUDED.error, last_failed_at = now()`,
    [consumer, orderId, describe(err).slice(0, 2000)],
  );
}
