import { createHash } from 'node:crypto';
import type { Consumer, OrderEvent, OrderEvents, Planned } from '../actors/consumers/types.ts';
import type { NotificationRow } from './delivery.work.ts';
import { requireKnownEvent } from '../actors/order-repository.ts';
import type { OrderDomainEventType, OrderItem, RefundDue } from '../machines/order/contract.ts';
import { variant } from '../db/statement-variant.ts';

export type RecipientRole = 'customer' | 'store' | 'rider';

/** What the notifier remembers about an order between its events. */
export interface NotifierState {
  customerId: string;
  storeId: string;
  riderId: string | null;
  /** Whether the store has seen the order (it was paid): only then is it told of a cancellation. */
  paid: boolean;
  itemsCount?: number;
}

export interface NotificationDraft {
  id: string;
  eventId: string;
  orderId: string;
  seq: number;
  toRole: RecipientRole;
  toId: string;
  status: string;
  text: string;
  createdAt: string;
  /** The notifier's span for the event (tracing on): the delivery joins the event's trace. */
  traceparent?: string;
}

/**
 * The same id for the same message every time (the receiver deduplicates on it): an RFC 9562
 * UUID of version 8, whose 122 free bits are those of the MD5 of `<eventId>:<role>` (the hash
 * ids were always made of; migration 1768600000000 set the same bits on the ids stored before).
 */
