import type { Database } from '../db/pg.ts';
import type { Logger } from '../log.ts';
import { JOURNAL_COLUMNS, toJournalEntry, type JournalEntry, type JournalRow } from './order-repository.ts';
import { ATTR, endSpan, SpanKind, startSpan, traceparentOf, tracingEnabled, withSpan, type Span } from '../tracing.ts';

/** A journaled event, as consumers see it. */
export interface OrderEvent extends JournalEntry {
  orderId: string;
  /**
   * The trace context the consumer's effects should carry (tracing on): for the events a batch
   * applies, that of the consumer's span for the event (a child of the span that recorded it);
   * null when the event was recorded with tracing off.
   */
  traceparent?: string | null;
}

/** Points at one journaled event. */
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
 * position. Statements of a batch are joined into one statement (as CTEs), so they must not
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
 * events in seq order (a pure `plan`) into its effects; the runtime writes them with the position
 * its group reached, in one statement, so a repeated delivery is harmless and nothing grows per
 * event. What it keeps about an order between events (`state`) is folded again from the order's
 * earlier events in the journal, so nothing but the position is stored.
 */
export interface Consumer<S = unknown> {
  name: string;
  plan(batch: OrderEvents<S>[]): Planned<S>;
}

export type AnyConsumer = Consumer<any>;

/**
 * Consumers that read the journal together: one position per partition, one read and, when all
 * goes well, one statement per batch for all of them. A consumer that fails on an order owes that
 * order's events on its own (`consumer_failures`) and is retried with backoff, so it never holds
 * back the others or other orders.
 */
export interface ConsumerGroup {
  name: string;
  consumers: readonly AnyConsumer[];
}

/** SQLSTATEs raised by `baedal_fail()` inside a batch statement (see the migration that creates it). */
const POSITION_MOVED = 'BAE01';
const EFFECT_REFUSED = 'BAE02';

/** Another delivery applied some of the same events first: read again and apply what is left. */
const isPositionMoved = (err: unknown) => (err as { code?: unknown } | null)?.code === POSITION_MOVED;

/** How often a batch is read again after another delivery moved its positions first. */
const CONFLICT_RETRIES = 12;

/** Thrown when an order's journal is not 1, 2, … without gaps (must not happen). */
class JournalGap extends Error {}

/** A statement that must touch exactly `expect` rows, or the batch read something that moved. */
interface Guard {
  text: string;
  params: readonly unknown[];
  expect: number;
}

/**
 * One statement for a whole batch: every consumer's effects as CTEs, then the guards (positions,
 * owed orders), each of which must touch exactly the rows it expects. If one does not (another
 * delivery moved first), or an effect's guard fails, `baedal_fail()` raises and nothing of the
 * statement remains. Returns the text, the parameters, and which `src` value in the result carries
 * the rows of each returning effect.
 */
function compose(effects: readonly Effect[], guards: readonly Guard[]): { text: string; params: unknown[]; returning: number[] } {
  const params: unknown[] = [];
  const add = (value: unknown) => {
    params.push(value);
    return `$${params.length}`;
  };
  const ctes: string[] = [];
  const outputs: string[] = [];
  const returning: number[] = [];
  const cte = (name: string, text: string, values: readonly unknown[]) => {
    const offset = params.length;
    params.push(...values);
    ctes.push(`${name} AS (${text.replace(/\$(\d+)/g, (_, n: string) => `$${Number(n) + offset}`)})`);
  };
  effects.forEach((effect, i) => {
    cte(`e${i}`, effect.text, effect.params);
    if (effect.returning) {
      returning.push(i);
      outputs.push(`SELECT ${i} AS src, to_jsonb(e${i}.*) AS row FROM e${i}`);
    }
    if (effect.failIf) {
      outputs.push(`SELECT -1 AS src, to_jsonb(baedal_fail('${EFFECT_REFUSED}', ${add(effect.failIf.message)})) AS row FROM e${i} WHERE ${effect.failIf.where}`);
    }
  });
  const checks: string[] = [];
  guards.forEach((guard, i) => {
    cte(`g${i}`, guard.text, guard.params);
    checks.push(`(SELECT count(*) FROM g${i}) <> ${add(guard.expect)}::int`);
  });
  if (checks.length > 0) {
    outputs.push(
      `SELECT -1 AS src, to_jsonb(baedal_fail('${POSITION_MOVED}', 'another delivery moved a position or an owed order first')) AS row WHERE ${checks.join(' OR ')}`,
    );
  }
  if (outputs.length === 0) outputs.push('SELECT -1 AS src, NULL::jsonb AS row WHERE false');
  return { text: `WITH ${ctes.join(',\n')}\n${outputs.join('\nUNION ALL\n')}`, params, returning };
}

