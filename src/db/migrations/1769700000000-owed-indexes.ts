import { sqlMigration } from '../sql-migration.ts';

/**
 * Owed rows read through indexes however many there are. A rebuild owes every order to each view it
 * rebuilds (millions of rows on a large database), and the statements that run over and over read
 * them whole: each of the rebuild's batches sorted every owed row to take the next 2,500, so its
 * time grew with the square of the orders (150,000 orders: 132 s, 0.88 ms per order against 0.35
 * at 30,000), and every owner's poll and every metrics scrape read them all meanwhile.
 * - `consumer_failures_part_idx` keeps an owner's due failures only: a rebuild's rows are not its.
 * - `consumer_failures_rebuild_idx` gives a rebuild its rows in order, a batch at a time.
 * - `consumer_failures_failed_idx` counts the rows that failed (the metrics, a rebuild's report).
 */
export const OwedIndexes1769700000000 = sqlMigration('OwedIndexes1769700000000', {
  up: [
    `DROP INDEX consumer_failures_part_idx`,
    `CREATE INDEX consumer_failures_part_idx ON consumer_failures (part, due_at) WHERE origin <> 'rebuild'`,
    `CREATE INDEX consumer_failures_rebuild_idx ON consumer_failures (order_id) WHERE origin = 'rebuild'`,
    `CREATE INDEX consumer_failures_failed_idx ON consumer_failures (consumer) WHERE attempts > 0`,
  ],
  down: [
    `DROP INDEX consumer_failures_failed_idx`,
    `DROP INDEX consumer_failures_rebuild_idx`,
    `DROP INDEX consumer_failures_part_idx`,
    `CREATE INDEX consumer_failures_part_idx ON consumer_failures (part, due_at)`,
  ],
});
