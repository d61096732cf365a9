import { sqlMigration } from '../sql-migration.ts';

export const InitialSchema1764000000000 = sqlMigration('InitialSchema1764000000000', {
  up: [
    `
      CREATE TABLE menu_items (
        store_id   text        NOT NULL,
        food_id    text        NOT NULL,
        name       text        NOT NULL,
        price      integer     NOT NULL CHECK (price >= 0),
        available  boolean     NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (store_id, food_id)
      )`,
    `
      CREATE TABLE orders (
        id              uuid        PRIMARY KEY,
        machine_id      text        NOT NULL,
        machine_version integer     NOT NULL,
        version         integer     NOT NULL CHECK (version >= 1),
        status          text        NOT NULL,
        snapshot        jsonb       NOT NULL,
        customer_id     text        NOT NULL,
        store_id        text        NOT NULL,
        rider_id        text,
        area            text        NOT NULL,
        created_at      timestamptz NOT NULL,
        updated_at      timestamptz NOT NULL
      )`,
    `CREATE INDEX orders_customer_idx ON orders (customer_id, created_at DESC)`,
    `CREATE INDEX orders_store_idx ON orders (store_id, created_at DESC)`,
    `CREATE INDEX orders_rider_idx ON orders (rider_id, created_at DESC) WHERE rider_id IS NOT NULL`,
    `CREATE INDEX orders_status_area_idx ON orders (status, area)`,
    `
      CREATE TABLE order_journal (
        order_id uuid        NOT NULL REFERENCES orders (id),
        seq      integer     NOT NULL CHECK (seq >= 1),
        event_id uuid        NOT NULL UNIQUE,
        type     text        NOT NULL,
        data     jsonb       NOT NULL,
        actor    jsonb       NOT NULL,
        at       timestamptz NOT NULL,
        UNIQUE (order_id, seq)
      )`,
    `
      CREATE TABLE outbox (
        event_id     uuid        PRIMARY KEY,
        order_id     uuid        NOT NULL,
        seq          integer     NOT NULL,
        type         text        NOT NULL,
        payload      jsonb       NOT NULL,
        created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
        published_at timestamptz
      )`,
    `CREATE INDEX outbox_pending_idx ON outbox (created_at) WHERE published_at IS NULL`,
    `
      CREATE TABLE order_requests (
        customer_id     text        NOT NULL,
        idempotency_key text        NOT NULL,
        request_hash    text        NOT NULL,
        order_id        uuid        NOT NULL REFERENCES orders (id),
        created_at      timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (customer_id, idempotency_key)
      )`,
    `
      CREATE TABLE inbox (
        consumer     text        NOT NULL,
        event_id     uuid        NOT NULL,
        processed_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (consumer, event_id)
      )`,
    `
      CREATE TABLE refunds (
        order_id    uuid        PRIMARY KEY REFERENCES orders (id),
        charge_id   text        NOT NULL,
        refund_id   text        NOT NULL,
        amount      integer     NOT NULL,
        refunded_at timestamptz NOT NULL DEFAULT now()
      )`,
    `
      CREATE TABLE notifications (
        order_id    uuid        NOT NULL,
        seq         integer     NOT NULL,
        customer_id text        NOT NULL,
        status      text        NOT NULL,
        message     text        NOT NULL,
        created_at  timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (order_id, seq)
      )`,
    `CREATE INDEX notifications_customer_idx ON notifications (customer_id, created_at DESC)`,
  ],
  down: ['notifications', 'refunds', 'inbox', 'order_requests', 'outbox', 'order_journal', 'orders', 'menu_items'].map(
    (table) => `DROP TABLE IF EXISTS ${table}`,
  ),
});
