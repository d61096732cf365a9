import { createHash, randomUUID } from 'node:crypto';
import type { Database, Sql } from '../db/pg.ts';
import {
  AlreadyPickedError,
  DomainError,
  InvalidTransitionError,
  NotFoundError,
  StaleVersionError,
  TooManyUnpaidOrdersError,
  UnprocessableError,
} from '../errors.ts';
import type { OrderCommand, OrderDomainEvent, OrderTimerDelay } from '../machines/order/contract.ts';
import { emittedEvents, type OrderMachineInput, type OrderMachineVersion, type OrderSnapshot } from '../machines/order/define.ts';
import type { EventRef } from './consumers/types.ts';
import {
  commitTransition,
  intentsOf,
  readJournal,
  type Actor,
  type Cause,
  type OrderRow,
  type RefundIntent,
  type TimerIntent,
  type Transition,
} from './order-repository.ts';
import { REFUND_JOIN, refundViewOf, viewOf, type OrderView, type RefundColumns, type RefundView } from './order-view.ts';
import { judgeable, type JudgeableOrder, type OrderStore } from './order-store.ts';
import { canSee, requireRole, type Principal, type Role } from './principal.ts';
import { journalShownTo, orderShownTo, type JournalAnswer } from './privacy.ts';
import { menuLookup, priceItems, type MenuLookup, type PlaceOrder } from '../catalog/pricing.ts';
import type { WorkPrompt } from './work.ts';
import { activeTraceparent, annotate, ATTR, inSpan } from '../tracing.ts';

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
  /** The request's ids: the service's (the causation id of the event the command records) and the client's. */
  cause?: Cause;
}

export interface OrderActorDeps {
  db: Database;
  /** How orders are priced (batched lookups of the menus as they are now). */
  menus?: MenuLookup;
  /** Batched, cached reads and writes of orders. */
  store: OrderStore;
  clock?: () => Date;
  /** The durable timers' delays, by configuration variable. */
  delays: Readonly<Record<OrderTimerDelay, number>>;
  /** After a commit: the new event goes to the consumers' queues (best effort; the sweeper is the backstop). */
  publish(ref: EventRef): void;
  prompt: WorkPrompt;
}

/** What the machine decided: the next snapshot of the machine that judged, and the one event it emitted. */
export interface Decided {
  machine: OrderMachineVersion;
  next: OrderSnapshot;
  event: OrderDomainEvent;
}

/** The row's identity as a write checks it: the order's version and the machine version it is stored with. */
type StoredAt = Pick<OrderRow, 'id' | 'version' | 'machine_version'>;

/** A durable timer due now (a row of `timers`). */
export interface TimerToFire {
  id: string;
  orderId: string;
  /** The order's version that started it. */
  version: number;
  /** The event, named as the machine version that started it knew it. */
  event: string;
  machineVersion: number;
}

/** How often a command judges again after another writer moved the order first. */
const MAX_ATTEMPTS = 12;

const SYSTEM_TIMER: Actor = { sub: 'timer', role: 'system' };

/** A command sent without a request behind it (tests, scripts). */
export const NO_CAUSE: Cause = { causationId: null, clientRequestId: null };

export type OrderSteps = ReturnType<typeof createOrderSteps>;

/** Who may see an order; a rider who lost a pick race learns that, not "not found". Throws to refuse. */
export function requireVisible(who: Principal, row: OrderRow | undefined, orderId: string, command?: OrderCommand): OrderRow {
  if (row && canSee(who, { customerId: row.customer_id, storeId: row.store_id, riderId: row.rider_id, status: row.status })) return row;
  if (row && command === 'pick' && who.role === 'rider' && row.rider_id !== null) throw new AlreadyPickedError(orderId);
  throw new NotFoundError('order', orderId);
}

/**
 * The actor step, shared by commands, payments and timers: read the order (from this replica's
 * cache or one batched statement, no lock), let the machine judge, and persist the result with a
 * version check in one statement shared with the other commands of the moment. When another
 * replica wrote first, the check fails and the step judges again on fresh state: PostgreSQL is the
 * single writer per order, and no I/O is ever redone on a retry.
 */
