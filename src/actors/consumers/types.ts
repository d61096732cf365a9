import type { JournalEntry } from '../order-repository.ts';

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

/**
 * Bookkeeping another part of the replica asks the next batch to write in its own statement, which
 * saves that bookkeeping a round trip and a commit: an effect (no RETURNING, no failIf), and what to
 * do once the statement committed, or did not (then it is the caller's to record on its own).
 */
export interface Carried {
  effect: Effect;
  settle(committed: boolean): void;
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
