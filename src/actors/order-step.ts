import { handleType, retry } from 'cockatiel';
import type { Database, Sql } from '../db/pg.ts';
import { AlreadyPickedError, DomainError, InvalidTransitionError, NotFoundError, StaleVersionError, TooManyUnpaidOrdersError } from '../errors.ts';
import type { OrderCommand, OrderDomainEvent, OrderTimerDelay } from '../machines/order/contract.ts';
import { emittedEvents, type OrderMachineInput, type OrderMachineVersion, type OrderSnapshot } from '../machines/order/define.ts';
import { MenuChanged, menuLookup, type MenuLookup } from '../catalog/pricing.ts';
import { activeTraceparent } from '../tracing.ts';
import type { EventRef } from './consumers/types.ts';
import type { Actor, Cause, OrderRow } from './order-repository.ts';
import { commitTransition, type Committed, type MenuLine, type Transition } from './order-commit.ts';
import { intentsOf, type RefundIntent, type TimerIntent } from './order-intents.ts';
import { viewOf, type OrderView, type RefundView } from './order-view.ts';
import { judgeable, type JudgeableOrder, type LoadedOrder, type OrderStore } from './order-store.ts';
import { canSee, requireRole, type Principal, type Role } from './principal.ts';
import type { WorkPrompt } from './work.ts';

export interface OrderActorDeps {
  db: Database;
  /** How orders are priced: batched lookups of the menus (cached or not: a placement is written only if its lines still hold). */
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
  /** A new order: the menu lines it was priced from (see Transition.menu). */
  menu?: readonly MenuLine[];
}

/** The row's identity as a write checks it: the order's version and the machine version it is stored with. */
type StoredAt = Pick<OrderRow, 'id' | 'version' | 'machine_version'>;

/** A write that found the order moved on: another writer was first, and the step judges again. */
class MovedOn extends Error {}

/** How a step judges again after another writer moved the order first: at once, on fresh state, 12 times in all at most. */
const judgedAgain = retry(handleType(MovedOn), { maxAttempts: 11 });

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
 * The checks every command makes before the machine judges: who may see the order, who may send
 * the command, and `If-Match` (the version the caller last saw). Throws to refuse.
 */
export function requireCommand(who: Principal, row: OrderRow | undefined, orderId: string, command: OrderCommand, role: Role, expectedVersion?: number): OrderRow {
  const visible = requireVisible(who, row, orderId, command);
  requireRole(who, role, command);
  if (expectedVersion !== undefined && expectedVersion !== visible.version) throw new StaleVersionError(expectedVersion, visible.version);
  return visible;
}

