import type { Consumer, Effect, OrderEvent } from '../actors/consumers/types.ts';

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

/** One order of a batch, folded: its state after the batch's events, and what its events noted. */
export interface FoldedOrder<S, N> {
  orderId: string;
  state: S | null;
  /** The seq of the order's last event in the batch. */
  seq: number;
  /** In event order: what `fold` noted for each event (a count's change, a time). */
  notes: N[];
}

/**
 * A view from its parts. `fold` takes an order's state through one event, and may `note` what the
 * event changes (a count's delta, when it was cooked); `write` turns the folded orders of a batch
 * into its statements. The loop over a batch, the same for every view, is here once.
 */
export function defineView<S, N = never>(spec: {
  name: string;
  tables: readonly string[];
  describe: string;
  fold(state: S | null, e: OrderEvent, note: (n: N) => void): S | null;
  write(orders: FoldedOrder<S, N>[]): Effect[];
}): ViewDefinition<S> {
  return {
    name: spec.name,
    tables: spec.tables,
    describe: spec.describe,
    consumer: () => ({
      name: consumerNameOf(spec.name),
      plan(batch) {
        const orders = batch.map((b): FoldedOrder<S, N> => {
          const notes: N[] = [];
          const note = (n: N) => void notes.push(n);
          let state = b.state;
          for (const e of b.events) state = spec.fold(state, e, note);
          return { orderId: b.orderId, state, seq: b.events.at(-1)?.seq ?? 0, notes };
        });
        // Orders without events in the batch keep their state and write nothing.
        return { states: orders.map((o) => o.state), effects: spec.write(orders.filter((o) => o.seq > 0)) };
      },
    }),
  };
}

/** The columns of every view of one row per order that `upsertOrderRows` writes, as they are read. */
export interface OrderRow {
  order_id: string;
  status: string;
  rider_id: string | null;
  updated_at: Date;
  seq: number;
}

/**
 * The effect that writes orders' rows into a view of one row per order: each row is inserted, or,
 * where the view holds an older seq of the order, updated in what changes once the row exists
 * (status, rider, updated_at, seq). `columns` are the table's columns between `order_id` and `seq`,
 * in order, as the rows' fields (the columns are their snake_case) with the type each is read as.
 */
export function upsertOrderRows(table: string, columns: Record<string, string>, rows: readonly object[]): Effect[] {
  if (rows.length === 0) return [];
  const fields = Object.entries({ orderId: 'uuid', ...columns, seq: 'int' });
  const column = (field: string) => field.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
  return [
    {
      text: `INSERT INTO ${table} (${fields.map(([f]) => column(f)).join(', ')})
             SELECT ${fields.map(([f]) => `r."${f}"`).join(', ')}
             FROM jsonb_to_recordset($1::jsonb) AS r(${fields.map(([f, type]) => `"${f}" ${type}`).join(', ')})
             ON CONFLICT (order_id) DO UPDATE SET status = EXCLUDED.status, rider_id = EXCLUDED.rider_id, updated_at = EXCLUDED.updated_at, seq = EXCLUDED.seq
             WHERE ${table}.seq < EXCLUDED.seq`,
      params: [JSON.stringify(rows)],
    },
  ];
}
