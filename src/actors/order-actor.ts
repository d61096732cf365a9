import { createHash, randomUUID } from 'node:crypto';
import { initialTransition, transition } from 'xstate';
import type { Database, Sql } from '../db/pg.ts';
import { AlreadyPickedError, DomainError, InvalidTransitionError, NotFoundError, StaleVersionError, UnprocessableError } from '../errors.ts';
import {
  allowedCommands,
  orderMachine,
  statusOf,
  type OrderCommand,
  type OrderDomainEvent,
  type OrderMachineEvent,
  type OrderSnapshot,
  type OrderStatus,
  type OrderTimerDelay,
  type OrderTimerEvent,
} from '../machines/order.machine.ts';
import type { EventRef } from './consumers.ts';
import {
  commitTransition,
  emittedEvents,
  intentsOf,
  loadOrder,
  readJournal,
  restoreSnapshot,
  type Actor,
  type JournalEntry,
  type OrderRow,
  type RefundIntent,
  type TimerIntent,
} from './order-repository.ts';
import { REFUND_JOIN, refundViewOf, viewOf, type OrderView, type RefundColumns, type RefundView } from './order-view.ts';
import { canSee, requireRole, type Principal, type Role } from './principal.ts';
import { priceItems, type PlaceOrder } from './pricing.ts';
import type { WorkPrompt } from './work.ts';

export type { OrderView, PlaceOrder, RefundView };

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

/** What the API knows about the request behind a command, for the journal. */
export interface CommandContext {
  /** `If-Match`: the version the caller last saw. */
  expectedVersion?: number;
  /** The request id: the causation id of the event the command records. */
  causationId?: string;
}

export interface OrderActorDeps {
  db: Database;
  clock?: () => Date;
  /** The durable timers' delays, by configuration variable. */
  delays: Readonly<Record<OrderTimerDelay, number>>;
  /** After a commit: the new event goes to the consumers' queues (best effort; the sweeper is the backstop). */
  publish(ref: EventRef): void;
  prompt: WorkPrompt;
}

/** How often a command judges again after another writer moved the order first. */
const MAX_ATTEMPTS = 12;

const SYSTEM_TIMER: Actor = { sub: 'timer', role: 'system' };

export type OrderSteps = ReturnType<typeof createOrderSteps>;

/**
 * The actor step, shared by commands, payments and timers: read the order (one statement, no
 * lock), let the machine judge, and persist the result with a version check in one statement.
 * When another replica wrote first, the check fails and the step judges again on fresh state:
 * PostgreSQL is the single writer per order, and no I/O is ever redone on a retry.
 */
