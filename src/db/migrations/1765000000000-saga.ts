import { sqlMigration } from '../sql-migration.ts';

// Work columns shared by every table that holds owed work.
const work = `
        due_at      timestamptz,
        lease_until timestamptz,
        attempts    integer     NOT NULL DEFAULT 0,
        last_error  text`;

/** Each consumer's position in each order (replaced by partitioned positions in 1768000000000). */
export const CREATE_CONSUMER_CHECKPOINTS = `
      CREATE TABLE consumer_checkpoints (
        consumer   text        NOT NULL,
        order_id   uuid        NOT NULL,
        seq        integer     NOT NULL CHECK (seq >= 0),
        state      jsonb,
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (consumer, order_id)
      )`;

/**
 * The money-safe saga: the journal becomes the outbox and the record of what each consumer still
 * owes; payment attempts, refunds, notifications and timers become durable work items that any
 * replica can claim (`due_at` set = work owed, `lease_until` = someone is on it).
 */
export const Saga1765000000000 = sqlMigration('Saga1765000000000', {
  up: [
    `ALTER TABLE order_journal ADD COLUMN causation_id text`,
    `ALTER TABLE order_journal ADD COLUMN settled_at timestamptz`,
    // Events delivered through the old outbox are settled already.
    `UPDATE order_journal SET settled_at = at`,
    `CREATE INDEX order_journal_unsettled_idx ON order_journal (at) WHERE settled_at IS NULL`,
    `DROP TABLE outbox`,
    `DROP TABLE inbox`,

    CREATE_CONSUMER_CHECKPOINTS,
    `
      CREATE TABLE consumer_failures (
        consumer        text        NOT NULL,
        order_id        uuid        NOT NULL,
        seq             integer     NOT NULL,
        attempts        integer     NOT NULL,
        error           text        NOT NULL,
        first_failed_at timestamptz NOT NULL,
        last_failed_at  timestamptz NOT NULL,
        PRIMARY KEY (consumer, order_id)
      )`,

    `
      CREATE TABLE payment_attempts (
        idempotency_key text        PRIMARY KEY,
        order_id        uuid        NOT NULL REFERENCES orders (id),
        n               integer     NOT NULL CHECK (n >= 1),
        amount          integer     NOT NULL,
        status          text        NOT NULL CHECK (status IN ('pending', 'charged', 'declined', 'failed', 'unknown', 'orphaned')),
        charge_id       text,
        started_at      timestamptz NOT NULL,
        decided_at      timestamptz,${work},
        UNIQUE (order_id, n)
      )`,
    // At most one attempt in flight per order.
    `CREATE UNIQUE INDEX payment_attempts_in_flight_idx ON payment_attempts (order_id) WHERE status = 'pending'`,
    `CREATE INDEX payment_attempts_due_idx ON payment_attempts (due_at) WHERE due_at IS NOT NULL`,

    `ALTER TABLE refunds RENAME TO refunds_v1`,
    `ALTER TABLE refunds_v1 DROP CONSTRAINT refunds_pkey`,
    `
      CREATE TABLE refunds (
        idempotency_key text        PRIMARY KEY,
        order_id        uuid        NOT NULL REFERENCES orders (id),
        charge_id       text        NOT NULL UNIQUE,
        amount          integer     NOT NULL CHECK (amount > 0),
        reason          text        NOT NULL CHECK (reason IN ('cancelled', 'rejected', 'orphaned')),
        status          text        NOT NULL CHECK (status IN ('pending', 'refunded')),
        refund_id       text,
        requested_at    timestamptz NOT NULL,
        refunded_at     timestamptz,${work}
      )`,
    `CREATE INDEX refunds_order_idx ON refunds (order_id)`,
    `CREATE INDEX refunds_due_idx ON refunds (due_at) WHERE due_at IS NOT NULL`,
    `
      INSERT INTO refunds (idempotency_key, order_id, charge_id, amount, reason, status, refund_id, requested_at, refunded_at, attempts)
      SELECT 'order-' || r.order_id || '-refund', r.order_id, r.charge_id, r.amount,
             CASE WHEN o.status = 'rejected' THEN 'rejected' ELSE 'cancelled' END, 'refunded', r.refund_id, r.refunded_at, r.refunded_at, 1
      FROM refunds_v1 r JOIN orders o ON o.id = r.order_id`,
    `DROP TABLE refunds_v1`,

    `ALTER TABLE notifications RENAME TO notifications_v1`,
    `ALTER TABLE notifications_v1 DROP CONSTRAINT notifications_pkey`,
    `DROP INDEX notifications_customer_idx`,
    `
      CREATE TABLE notifications (
        id           uuid        PRIMARY KEY,
        event_id     uuid        NOT NULL,
        order_id     uuid        NOT NULL,
        seq          integer     NOT NULL,
        to_role      text        NOT NULL,
        to_id        text        NOT NULL,
        status       text        NOT NULL,
        text         text        NOT NULL,
        created_at   timestamptz NOT NULL,
        delivered_at timestamptz,
        transport    text,${work},
        UNIQUE (event_id, to_role)
      )`,
    `CREATE INDEX notifications_recipient_idx ON notifications (to_role, to_id, created_at DESC)`,
    `CREATE INDEX notifications_due_idx ON notifications (due_at) WHERE due_at IS NOT NULL`,
    // The old feed was the customer's only and is already delivered.
    `
      INSERT INTO notifications (id, event_id, order_id, seq, to_role, to_id, status, text, created_at, delivered_at, transport)
      SELECT md5(j.event_id::text || ':customer')::uuid, j.event_id, n.order_id, n.seq, 'customer', n.customer_id, n.status, n.message,
             n.created_at, n.created_at, 'feed'
      FROM notifications_v1 n JOIN order_journal j ON j.order_id = n.order_id AND j.seq = n.seq`,
    `DROP TABLE notifications_v1`,
    // The notifier must not announce the history of existing orders again.
    `
      INSERT INTO consumer_checkpoints (consumer, order_id, seq, state)
      SELECT 'notifier', id, version, jsonb_build_object('customerId', customer_id, 'storeId', store_id, 'riderId', rider_id, 'paid', status NOT IN ('awaitingPayment'))
      FROM orders`,

    `
      CREATE TABLE timers (
        id        text        PRIMARY KEY,
        order_id  uuid        NOT NULL REFERENCES orders (id),
        version   integer     NOT NULL,
        event     text        NOT NULL,
        fire_at   timestamptz NOT NULL,
        fired_at  timestamptz,
        outcome   text CHECK (outcome IN ('fired', 'moved-on')),${work}
      )`,
    `CREATE INDEX timers_due_idx ON timers (due_at) WHERE due_at IS NOT NULL`,
    `CREATE INDEX timers_order_idx ON timers (order_id)`,

    // Read model: cooked orders waiting for a rider, by area (no customer data).
    `
      CREATE TABLE view_deliveries (
        order_id    uuid        PRIMARY KEY,
        store_id    text        NOT NULL,
        area        text        NOT NULL,
        items_count integer     NOT NULL,
        cooked_at   timestamptz NOT NULL
      )`,
    `CREATE INDEX view_deliveries_area_idx ON view_deliveries (area, cooked_at)`,
    `
      INSERT INTO view_deliveries (order_id, store_id, area, items_count, cooked_at)
      SELECT id, store_id, area, (SELECT coalesce(sum((i->>'qty')::int), 0) FROM jsonb_array_elements(snapshot->'context'->'items') i), updated_at
      FROM orders WHERE status = 'cooked'`,
    `
      INSERT INTO consumer_checkpoints (consumer, order_id, seq, state)
      SELECT 'view.deliveries', id, version,
             jsonb_build_object('storeId', store_id, 'area', area,
                                'itemsCount', (SELECT coalesce(sum((i->>'qty')::int), 0) FROM jsonb_array_elements(snapshot->'context'->'items') i))
      FROM orders`,

    // One holder at a time for jobs that every replica could run but only one should (sweeps).
    `
      CREATE TABLE leases (
        name   text        PRIMARY KEY,
        holder text        NOT NULL,
        until  timestamptz NOT NULL
      )`,
  ],
  down: 'irreversible',
});
