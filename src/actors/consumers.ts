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

interface Row extends Partial<JournalRow> {
  cp_order_id: string;
  cp_seq: number;
  cp_state: unknown;
}

/** Thrown when the journal does not continue where the checkpoint stopped (must not happen). */
class CheckpointGap extends Error {}

/**
 * Applies, in one transaction, every event of the referenced orders up to the referenced seq that
 * the consumer has not applied yet: read from the journal after its checkpoint, so a lost or
 * reordered message never leaves a gap. Returns the number of events applied.
 */
export async function applyEvents(db: Database, consumer: AnyConsumer, refs: readonly EventRef[]): Promise<number> {
  const upto = new Map<string, number>();
  for (const r of refs) upto.set(r.orderId, Math.max(upto.get(r.orderId) ?? 0, r.seq));
  if (upto.size === 0) return 0;
  // Sorted, so two batches lock their checkpoint rows in the same order and cannot deadlock.
  const orderIds = [...upto.keys()].sort();
  const seqs = orderIds.map((id) => upto.get(id)!);
  let after: (() => void) | undefined;
  const applied = await db.transaction(async (tx) => {
    await tx.query(
      `INSERT INTO consumer_checkpoints (consumer, order_id, seq) SELECT $1, unnest($2::uuid[]), 0 ON CONFLICT DO NOTHING`,
      [consumer.name, orderIds],
    );
    const rows = await tx.query<Row>(
      `SELECT c.order_id AS cp_order_id, c.seq AS cp_seq, c.state AS cp_state, ${JOURNAL_COLUMNS}
       FROM consumer_checkpoints c
       JOIN unnest($2::uuid[], $3::int[]) AS b(order_id, upto) ON b.order_id = c.order_id
       LEFT JOIN order_journal j ON j.order_id = c.order_id AND j.seq > c.seq AND j.seq <= b.upto
       WHERE c.consumer = $1
       ORDER BY c.order_id, j.seq
       FOR UPDATE OF c`,
      [consumer.name, orderIds, seqs],
    );
    const batch: (OrderEvents<unknown> & { from: number })[] = [];
    for (const row of rows) {
      if (row.seq == null) continue; // nothing new for this order
      let current = batch.at(-1);
      if (!current || current.orderId !== row.cp_order_id) {
        current = { orderId: row.cp_order_id, state: row.cp_state ?? null, events: [], from: row.cp_seq };
        batch.push(current);
      }
      const expected = current.from + current.events.length + 1;
      if (row.seq !== expected) throw new CheckpointGap(`${consumer.name}: order ${row.cp_order_id} has seq ${row.seq} where ${expected} was due`);
      current.events.push({ ...toJournalEntry(row as JournalRow), orderId: row.cp_order_id });
    }
    if (batch.length === 0) return 0;
    const result = await consumer.apply(tx, batch);
    after = result.afterCommit;
    await tx.query(
      `WITH cleared AS (DELETE FROM consumer_failures WHERE consumer = $1 AND order_id = ANY($2::uuid[]))
       UPDATE consumer_checkpoints c SET seq = u.seq, state = u.state, updated_at = now()
       FROM unnest($2::uuid[], $3::int[], $4::jsonb[]) AS u(order_id, seq, state)
       WHERE c.consumer = $1 AND c.order_id = u.order_id`,
      [
        consumer.name,
        batch.map((b) => b.orderId),
        batch.map((b) => b.from + b.events.length),
        result.states.map((s) => (s === null || s === undefined ? null : JSON.stringify(s))),
      ],
    );
    return batch.reduce((n, b) => n + b.events.length, 0);
  });
  after?.();
  return applied;
}

/**
 * Delivers a batch to one consumer. When the batch fails as a whole, each order is tried on its
 * own, so one poisoned order cannot hold back the others; the orders that still fail are recorded
 * in `consumer_failures` (visible to operators, retried later by the sweeper) instead of failing
 * the job. Infrastructure errors (PostgreSQL unreachable) propagate, so the job is retried.
 */
export async function deliver(db: Database, consumer: AnyConsumer, refs: readonly EventRef[], log: Logger): Promise<number> {
  try {
    return await applyEvents(db, consumer, refs);
  } catch (err) {
    if (!isApplicationError(err)) throw err;
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
