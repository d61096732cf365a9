import { createHash, randomUUID } from 'node:crypto';
import { initialTransition, transition } from 'xstate';
import type { DataSource, EntityManager } from 'typeorm';
import { sql } from '../db/data-source.ts';
import { DomainError, InvalidTransitionError, NotFoundError, StaleVersionError, UnprocessableError } from '../errors.ts';
import {
  allowedCommands,
  orderMachine,
  sampleEvent,
  statusOf,
  type Address,
  type OrderCommand,
  type OrderItem,
  type OrderMachineEvent,
  type OrderSnapshot,
  type OrderStatus,
} from '../machines/order.machine.ts';
import type { PaymentGateway } from '../payment/payment-gateway.ts';
import {
  emittedEvents,
  loadOrder,
  orderQuery,
  persistTransition,
  readJournal,
  restoreSnapshot,
  type JournalEntry,
  type OrderRow,
} from './order-repository.ts';
import { canSee, requireRole, type Principal, type Role } from './principal.ts';
import { priceItems, type PlaceOrder } from './pricing.ts';

export type { PlaceOrder };

/** A command as the API receives it; the payload each needs is already validated. */
export type CommandRequest =
  | { type: 'pay' }
  | { type: 'accept' }
  | { type: 'reject'; reason: string }
  | { type: 'start-cooking' }
  | { type: 'finish-cooking' }
  | { type: 'cancel'; reason: string | null }
  | { type: 'pick' }
  | { type: 'confirm-delivery' };

export interface OrderView {
  id: string;
  status: OrderStatus;
  version: number;
  customerId: string;
  storeId: string;
  riderId: string | null;
  items: OrderItem[];
  total: number;
  address: Address;
  allowed: OrderCommand[];
  chargeId: string | null;
  refund: { refundId: string; amount: number } | null;
  reason: string | null;
  createdAt: string;
  updatedAt: string;
}

/** Which party sends each command. */
export const COMMAND_ROLE: Record<OrderCommand, Role> = {
  pay: 'customer',
  accept: 'store',
  reject: 'store',
  'start-cooking': 'store',
  'finish-cooking': 'store',
  cancel: 'customer',
  pick: 'rider',
  'confirm-delivery': 'customer',
};

export interface OrderActorDeps {
  db: DataSource;
  payments: PaymentGateway;
  clock?: () => Date;
  /** Called after a transaction with outbox rows commits, so the relay can publish at once. */
  onCommit?: () => void;
}

export const chargeKey = (orderId: string) => `order-${orderId}-charge`;
export const refundKey = (orderId: string) => `order-${orderId}-refund`;

export function toView(row: OrderRow): OrderView {
  return viewOf(restoreSnapshot(row), row);
}

/** The API's view of an order: its snapshot plus what only the row knows. */
function viewOf(
  snapshot: OrderSnapshot,
  row: Pick<OrderRow, 'id' | 'version' | 'refund_id' | 'refund_amount' | 'created_at' | 'updated_at'>,
): OrderView {
  const ctx = snapshot.context;
  return {
    id: row.id,
    status: statusOf(snapshot),
    version: row.version,
    customerId: ctx.customerId,
    storeId: ctx.storeId,
    riderId: ctx.riderId,
    items: ctx.items,
    total: ctx.total,
    address: ctx.address,
    allowed: allowedCommands(snapshot),
    chargeId: ctx.chargeId,
    refund: row.refund_id ? { refundId: row.refund_id, amount: row.refund_amount ?? 0 } : null,
    reason: ctx.rejectReason ?? ctx.cancelReason,
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
  };
}

export type OrderActors = ReturnType<typeof createOrderActors>;

/**
 * The order actors. Every command runs the same step: lock the order's row, restore its snapshot,
 * ask the machine, and commit snapshot + journal + outbox together. PostgreSQL's row lock is the
 * single writer per order, whichever replica takes the request.
 */