/** Refuses, with the commands the order's state allows, when the machine does not take `type` now. */
export function requireAccepts(order: Pick<JudgeableOrder, 'machine' | 'snapshot'>, type: OrderMachineInput['type'], command: string): void {
  const { machine, snapshot } = order;
  if (!machine.accepts(snapshot, type)) throw new InvalidTransitionError(command, machine.statusOf(snapshot), machine.allowedCommands(snapshot));
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
    requireAccepts(order, event.type, command);
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
      ...(decided.menu ? { menu: decided.menu } : {}),
      traceparent: activeTraceparent(),
    };
  }

  /**
   * Writes `t` with `write`. A new order admitted on a count another statement was creating is
   * written once more (that statement's count is then seen); one over the customer's unpaid limit
   * is refused with 429; one priced from menu lines that have changed since throws MenuChanged (the
   * placement prices it again).
   */
  async function admitted(t: Transition, write: () => Promise<Committed | undefined>): Promise<Committed | undefined> {
    let committed = await write();
    if (t.unwritten === 'retry') committed = await write();
    if (t.unwritten === 'too-many') throw new TooManyUnpaidOrdersError(store.rules.maxUnpaidOrders);
    if (t.unwritten === 'menu-changed') throw new MenuChanged(t.snapshot.context.storeId);
    return committed;
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
    const committed = await admitted(t, () => commitTransition(tx, t, store.rules));
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
   * Loads the order (this replica's cache unless `fresh`) and judges it. A refusal judged on the
   * cache is confirmed on what PostgreSQL has before it is answered.
   */
  async function judgeOn<J>(orderId: string, fresh: boolean, judge: (loaded: LoadedOrder | undefined) => J): Promise<{ loaded: LoadedOrder | undefined; judged: J }> {
    const loaded = await store.load(orderId, fresh);
    try {
      return { loaded, judged: judge(loaded) };
    } catch (err) {
      if (loaded?.cached) return judgeOn(orderId, true, judge);
      throw err;
    }
  }

  /**
   * The step every command goes through, pay included: load → judge → write. `judge` throws to
   * refuse and must be pure (no I/O): it runs again after a lost race. `write` persists what was
   * judged in one statement checked against the order's version, and answers undefined when the
   * order moved on meanwhile: the step then judges again on fresh state. No I/O is ever redone.
   */
  async function run<J, R>(
    orderId: string,
    judge: (loaded: LoadedOrder | undefined) => J,
    write: (judged: J, loaded: LoadedOrder) => Promise<R | undefined>,
    opts: { fresh?: boolean } = {},
  ): Promise<R> {
    try {
      return await judgedAgain.execute(async ({ attempt }) => {
        const { loaded, judged } = await judgeOn(orderId, (opts.fresh ?? false) || attempt > 0, judge);
        // A judge that did not refuse saw the order: it exists.
        const written = await write(judged, loaded!);
        store.noteOutcome(loaded!.cached, written !== undefined);
        if (written === undefined) throw new MovedOn();
        return written;
      });
    } catch (err) {
      if (err instanceof MovedOn) throw new DomainError('internal', `order ${orderId} kept changing while a command was judged`);
      throw err;
    }
  }

  /**
   * Writes a decided transition (shared with the other commands of the moment) and hands on what
   * it owes; `mark` adds to it what a feature's guard needs (a pay's charge). The transition, and
   * the order as written, or no view when the order had moved on.
   */
  async function commitDecided(row: StoredAt & OrderRow, decided: Decided, by: Actor, cause: Cause, mark?: (t: Transition) => void): Promise<{ t: Transition; view?: OrderView }> {
    const t = transitionOf(row, decided, by, cause);
    mark?.(t);
    const committed = await store.commit(t);
    if (!committed) return { t };
    afterCommit(row.id, committed.version, t);
    return { t, view: viewOf(decided.machine, decided.next, { ...row, version: committed.version, updated_at: t.at }, refundOf(decided)) };
  }

  /** A command or timer: judged by `check` (who may) and `decideFor` (what the machine says), then written. */
  function step(
    orderId: string,
    check: (row: OrderRow | undefined) => OrderRow,
    decideFor: (row: OrderRow, order: JudgeableOrder) => Decided,
    by: Actor,
    cause: Cause,
    opts: { fresh?: boolean } = {},
  ): Promise<OrderView> {
    return run(
      orderId,
      (loaded) => {
        // Who may see the order is checked first: one that is not yours stays not found.
        const row = check(loaded?.row);
        return { row, decided: decideFor(row, judgeable(loaded!)) };
      },
      async ({ row, decided }) => (await commitDecided(row, decided, by, cause)).view,
      opts,
    );
  }

  /** Places a new order (version 0 → 1) through the batched commit. */
  async function create(decided: Decided, orderId: string, by: Actor, cause: Cause) {
    const t = transitionOf({ id: orderId, version: 0, machine_version: decided.machine.version }, decided, by, cause);
    const committed = await admitted(t, () => store.commit(t));
    if (!committed) throw new DomainError('internal', `order ${orderId} already existed`);
    afterCommit(orderId, committed.version, t);
    return { version: committed.version, at: t.at };
  }

  const menus = deps.menus ?? menuLookup(db);
  return { db, store, machines: store.machines, menus, clock, visibleRow, decide, transitionOf, persistIn, create, run, commitDecided, step, afterCommit };
}

