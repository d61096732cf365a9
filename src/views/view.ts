import type { Consumer, OrderEvent } from '../actors/consumers.ts';

/**
 * A read model: tables written only by one consumer of the journal, so it can be dropped and
 * rebuilt, and can lag, on its own. The consumer is named `view.<name>`.
 */
export interface ViewDefinition<S = any> {
  /** Short name, as in `npm run views:rebuild -- --view <name>` and GET /views/_status. */
  name: string;
  /** The tables the view owns; a rebuild truncates them. */
  tables: readonly string[];
  /** What the view shows, for the operator (`--help`, /views/_status). */
  describe: string;
  consumer(): Consumer<S>;
}

export const consumerNameOf = (view: string) => `view.${view}`;

/** An event the view cannot place: the journal of the order does not start with OrderPlaced. */
export function missingPlacement(view: string, e: OrderEvent): Error {
  return new Error(`${view}: order ${e.orderId} has ${e.type} (seq ${e.seq}) before OrderPlaced`);
}

/** Sums `delta` per key, leaving out keys whose sum is 0, in key order (so row locks are taken in one order). */
export function sumByKey<K extends string>(entries: Iterable<[K, number]>): [K, number][] {
  const sums = new Map<K, number>();
  for (const [key, delta] of entries) sums.set(key, (sums.get(key) ?? 0) + delta);
  return [...sums].filter(([, n]) => n !== 0).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}
