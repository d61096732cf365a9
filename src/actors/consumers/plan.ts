import type { Database } from '../../db/pg.ts';
import { isApplicationError, JournalGap } from './errors.ts';
import type { History } from './history.ts';
import type { ConsumerSpans } from './spans.ts';
import { compose, READ_SRC, type Guard } from './statement.ts';
import type { AnyConsumer, Effect, Planned } from './types.ts';

/** One consumer's share of a batch: the events `from..upto` of one order. */
export interface Unit {
  consumer: AnyConsumer;
  orderId: string;
  from: number;
  upto: number;
}

export interface PlannedUnits {
  effects: Effect[];
  /** Journal events the units cover (each consumer's count). */
  events: number;
  plans: Planned<unknown>[];
}

/**
 * Plans the units of each consumer: its state per order folded from the events before `from`,
 * then its effects for `from..upto`. Throws what a consumer's plan throws.
 */
export function planUnits(units: readonly Unit[], history: History, spans?: ConsumerSpans): PlannedUnits {
  const byConsumer = new Map<AnyConsumer, Unit[]>();
  for (const u of units) byConsumer.set(u.consumer, [...(byConsumer.get(u.consumer) ?? []), u]);
  const out: PlannedUnits = { effects: [], events: 0, plans: [] };
  for (const [consumer, mine] of byConsumer) {
    const journal = (u: Unit) => history.events.get(u.orderId) ?? [];
    const earlier = mine.map((u) => journal(u).slice(0, u.from - 1));
    const folding = mine.map((u, i) => ({ orderId: u.orderId, state: null, events: earlier[i]! })).filter((b) => b.events.length > 0);
    const folded = folding.length > 0 ? consumer.plan(folding).states : [];
    let k = 0;
    const batch = mine.map((u, i) => {
      const state = earlier[i]!.length > 0 ? (folded[k++] ?? null) : null;
      const slice = journal(u).slice(u.from - 1, u.upto);
      if (slice.length !== u.upto - u.from + 1) throw new JournalGap(`${consumer.name}: order ${u.orderId} has no events ${u.from}..${u.upto}`);
      out.events += slice.length;
      // Each traced event gets the consumer's span; what the consumer records carries that span's context.
      const now = spans ? slice.map((e) => (e.traceparent ? { ...e, traceparent: spans.start(consumer.name, e) } : e)) : slice;
      return { orderId: u.orderId, state, events: now };
    });
    const planned = consumer.plan(batch);
    out.plans.push(planned);
    out.effects.push(...planned.effects);
  }
  return out;
}

/** The after-commit calls of planned units, each with the rows its returning effects gave. */
function afterCommit(planned: PlannedUnits, returned: readonly { src: number; row: Record<string, unknown> }[]): (() => void)[] {
  const calls: (() => void)[] = [];
  let offset = 0;
  for (const plan of planned.plans) {
    const srcs = plan.effects.map((e, j) => (e.returning ? offset + j : -1)).filter((src) => src >= 0);
    offset += plan.effects.length;
    if (plan.afterCommit) {
      const rows = srcs.map((src) => returned.filter((r) => r.src === src).map((r) => r.row));
      calls.push(() => plan.afterCommit!(rows));
    }
  }
  return calls;
}

/**
 * Runs planned units with their guards as one statement (with `carried`'s effect, when given,
 * after theirs, and `read` as a read in the same statement); then their after-commit calls.
 * Returns the rows of `read`.
 */
export async function commit(
  db: Database,
  planned: PlannedUnits,
  guards: readonly Guard[],
  carried?: Effect,
  read?: { text: string; params: readonly unknown[] },
): Promise<Record<string, unknown>[]> {
  const statement = compose(carried ? [...planned.effects, carried] : planned.effects, guards, read);
  const returned = await db.query<{ src: number; row: Record<string, unknown> }>(statement.text, statement.params);
  for (const call of afterCommit(planned, returned)) call();
  return returned.filter((r) => r.src === READ_SRC).map((r) => r.row);
}

/** Per order, the events the units cover (from the lowest `from` to the highest `upto`). */
export function rangesOf(units: readonly Unit[]): Map<string, { lo: number; hi: number }> {
  const ranges = new Map<string, { lo: number; hi: number }>();
  for (const u of units) {
    const r = ranges.get(u.orderId);
    ranges.set(u.orderId, { lo: Math.min(r?.lo ?? u.from, u.from), hi: Math.max(r?.hi ?? u.upto, u.upto) });
  }
  return ranges;
}

/** Thrown inside a dry run to roll it back. */
class DryRun extends Error {}

/**
 * The units that fail on their own: a plan that throws, or effects that PostgreSQL refuses (tried
 * in transactions that are rolled back, halving the units until each failing one stands alone).
 * Only runs after a batch failed, so its cost is paid by failures alone.
 */
export async function failingUnits(db: Database, units: readonly Unit[], history: History): Promise<Map<Unit, unknown>> {
  const failing = new Map<Unit, unknown>();
  const planned = new Map<Unit, PlannedUnits>();
  for (const u of units) {
    try {
      planned.set(u, planUnits([u], history));
    } catch (err) {
      failing.set(u, err);
    }
  }
  const tryRun = async (some: readonly Unit[]): Promise<void> => {
    if (some.length === 0) return;
    const effects = some.flatMap((u) => planned.get(u)!.effects);
    try {
      await db.transaction(async (tx) => {
        if (effects.length > 0) {
          const statement = compose(effects, []);
          await tx.query(statement.text, statement.params);
        }
        throw new DryRun();
      });
    } catch (err) {
      if (err instanceof DryRun) return;
      if (!isApplicationError(err)) throw err;
      if (some.length === 1) {
        failing.set(some[0]!, err);
        return;
      }
      const half = Math.ceil(some.length / 2);
      await tryRun(some.slice(0, half));
      await tryRun(some.slice(half));
    }
  };
  await tryRun(units.filter((u) => planned.has(u)));
  return failing;
}
