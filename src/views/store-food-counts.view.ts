import type { OrderEvent } from '../actors/consumers/types.ts';
import type { Database } from '../db/pg.ts';
import { requireKnownEvent } from '../actors/order-repository.ts';
import type { OrderItem } from '../machines/order/contract.ts';
import { defineView, missingPlacement, sumByKey } from './view.ts';

/** What the view keeps about an order: its store, its quantities, and whether they are counted now. */
export interface FoodCountState {
  storeId: string;
  /** [foodId, qty] per order line. */
  items: [string, number][];
  /** Whether the order's quantities are in the counts (it was paid and has not been called off). */
  counted: boolean;
}

export interface FoodCount {
  foodId: string;
  count: number;
}

const NAME = 'store-food-counts';

/**
 * Folds one event; returns the new state and the change it makes to the counts: +1 for each
 * quantity when the store receives the order (paid), −1 when a received order is cancelled or
 * rejected (by the store or by the accept timer).
 */
export function foldFoodCounts(state: FoodCountState | null, e: OrderEvent): { state: FoodCountState; sign: 1 | -1 | 0 } {
  requireKnownEvent(NAME, e);
  if (e.type === 'OrderPlaced') {
    const items = (e.data.items as OrderItem[] | undefined) ?? [];
    return { state: { storeId: String(e.data.storeId), items: items.map((i) => [i.foodId, i.qty]), counted: false }, sign: 0 };
  }
  if (!state) throw missingPlacement(NAME, e);
  switch (e.type) {
    case 'OrderPaid':
      return state.counted ? { state, sign: 0 } : { state: { ...state, counted: true }, sign: 1 };
    case 'OrderCancelled':
    case 'OrderRejected':
    case 'StoreAcceptTimedOut':
      return state.counted ? { state: { ...state, counted: false }, sign: -1 } : { state, sign: 0 };
    case 'OrderAccepted':
    case 'CookingStarted':
    case 'CookingFinished':
    case 'OrderPickedUp':
    case 'OrderDelivered':
    case 'PaymentTimedOut':
      return { state, sign: 0 };
    default: {
      const exhaustive: never = e.type;
      throw new Error(`${NAME}: unknown event ${String(exhaustive)}`);
    }
  }
}

/**
 * How many of each food every store received: on receipt (payment) each ordered quantity is
 * added, and taken off again when the order is cancelled or rejected. A batch's changes are summed
 * per (store, food) and written in one statement, in key order so concurrent batches never deadlock.
 */
export const storeFoodCountsView = defineView<FoodCountState, [string, number]>({
  name: NAME,
  tables: ['view_store_food_counts'],
  describe: 'per store and food, the quantity received less what was called off',
  fold(state, e, note) {
    const folded = foldFoodCounts(state, e);
    if (folded.sign !== 0) for (const [foodId, qty] of folded.state.items) note([`${folded.state.storeId} ${foodId}`, folded.sign * qty]);
    return folded.state;
  },
  write(orders) {
    const sums = sumByKey(orders.flatMap((o) => o.notes));
    if (sums.length === 0) return [];
    const keys = sums.map(([key]) => key.split(' '));
    return [
      {
        text: `INSERT INTO view_store_food_counts (store_id, food_id, count)
             SELECT d.store_id, d.food_id, d.delta FROM unnest($1::text[], $2::text[], $3::int[]) WITH ORDINALITY AS d(store_id, food_id, delta, n)
             ORDER BY d.n
             ON CONFLICT (store_id, food_id) DO UPDATE SET count = view_store_food_counts.count + EXCLUDED.count
             RETURNING store_id, food_id, count`,
        params: [keys.map(([s]) => s), keys.map(([, f]) => f), sums.map(([, n]) => n)],
        // Only a received order is taken off again: a count below 0 means events were lost or applied twice.
        failIf: { where: 'count < 0', message: `${NAME}: a food count would go below 0` },
      },
    ];
  },
});

/** A store's counts per food, by food id; foods whose count is back to 0 are left out. */
export async function storeFoodCounts(db: Database, storeId: string): Promise<FoodCount[]> {
  return db.query<FoodCount>(
    `SELECT food_id AS "foodId", count FROM view_store_food_counts WHERE store_id = $1 AND count > 0 ORDER BY food_id`,
    [storeId],
  );
}