export function createOrderSteps(deps: OrderActorDeps) {
  const { db } = deps;
  const clock = deps.clock ?? (() => new Date());

  /** The order if `who` may see it; a rider who lost a pick race learns that, not "not found". */
  async function visibleRow(who: Principal, orderId: string, command?: OrderCommand): Promise<OrderRow> {
    const row = await loadOrder(db, orderId);
    if (row && canSee(who, { customerId: row.customer_id, storeId: row.store_id, riderId: row.rider_id, status: row.status })) return row;
    if (row && command === 'pick' && who.role === 'rider' && row.rider_id !== null) throw new AlreadyPickedError(orderId);
    throw new NotFoundError('order', orderId);
  }

  /** Asks the machine; refuses with the allowed list when the state does not take the event. */
  function decide(snapshot: OrderSnapshot, event: OrderMachineEvent, command: string): { next: OrderSnapshot; event: OrderDomainEvent } {
    if (!snapshot.can(event)) throw new InvalidTransitionError(command, statusOf(snapshot), allowedCommands(snapshot));
    const [next, actions] = transition(orderMachine, snapshot, event);
    const [domainEvent, ...extra] = emittedEvents(actions);
    if (!domainEvent || extra.length > 0) {
      throw new DomainError('internal', `transition ${event.type} emitted ${actions.length} events instead of one`);
    }
    return { next, event: domainEvent };
  }

  /** Hands the committed event to the bus and prompts the work it recorded. */
  function afterCommit(orderId: string, version: number, intents: { refunds: readonly RefundIntent[]; timers: readonly TimerIntent[] }): void {
    deps.publish({ orderId, seq: version });
    if (intents.refunds.length > 0) deps.prompt.schedule('refund', intents.refunds.map((r) => r.key));
    for (const t of intents.timers) deps.prompt.schedule('timer', [t.id], t.fireAt);
  }

  /**
   * Persists a decided transition; undefined when the order moved past `row.version` meanwhile.
   * `sql` may be an open transaction (the caller then runs afterCommit's work itself by passing
   * `deferred`), or the pool for a single-statement commit.
   */
  async function persist(
    sql: Sql,
    row: Pick<OrderRow, 'id' | 'version'>,
    decided: { next: OrderSnapshot; event: OrderDomainEvent },
    by: Actor,
    causationId: string | null,
    deferred?: (() => void)[],
  ): Promise<{ version: number; at: Date } | undefined> {
    const at = clock();
    const version = row.version + 1;
    const intents = intentsOf(row.id, version, decided.next, decided.event, at, deps.delays);
    const committed = await commitTransition(sql, {
      orderId: row.id,
      fromVersion: row.version,
      snapshot: decided.next,
      event: decided.event,
      by,
      causationId,
      at,
      ...intents,
    });
    if (!committed) return undefined;
    const after = () => afterCommit(row.id, committed.version, intents);
    if (deferred) deferred.push(after);
    else after();
    return { version: committed.version, at };
  }

  function refundOf(decided: { event: OrderDomainEvent }, at: Date): RefundView | null {
    const owed = 'refund' in decided.event.data ? decided.event.data.refund : null;
    return owed ? { status: 'pending', amount: owed.amount, refundId: null, refundedAt: null } : null;
  }

  /**
   * Runs `decideFor` on fresh state until its result is persisted. `decideFor` throws to refuse;
   * it must be pure (no I/O), since it runs again after a lost race.
   */
  async function step(
    orderId: string,
    load: () => Promise<OrderRow>,
    decideFor: (row: OrderRow, snapshot: OrderSnapshot) => { next: OrderSnapshot; event: OrderDomainEvent },
    by: Actor,
    causationId: string | null,
  ): Promise<OrderView> {
    for (let attempt = 1; ; attempt += 1) {
      const row = await load();
      const snapshot = restoreSnapshot(row);
      const decided = decideFor(row, snapshot);
      const saved = await persist(db, row, decided, by, causationId);
      if (saved) return viewOf(decided.next, { ...row, version: saved.version, updated_at: saved.at }, refundOf(decided, saved.at));
      if (attempt >= MAX_ATTEMPTS) throw new DomainError('internal', `order ${orderId} kept changing while a command was judged`);
    }
  }

  return { db, clock, visibleRow, decide, persist, step, afterCommit };
}

export type OrderActors = ReturnType<typeof createOrderActors>;

/** Pays an order (see src/payment/pay.ts): the one command that calls out. */
export type PayCommand = (who: Principal, orderId: string, ctx: CommandContext) => Promise<OrderView>;