export function createOrderSteps(deps: OrderActorDeps) {
  const { db, store } = deps;
  const clock = deps.clock ?? (() => new Date());

  /** The order as PostgreSQL has it now, if `who` may see it. */
  async function visibleRow(who: Principal, orderId: string, command?: OrderCommand): Promise<OrderRow> {
    return requireVisible(who, (await store.load(orderId, true))?.row, orderId, command);
  }

  /** Asks the machine; refuses with the allowed list when the state does not take the event. */
  function decide(order: Pick<JudgeableOrder, 'machine' | 'snapshot'>, event: OrderMachineInput, command: string): Decided {
    const { machine, snapshot } = order;
    if (!machine.accepts(snapshot, event.type)) throw new InvalidTransitionError(command, machine.statusOf(snapshot), machine.allowedCommands(snapshot));
    const [next, actions] = machine.transition(snapshot, event);
    const [domainEvent, ...extra] = emittedEvents(actions);
    if (!domainEvent || extra.length > 0) {
      throw new DomainError('internal', `transition ${event.type} emitted ${actions.length} events instead of one`);
    }
    return { machine, next, event: domainEvent };
  }

  /** Hands the committed event to the bus and prompts the work it recorded. */
  function afterCommit(orderId: string, version: number, intents: { refunds: readonly RefundIntent[]; timers: readonly TimerIntent[] }): void {
    deps.publish({ orderId, seq: version });
    if (intents.refunds.length > 0) deps.prompt.schedule('refund', intents.refunds.map((r) => r.key));
    for (const t of intents.timers) deps.prompt.schedule('timer', [t.id], t.fireAt);
  }

  function transitionOf(row: StoredAt, decided: Decided, by: Actor, cause: Cause): Transition {
    const at = clock();
    return {
      orderId: row.id,
      fromVersion: row.version,
      fromMachineVersion: row.machine_version,
      machine: decided.machine,
      snapshot: decided.next,
      event: decided.event,
      by,
      cause,
      at,
      ...intentsOf(row.id, row.version + 1, decided.machine, decided.next, decided.event, at, deps.delays),
      traceparent: activeTraceparent(),
    };
  }

  /**
   * Persists a decided transition inside the caller's open transaction `tx`; `deferred` collects
   * what must run after its commit. Undefined when the order moved past `row.version` meanwhile.
   */
  async function persistIn(
    tx: Sql,
    row: StoredAt,
    decided: Decided,
    by: Actor,
    cause: Cause,
    deferred: (() => void)[],
  ): Promise<{ version: number; at: Date } | undefined> {
    const t = transitionOf(row, decided, by, cause);
    let committed = await commitTransition(tx, t, store.rules);
    // A new order admitted on a count another statement was creating: its next statement sees it.
    if (t.unwritten === 'retry') committed = await commitTransition(tx, t, store.rules);
    if (t.unwritten === 'too-many') throw new TooManyUnpaidOrdersError(store.rules.maxUnpaidOrders);
    if (!committed) return undefined;
    deferred.push(() => {
      store.remember(t, committed);
      afterCommit(row.id, committed.version, t);
    });
    return { version: committed.version, at: t.at };
  }

  function refundOf(decided: Decided): RefundView | null {
    const owed = 'refund' in decided.event.data ? decided.event.data.refund : null;
    return owed ? { status: 'pending', amount: owed.amount, refundId: null, refundedAt: null } : null;
  }

  /**
   * Judges and persists until the result is written. `check` and `decideFor` throw to refuse and
   * must be pure (no I/O): they run again after a lost race, and a refusal judged on this replica's
   * cache is confirmed on a fresh read before it is answered.
   */
  async function step(
    orderId: string,
    check: (row: OrderRow | undefined) => OrderRow,
    decideFor: (row: OrderRow, order: JudgeableOrder) => Decided,
    by: Actor,
    cause: Cause,
    opts: { fresh?: boolean } = {},
  ): Promise<OrderView> {
    let fresh = opts.fresh ?? false;
    for (let attempt = 1; ; attempt += 1) {
      const loaded = await store.load(orderId, fresh);
      let decided: Decided;
      let row: OrderRow;
      try {
        row = check(loaded?.row);
        // Who may see the order is checked first: one that is not yours stays not found.
        decided = decideFor(row, judgeable(loaded!));
      } catch (err) {
        if (loaded?.cached) {
          fresh = true; // confirm on what PostgreSQL has before refusing
          continue;
        }
        throw err;
      }
      const t = transitionOf(row, decided, by, cause);
      const committed = await store.commit(t);
      store.noteOutcome(loaded!.cached, committed !== undefined);
      if (committed) {
        afterCommit(orderId, committed.version, t);
        return viewOf(decided.machine, decided.next, { ...row, version: committed.version, updated_at: t.at }, refundOf(decided));
      }
      fresh = true;
      if (attempt >= MAX_ATTEMPTS) throw new DomainError('internal', `order ${orderId} kept changing while a command was judged`);
    }
  }

  /** Places a new order (version 0 → 1) through the batched commit. */
  async function create(decided: Decided, orderId: string, by: Actor, cause: Cause) {
    const t = transitionOf({ id: orderId, version: 0, machine_version: decided.machine.version }, decided, by, cause);
    let committed = await store.commit(t);
    // A new order admitted on a count another statement was creating: its next statement sees it.
    if (t.unwritten === 'retry') committed = await store.commit(t);
    if (t.unwritten === 'too-many') throw new TooManyUnpaidOrdersError(store.rules.maxUnpaidOrders);
    if (!committed) throw new DomainError('internal', `order ${orderId} already existed`);
    afterCommit(orderId, committed.version, t);
    return { version: committed.version, at: t.at };
  }

  const menus = deps.menus ?? menuLookup(db);
  return { db, store, machines: store.machines, menus, clock, visibleRow, decide, transitionOf, persistIn, create, step, afterCommit };
}

