import { exponentialBackoff, WorkTable, type WorkColumns, type WorkKind } from '../actors/work.ts';
import type { Database } from '../db/pg.ts';
import { DeliveredMarks } from './delivered-marks.ts';
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

/**
 * Delivers owed notifications through the transport; a failure is retried with capped backoff,
 * never dropped. A run hands all its messages to the transport at once (the webhook bounds its
 * own concurrency per endpoint), and the deliveries of runs that finish together are recorded by
 * one statement: the next event batch's, when one is coming (see `DeliveredMarks`).
 */
export function notificationDelivery(
  db: Database,
  transport: NotificationTransport,
  retryMaxMs: number,
  marks = new DeliveredMarks(db, transport.name),
): WorkKind<NotificationRow> {
  return {
    name: 'notification',
    table: new WorkTable<NotificationRow>(db, 'notifications', 'id', 'uuid', (r) => r.id),
    backoffMs: exponentialBackoff(500, retryMaxMs),
    concurrency: Number.POSITIVE_INFINITY,
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
      await marks.mark(rows.map((r) => r.id));
    },
  };
}
