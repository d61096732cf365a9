import { sqlMigration } from '../sql-migration.ts';

/**
 * Owed events become durable work like the rest: `consumer_failures` gains the work columns
 * (`due_at`, `lease_until`, and `last_error` for `error`), so its retries are scheduled with
 * `due_at` by the one backoff of durable work instead of a formula over `last_failed_at`, and the
 * work tables' helpers (replay, listing) serve it through `work_key`, the row's key as one text.
 * Rows already owed keep their schedule: due when the old formula would have retried them.
 * Undone, the old formula retries from `last_failed_at` and `attempts`, which stay as they were.
 */
export const OwedEventsAsWork1769300000000 = sqlMigration('OwedEventsAsWork1769300000000', {
  up: [
    `ALTER TABLE consumer_failures RENAME COLUMN error TO last_error`,
    `ALTER TABLE consumer_failures ADD COLUMN lease_until timestamptz`,
    `ALTER TABLE consumer_failures ADD COLUMN due_at timestamptz`,
    `UPDATE consumer_failures SET due_at = CASE WHEN attempts = 0 THEN now()
       ELSE last_failed_at + least(interval '5 minutes', interval '1 second' * power(2, least(attempts, 12))) END`,
    // A row is owed while it exists: it is always due at some time (the applying statement deletes it).
    `ALTER TABLE consumer_failures ALTER COLUMN due_at SET DEFAULT now(), ALTER COLUMN due_at SET NOT NULL`,
    `ALTER TABLE consumer_failures ADD COLUMN work_key text GENERATED ALWAYS AS (consumer || ' ' || order_id::text) STORED`,
    `CREATE UNIQUE INDEX consumer_failures_work_key_idx ON consumer_failures (work_key)`,
    `DROP INDEX consumer_failures_part_idx`,
    `CREATE INDEX consumer_failures_part_idx ON consumer_failures (part, due_at)`,
    `CREATE INDEX consumer_failures_due_idx ON consumer_failures (due_at)`,
  ],
  down: [
    `DROP INDEX consumer_failures_due_idx`,
    `DROP INDEX consumer_failures_part_idx`,
    `CREATE INDEX consumer_failures_part_idx ON consumer_failures (part, last_failed_at)`,
    `DROP INDEX consumer_failures_work_key_idx`,
    ...['work_key', 'due_at', 'lease_until'].map((column) => `ALTER TABLE consumer_failures DROP COLUMN ${column}`),
    `ALTER TABLE consumer_failures RENAME COLUMN last_error TO error`,
  ],
});
