import type { Database } from '../db/pg.ts';
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

/**
 * One data-modifying statement (INSERT, UPDATE, DELETE) a consumer wants run together with its
 * checkpoint. Statements of a batch are joined into one statement (as CTEs), so they must not
 * depend on each other's results, and they number their parameters from $1 as if alone.
 */
export interface Effect {
  text: string;
  params: readonly unknown[];
  /** Its RETURNING rows go to `afterCommit`. */
  returning?: boolean;
  /** The whole batch fails (nothing is written) when a returned row matches this SQL condition. */
  failIf?: { where: string; message: string };
}

export interface Planned<S> {
  /** The new state of each order, in the order of the batch. */
  states: (S | null)[];
  effects: Effect[];
  /** Runs after the commit with the rows of the effects that return some, in their order. */
  afterCommit?: (returned: Record<string, unknown>[][]) => void;
}

/**
 * Something that reacts to order events: a saga step, a view, a notifier. It folds each order's
 * events in seq order (a pure `plan`) into its effects; the runtime writes them with its
 * checkpoint (last applied seq and state per order) in one statement, so a repeated or reordered
 * delivery is harmless and nothing grows per event. Consumers are independent: each has its own
 * checkpoint and failures, and falls back to a statement of its own when a shared one fails.
 */
export interface Consumer<S = unknown> {
  name: string;
  plan(batch: OrderEvents<S>[]): Planned<S>;
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
  /**
   * The group holds every consumer of the service: once it has applied an event, nobody owes it,
   * and the same transaction marks it settled (the sweeper then never has to look at it).
   */
  settles?: boolean;
}

const consumersOf = (target: AnyConsumer | ConsumerGroup): readonly AnyConsumer[] => ('consumers' in target ? target.consumers : [target]);

interface Row extends Partial<JournalRow> {
  cp_order_id: string;
  cps: Record<string, [number, unknown]>;
}

/** Thrown when the journal does not continue where the checkpoint stopped (must not happen). */
class CheckpointGap extends Error {}

/** SQLSTATEs raised by `baedal_fail()` inside a batch statement (see the migration that creates it). */
const CHECKPOINT_MOVED = 'BAE01';
const EFFECT_REFUSED = 'BAE02';

/** Another delivery applied some of the same events first: read again and apply what is left. */
const isCheckpointMoved = (err: unknown) => (err as { code?: unknown } | null)?.code === CHECKPOINT_MOVED;

/** How often a batch is read again after another delivery moved its checkpoints first. */
const CONFLICT_RETRIES = 12;

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
 * One statement for a whole batch: every consumer's effects as CTEs, then its checkpoints, each
 * written only if it is still what the batch was read at (`expected`; 0: none yet), the failures
 * of those orders cleared, and the events every consumer has now applied settled. If another
 * delivery moved a checkpoint first, or an effect's guard fails, `baedal_fail()` raises and
 * nothing of the statement remains. Returns the text, the parameters, and which `src` value in
 * the result carries the rows of each returning effect.
 */
