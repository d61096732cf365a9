import { sqlMigration } from '../sql-migration.ts';

/**
 * The read models (CQRS views): tables written only by their view's consumer, from the journal.
 * Rows keyed by an order carry the `seq` of the last event applied to them and are never written
 * with an older one; the aggregates (food counts, rider counts) rely on the consumer's per-order
 * checkpoint, which commits in the same transaction. `view_status` holds what the views report
 * about themselves: when each last applied events, and its last rebuild.
 *
 * The new views start empty. Orders that already exist reach them only through a rebuild
 * (`npm run views:rebuild`), so `rebuild_needed` is set for each new view when there are orders.
 */
export const Views1766000000000 = sqlMigration('Views1766000000000', {
  up: [
    `
      CREATE TABLE view_customer_orders (
        order_id    uuid        PRIMARY KEY,
        customer_id text        NOT NULL,
        store_id    text        NOT NULL,
        status      text        NOT NULL,
        total       integer     NOT NULL,
        rider_id    text,
        placed_at   timestamptz NOT NULL,
        updated_at  timestamptz NOT NULL,
        seq         integer     NOT NULL CHECK (seq >= 1)
      )`,
    `CREATE INDEX view_customer_orders_customer_idx ON view_customer_orders (customer_id, placed_at DESC, order_id)`,

    `
      CREATE TABLE view_store_orders (
        order_id   uuid        PRIMARY KEY,
        store_id   text        NOT NULL,
        status     text        NOT NULL,
        total      integer     NOT NULL,
        items      jsonb       NOT NULL,
        rider_id   text,
        paid_at    timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        seq        integer     NOT NULL CHECK (seq >= 1)
      )`,
    `CREATE INDEX view_store_orders_store_idx ON view_store_orders (store_id, paid_at DESC, order_id)`,
    `CREATE INDEX view_store_orders_status_idx ON view_store_orders (store_id, status, paid_at DESC, order_id)`,

    // No CHECK (count >= 0): PostgreSQL checks the row an upsert proposes (a decrement) before it
    // finds the conflict; the view checks what the upsert returns instead.
    `
      CREATE TABLE view_store_food_counts (
        store_id text    NOT NULL,
        food_id  text    NOT NULL,
        count    integer NOT NULL,
        PRIMARY KEY (store_id, food_id)
      )`,

    `
      CREATE TABLE view_rider_delivery_counts (
        rider_id text    PRIMARY KEY,
        count    integer NOT NULL CHECK (count >= 0)
      )`,

    // The deliveries view joins the others: its rows record the seq last applied to them, and a
    // withdrawn delivery keeps its row (withdrawn_at set) so that no older event can offer it again.
    `ALTER TABLE view_deliveries ADD COLUMN seq integer`,
    `ALTER TABLE view_deliveries ADD COLUMN withdrawn_at timestamptz`,
    `UPDATE view_deliveries d SET seq = o.version FROM orders o WHERE o.id = d.order_id`,
    `UPDATE view_deliveries SET seq = 1 WHERE seq IS NULL`,
    `ALTER TABLE view_deliveries ALTER COLUMN seq SET NOT NULL`,
    `ALTER TABLE view_deliveries ADD CONSTRAINT view_deliveries_seq_check CHECK (seq >= 1)`,
    `DROP INDEX view_deliveries_area_idx`,
    `CREATE INDEX view_deliveries_offered_idx ON view_deliveries (area, cooked_at, order_id) WHERE withdrawn_at IS NULL`,

    `
      CREATE TABLE view_status (
        view                 text        PRIMARY KEY,
        applied_at           timestamptz,
        rebuild_needed       boolean     NOT NULL DEFAULT false,
        rebuild_started_at   timestamptz,
        rebuild_updated_at   timestamptz,
        rebuild_finished_at  timestamptz,
        rebuild_orders_done  integer,
        rebuild_orders_total integer
      )`,
    `
      INSERT INTO view_status (view, rebuild_needed)
      SELECT v, EXISTS (SELECT 1 FROM orders)
      FROM unnest(ARRAY['customer-orders', 'store-orders', 'store-food-counts', 'rider-delivery-counts']) AS v`,
    // Built by the saga migration from the orders table.
    `INSERT INTO view_status (view) VALUES ('deliveries')`,
  ],
  down: [
    `DROP TABLE view_status`,
    `DELETE FROM view_deliveries WHERE withdrawn_at IS NOT NULL`,
    `DROP INDEX view_deliveries_offered_idx`,
    `CREATE INDEX view_deliveries_area_idx ON view_deliveries (area, cooked_at)`,
    `ALTER TABLE view_deliveries DROP COLUMN withdrawn_at`,
    `ALTER TABLE view_deliveries DROP COLUMN seq`,
    `DROP TABLE view_rider_delivery_counts`,
    `DROP TABLE view_store_food_counts`,
    `DROP TABLE view_store_orders`,
    `DROP TABLE view_customer_orders`,
    `DELETE FROM consumer_checkpoints WHERE consumer IN ('view.customer-orders', 'view.store-orders', 'view.store-food-counts', 'view.rider-delivery-counts')`,
  ],
});
