import { sqlMigration } from '../sql-migration.ts';

/**
 * Two unique indexes that no statement reads and whose rule another key already keeps, dropped:
 * every command wrote an entry into each (and every notification delivered wrote another, since
 * its "delivered" mark cannot be a heap-only update), for nothing.
 *
 * - `notifications (event_id, to_role)`: a notification's id is a function of its event and role
 *   (`notificationId()`, src/notifications/notifier.consumer.ts; NotificationUuids1768600000000 made
 *   every stored id equal to it), so the primary key refuses the same notification twice, and the
 *   notifier's `ON CONFLICT DO NOTHING` meets that key instead.
 * - `order_journal (event_id)`: an event's id is a random UUID drawn by the statement's caller
 *   (randomUUID) when the row is written, never looked up by it; the journal's key is
 *   `(order_id, seq)`.
 */
export const RedundantUniques1769400000000 = sqlMigration('RedundantUniques1769400000000', {
  up: [
    `ALTER TABLE notifications DROP CONSTRAINT notifications_event_id_to_role_key`,
    `ALTER TABLE order_journal DROP CONSTRAINT order_journal_event_id_key`,
  ],
  down: [
    `ALTER TABLE order_journal ADD CONSTRAINT order_journal_event_id_key UNIQUE (event_id)`,
    `ALTER TABLE notifications ADD CONSTRAINT notifications_event_id_to_role_key UNIQUE (event_id, to_role)`,
  ],
});