function compose(
  effects: readonly Effect[],
  checkpoints: readonly { consumer: string; order_id: string; expected: number; seq: number; state: unknown }[],
  settled: readonly [string, number][],
): { text: string; params: unknown[]; returning: number[] } {
  const params: unknown[] = [];
  const add = (value: unknown) => {
    params.push(value);
    return `$${params.length}`;
  };
  const ctes: string[] = [];
  const outputs: string[] = [];
  const returning: number[] = [];
  effects.forEach((effect, i) => {
    const offset = params.length;
    params.push(...effect.params);
    ctes.push(`e${i} AS (${effect.text.replace(/\$(\d+)/g, (_, n: string) => `$${Number(n) + offset}`)})`);
    if (effect.returning) {
      returning.push(i);
      outputs.push(`SELECT ${i} AS src, to_jsonb(e${i}.*) AS row FROM e${i}`);
    }
    if (effect.failIf) {
      outputs.push(`SELECT -1 AS src, to_jsonb(baedal_fail('${EFFECT_REFUSED}', ${add(effect.failIf.message)})) AS row FROM e${i} WHERE ${effect.failIf.where}`);
    }
  });
  const input = add(JSON.stringify(checkpoints));
  ctes.push(`cp_input AS (
    SELECT * FROM jsonb_to_recordset(${input}::jsonb) AS i(consumer text, order_id uuid, expected int, seq int, state jsonb)
  ), cp_moved AS (
    UPDATE consumer_checkpoints c SET seq = i.seq, state = i.state, updated_at = now()
    FROM cp_input i WHERE i.expected > 0 AND c.consumer = i.consumer AND c.order_id = i.order_id AND c.seq = i.expected
      AND c.consumer = ANY (ARRAY(SELECT consumer FROM cp_input)) AND c.order_id = ANY (ARRAY(SELECT order_id FROM cp_input))
    RETURNING 1
  ), cp_created AS (
    INSERT INTO consumer_checkpoints (consumer, order_id, seq, state)
    SELECT consumer, order_id, seq, state FROM cp_input WHERE expected = 0
    ON CONFLICT (consumer, order_id) DO UPDATE SET seq = EXCLUDED.seq, state = EXCLUDED.state, updated_at = now()
    WHERE consumer_checkpoints.seq = 0
    RETURNING 1
  ), cp_cleared AS (
    DELETE FROM consumer_failures f USING cp_input i WHERE f.consumer = i.consumer AND f.order_id = i.order_id
      AND f.order_id = ANY (ARRAY(SELECT order_id FROM cp_input))
  )`);
  outputs.push(
    `SELECT -1 AS src, to_jsonb(baedal_fail('${CHECKPOINT_MOVED}', 'another delivery moved a checkpoint first')) AS row
     WHERE (SELECT count(*) FROM cp_moved) + (SELECT count(*) FROM cp_created) <> ${add(checkpoints.length)}::int`,
  );
  if (settled.length > 0) {
    const ids = add(settled.map(([id]) => id));
    const upto = add(settled.map(([, seq]) => seq));
    ctes.push(`settled AS (
      UPDATE order_journal j SET settled_at = now() FROM unnest(${ids}::uuid[], ${upto}::int[]) AS s(order_id, upto)
      WHERE j.order_id = ANY (${ids}::uuid[]) AND j.order_id = s.order_id AND j.seq <= s.upto AND j.settled_at IS NULL
    )`);
  }
  return { text: `WITH ${ctes.join(',\n')}\n${outputs.join('\nUNION ALL\n')}`, params, returning };
}

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
    // Per order, the seq every consumer of the group has reached once this batch commits.
    const settledUpto = new Map<string, number>();
    if ('consumers' in target && target.settles) {
      // Only orders this batch writes checkpoints for (the others are left to the sweeper).
      const touched = new Set(batches.flatMap((b) => b.map((o) => o.orderId)));
      for (const row of rows) {
        if (!touched.has(row.cp_order_id)) continue;
        const reached = consumers.map((c) => {
          const k = consumers.indexOf(c);
          const mine = batches[k]!.find((b) => b.orderId === row.cp_order_id);
          return mine ? mine.from + mine.events.length : (row.cps[c.name]?.[0] ?? 0);
        });
        settledUpto.set(row.cp_order_id, Math.min(...reached));
      }
    }
    try {
      const checkpoints: { consumer: string; order_id: string; expected: number; seq: number; state: unknown }[] = [];
      const planned: { effects: Effect[]; afterCommit?: Planned<unknown>['afterCommit'] }[] = [];
      for (const [k, consumer] of consumers.entries()) {
        const batch = batches[k]!;
        if (batch.length === 0) continue;
        const result = consumer.plan(batch);
        planned.push(result);
        batch.forEach((b, i) =>
          checkpoints.push({ consumer: consumer.name, order_id: b.orderId, expected: b.from, seq: b.from + b.events.length, state: result.states[i] ?? null }),
        );
      }
      const settled = [...settledUpto].filter(([, seq]) => seq > 0);
      const statement = compose(planned.flatMap((p) => p.effects), checkpoints, settled);
      const returned = await db.query<{ src: number; row: Record<string, unknown> }>(statement.text, statement.params);
      // Hand each consumer the rows of its own returning effects.
      let next = 0;
      for (const p of planned) {
        const mine = p.effects.map((e) => (e.returning ? statement.returning[next++]! : -1));
        if (p.afterCommit) {
          const rows = mine.filter((src) => src >= 0).map((src) => returned.filter((r) => r.src === src).map((r) => r.row));
          after.push(() => p.afterCommit!(rows));
        }
      }
    } catch (err) {
      if ((isCheckpointMoved(err) || isConflict(err)) && attempt < CONFLICT_RETRIES) {
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
    if (isCheckpointMoved(err) && new Set(refs.map((r) => r.orderId)).size > 1) {
      // Some orders of the batch keep moving under it (another delivery, a rebuild, live traffic):
      // halve the batch until they are on their own, so the rest is not held back by them.
      const orders = [...new Set(refs.map((r) => r.orderId))].sort();
      const first = new Set(orders.slice(0, Math.ceil(orders.length / 2)));
      return (
        (await deliver(db, target, refs.filter((r) => first.has(r.orderId)), log)) +
        (await deliver(db, target, refs.filter((r) => !first.has(r.orderId)), log))
      );
    }
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
  if (isCheckpointMoved(err) || isConflict(err)) return false;
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
