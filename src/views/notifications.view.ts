import type { Consumer } from '../actors/consumers.ts';
import { sql } from '../db/data-source.ts';
import type { OrderStatus } from '../machines/order.machine.ts';
import type { DataSource } from 'typeorm';

const MESSAGES: Record<OrderStatus, string> = {
  awaitingPayment: 'Your order is placed and waiting for payment.',
  paid: 'Payment received; the store is looking at your order.',
  accepted: 'The store accepted your order.',
  cooking: 'The store started cooking your order.',
  cooked: 'Your order is cooked and waiting for a rider.',
  pickedUp: 'A rider picked up your order.',
  delivered: 'Your order was delivered. Enjoy!',
  cancelled: 'Your order was cancelled.',
  rejected: 'The store could not take your order.',
};

/** The customer's notification feed: one entry per status change, keyed by the order's seq. */
export function notificationsView(): Consumer {
  return {
    name: 'view.notifications',
    handles: () => true,
    async apply(tx, m) {
      const refunded = m.refund ? ' Your payment will be refunded.' : '';
      await sql(
        tx,
        `INSERT INTO notifications (order_id, seq, customer_id, status, message, created_at)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (order_id, seq) DO NOTHING`,
        [m.orderId, m.seq, m.customerId, m.status, MESSAGES[m.status] + refunded, m.at],
      );
    },
  };
}

export interface Notification {
  orderId: string;
  seq: number;
  status: OrderStatus;
  message: string;
  at: string;
}

export async function listNotifications(db: DataSource, customerId: string, limit: number): Promise<Notification[]> {
  const rows: { order_id: string; seq: number; status: OrderStatus; message: string; created_at: Date }[] = await db.query(
    `SELECT order_id, seq, status, message, created_at FROM notifications
     WHERE customer_id = $1 ORDER BY created_at DESC, seq DESC LIMIT $2`,
    [customerId, limit],
  );
  return rows.map((r) => ({ orderId: r.order_id, seq: r.seq, status: r.status, message: r.message, at: r.created_at.toISOString() }));
}