export function createOrderActors(deps: OrderActorDeps) {
  const { db, payments } = deps;
  const clock = deps.clock ?? (() => new Date());
  const committed = () => deps.onCommit?.();

  async function visibleRow(tx: EntityManager, who: Principal, id: string, forUpdate: boolean): Promise<OrderRow> {
    const row = await loadOrder(tx, id, forUpdate);
    if (!row || !canSee(who, { customerId: row.customer_id, storeId: row.store_id, riderId: row.rider_id, status: row.status })) {
      throw new NotFoundError('order', id);
    }
    return row;
  }

  async function place(who: Principal, input: PlaceOrder, idempotencyKey?: string): Promise<{ order: OrderView; replayed: boolean }> {
    requireRole(who, 'customer', 'place an order');
    const requestHash = createHash('sha256').update(JSON.stringify(input)).digest('hex');
    const result = await db.transaction(async (tx) => {
      if (idempotencyKey !== undefined) {
        // Serialises retries of one request; the loser then sees the winner's committed order.
        await sql(tx, 'SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [JSON.stringify([who.sub, idempotencyKey])]);
        const [earlier] = await sql<{ order_id: string; request_hash: string }>(
          tx,
          'SELECT order_id, request_hash FROM order_requests WHERE customer_id = $1 AND idempotency_key = $2',
          [who.sub, idempotencyKey],
        );
        if (earlier) {
          if (earlier.request_hash !== requestHash) {
            throw new UnprocessableError('this Idempotency-Key was already used with a different request', {
              idempotencyKey,
            });
          }
          return { order: toView((await loadOrder(tx, earlier.order_id, false))!), replayed: true };
        }
      }
      const items = await priceItems(tx, input);
      const orderId = randomUUID();
      const total = items.reduce((sum, i) => sum + i.lineTotal, 0);
      const [snapshot, actions] = initialTransition(orderMachine, {
        orderId,
        customerId: who.sub,
        storeId: input.storeId,
        items,
        total,
        address: input.address,
      });
      const [event] = emittedEvents(actions);
      if (!event) throw new DomainError('internal', 'the order machine announced no OrderPlaced event');
      const at = clock();
      await persistTransition(tx, { orderId, fromVersion: 0, snapshot, event, by: who, at });
      if (idempotencyKey !== undefined) {
        await sql(tx, 'INSERT INTO order_requests (customer_id, idempotency_key, request_hash, order_id) VALUES ($1, $2, $3, $4)', [
          who.sub,
          idempotencyKey,
          requestHash,
          orderId,
        ]);
      }
      const order = viewOf(snapshot, { id: orderId, version: 1, refund_id: null, refund_amount: null, created_at: at, updated_at: at });
      return { order, replayed: false };
    });
    if (!result.replayed) committed();
    return result;
  }

  /** Turns an API command into the machine's event, doing the synchronous payment call for `pay`. */
  async function machineEvent(who: Principal, row: OrderRow, request: CommandRequest, total: number): Promise<OrderMachineEvent> {
    switch (request.type) {
      case 'pay': {
        const { chargeId } = await payments.charge({ orderId: row.id, amount: total, idempotencyKey: chargeKey(row.id) });
        return { type: 'pay', chargeId };
      }
      case 'pick':
        return { type: 'pick', riderId: who.sub };
      case 'reject':
      case 'cancel':
      case 'accept':
      case 'start-cooking':
      case 'finish-cooking':
      case 'confirm-delivery':
        return request;
      default: {
        const exhaustive: never = request;
        return exhaustive;
      }
    }
  }

  async function command(who: Principal, orderId: string, request: CommandRequest, expectedVersion?: number): Promise<OrderView> {
    const view = await db.transaction(async (tx) => {
      const row = await visibleRow(tx, who, orderId, true);
      requireRole(who, COMMAND_ROLE[request.type], request.type);
      if (expectedVersion !== undefined && expectedVersion !== row.version) {
        throw new StaleVersionError(expectedVersion, row.version);
      }
      const snapshot = restoreSnapshot(row);
      if (!snapshot.can(sampleEvent(request.type))) {
        throw new InvalidTransitionError(request.type, statusOf(snapshot), allowedCommands(snapshot));
      }
      // The row stays locked during a payment call, so no other command can slip in between the
      // charge and the state that records it. The charge's idempotency key makes a retry after a
      // crash here find the same charge instead of making a second.
      const event = await machineEvent(who, row, request, snapshot.context.total);
      const [next, actions] = transition(orderMachine, snapshot, event);
      const [domainEvent, ...extra] = emittedEvents(actions);
      if (!domainEvent || extra.length > 0) {
        throw new DomainError('internal', `transition ${request.type} emitted ${actions.length} events instead of one`);
      }
      const at = clock();
      const version = await persistTransition(tx, { orderId, fromVersion: row.version, snapshot: next, event: domainEvent, by: who, at });
      return viewOf(next, { ...row, version, updated_at: at });
    });
    committed();
    return view;
  }

  async function get(who: Principal, orderId: string): Promise<OrderView> {
    return db.transaction(async (tx) => toView(await visibleRow(tx, who, orderId, false)));
  }

  async function events(who: Principal, orderId: string): Promise<JournalEntry[]> {
    return db.transaction(async (tx) => {
      await visibleRow(tx, who, orderId, false);
      return readJournal(tx, orderId);
    });
  }

  /** The caller's orders, newest first: a customer's own, a store's incoming, a rider's picked and pickable. */
  async function list(who: Principal, filter: { status?: OrderStatus; area?: string; limit: number }): Promise<OrderView[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    const param = (v: unknown) => {
      params.push(v);
      return `$${params.length}`;
    };
    switch (who.role) {
      case 'customer':
        where.push(`o.customer_id = ${param(who.sub)}`);
        break;
      case 'store':
        where.push(`o.store_id = ${param(who.sub)}`);
        break;
      case 'rider':
        where.push(`(o.rider_id = ${param(who.sub)} OR o.status = 'cooked')`);
        break;
      case 'admin':
        break;
      default: {
        const exhaustive: never = who.role;
        throw new Error(`unknown role ${String(exhaustive)}`);
      }
    }
    if (filter.status) where.push(`o.status = ${param(filter.status)}`);
    if (filter.area) where.push(`o.area = ${param(filter.area)}`);
    const text = orderQuery(where.length > 0 ? where.join(' AND ') : 'true', param(filter.limit));
    const rows: OrderRow[] = await db.query(text, params);
    return rows.map(toView);
  }

  return { place, command, get, events, list };
}
