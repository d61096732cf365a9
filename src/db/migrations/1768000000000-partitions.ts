import { sqlMigration } from '../sql-migration.ts';
import { CREATE_CONSUMER_CHECKPOINTS } from './1765000000000-saga.ts';

/** The consumers the service had when event delivery was partitioned (their checkpoints are converted here). */
const CONSUMERS = ['notifier', 'view.customer-orders', 'view.store-orders', 'view.store-food-counts', 'view.rider-delivery-counts', 'view.deliveries'];

/**
 * Partitioned event delivery. The journal's events are split into a fixed number of partitions by
 * order id; each partition is consumed by one replica at a time (`event_partitions` holds the
 * leases, `event_consumers` the replicas that take part), and a consumer group keeps one position
 * per partition (`consumer_positions`) instead of one checkpoint per order.
 *
 * A position is `(tx, pos)`: the id of the transaction that wrote the event and a sequence number.
 * Events are read in that order and only from transactions older than every transaction still in
 * progress (`pg_snapshot_xmin`), so an event committed late can never fall behind a position that
 * has already passed it.
 *
 * The partition of each event is set when partitions are first set up by the service (the count is
 * a setting, EVENT_PARTITIONS). Events a consumer still owed under the old per-order checkpoints
 * are handed to it as owed orders (`consumer_failures` with origin 'upgrade'), applied at once by
 * the partition's owner; everything else counts as applied.
 */
export const Partitions1768000000000 = sqlMigration('Partitions1768000000000', {
  up: [
    `ALTER TABLE order_journal ADD COLUMN part smallint`,
    `ALTER TABLE order_journal ADD COLUMN tx xid8 NOT NULL DEFAULT pg_current_xact_id()`,
    `ALTER TABLE order_journal ADD COLUMN pos bigserial NOT NULL`,
    `CREATE INDEX order_journal_position_idx ON order_journal (part, tx, pos)`,

    `
      CREATE TABLE event_partitions (
        part   smallint    PRIMARY KEY CHECK (part >= 0),
        holder text,
        until  timestamptz
      )`,
    `
      CREATE TABLE event_consumers (
        holder     text        PRIMARY KEY,
        until      timestamptz NOT NULL,
        started_at timestamptz NOT NULL DEFAULT now()
      )`,
    `
      CREATE TABLE consumer_positions (
        grp        text        NOT NULL,
        part       smallint    NOT NULL,
        tx         xid8        NOT NULL,
        pos        bigint      NOT NULL,
        version    integer     NOT NULL DEFAULT 1,
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (grp, part)
      )`,

    // An order a consumer owes events of, apart from its partition's position: it failed there, it
    // is being rebuilt, or it was owed at this upgrade. `seq..upto` are the events owed; `version`
    // guards the row the way an order's version guards the order.
    `ALTER TABLE consumer_failures ADD COLUMN part smallint`,
    `ALTER TABLE consumer_failures ADD COLUMN upto integer`,
    `ALTER TABLE consumer_failures ADD COLUMN version integer NOT NULL DEFAULT 1`,
    `ALTER TABLE consumer_failures ADD COLUMN origin text NOT NULL DEFAULT 'failure' CHECK (origin IN ('failure', 'upgrade', 'rebuild'))`,
    `UPDATE consumer_failures f SET upto = o.version FROM orders o WHERE o.id = f.order_id`,
    `DELETE FROM consumer_failures WHERE upto IS NULL`,
    {
      sql: `
      INSERT INTO consumer_failures (consumer, order_id, seq, upto, attempts, error, first_failed_at, last_failed_at, origin)
      SELECT k.consumer, o.id, coalesce(cp.seq, 0) + 1, o.version, 0, 'owed when event delivery was partitioned', now(), '-infinity', 'upgrade'
      FROM orders o CROSS JOIN unnest($1::text[]) AS k(consumer)
      LEFT JOIN consumer_checkpoints cp ON cp.consumer = k.consumer AND cp.order_id = o.id
      WHERE coalesce(cp.seq, 0) < o.version
        AND EXISTS (SELECT 1 FROM order_journal j WHERE j.order_id = o.id AND j.settled_at IS NULL)
      ON CONFLICT (consumer, order_id) DO NOTHING`,
      params: [CONSUMERS],
    },
    `ALTER TABLE consumer_failures ALTER COLUMN upto SET NOT NULL`,
    `CREATE INDEX consumer_failures_part_idx ON consumer_failures (part, last_failed_at)`,

    `DROP TABLE consumer_checkpoints`,
    `DROP INDEX order_journal_unsettled_idx`,
    `ALTER TABLE order_journal DROP COLUMN settled_at`,
  ],

  /**
   * Back to per-order checkpoints, for a database whose consumers have caught up: each consumer's
   * checkpoint is the order's version (or just before an event it still owes), without the state
   * the old consumers kept; every event counts as settled.
   */
  down: [
    `ALTER TABLE order_journal ADD COLUMN settled_at timestamptz`,
    `UPDATE order_journal SET settled_at = at`,
    `CREATE INDEX order_journal_unsettled_idx ON order_journal (at) WHERE settled_at IS NULL`,
    // As the saga migration made it.
    CREATE_CONSUMER_CHECKPOINTS,
    {
      sql: `INSERT INTO consumer_checkpoints (consumer, order_id, seq)
       SELECT k.consumer, o.id, coalesce(f.seq - 1, o.version) FROM orders o CROSS JOIN unnest($1::text[]) AS k(consumer)
       LEFT JOIN consumer_failures f ON f.consumer = k.consumer AND f.order_id = o.id`,
      params: [CONSUMERS],
    },
    `DELETE FROM consumer_failures WHERE origin <> 'failure'`,
    `DROP INDEX consumer_failures_part_idx`,
    ...['part', 'upto', 'version', 'origin'].map((column) => `ALTER TABLE consumer_failures DROP COLUMN ${column}`),
    `DROP TABLE consumer_positions`,
    `DROP TABLE event_consumers`,
    `DROP TABLE event_partitions`,
    `DROP INDEX order_journal_position_idx`,
    ...['pos', 'tx', 'part'].map((column) => `ALTER TABLE order_journal DROP COLUMN ${column}`),
  ],
});
