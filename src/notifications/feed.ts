import type { Database } from '../db/pg.ts';
import type { Principal } from '../actors/principal.ts';

export interface Notification {
  notificationId: string;
  eventId: string;
  orderId: string;
  seq: number;
  status: string;
  text: string;
  /** Same as text; kept for clients of the first API version. */
  message: string;
  at: string;
  delivery: {
    state: 'pending' | 'delivered';
    attempts: number;
    deliveredAt: string | null;
    transport: string | null;
    lastError: string | null;
  };
}

interface Row {
  id: string;
  event_id: string;
  order_id: string;
  seq: number;
  status: string;
  text: string;
  created_at: Date;
  delivered_at: Date | null;
  transport: string | null;
  attempts: number;
  last_error: string | null;
}

/** The messages addressed to the caller (customer, store or rider), newest first, with how each was delivered. */
export async function listNotifications(db: Database, who: Principal, limit: number): Promise<Notification[]> {
  const rows = await db.query<Row>(
    `SELECT id, event_id, order_id, seq, status, text, created_at, delivered_at, transport, attempts, last_error
     FROM notifications WHERE to_role = $1 AND to_id = $2 ORDER BY created_at DESC, seq DESC LIMIT $3`,
    [who.role, who.sub, limit],
  );
  return rows.map((r) => ({
    notificationId: r.id,
    eventId: r.event_id,
    orderId: r.order_id,
    seq: r.seq,
    status: r.status,
    text: r.text,
    message: r.text,
    at: r.created_at.toISOString(),
    delivery: {
      state: r.delivered_at ? 'delivered' : 'pending',
      attempts: r.attempts,
      deliveredAt: r.delivered_at?.toISOString() ?? null,
      transport: r.transport,
      lastError: r.last_error,
    },
  }));
}
