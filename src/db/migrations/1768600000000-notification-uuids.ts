import { sqlMigration } from '../sql-migration.ts';

/**
 * Notification ids become RFC 9562 UUIDs: version 8 (custom), built from the MD5 of
 * `<eventId>:<role>` they always came from, with the version and variant bits set
 * (`notificationId()` in src/notifications/notifier.consumer.ts). Ids written before were that MD5
 * in UUID shape without those bits, which strict clients refuse; this sets the same bits on them,
 * so a stored id equals what the notifier computes for its event and recipient. A message whose
 * delivery is in flight at that moment may reach the webhook a second time, under its new id.
 */
export const NotificationUuids1768600000000 = sqlMigration('NotificationUuids1768600000000', {
  up: [
    // In the text form 8-4-4-4-12, character 15 is the version nibble and 20 the variant nibble.
    `
      UPDATE notifications n SET id = (
        substr(t, 1, 14) || '8' || substr(t, 16, 4)
        || substr('89ab', (strpos('0123456789abcdef', substr(t, 20, 1)) - 1) % 4 + 1, 1)
        || substr(t, 21)
      )::uuid
      FROM (SELECT id, id::text AS t FROM notifications) o
      WHERE n.id = o.id AND (substr(o.t, 15, 1) <> '8' OR substr(o.t, 20, 1) NOT IN ('8', '9', 'a', 'b'))`,
  ],
  // The old ids are not kept; the new ones are as good for any earlier version.
  down: [],
});
