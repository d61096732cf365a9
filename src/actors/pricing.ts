import type { Sql } from '../db/pg.ts';
import { UnprocessableError } from '../errors.ts';
import type { Address, OrderItem } from '../machines/order.machine.ts';

export interface PlaceOrder {
  storeId: string;
  items: { foodId: string; qty: number }[];
  address: Address;
}

/** Prices an order from the store's menu as it is now; refuses foods the store cannot serve. */
export async function priceItems(sql: Sql, input: PlaceOrder): Promise<OrderItem[]> {
  const qtyByFood = new Map<string, number>();
  for (const { foodId, qty } of input.items) qtyByFood.set(foodId, (qtyByFood.get(foodId) ?? 0) + qty);
  const foodIds = [...qtyByFood.keys()];
  const menu = await sql.query<{ food_id: string; name: string; price: number; available: boolean }>(
    'SELECT food_id, name, price, available FROM menu_items WHERE store_id = $1 AND food_id = ANY($2::text[])',
    [input.storeId, foodIds],
  );
  const byId = new Map(menu.map((m) => [m.food_id, m]));
  const unknown = foodIds.filter((id) => !byId.has(id));
  const unavailable = foodIds.filter((id) => byId.get(id)?.available === false);
  if (unknown.length > 0 || unavailable.length > 0) {
    throw new UnprocessableError(`the store cannot serve ${[...unknown, ...unavailable].join(', ')}`, {
      storeId: input.storeId,
      unknown,
      unavailable,
    });
  }
  return foodIds.map((foodId) => {
    const food = byId.get(foodId)!;
    const qty = qtyByFood.get(foodId)!;
    return { foodId, name: food.name, qty, unitPrice: food.price, lineTotal: food.price * qty };
  });
}
