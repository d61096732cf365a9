import { randomUUID } from 'node:crypto';
import type { Sql } from '../db/pg.ts';
import { DomainError } from '../errors.ts';
import {
  ORDER_MACHINE_ID,
  ORDER_MACHINE_VERSION,
  orderMachine,
  refundOwed,
  statusOf,
  timerOf,
  type OrderDomainEvent,
  type OrderDomainEventType,
  type OrderSnapshot,
  type OrderTimerDelay,
  type OrderTimerEvent,
} from '../machines/order.machine.ts';
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

/** A refund the transition owes, recorded with it and performed later by the refund worker. */
export interface RefundIntent {
  key: string;
  chargeId: string;
  amount: number;
  reason: 'cancelled' | 'rejected' | 'orphaned';
}

/** A durable timer the transition starts. */
export interface TimerIntent {
  id: string;
  event: OrderTimerEvent;
  fireAt: Date;
}

export const refundKey = (orderId: string, chargeId: string) => `order-${orderId}-refund-${chargeId}`;
export const timerId = (orderId: string, version: number, event: OrderTimerEvent) => `${orderId}:${version}:${event}`;

/** What the runtime records beside a transition: the machine's intents turned into rows. */
export function intentsOf(
  orderId: string,
  version: number,
  snapshot: OrderSnapshot,
  event: OrderDomainEvent,
  at: Date,
  delays: Readonly<Record<OrderTimerDelay, number>>,
): { refunds: RefundIntent[]; timers: TimerIntent[] } {
  const refunds: RefundIntent[] = [];
  const owed = refundOwed(event);
  if (owed) {
    refunds.push({
      key: refundKey(orderId, owed.chargeId),
      chargeId: owed.chargeId,
      amount: owed.amount,
      reason: event.type === 'OrderCancelled' ? 'cancelled' : 'rejected',
    });
  }
  const timers: TimerIntent[] = [];
  const timer = timerOf(statusOf(snapshot));
  if (timer) {
    timers.push({ id: timerId(orderId, version, timer.event), event: timer.event, fireAt: new Date(at.getTime() + delays[timer.delay]) });
  }
  return { refunds, timers };
}

export interface Transition {
  orderId: string;
  /** The version the order had before this transition; 0 when it is being created. */
  fromVersion: number;
  snapshot: OrderSnapshot;
  event: OrderDomainEvent;
  by: Actor;
  /** The request or event that caused this one. */
  causationId: string | null;
  at: Date;
  refunds: readonly RefundIntent[];
  timers: readonly TimerIntent[];
}

export interface Committed {
  eventId: string;
  version: number;
}

const journalParams = (t: Transition, version: number, eventId: string) => [
  t.orderId,
  version,
  eventId,
  t.event.type,
  JSON.stringify(t.event.data),
  JSON.stringify({ sub: t.by.sub, role: t.by.role }),
  t.causationId,
  t.at,
];

const intentParams = (t: Transition) => [
  JSON.stringify(t.refunds.map((r) => ({ key: r.key, charge_id: r.chargeId, amount: r.amount, reason: r.reason }))),
  JSON.stringify(t.timers.map((tm) => ({ id: tm.id, event: tm.event, fire_at: tm.fireAt.toISOString() }))),
];

// $1 order, $2 version (= seq), $3 event id, $4 type, $5 data, $6 actor, $7 causation, $8 at, $9 refunds, $10 timers
const INTENTS = `
  ins_journal AS (
    INSERT INTO order_journal (order_id, seq, event_id, type, data, actor, causation_id, at)
    SELECT $1::uuid, $2::int, $3::uuid, $4::text, $5::jsonb, $6::jsonb, $7::text, $8::timestamptz FROM changed
  ),
  ins_refunds AS (
    INSERT INTO refunds (idempotency_key, order_id, charge_id, amount, reason, status, requested_at, due_at)
    SELECT r.key, $1::uuid, r.charge_id, r.amount, r.reason, 'pending', $8::timestamptz, $8::timestamptz
    FROM changed, jsonb_to_recordset($9::jsonb) AS r(key text, charge_id text, amount integer, reason text)
    ON CONFLICT DO NOTHING
  ),
  ins_timers AS (
    INSERT INTO timers (id, order_id, version, event, fire_at, due_at)
    SELECT t.id, $1::uuid, $2::int, t.event, t.fire_at, t.fire_at
    FROM changed, jsonb_to_recordset($10::jsonb) AS t(id text, event text, fire_at timestamptz)
    ON CONFLICT DO NOTHING
  )`;

const UPDATE_TRANSITION = `
  WITH changed AS (
    UPDATE orders SET version = $2::int, status = $11::text, snapshot = $12::jsonb, rider_id = $13::text, updated_at = $8::timestamptz
    WHERE id = $1::uuid AND version = $14::int RETURNING id
  ),${INTENTS}
  SELECT count(*)::int AS n FROM changed`;

const INSERT_ORDER = `
  WITH changed AS (
    INSERT INTO orders (id, machine_id, machine_version, version, status, snapshot, customer_id, store_id, rider_id, area, created_at, updated_at)
    VALUES ($1::uuid, $11::text, $12::int, $2::int, $13::text, $14::jsonb, $15::text, $16::text, NULL, $17::text, $8::timestamptz, $8::timestamptz) RETURNING id
  ),${INTENTS}
  SELECT count(*)::int AS n FROM changed`;

/**
 * Persists one transition in one statement: the snapshot with its new version (checked against
 * the version it was judged on), the journal row, and the refunds and timers it owes. Returns
 * undefined when the order moved on meanwhile: the caller judges again on the fresh state.
 */
export async function commitTransition(sql: Sql, t: Transition): Promise<Committed | undefined> {
  const version = t.fromVersion + 1;
  const eventId = randomUUID();
  const ctx = t.snapshot.context;
  const persisted = JSON.stringify(orderMachine.getPersistedSnapshot(t.snapshot));
  const base = [...journalParams(t, version, eventId), ...intentParams(t)];
  const [row] =
    t.fromVersion === 0
      ? await sql.query<{ n: number }>(INSERT_ORDER, [
          ...base,
          ORDER_MACHINE_ID,
          ORDER_MACHINE_VERSION,
          statusOf(t.snapshot),
          persisted,
          ctx.customerId,
          ctx.storeId,
          ctx.address.area,
        ])
      : await sql.query<{ n: number }>(UPDATE_TRANSITION, [...base, statusOf(t.snapshot), persisted, ctx.riderId, t.fromVersion]);
  return row && row.n === 1 ? { eventId, version } : undefined;
}

export interface JournalEntry {
  eventId: string;
  seq: number;
  type: OrderDomainEventType;
  data: Record<string, unknown>;
  occurredAt: string;
  /** Same as occurredAt; kept for clients of the first API version. */
  at: string;
  causationId: string | null;
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
  at: Date;
}

export const JOURNAL_COLUMNS = 'j.event_id, j.order_id, j.seq, j.type, j.data, j.actor, j.causation_id, j.at';

export const toJournalEntry = (r: JournalRow): JournalEntry => ({
  eventId: r.event_id,
  seq: r.seq,
  type: r.type,
  data: r.data,
  occurredAt: r.at.toISOString(),
  at: r.at.toISOString(),
  causationId: r.causation_id,
  actor: r.actor,
});

export async function readJournal(sql: Sql, orderId: string): Promise<JournalEntry[]> {
  const rows = await sql.query<JournalRow>(`SELECT ${JOURNAL_COLUMNS} FROM order_journal j WHERE j.order_id = $1 ORDER BY j.seq`, [orderId]);
  return rows.map(toJournalEntry);
}
