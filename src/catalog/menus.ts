import type { DataSource } from 'typeorm';
import { sql } from '../db/data-source.ts';

export interface MenuItem {
  foodId: string;
  name: string;
  price: number;
  available: boolean;
}

interface MenuRow {
  food_id: string;
  name: string;
  price: number;
  available: boolean;
}

const toItem = (r: MenuRow): MenuItem => ({ foodId: r.food_id, name: r.name, price: r.price, available: r.available });

/**
 * Replaces the store's whole menu in one transaction. Replacements of one store's menu take turns
 * (a transaction-scoped advisory lock): two at once would otherwise both delete, then both insert
 * the same keys, and one would fail on the primary key.
 */
export async function replaceMenu(db: DataSource, storeId: string, items: MenuItem[]): Promise<MenuItem[]> {
  return db.transaction(async (tx) => {
    await sql(tx, 'SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`menu:${storeId}`]);
    await sql(tx, 'DELETE FROM menu_items WHERE store_id = $1', [storeId]);
    if (items.length > 0) {
      await sql(
        tx,
        `INSERT INTO menu_items (store_id, food_id, name, price, available)
         SELECT $1, * FROM unnest($2::text[], $3::text[], $4::int[], $5::bool[])`,
        [storeId, items.map((i) => i.foodId), items.map((i) => i.name), items.map((i) => i.price), items.map((i) => i.available)],
      );
    }
    return items;
  });
}

export async function getMenu(db: DataSource, storeId: string): Promise<MenuItem[]> {
  const rows: MenuRow[] = await db.query(
    'SELECT food_id, name, price, available FROM menu_items WHERE store_id = $1 ORDER BY food_id',
    [storeId],
  );
  return rows.map(toItem);
}
