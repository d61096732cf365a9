import type { Sql } from '../db/pg.ts';
import { isOrderEventType, type OrderDomainEventType } from '../machines/order/contract.ts';
import type { Role } from './principal.ts';

export interface OrderRow {
  id: string;
  machine_id: string;
  machine_version: number;
  version: number;
  status: string;
  snapshot: unknown;
  customer_id: string;
  store_id: string;
  rider_id: string | null;
  area: string;
  created_at: Date;
  updated_at: Date;
}

/**
 * What caused a journaled event. `causationId` is chosen by the service: the id it gave the request
 * (a UUID), or the id of the timer that fired. `clientRequestId` is the `X-Request-Id` the client
 * sent, kept beside it for the client's own tracing and never trusted as an identity.
 */
export interface Cause {
  causationId: string | null;
  clientRequestId: string | null;
}

/** Who caused a journaled event: a caller of the API, or the service itself (a timer). */
export interface Actor {
  sub: string;
  role: Role | 'system';
}

const ORDER_COLUMNS = `o.id, o.machine_id, o.machine_version, o.version, o.status, o.snapshot, o.customer_id,
  o.store_id, o.rider_id, o.area, o.created_at, o.updated_at`;

/** One statement, no transaction: commands judge what they read and write with a version check. */
export async function loadOrder(sql: Sql, id: string): Promise<OrderRow | undefined> {
  const rows = await sql.query<OrderRow>(`SELECT ${ORDER_COLUMNS} FROM orders o WHERE o.id = $1`, [id]);
  return rows[0];
}

export interface JournalEntry {
  eventId: string;
  seq: number;
  type: OrderDomainEventType;
  data: Record<string, unknown>;
  /** The version of the order machine that recorded the event. */
  machineVersion: number;
  /** The order's status right after the event (in that version of the machine). */
  status: string;
  occurredAt: string;
  /** Same as occurredAt; kept for clients of the first API version. */
  at: string;
  causationId: string | null;
  /** The `X-Request-Id` the client sent with the command, if any (not an identity: any client may send any). */
  clientRequestId: string | null;
  actor: Actor;
}

export interface JournalRow {
  event_id: string;
  order_id: string;
  seq: number;
  type: OrderDomainEventType;
  data: Record<string, unknown>;
  actor: Actor;
  causation_id: string | null;
  client_request_id: string | null;
  at: Date;
  machine_version: number;
  /** Null in rows journaled before statuses were recorded (all of version 1). */
  status: string | null;
}

export const JOURNAL_COLUMNS = 'j.event_id, j.order_id, j.seq, j.type, j.data, j.actor, j.causation_id, j.client_request_id, j.at, j.machine_version, j.status';

/**
 * The status after each event, for journal rows written before the journal recorded it: all of
 * them by version 1 of the machine, whose table this is (kept here, frozen, for as long as such
 * rows may exist; a unit test checks it against version 1).
 */
export const UNRECORDED_STATUS_AFTER: Readonly<Record<OrderDomainEventType, string>> = {
  OrderPlaced: 'awaitingPayment',
  OrderPaid: 'paid',
  OrderAccepted: 'accepted',
  OrderRejected: 'rejected',
  StoreAcceptTimedOut: 'rejected',
  CookingStarted: 'cooking',
  CookingFinished: 'cooked',
  OrderCancelled: 'cancelled',
  PaymentTimedOut: 'cancelled',
  OrderPickedUp: 'pickedUp',
  OrderDelivered: 'delivered',
};

export const toJournalEntry = (r: JournalRow): JournalEntry => ({
  eventId: r.event_id,
  seq: r.seq,
  type: r.type,
  data: r.data,
  machineVersion: r.machine_version,
  status: r.status ?? UNRECORDED_STATUS_AFTER[r.type] ?? 'unknown',
  occurredAt: r.at.toISOString(),
  at: r.at.toISOString(),
  causationId: r.causation_id,
  clientRequestId: r.client_request_id,
  actor: r.actor,
});

/**
 * Refuses an event of a type this build does not know: a newer machine version (a rolling deploy
 * under way) journaled it. The consumer fails on the order, which stays owed to it until a
 * replica that knows the type applies it.
 */
export function requireKnownEvent(consumer: string, e: Pick<JournalEntry, 'type' | 'seq' | 'machineVersion'> & { orderId: string }): void {
  if (!isOrderEventType(e.type)) {
    throw new Error(`${consumer}: order ${e.orderId} has an event ${String(e.type)} (seq ${e.seq}, machine version ${e.machineVersion}) this build does not know; it stays owed until a replica that knows it applies it`);
  }
}

export async function readJournal(sql: Sql, orderId: string): Promise<JournalEntry[]> {
  const rows = await sql.query<JournalRow>(`SELECT ${JOURNAL_COLUMNS} FROM order_journal j WHERE j.order_id = $1 ORDER BY j.seq`, [orderId]);
  return rows.map(toJournalEntry);
}
