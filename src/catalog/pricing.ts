import type { Database, Sql } from '../db/pg.ts';
import { Batcher } from '../db/batcher.ts';
import { FreeOrderError, StoreNotFoundError, TotalTooLargeError, UnprocessableError } from '../errors.ts';
import type { Address, OrderItem } from '../machines/order/contract.ts';

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

interface MenuRow {
  food_id: string;
  name: string;
  price: number;
  available: boolean;
}

/**
 * The menu lines of these foods at that store (those it has). A cached lookup also has `fresh`,
 * which reads PostgreSQL whatever it holds (and keeps what it read), and `forget`.
 */
export type MenuLookup = ((storeId: string, foodIds: readonly string[]) => Promise<MenuRow[]>) & {
  fresh?: (storeId: string, foodIds: readonly string[]) => Promise<MenuRow[]>;
  forget?: (storeId: string) => void;
};

/**
 * A new order was not written because a menu line it was priced from had changed by the time its
 * statement ran (see Transition.menu): price it again from the menu as it is now.
 */
export class MenuChanged extends Error {
  constructor(readonly storeId: string) {
    super(`the menu of store ${storeId} changed while an order was placed`);
    this.name = 'MenuChanged';
  }
}

const MENU_LINES = 'SELECT food_id, name, price, available FROM menu_items WHERE store_id = $1 AND food_id = ANY($2::text[])';

export const menuLookup =
  (sql: Sql): MenuLookup =>
  (storeId, foodIds) =>
    sql.query<MenuRow>(MENU_LINES, [storeId, foodIds]);

/**
 * Menu lookups of orders placed at the same moment share one statement (the menu as it is now).
 */
export function batchedMenuLookup(db: Database, opts: { maxBatch: number; maxInFlight: number }): MenuLookup {
  const batcher = new Batcher<{ storeId: string; foodIds: readonly string[] }, MenuRow[]>(
    async (asks) => {
      const stores = asks.flatMap((a) => a.foodIds.map(() => a.storeId));
      const foods = asks.flatMap((a) => a.foodIds);
      const rows = await db.query<MenuRow & { store_id: string }>(
        `SELECT m.store_id, m.food_id, m.name, m.price, m.available
         FROM menu_items m JOIN unnest($1::text[], $2::text[]) AS w(store_id, food_id) ON m.store_id = w.store_id AND m.food_id = w.food_id`,
        [stores, foods],
      );
      return asks.map((a) => rows.filter((r) => r.store_id === a.storeId && a.foodIds.includes(r.food_id)));
    },
    opts,
  );
  return (storeId, foodIds) => batcher.submit({ storeId, foodIds });
}

/**
 * Keeps the menu lines `read` returned, per store (the `maxStores` used last), and answers a lookup
 * from them when it holds every food asked for, each served; anything else (a food it does not
 * hold, or holds as unavailable) is read again, so a refusal is never answered from the cache.
 * Lines may be stale (another replica changed the menu): an order priced from them is not written
 * (its statement checks each line, see Transition.menu) and is priced again through `fresh`, so a
 * price change still applies to the next order written. `forget` drops a store (its menu was
 * replaced here).
 */
export function cachedMenuLookup(read: MenuLookup, opts: { maxStores?: number } = {}): MenuLookup {
  const maxStores = opts.maxStores ?? 10_000;
  const stores = new Map<string, Map<string, MenuRow>>();
  const fresh = async (storeId: string, foodIds: readonly string[]): Promise<MenuRow[]> => {
    const rows = await read(storeId, foodIds);
    let lines = stores.get(storeId);
    if (lines) stores.delete(storeId); // re-inserted below: the most recently used store comes last
    else lines = new Map();
    for (const food of foodIds) lines.delete(food);
    for (const row of rows) lines.set(row.food_id, { food_id: row.food_id, name: row.name, price: row.price, available: row.available });
    stores.set(storeId, lines);
    while (stores.size > maxStores) stores.delete(stores.keys().next().value!);
    return rows;
  };
  const lookup = async (storeId: string, foodIds: readonly string[]): Promise<MenuRow[]> => {
    const lines = stores.get(storeId);
    const held = lines ? foodIds.map((food) => lines.get(food)) : [];
    if (lines && held.every((row) => row?.available === true)) {
      stores.delete(storeId);
      stores.set(storeId, lines);
      return held as MenuRow[];
    }
    return fresh(storeId, foodIds);
  };
  return Object.assign(lookup, { fresh, forget: (storeId: string) => void stores.delete(storeId) });
}

/**
 * Prices an order from the store's menu as it is now, one line per food as sent. Refuses a store
 * with no menu (404), foods the store cannot serve (422), and totals that are 0 (nothing to pay:
 * the gateway refuses a charge of 0) or above MAX_ORDER_TOTAL (422).
 */
export async function priceItems(sql: Sql, input: PlaceOrder, lookup: MenuLookup = menuLookup(sql)): Promise<OrderItem[]> {
  const foodIds = input.items.map((i) => i.foodId);
  const menu = await lookup(input.storeId, foodIds);
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
