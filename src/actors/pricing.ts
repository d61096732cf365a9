import type { Sql } from '../db/pg.ts';
import { FreeOrderError, StoreNotFoundError, TotalTooLargeError, UnprocessableError } from '../errors.ts';
import type { Address, OrderItem } from '../machines/order.machine.ts';

export interface PlaceOrder {
  storeId: string;
  /** Each food at most once (the API refuses duplicate lines). */
  items: { foodId: string; qty: number }[];
  address: Address;
}

/**
 * The largest order total accepted. With prices up to 10,000,000, 100 per line and 50 lines a
 * total could reach 5e10; this bound keeps every amount (order, charge, refund) well inside the
 * 32-bit integer columns that store it.
 */
export const MAX_ORDER_TOTAL = 1_000_000_000;

/**
 * Prices an order from the store's menu as it is now, one line per food as sent. Refuses a store
 * with no menu (404), foods the store cannot serve (422), and totals that are 0 (nothing to pay:
 * the gateway refuses a charge of 0) or above MAX_ORDER_TOTAL (422).
 */
export async function priceItems(sql: Sql, input: PlaceOrder): Promise<OrderItem[]> {
  const foodIds = input.items.map((i) => i.foodId);
  const menu = await sql.query<{ food_id: string; name: string; price: number; available: boolean }>(
    'SELECT food_id, name, price, available FROM menu_items WHERE store_id = $1 AND food_id = ANY($2::text[])',
    [input.storeId, foodIds],
  );
  const byId = new Map(menu.map((m) => [m.food_id, m]));
  const unknown = foodIds.filter((id) => !byId.has(id));
  const unavailable = foodIds.filter((id) => byId.get(id)?.available === false);
  if (menu.length === 0) {
    // Only on this unhappy path: is it the foods that are unknown, or the store itself?
    const [store] = await sql.query<{ has_menu: boolean }>('SELECT EXISTS (SELECT 1 FROM menu_items WHERE store_id = $1) AS has_menu', [input.storeId]);
    if (!store?.has_menu) throw new StoreNotFoundError(input.storeId);
  }
  if (unknown.length > 0 || unavailable.length > 0) {
    throw new UnprocessableError(`the store cannot serve ${[...unknown, ...unavailable].join(', ')}`, {
      storeId: input.storeId,
      unknown,
      unavailable,
    });
  }
  const items = input.items.map(({ foodId, qty }) => {
    const food = byId.get(foodId)!;
    return { foodId, name: food.name, qty, unitPrice: food.price, lineTotal: food.price * qty };
  });
  const total = items.reduce((sum, i) => sum + i.lineTotal, 0);
  if (total === 0) throw new FreeOrderError(input.storeId);
  if (total > MAX_ORDER_TOTAL) throw new TotalTooLargeError(total, MAX_ORDER_TOTAL);
  return items;
}
