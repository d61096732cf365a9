import { randomUUID } from 'node:crypto';
import type { EntityManager } from 'typeorm';
import { sql } from '../db/data-source.ts';
import { DomainError } from '../errors.ts';
import {
  ORDER_MACHINE_ID,
  ORDER_MACHINE_VERSION,
  orderMachine,
  statusOf,
  type OrderDomainEvent,
  type OrderSnapshot,
} from '../machines/order.machine.ts';
import type { OrderEventMessage } from './messages.ts';
import type { Principal } from './principal.ts';

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
  refund_id: string | null;
  refund_amount: number | null;
}

const ORDER_COLUMNS = `o.id, o.machine_id, o.machine_version, o.version, o.status, o.snapshot, o.customer_id,
  o.store_id, o.rider_id, o.area, o.created_at, o.updated_at, r.refund_id, r.amount AS refund_amount`;

export async function loadOrder(tx: EntityManager, id: string, forUpdate: boolean): Promise<OrderRow | undefined> {
  const lock = forUpdate ? 'FOR UPDATE OF o' : '';
  const rows = await sql<OrderRow>(
    tx,
    `SELECT ${ORDER_COLUMNS} FROM orders o LEFT JOIN refunds r ON r.order_id = o.id WHERE o.id = $1 ${lock}`,
    [id],
  );
  return rows[0];
}

export function orderQuery(where: string, limit: string): string {
  return `SELECT ${ORDER_COLUMNS} FROM orders o LEFT JOIN refunds r ON r.order_id = o.id WHERE ${where}
          ORDER BY o.created_at DESC, o.id LIMIT ${limit}`;
}

/** Rebuilds the machine snapshot stored with the row, refusing snapshots of another machine version. */
export function restoreSnapshot(row: OrderRow): OrderSnapshot {
  if (row.machine_id !== ORDER_MACHINE_ID || row.machine_version !== ORDER_MACHINE_VERSION) {
    throw new DomainError(
      'internal',
      `order ${row.id} was stored by machine ${row.machine_id}@${row.machine_version}; this build runs ${ORDER_MACHINE_ID}@${ORDER_MACHINE_VERSION}`,
    );
  }
  return orderMachine.resolveState(row.snapshot as Parameters<typeof orderMachine.resolveState>[0]);
}

type EmitAction = { type: string; params?: unknown };

/** The domain events the machine emitted during one transition. */
export function emittedEvents(actions: readonly EmitAction[]): OrderDomainEvent[] {
  return actions
    .filter((a) => a.type === 'xstate.emit')
    .map((a) => (a.params as { event: OrderDomainEvent }).event);
}

export interface Transition {
  orderId: string;
  /** The version the order had before this transition; 0 when it is being created. */
  fromVersion: number;
  snapshot: OrderSnapshot;
  event: OrderDomainEvent;
  by: Principal;
  at: Date;
}

/**
 * Persists one transition: the snapshot with its new version, the journal row and the outbox row,
 * in the caller's transaction. The version check makes a lost update impossible even if a caller
 * forgot the row lock.
 */
export async function persistTransition(tx: EntityManager, t: Transition): Promise<number> {
  const version = t.fromVersion + 1;
  const ctx = t.snapshot.context;
  const status = statusOf(t.snapshot);
  const persisted = JSON.stringify(orderMachine.getPersistedSnapshot(t.snapshot));
  if (t.fromVersion === 0) {
    await sql(
      tx,
      `INSERT INTO orders (id, machine_id, machine_version, version, status, snapshot, customer_id, store_id, rider_id, area, created_at, updated_at)
       VALUES ($1, $2, $3, 1, $4, $5, $6, $7, $8, $9, $10, $10)`,
      [t.orderId, ORDER_MACHINE_ID, ORDER_MACHINE_VERSION, status, persisted, ctx.customerId, ctx.storeId, ctx.riderId, ctx.address.area, t.at],
    );
  } else {
    const updated = await sql(
      tx,
      `UPDATE orders SET version = $2, status = $3, snapshot = $4, rider_id = $5, updated_at = $6
       WHERE id = $1 AND version = $7 RETURNING id`,
      [t.orderId, version, status, persisted, ctx.riderId, t.at, t.fromVersion],
    );
    if (updated.length !== 1) {
      throw new DomainError('internal', `order ${t.orderId} moved past version ${t.fromVersion} while locked`);
    }
  }
  const eventId = randomUUID();
  await sql(
    tx,
    `INSERT INTO order_journal (order_id, seq, event_id, type, data, actor, at) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
    [t.orderId, version, eventId, t.event.type, JSON.stringify(t.event.data), JSON.stringify(t.by), t.at],
  );
  const message: OrderEventMessage = {
    eventId,
    orderId: t.orderId,
    seq: version,
    type: t.event.type,
    status,
    customerId: ctx.customerId,
    storeId: ctx.storeId,
    riderId: ctx.riderId,
    area: ctx.address.area,
    refund: t.event.type === 'OrderCancelled' || t.event.type === 'OrderRejected' ? t.event.data.refund : null,
    at: t.at.toISOString(),
  };
  await sql(tx, `INSERT INTO outbox (event_id, order_id, seq, type, payload) VALUES ($1, $2, $3, $4, $5)`, [
    eventId,
    t.orderId,
    version,
    t.event.type,
    JSON.stringify(message),
  ]);
  return version;
}

export interface JournalEntry {
  seq: number;
  type: string;
  data: unknown;
  at: string;
}

export async function readJournal(tx: EntityManager, orderId: string): Promise<JournalEntry[]> {
  const rows = await sql<{ seq: number; type: string; data: unknown; at: Date }>(
    tx,
    'SELECT seq, type, data, at FROM order_journal WHERE order_id = $1 ORDER BY seq',
    [orderId],
  );
  return rows.map((r) => ({ seq: r.seq, type: r.type, data: r.data, at: r.at.toISOString() }));
}
