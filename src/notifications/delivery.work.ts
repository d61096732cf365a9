import { cappedBackoff, WorkTable, type WorkColumns, type WorkKind } from '../actors/work.ts';
import type { Database } from '../db/pg.ts';
import type { NotificationTransport } from './transports.ts';

export interface NotificationRow extends WorkColumns {
  id: string;
  event_id: string;
  order_id: string;
  seq: number;
  to_role: string;
  to_id: string;
  status: string;
  text: string;
  created_at: Date;
  delivered_at: Date | null;
  transport: string | null;
}

/** Delivers owed notifications through the transport; a failure is retried with capped backoff, never dropped. */
export function notificationDelivery(db: Database, transport: NotificationTransport, retryMaxMs: number): WorkKind<NotificationRow> {
  return {
    name: 'notification',
    table: new WorkTable<NotificationRow>(db, 'notifications', 'id', 'uuid', (r) => r.id),
    backoffMs: (attempts) => cappedBackoff(attempts, 500, retryMaxMs),
    async perform(row) {
      await transport.send({
        notificationId: row.id,
        eventId: row.event_id,
        orderId: row.order_id,
        status: row.status,
        to: { role: row.to_role, id: row.to_id },
        text: row.text,
      });
    },
    async completeMany(rows) {
      await db.query(
        `UPDATE notifications SET delivered_at = now(), transport = $2, due_at = NULL, lease_until = NULL, last_error = NULL
         WHERE id = ANY($1::uuid[])`,
        [rows.map((r) => r.id), transport.name],
      );
    },
  };
}