/** The order actors: placement, commands, timers and the strongly consistent reads. */
export function createOrderActors(steps: OrderSteps, pay: PayCommand) {
  const { db, clock } = steps;

  async function place(
    who: Principal,
    input: PlaceOrder,
    idempotencyKey?: string,
    causationId?: string,
  ): Promise<{ order: OrderView; replayed: boolean }> {
    requireRole(who, 'customer', 'place an order');
    const requestHash = createHash('sha256').update(JSON.stringify(input)).digest('hex');
    const deferred: (() => void)[] = [];
    const create = async (sql: Sql): Promise<OrderView> => {
      const items = await priceItems(sql, input);
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
      const saved = await steps.persist(sql, { id: orderId, version: 0 }, { next: snapshot, event }, who, causationId ?? null, deferred);
      if (!saved) throw new DomainError('internal', `order ${orderId} already existed`);
      return viewOf(snapshot, { id: orderId, version: saved.version, created_at: saved.at, updated_at: saved.at }, null);
    };

    if (idempotencyKey === undefined) {
      const order = await create(db);
      for (const run of deferred) run();
      return { order, replayed: false };
    }
    const result = await db.transaction(async (tx) => {
      // Serialises retries of one request; the loser then sees the winner's committed order.
      await tx.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [JSON.stringify([who.sub, idempotencyKey])]);
      const [earlier] = await tx.query<{ order_id: string; request_hash: string }>(
        'SELECT order_id, request_hash FROM order_requests WHERE customer_id = $1 AND idempotency_key = $2',
        [who.sub, idempotencyKey],
      );
      if (earlier) {
        if (earlier.request_hash !== requestHash) {
          throw new UnprocessableError('this Idempotency-Key was already used with a different request', { idempotencyKey });
        }
        return { order: await readView(tx, earlier.order_id), replayed: true };
      }
      const order = await create(tx);
      await tx.query('INSERT INTO order_requests (customer_id, idempotency_key, request_hash, order_id) VALUES ($1, $2, $3, $4)', [
        who.sub,
        idempotencyKey,
        requestHash,
        order.id,
      ]);
      return { order, replayed: false };
    });
    for (const run of deferred) run();
    return result;
  }

  /** The machine event for an API command (pay is handled by the payment module). */
  function machineEvent(who: Principal, request: Exclude<CommandRequest, { type: 'pay' }>): OrderMachineEvent {
    switch (request.type) {
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

  async function command(who: Principal, orderId: string, request: CommandRequest, ctx: CommandContext = {}): Promise<OrderView> {
    if (request.type === 'pay') return pay(who, orderId, ctx);
    const event = machineEvent(who, request);
    return steps.step(
      orderId,
      async () => {
        const row = await steps.visibleRow(who, orderId, request.type);
        requireRole(who, COMMAND_ROLE[request.type], request.type);
        if (ctx.expectedVersion !== undefined && ctx.expectedVersion !== row.version) throw new StaleVersionError(ctx.expectedVersion, row.version);
        return row;
      },
      (_row, snapshot) => steps.decide(snapshot, event, request.type),
      who,
      ctx.causationId ?? null,
    );
  }

  /**
   * Fires a durable timer: the event is sent only if the order is still at the version that
   * started the timer. Returns whether it fired or found the order moved on.
   */
  async function fireTimer(timer: { id: string; orderId: string; version: number; event: OrderTimerEvent }): Promise<'fired' | 'moved-on'> {
    class MovedOn extends Error {}
    try {
      await steps.step(
        timer.orderId,
        async () => {
          const row = await loadOrder(db, timer.orderId);
          if (!row || row.version !== timer.version) throw new MovedOn();
          return row;
        },
        (_row, snapshot) => {
          if (!snapshot.can({ type: timer.event })) throw new MovedOn();
          return steps.decide(snapshot, { type: timer.event }, timer.event);
        },
        SYSTEM_TIMER,
        timer.id,
      );
      return 'fired';
    } catch (err) {
      if (err instanceof MovedOn) return 'moved-on';
      throw err;
    }
  }

  async function readView(sql: Sql, orderId: string): Promise<OrderView> {
    const [row] = await sql.query<OrderRow & RefundColumns>(
      `SELECT o.*, rf.* FROM orders o ${REFUND_JOIN} WHERE o.id = $1`,
      [orderId],
    );
    if (!row) throw new NotFoundError('order', orderId);
    return viewOf(restoreSnapshot(row), row, refundViewOf(row));
  }

  async function get(who: Principal, orderId: string): Promise<OrderView> {
    const [row] = await db.query<OrderRow & RefundColumns>(`SELECT o.*, rf.* FROM orders o ${REFUND_JOIN} WHERE o.id = $1`, [orderId]);
    if (!row || !canSee(who, { customerId: row.customer_id, storeId: row.store_id, riderId: row.rider_id, status: row.status })) {
      throw new NotFoundError('order', orderId);
    }
    return viewOf(restoreSnapshot(row), row, refundViewOf(row));
  }

  async function events(who: Principal, orderId: string): Promise<JournalEntry[]> {
    await steps.visibleRow(who, orderId);
    return readJournal(db, orderId);
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
    const rows = await db.query<OrderRow & RefundColumns>(
      `SELECT o.*, rf.* FROM orders o ${REFUND_JOIN}
       WHERE ${where.length > 0 ? where.join(' AND ') : 'true'}
       ORDER BY o.created_at DESC, o.id LIMIT ${param(filter.limit)}`,
      params,
    );
    return rows.map((row) => viewOf(restoreSnapshot(row), row, refundViewOf(row)));
  }

  return { place, command, fireTimer, get, events, list, clock };
}