export function notificationId(eventId: string, role: RecipientRole): string {
  const bytes = createHash('md5').update(`${eventId}:${role}`).digest();
  bytes[6] = (bytes[6]! & 0x0f) | 0x80; // version 8
  bytes[8] = (bytes[8]! & 0x3f) | 0x80; // variant 10 (RFC 9562)
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

const money = (amount: number) => amount.toLocaleString('en-US');
const short = (orderId: string) => orderId.slice(0, 8);

function refundText(refund: RefundDue | null | undefined): string {
  return refund ? ` Your payment of ${money(refund.amount)} will be refunded.` : '';
}

const CUSTOMER_TEXT: Record<OrderDomainEventType, (e: OrderEvent) => string> = {
  OrderPlaced: () => 'Your order is placed and waiting for payment.',
  OrderPaid: () => 'Payment received; the store is looking at your order.',
  OrderAccepted: () => 'The store accepted your order.',
  OrderRejected: (e) => `The store could not take your order.${refundText(e.data.refund as RefundDue | null)}`,
  StoreAcceptTimedOut: (e) => `The store did not answer in time, so your order was cancelled.${refundText(e.data.refund as RefundDue | null)}`,
  CookingStarted: () => 'The store started cooking your order.',
  CookingFinished: () => 'Your order is cooked and waiting for a rider.',
  OrderCancelled: (e) => `Your order was cancelled.${refundText(e.data.refund as RefundDue | null)}`,
  PaymentTimedOut: () => 'Your order was cancelled because it was not paid in time.',
  OrderPickedUp: () => 'A rider picked up your order.',
  OrderDelivered: () => 'Your order was delivered. Enjoy!',
};

/**
 * Who hears of an event: the customer of every status change; the store when an order reaches
 * it (paid) or leaves it (cancelled after payment, or rejected by the timer rather than by the
 * store itself); the rider when the delivery is confirmed or an order they picked is cancelled.
 */
export function recipients(e: OrderEvent, s: NotifierState): { role: RecipientRole; id: string; text: string }[] {
  const out: { role: RecipientRole; id: string; text: string }[] = [{ role: 'customer', id: s.customerId, text: CUSTOMER_TEXT[e.type](e) }];
  const id = short(e.orderId);
  switch (e.type) {
    case 'OrderPaid':
      out.push({ role: 'store', id: s.storeId, text: `New paid order ${id} (${s.itemsCount ?? '?'} items): accept or reject it.` });
      break;
    case 'OrderCancelled':
      if (s.paid) out.push({ role: 'store', id: s.storeId, text: `Order ${id} was cancelled by the customer.` });
      if (s.riderId) out.push({ role: 'rider', id: s.riderId, text: `Order ${id} was cancelled.` });
      break;
    case 'StoreAcceptTimedOut':
      out.push({ role: 'store', id: s.storeId, text: `Order ${id} was not accepted in time and was rejected automatically.` });
      break;
    case 'OrderDelivered':
      if (s.riderId) out.push({ role: 'rider', id: s.riderId, text: `The customer confirmed delivery of order ${id}. Thank you!` });
      break;
    default:
      break;
  }
  return out;
}

/** Folds one event into what the notifier keeps about the order. */
export function fold(state: NotifierState | null, e: OrderEvent): NotifierState {
  if (e.type === 'OrderPlaced') {
    const items = (e.data.items as OrderItem[] | undefined) ?? [];
    return {
      customerId: String(e.data.customerId),
      storeId: String(e.data.storeId),
      riderId: null,
      paid: false,
      itemsCount: items.reduce((n, i) => n + i.qty, 0),
    };
  }
  if (!state) throw new Error(`order ${e.orderId}: ${e.type} (seq ${e.seq}) before OrderPlaced`);
  switch (e.type) {
    case 'OrderPaid':
      return { ...state, paid: true };
    case 'OrderPickedUp':
      return { ...state, riderId: String(e.data.riderId) };
    default:
      return state;
  }
}

const INSERT = `INSERT INTO notifications (id, event_id, order_id, seq, to_role, to_id, status, text, created_at, due_at, lease_until, attempts)
                   SELECT d."id", d."eventId", d."orderId", d."seq", d."toRole", d."toId", d."status", d."text", d."createdAt", now(),
                          now() + make_interval(secs => $2::float8 / 1000), 1
                   FROM jsonb_to_recordset($1::jsonb) AS d("id" uuid, "eventId" uuid, "orderId" uuid, "seq" int, "toRole" text, "toId" text,
                                                            "status" text, "text" text, "createdAt" timestamptz)
                   ON CONFLICT DO NOTHING
                   RETURNING *`;

/** INSERT that also records each notification's trace context. */
const INSERT_TRACED = variant(INSERT, [
  ['created_at, due_at, lease_until, attempts)', 'created_at, due_at, lease_until, attempts, traceparent)'],
  ['make_interval(secs => $2::float8 / 1000), 1', 'make_interval(secs => $2::float8 / 1000), 1, d."traceparent"'],
  ['"text" text, "createdAt" timestamptz)', '"text" text, "createdAt" timestamptz, "traceparent" text)'],
]);

/**
 * Turns events into notifications (one per recipient). They are written already leased to this
 * replica for `leaseMs`; once committed, `deliver` sends them at once (the rows stay owed until
 * sent, so a send that never happens is only delayed: the lease runs out and the sweeper has them).
 */
export function notifierConsumer(deliver: (rows: NotificationRow[]) => void, leaseMs: number): Consumer<NotifierState> {
  return {
    name: 'notifier',
    plan(batch: OrderEvents<NotifierState>[]): Planned<NotifierState> {
      const drafts: NotificationDraft[] = [];
      const states = batch.map((b) => {
        let state = b.state;
        for (const e of b.events) {
          requireKnownEvent('notifier', e);
          // Parties come from the state before the event (a cancel reaches the rider who had picked).
          const before = e.type === 'OrderPlaced' ? fold(state, e) : state!;
          for (const r of recipients(e, before)) {
            drafts.push({
              id: notificationId(e.eventId, r.role),
              eventId: e.eventId,
              orderId: e.orderId,
              seq: e.seq,
              toRole: r.role,
              toId: r.id,
              status: e.status,
              text: r.text,
              createdAt: e.occurredAt,
              ...(e.traceparent ? { traceparent: e.traceparent } : {}),
            });
          }
          state = fold(state, e);
        }
        return state;
      });
      if (drafts.length === 0) return { states, effects: [] };
      return {
        states,
        effects: [
          {
            // With tracing off no draft has a trace context, and the statement is the one without the column.
            text: drafts.some((d) => d.traceparent) ? INSERT_TRACED : INSERT,
            params: [JSON.stringify(drafts), leaseMs],
            returning: true,
          },
        ],
        afterCommit: ([created]) => {
          if (created && created.length > 0) deliver(created.map(toNotificationRow));
        },
      };
    },
  };
}

/** A row as RETURNING gave it through JSON: timestamps come back as strings. */
function toNotificationRow(r: Record<string, unknown>): NotificationRow {
  const date = (v: unknown) => (v === null || v === undefined ? null : new Date(String(v)));
  return { ...(r as unknown as NotificationRow), created_at: date(r.created_at)!, delivered_at: date(r.delivered_at), due_at: date(r.due_at), lease_until: date(r.lease_until) };
}
