import { sqlMigration } from '../sql-migration.ts';

/**
 * Orders' updates stay in place (PostgreSQL's heap-only updates). Every command changes an order's
 * status, and `orders_status_area_idx` indexed it: each update of an order wrote a new entry into
 * every index of the table (five), and left the old ones for a vacuum. No index now names a column
 * that most commands change:
 * - `cooked_area` is the order's area while it is cooked (waiting for a rider), null otherwise: a
 *   stored generated column, so the statements that write orders do not change. It changes on two
 *   commands of an order's life (finish-cooking, and the pick after it).
 * - `orders_cooked_idx` (partial: cooked orders only) finds a rider's pickable orders, by area or not.
 * - the table keeps room on each page (fillfactor 85) for an order's next version.
 * A listing by another status (admins) reads the orders newest first, as one without a filter does.
 */
export const OrdersHotUpdates1769800000000 = sqlMigration('OrdersHotUpdates1769800000000', {
  up: [
    `ALTER TABLE orders ADD COLUMN cooked_area text GENERATED ALWAYS AS (CASE WHEN status = 'cooked' THEN area END) STORED`,
    `CREATE INDEX orders_cooked_idx ON orders (cooked_area, created_at DESC) WHERE cooked_area IS NOT NULL`,
    `DROP INDEX orders_status_area_idx`,
    `ALTER TABLE orders SET (fillfactor = 85)`,
  ],
  down: [
    `ALTER TABLE orders RESET (fillfactor)`,
    `CREATE INDEX orders_status_area_idx ON orders (status, area)`,
    `DROP INDEX orders_cooked_idx`,
    `ALTER TABLE orders DROP COLUMN cooked_area`,
  ],
});
