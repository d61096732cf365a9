import type { MigrationInterface, QueryRunner } from 'typeorm';

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
export class Partitions1768000000000 implements MigrationInterface {
  name = 'Partitions1768000000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE order_journal ADD COLUMN part smallint`);
    await q.query(`ALTER TABLE order_journal ADD COLUMN tx xid8 NOT NULL DEFAULT pg_current_xact_id()`);
    await q.query(`ALTER TABLE order_journal ADD COLUMN pos bigserial NOT NULL`);
    await q.query(`CREATE INDEX order_journal_position_idx ON order_journal (part, tx, pos)`);

    await q.query(`
      CREATE TABLE event_partitions (
        part   smallint    PRIMARY KEY CHECK (part >= 0),
        holder text,
        until  timestamptz
      )`);
    await q.query(`
      CREATE TABLE event_consumers (
        holder     text        PRIMARY KEY,
        until      timestamptz NOT NULL,
        started_at timestamptz NOT NULL DEFAULT now()
      )`);
    await q.query(`
      CREATE TABLE consumer_positions (
        grp        text        NOT NULL,
        part       smallint    NOT NULL,
        tx         xid8        NOT NULL,
        pos        bigint      NOT NULL,
        version    integer     NOT NULL DEFAULT 1,
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (grp, part)
      )`);

    // An order a consumer owes events of, apart from its partition's position: it failed there, it
    // is being rebuilt, or it was owed at this upgrade. `seq..upto` are the events owed; `version`
    // guards the row the way an order's version guards the order.
    await q.query(`ALTER TABLE consumer_failures ADD COLUMN part smallint`);
    await q.query(`ALTER TABLE consumer_failures ADD COLUMN upto integer`);
    await q.query(`ALTER TABLE consumer_failures ADD COLUMN version integer NOT NULL DEFAULT 1`);
    await q.query(`ALTER TABLE consumer_failures ADD COLUMN origin text NOT NULL DEFAULT 'failure' CHECK (origin IN ('failure', 'upgrade', 'rebuild'))`);
    await q.query(`UPDATE consumer_failures f SET upto = o.version FROM orders o WHERE o.id = f.order_id`);
    await q.query(`DELETE FROM consumer_failures WHERE upto IS NULL`);
    await q.query(`
      INSERT INTO consumer_failures (consumer, order_id, seq, upto, attempts, error, first_failed_at, last_failed_at, origin)
      SELECT k.consumer, o.id, coalesce(cp.seq, 0) + 1, o.version, 0, 'owed when event delivery was partitioned', now(), '-infinity', 'upgrade'
      FROM orders o CROSS JOIN unnest($1::text[]) AS k(consumer)
      LEFT JOIN consumer_checkpoints cp ON cp.consumer = k.consumer AND cp.order_id = o.id
      WHERE coalesce(cp.seq, 0) < o.version
        AND EXISTS (SELECT 1 FROM order_journal j WHERE j.order_id = o.id AND j.settled_at IS NULL)
      ON CONFLICT (consumer, order_id) DO NOTHING`,
      [CONSUMERS],
    );
    await q.query(`ALTER TABLE consumer_failures ALTER COLUMN upto SET NOT NULL`);
    await q.query(`CREATE INDEX consumer_failures_part_idx ON consumer_failures (part, last_failed_at)`);

    await q.query(`DROP TABLE consumer_checkpoints`);
    await q.query(`DROP INDEX order_journal_unsettled_idx`);
    await q.query(`ALTER TABLE order_journal DROP COLUMN settled_at`);
  }

  /**
   * Back to per-order checkpoints, for a database whose consumers have caught up: each consumer's
   * checkpoint is the order's version (or just before an event it still owes), without the state
   * the old consumers kept; every event counts as settled.
   */
  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE order_journal ADD COLUMN settled_at timestamptz`);
    await q.query(`UPDATE order_journal SET settled_at = at`);
    await q.query(`CREATE INDEX order_journal_unsettled_idx ON order_journal (at) WHERE settled_at IS NULL`);
    await q.query(`
      CREATE TABLE consumer_checkpoints (
        consumer   text        NOT NULL,
        order_id   uuid        NOT NULL,
        seq        integer     NOT NULL CHECK (seq >= 0),
        state      jsonb,
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (consumer, order_id)
      )`);
    await q.query(
      `INSERT INTO consumer_checkpoints (consumer, order_id, seq)
       SELECT k.consumer, o.id, coalesce(f.seq - 1, o.version) FROM orders o CROSS JOIN unnest($1::text[]) AS k(consumer)
       LEFT JOIN consumer_failures f ON f.consumer = k.consumer AND f.order_id = o.id`,
      [CONSUMERS],
    );
    await q.query(`DELETE FROM consumer_failures WHERE origin <> 'failure'`);
    await q.query(`DROP INDEX consumer_failures_part_idx`);
    for (const column of ['part', 'upto', 'version', 'origin']) await q.query(`ALTER TABLE consumer_failures DROP COLUMN ${column}`);
    await q.query(`DROP TABLE consumer_positions`);
    await q.query(`DROP TABLE event_consumers`);
    await q.query(`DROP TABLE event_partitions`);
    await q.query(`DROP INDEX order_journal_position_idx`);
    for (const column of ['pos', 'tx', 'part']) await q.query(`ALTER TABLE order_journal DROP COLUMN ${column}`);
  }
}
