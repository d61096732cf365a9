import { sqlMigration } from '../sql-migration.ts';

/**
 * `event_consumers.reads_until`: until when a replica has promised to read every partition it
 * holds once a linger at least, by itself (see `EventBus`). A busy owner reads them that often
 * anyway, so while the promise runs the other replicas send it no wake-up jobs; null when it has
 * promised nothing (then every commit's partitions are announced to it as before).
 */
export const OwnersReading1769500000000 = sqlMigration('OwnersReading1769500000000', {
  up: [`ALTER TABLE event_consumers ADD COLUMN reads_until timestamptz`],
  down: [`ALTER TABLE event_consumers DROP COLUMN reads_until`],
});