/** One consumer's share of a batch: the events `from..upto` of one order. */
interface Unit {
  consumer: AnyConsumer;
  orderId: string;
  from: number;
  upto: number;
}

interface Owed {
  consumer: string;
  seq: number;
  upto: number;
  version: number;
}

interface HistoryRow extends JournalRow {
  traceparent: string | null;
  passed?: boolean | null;
  owed: Owed[] | null;
}

/** Every event of each order up to `upto` (all of them when null), with the orders' owed rows. */
interface History {
  events: Map<string, (OrderEvent & { passed: boolean })[]>;
  owed: Map<string, Owed>;
}

const ownedKey = (consumer: string, orderId: string) => `${consumer}\u0000${orderId}`;

/** The journal's columns as consumers read them: with the trace context each event was recorded in. */
const EVENT_COLUMNS = `${JOURNAL_COLUMNS}, j.traceparent`;

/**
 * Reads the orders' journals (the earlier events fold the consumers' state) and the orders the
 * consumers owe on their own. `passed`: the group's position in the event's partition is at or
 * past it.
 */
async function readHistory(db: Database, group: ConsumerGroup, upto: Map<string, number | null>): Promise<History> {
  const ids = [...upto.keys()];
  return historyOf(await db.query<HistoryRow>(
    `SELECT ${EVENT_COLUMNS}, (j.tx, j.pos) <= (p.tx, p.pos) AS passed,
            CASE WHEN j.seq = 1 THEN (SELECT jsonb_agg(jsonb_build_object('consumer', f.consumer, 'seq', f.seq, 'upto', f.upto, 'version', f.version))
                                      FROM consumer_failures f WHERE f.order_id = j.order_id AND f.consumer = ANY($4::text[])) END AS owed
     FROM unnest($1::uuid[], $2::int[]) AS u(order_id, upto)
     JOIN order_journal j ON j.order_id = u.order_id AND (u.upto IS NULL OR j.seq <= u.upto)
     LEFT JOIN consumer_positions p ON p.grp = $3 AND p.part = j.part
     ORDER BY j.order_id, j.seq`,
    [ids, ids.map((id) => upto.get(id) ?? null), group.name, group.consumers.map((c) => c.name)],
  ));
}

/** The orders' events (in order, checked for gaps) and owed rows, from rows of the journal. */
function historyOf(rows: readonly HistoryRow[]): History {
  const events = new Map<string, (OrderEvent & { passed: boolean })[]>();
  const owed = new Map<string, Owed>();
  for (const row of rows) {
    const list = events.get(row.order_id) ?? [];
    if (row.seq !== list.length + 1) throw new JournalGap(`order ${row.order_id} has seq ${row.seq} where ${list.length + 1} was due`);
    list.push({ ...toJournalEntry(row), orderId: row.order_id, traceparent: row.traceparent, passed: row.passed === true });
    events.set(row.order_id, list);
    for (const o of row.owed ?? []) owed.set(ownedKey(o.consumer, row.order_id), o);
  }
  return { events, owed };
}

interface PlannedUnits {
  effects: Effect[];
  /** Journal events the units cover (each consumer's count). */
  events: number;
  plans: Planned<unknown>[];
}

/**
 * Plans the units of each consumer: its state per order folded from the events before `from`,
 * then its effects for `from..upto`. Throws what a consumer's plan throws.
 */