export type OrderActors = ReturnType<typeof createOrderActors>;

/** Pays an order (see src/payment/pay.ts): the one command that calls out. */
export type PayCommand = (who: Principal, orderId: string, ctx: CommandContext) => Promise<OrderView>;

/** The order actors: placement, commands, timers and the strongly consistent reads. */
export function createOrderActors(steps: OrderSteps, pay: PayCommand) {
  const { db, clock } = steps;

  function place(who: Principal, input: PlaceOrder, idempotencyKey?: string, cause: Cause = NO_CAUSE): Promise<{ order: OrderView; replayed: boolean }> {
    return inSpan('order.place', { attributes: { [ATTR.command]: 'place' } }, async (span) => {
      const placed = await placeOrder(who, input, idempotencyKey, cause);
      annotate(span, { [ATTR.orderId]: placed.order.id, [ATTR.orderVersion]: placed.order.version, 'baedal.replayed': placed.replayed });
      return placed;
    });
  }

  async function placeOrder(who: Principal, input: PlaceOrder, idempotencyKey: string | undefined, cause: Cause): Promise<{ order: OrderView; replayed: boolean }> {
    requireRole(who, 'customer', 'place an order');
    const requestHash = createHash('sha256').update(JSON.stringify(input)).digest('hex');
    const deferred: (() => void)[] = [];
    const create = async (sql: Sql): Promise<OrderView> => {
      const items = await priceItems(sql, input, sql === db ? steps.menus : undefined);
      const orderId = randomUUID();
      const total = items.reduce((sum, i) => sum + i.lineTotal, 0);
      const machine = steps.machines.current;
      const [snapshot, actions] = machine.initial({
        orderId,
        customerId: who.sub,
        storeId: input.storeId,
        items,
        total,
        address: input.address,
      });
      const [event] = emittedEvents(actions);
      if (!event) throw new DomainError('internal', 'the order machine announced no OrderPlaced event');
      const decided = { machine, next: snapshot, event };
      const saved =
        sql === db
          ? await steps.create(decided, orderId, who, cause)
          : await steps.persistIn(sql, { id: orderId, version: 0, machine_version: machine.version }, decided, who, cause, deferred);
      if (!saved) throw new DomainError('internal', `order ${orderId} already existed`);
      return viewOf(machine, snapshot, { id: orderId, version: saved.version, created_at: saved.at, updated_at: saved.at }, null);
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
  function machineEvent(who: Principal, request: Exclude<CommandRequest, { type: 'pay' }>): OrderMachineInput {
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

  function command(who: Principal, orderId: string, request: CommandRequest, ctx: CommandContext = {}): Promise<OrderView> {
    return inSpan(`order.${request.type}`, { attributes: { [ATTR.orderId]: orderId, [ATTR.command]: request.type } }, async (span) => {
      const order = await judged(who, orderId, request, ctx);
      annotate(span, { [ATTR.orderVersion]: order.version });
      return order;
    });
  }

  async function judged(who: Principal, orderId: string, request: CommandRequest, ctx: CommandContext): Promise<OrderView> {
    if (request.type === 'pay') return orderShownTo(who, await pay(who, orderId, ctx));
    const event = machineEvent(who, request);
    const order = await steps.step(
      orderId,
      (found) => {
        const row = requireVisible(who, found, orderId, request.type);
        requireRole(who, COMMAND_ROLE[request.type], request.type);
        if (ctx.expectedVersion !== undefined && ctx.expectedVersion !== row.version) throw new StaleVersionError(ctx.expectedVersion, row.version);
        return row;
      },
      (_row, order) => steps.decide(order, event, request.type),
      who,
      ctx.cause ?? NO_CAUSE,
    );
    return orderShownTo(who, order);
  }

  /**
   * Fires a durable timer: the event is sent only if the order is still at the version that
   * started the timer. The timer names its event as the machine version that started it knew it;
   * an order moved to a later version since is sent the event under that version's name (the
   * migrations' renames), and a timer whose event the later version has no equivalent of is
   * closed as moved on. Returns whether it fired or found the order moved on; throws
   * `machine_version_ahead` when the order runs a newer version than this replica (the timer
   * stays due for a replica that runs it).
   */
  function fireTimer(timer: TimerToFire): Promise<'fired' | 'moved-on'> {
    return inSpan('order.timer', { attributes: { [ATTR.orderId]: timer.orderId, [ATTR.command]: timer.event } }, async (span) => {
      const outcome = await fire(timer);
      annotate(span, { [ATTR.workOutcome]: outcome });
      return outcome;
    });
  }

  async function fire(timer: TimerToFire): Promise<'fired' | 'moved-on'> {
    class MovedOn extends Error {}
    try {
      await steps.step(
        timer.orderId,
        (row) => {
          if (!row || row.version !== timer.version) throw new MovedOn();
          return row;
        },
        (_row, order) => {
          const event = steps.machines.eventIn(timer.event, timer.machineVersion, order.machine.version);
          if (event === null || !order.machine.accepts(order.snapshot, event)) throw new MovedOn();
          return steps.decide(order, { type: event }, event);
        },
        SYSTEM_TIMER,
        { causationId: timer.id, clientRequestId: null },
        { fresh: true },
      );
      return 'fired';
    } catch (err) {
      if (err instanceof MovedOn) return 'moved-on';
      throw err;
    }
  }

  /** The order as the API shows it, judged by its own machine version (a read moves nothing). */
  function shown(row: OrderRow & RefundColumns): OrderView {
    const { machine, snapshot } = steps.machines.restore(row);
    return viewOf(machine, snapshot, row, refundViewOf(row));
  }

  async function readView(sql: Sql, orderId: string): Promise<OrderView> {
    const [row] = await sql.query<OrderRow & RefundColumns>(
      `SELECT o.*, rf.* FROM orders o ${REFUND_JOIN} WHERE o.id = $1`,
      [orderId],
    );
    if (!row) throw new NotFoundError('order', orderId);
    return shown(row);
  }

  async function get(who: Principal, orderId: string): Promise<OrderView> {
    const [row] = await db.query<OrderRow & RefundColumns>(`SELECT o.*, rf.* FROM orders o ${REFUND_JOIN} WHERE o.id = $1`, [orderId]);
    if (!row || !canSee(who, { customerId: row.customer_id, storeId: row.store_id, riderId: row.rider_id, status: row.status })) {
      throw new NotFoundError('order', orderId);
    }
    return orderShownTo(who, shown(row));
  }

  async function events(who: Principal, orderId: string): Promise<JournalAnswer[]> {
    await steps.visibleRow(who, orderId);
    return journalShownTo(who, await readJournal(db, orderId));
  }

  /** The caller's orders, newest first: a customer's own, a store's incoming, a rider's picked and pickable. */
  async function list(who: Principal, filter: { status?: string; area?: string; limit: number }): Promise<OrderView[]> {
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
    return rows.map((row) => orderShownTo(who, shown(row)));
  }

  return { place, command, fireTimer, get, events, list, clock };
}