function planUnits(units: readonly Unit[], history: History, spans?: ConsumerSpans): PlannedUnits {
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

/** Runs planned units with their guards as one statement; then their after-commit calls. */
async function commit(db: Database, planned: PlannedUnits, guards: readonly Guard[]): Promise<void> {
  const statement = compose(planned.effects, guards);
  const returned = await db.query<{ src: number; row: Record<string, unknown> }>(statement.text, statement.params);
  for (const call of afterCommit(planned, returned)) call();
}

/** Links a batch span keeps at most (each an event's trace). */
const BATCH_LINKS = 32;

/**
 * The spans of a batch (tracing on): one for the batch, a root linked to the traces of (some of)
 * its events, and one per consumer and traced event, a child of the span that recorded the event
 * and linked to the order's first event (the trace of its placement). They end when the batch's
 * statement has committed, or failed.
 */
class ConsumerSpans {
  readonly batch: Span | undefined;
  private readonly spans: Span[] = [];
  private readonly batchContext: string | undefined;
  private ended = false;

  constructor(
    name: string,
    private readonly history: History,
    applied: readonly OrderEvent[],
    /** When the batch was read (epoch milliseconds). */
    private readonly started: number,
    attributes: Record<string, number>,
  ) {
    this.batch = startSpan(name, {
      parent: null,
      startTime: this.started,
      links: [...new Set(applied.map((e) => e.traceparent))].slice(0, BATCH_LINKS),
      attributes: { ...attributes, [ATTR.events]: applied.length },
    });
    this.batchContext = traceparentOf(this.batch);
  }

  /** Starts the span of `consumer` applying `e`; answers its traceparent (the event's when none is recorded). */
  start(consumer: string, e: OrderEvent): string | null | undefined {
    const placed = this.history.events.get(e.orderId)?.[0]?.traceparent;
    const span = startSpan(`consume ${consumer}`, {
      kind: SpanKind.CONSUMER,
      parent: e.traceparent,
      links: [placed, this.batchContext],
      startTime: this.started,
      attributes: { [ATTR.consumer]: consumer, [ATTR.orderId]: e.orderId, [ATTR.eventType]: e.type, [ATTR.eventSeq]: e.seq },
    });
    if (!span) return e.traceparent;
    this.spans.push(span);
    return traceparentOf(span) ?? e.traceparent;
  }

  /** Ends the consumers' spans (failed with `err`, when given); the batch span stays open. */
  endConsumers(err?: unknown): void {
    for (const span of this.spans) endSpan(span, err);
    this.spans.length = 0;
  }

  /** Ends every span of the batch (failed with `err`, when given); once. */
  end(err?: unknown): void {
    if (this.ended) return;
    this.ended = true;
    this.endConsumers(err);
    endSpan(this.batch, err);
  }
}

/** The spans of a batch when tracing is on and some of its events were recorded with a trace context. */
function consumerSpans(name: string, history: History, applied: readonly OrderEvent[], started: number, attributes: Record<string, number>): ConsumerSpans | undefined {
  if (!tracingEnabled() || !applied.some((e) => e.traceparent)) return undefined;
  return new ConsumerSpans(name, history, applied, started, attributes);
}

/** Per order, the events the units cover (from the lowest `from` to the highest `upto`). */
function rangesOf(units: readonly Unit[]): Map<string, { lo: number; hi: number }> {
  const ranges = new Map<string, { lo: number; hi: number }>();
  for (const u of units) {
    const r = ranges.get(u.orderId);
    ranges.set(u.orderId, { lo: Math.min(r?.lo ?? u.from, u.from), hi: Math.max(r?.hi ?? u.upto, u.upto) });
  }
  return ranges;
}

/** The events `from..upto` of each order, from its history. */
function eventsIn(ranges: ReadonlyMap<string, { lo: number; hi: number }>, history: History): OrderEvent[] {
  return [...ranges].flatMap(([orderId, { lo, hi }]) => (history.events.get(orderId) ?? []).slice(lo - 1, hi));
}

/** Thrown inside a dry run to roll it back. */
class DryRun extends Error {}

/**
 * The units that fail on their own: a plan that throws, or effects that PostgreSQL refuses (tried
 * in transactions that are rolled back, halving the units until each failing one stands alone).
 * Only runs after a batch failed, so its cost is paid by failures alone.
 */
async function failingUnits(db: Database, units: readonly Unit[], history: History): Promise<Map<Unit, unknown>> {
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

export interface PartitionsApplied {
  /** Journal events read past the positions, per partition. */
  byPart: Map<number, number>;
  /** Partitions that had more than one batch holds: read them again. */
  more: number[];
  /** (consumer, event) pairs applied. */
  applied: number;
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
 */
const READ_BATCH = `
  WITH b AS (
    SELECT p.part, p.version, x.order_id, x.seq, x.tx, x.pos
    FROM consumer_positions p
    CROSS JOIN LATERAL (
      SELECT j.order_id, j.seq, j.tx, j.pos FROM order_journal j
      WHERE j.part = p.part AND (j.tx, j.pos) > (p.tx, p.pos) AND j.tx < pg_snapshot_xmin(pg_current_snapshot())
      ORDER BY j.tx, j.pos LIMIT $3
    ) x
    WHERE p.grp = $1 AND p.part = ANY($2::smallint[])
  ), u AS (
    SELECT order_id, max(seq) AS hi FROM b GROUP BY order_id
  )
  SELECT ${EVENT_COLUMNS}, b.part::int AS b_part, b.version AS b_version, b.tx::text AS b_tx, b.pos::text AS b_pos,
         CASE WHEN j.seq = 1 THEN (SELECT jsonb_agg(jsonb_build_object('consumer', f.consumer, 'seq', f.seq, 'upto', f.upto, 'version', f.version))
                                   FROM consumer_failures f WHERE f.order_id = j.order_id AND f.consumer = ANY($4::text[])) END AS owed
  FROM u JOIN order_journal j ON j.order_id = u.order_id AND j.seq <= u.hi
  LEFT JOIN b ON b.order_id = j.order_id AND b.seq = j.seq
  ORDER BY j.order_id, j.seq`;

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
  INSERT INTO consumer_failures (consumer, order_id, part, seq, upto, attempts, error, first_failed_at, last_failed_at, origin)
  SELECT i.consumer, i.order_id, p.part, i.seq, i.upto, 1, i.error, now(), now(), 'failure'
  FROM jsonb_to_recordset($1::jsonb) AS i(consumer text, order_id uuid, seq int, upto int, error text)
  JOIN LATERAL (SELECT j.part FROM order_journal j WHERE j.order_id = i.order_id AND j.seq = i.seq) p ON true
  ON CONFLICT (consumer, order_id) DO NOTHING
  RETURNING 1`;

const json = (rows: unknown[]) => JSON.stringify(rows);

/**
 * Applies, for each partition, the next events after the group's position (at most
 * `limitPerPart`), in one statement with the new positions. A consumer that owes an order on its
 * own (it failed on it, or it is being rebuilt) skips that order's events, which become owed too.
 * When the batch fails for a consumer's reason, the failing (consumer, order) units are found and
 * owed on their own, and the rest is applied. Positions are checked against what was read: a
 * delivery that lost a race (two replicas during a hand-over) reads again.
 */
export async function applyPartitions(
  db: Database,
  group: ConsumerGroup,
  parts: readonly number[],
  opts: { limitPerPart: number; log: Logger },
): Promise<PartitionsApplied> {
  if (parts.length === 0) return { byPart: new Map(), more: [], applied: 0 };
  for (let attempt = 1; ; attempt += 1) {
    const readAt = Date.now();
    const rows = await db.query<BatchRow>(READ_BATCH, [group.name, parts, opts.limitPerPart, group.consumers.map((c) => c.name)]);
    if (rows.length === 0) return { byPart: new Map(), more: [], applied: 0 };
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
    const positions = [...ends].map(([part, e]) => ({ part, version: e.version, tx: e.tx, pos: e.pos }));
    const guards = (failed: { unit: Unit; err: unknown }[]): Guard[] => {
      const out: Guard[] = [{ text: MOVE_POSITIONS, params: [json(positions), group.name], expect: positions.length }];
      if (skipped.length > 0) out.push({ text: OWE_MORE, params: [json(skipped)], expect: skipped.length });
      if (failed.length > 0) {
        const owed = failed.map(({ unit, err }) => ({ consumer: unit.consumer.name, order_id: unit.orderId, seq: unit.from, upto: unit.upto, error: describe(err).slice(0, 2000) }));
        out.push({ text: NEWLY_OWED, params: [json(owed)], expect: owed.length });
      }
      return out;
    };
    const result = (applied: number): PartitionsApplied => ({
      byPart: new Map([...ends].map(([part, e]) => [part, e.n])),
      more: [...ends].filter(([, e]) => e.n >= opts.limitPerPart).map(([part]) => part),
      applied,
    });
    const spans = tracingEnabled()
      ? consumerSpans('events.apply', history, eventsIn(range, history), readAt, { [ATTR.partitions]: ends.size, 'baedal.batch.attempt': attempt })
      : undefined;
    try {
      return await withSpan(spans?.batch, async () => {
        let planned: PlannedUnits | undefined;
        try {
          planned = planUnits(units, history, spans);
          await commit(db, planned, guards([]));
          spans?.end();
          return result(planned.events);
        } catch (err) {
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
      if ((isPositionMoved(err) || isConflict(err)) && attempt < CONFLICT_RETRIES) {
        await new Promise((resolve) => setTimeout(resolve, Math.random() * 5 * attempt));
        continue;
      }
      throw err;
    }
  }
}

interface OwedRow {
  consumer: string;
  order_id: string;
  seq: number;
  version: number;
}

/** An owed order applied: the row goes, if nothing moved it meanwhile. */
const OWED_DONE = `
  DELETE FROM consumer_failures f USING jsonb_to_recordset($1::jsonb) AS i(consumer text, order_id uuid, version int)
  WHERE f.consumer = i.consumer AND f.order_id = i.order_id AND f.version = i.version
  RETURNING 1`;

/** Retried as far as the group got, and failed again: attempts count on, with backoff. */
const OWED_FAILED = `
  UPDATE consumer_failures f SET attempts = f.attempts + 1, error = i.error, last_failed_at = now(), version = f.version + 1, origin = 'failure'
  FROM jsonb_to_recordset($1::jsonb) AS i(consumer text, order_id uuid, version int, error text)
  WHERE f.consumer = i.consumer AND f.order_id = i.order_id AND f.version = i.version`;

export interface OwedFilter {
  /** Only owed orders in these partitions (an owner's). */
  parts?: readonly number[];
  consumer?: string;
  orderId?: string;
  /** Orders a rebuild owes are left to the rebuild while it runs (its lease is held); it passes true. */
  rebuild?: boolean;
  /** Retry even those whose backoff has not run out (an operator's replay). */
  now?: boolean;
  limit: number;
}

/**
 * Retries the orders consumers owe on their own (they failed on them, or are being rebuilt), as far
 * as the group's positions got: from the first owed event to the last one the group passed (the
 * group's own reading applies the later ones once the order is no longer owed). Each applied order's
 * row goes in the statement that applies it, checked against its version, so an order whose newer
 * events the group passed meanwhile is read again. Returns how many owed orders were done, failed
 * again, and whether more were due than `limit`.
 */
export async function retryOwed(db: Database, group: ConsumerGroup, filter: OwedFilter, log: Logger): Promise<{ done: number; failed: number; more: boolean; events: number }> {
  const names = group.consumers.map((c) => c.name).filter((n) => !filter.consumer || n === filter.consumer);
  for (let attempt = 1; ; attempt += 1) {
    const readAt = Date.now();
    const rows = await db.query<OwedRow>(
      `SELECT f.consumer, f.order_id, f.seq, f.version FROM consumer_failures f
       WHERE f.consumer = ANY($1::text[]) AND ($2::smallint[] IS NULL OR f.part = ANY($2::smallint[])) AND ($3::uuid IS NULL OR f.order_id = $3)
         AND ($4::boolean OR f.attempts = 0 OR f.last_failed_at < now() - least(interval '5 minutes', interval '1 second' * power(2, least(f.attempts, 12))))
         AND ($5::boolean OR f.origin <> 'rebuild' OR NOT EXISTS (SELECT 1 FROM leases l WHERE l.name = 'views-rebuild' AND l.until > now()))
       ORDER BY f.order_id LIMIT $6`,
      [names, filter.parts ?? null, filter.orderId ?? null, filter.now ?? false, filter.rebuild ?? false, filter.limit],
    );
    if (rows.length === 0) return { done: 0, failed: 0, more: false, events: 0 };
    const history = await readHistory(db, group, new Map(rows.map((r) => [r.order_id, null])));
    const byName = new Map(group.consumers.map((c) => [c.name, c]));
    const units: (Unit & { version: number })[] = [];
    const done: { consumer: string; order_id: string; version: number }[] = [];
    for (const r of rows) {
      const consumer = byName.get(r.consumer);
      if (!consumer) continue;
      // The events the group's position passed; the others are read by the group once the row goes.
      const passed = (history.events.get(r.order_id) ?? []).filter((e) => e.passed).length;
      done.push({ consumer: r.consumer, order_id: r.order_id, version: r.version });
      if (passed >= r.seq) units.push({ consumer, orderId: r.order_id, from: r.seq, upto: passed, version: r.version });
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
          const again = failed.map(({ unit, err: e }) => ({ consumer: unit.consumer.name, order_id: unit.orderId, version: unit.version, error: describe(e).slice(0, 2000) }));
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
      if ((isPositionMoved(err) || isConflict(err)) && attempt < CONFLICT_RETRIES) {
        await new Promise((resolve) => setTimeout(resolve, Math.random() * 5 * attempt));
        continue;
      }
      throw err;
    }
  }
}

/** PostgreSQL gave up one of two transactions that waited on each other: try again. */
function isConflict(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === '40P01' || code === '40001';
}

/** Errors that belong to one batch's data or code, as opposed to PostgreSQL being unreachable or a lost race. */
function isApplicationError(err: unknown): boolean {
  if (isPositionMoved(err) || isConflict(err) || err instanceof JournalGap) return false;
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && /^(08|53|57)/.test(code)) return false; // connection, resources, shutdown, cancelled
  if (typeof code === 'string' && /^(ECONN|ETIMEDOUT|EPIPE)/.test(code)) return false;
  if (code === '55P03') return false; // lock timeout
  if (err instanceof Error && /Connection terminated|timeout exceeded when trying to connect/i.test(err.message)) return false;
  return true;
}

function describe(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}
