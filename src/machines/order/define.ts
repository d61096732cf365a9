import { createActor, initialTransition, type AnyStateMachine, type ExecutableActionObject } from 'xstate';
import { machineGraph, type MachineGraph } from '../graph.ts';
import {
  ORDER_COMMANDS,
  ORDER_MACHINE_ID,
  type OrderCommand,
  type OrderContext,
  type OrderDomainEvent,
  type OrderDomainEventType,
  type OrderInput,
  type OrderTimerDelay,
} from './contract.ts';

/**
 * A snapshot of some version of the order machine, as the runtime reads it. Only the version
 * that made it may judge it (`OrderMachineVersion.transition`): the runtime keeps the two together.
 */
export interface OrderSnapshot {
  readonly value: unknown;
  readonly status: string;
  readonly context: OrderContext;
}

/** An event the machine receives: an API command with its payload, or a timer event of the version. */
export type OrderMachineInput = { type: string } & Record<string, unknown>;

/** A durable timer a state starts: entering the state schedules `event` after the named delay. */
export interface OrderTimerSpec {
  event: string;
  delay: OrderTimerDelay;
}

/**
 * One version of the order machine, as the runtime, the API and the chart use it. Made by
 * `defineOrderMachine` from a plain XState definition (`v1.ts`, `v2.ts`, …), which stays readable
 * on its own.
 */
export interface OrderMachineVersion {
  readonly id: typeof ORDER_MACHINE_ID;
  readonly version: number;
  readonly machine: AnyStateMachine;
  /** The states, in the order the machine declares them; a state's key is the order's `status`. */
  readonly statuses: readonly string[];
  readonly finals: readonly string[];
  readonly initialStatus: string;
  /** The events durable timers raise (no caller sends them). */
  readonly timerEvents: readonly string[];
  /** Journal event type → the event whose transition records it (null: the placement). */
  readonly journal: Readonly<Partial<Record<OrderDomainEventType, string | null>>>;
  readonly graph: MachineGraph;
  /** A new order's snapshot and the actions of its first step (OrderPlaced). */
  initial(input: OrderInput): [OrderSnapshot, ExecutableActionObject[]];
  /** Whether the machine takes an event of this type in this snapshot. */
  accepts(snapshot: OrderSnapshot, type: string): boolean;
  /** The API commands the machine accepts in this snapshot. */
  allowedCommands(snapshot: OrderSnapshot): OrderCommand[];
  /** The next snapshot and the actions the machine would execute (pure; see transitionOf). */
  transition(snapshot: OrderSnapshot, event: OrderMachineInput): [OrderSnapshot, ExecutableActionObject[]];
  statusOf(snapshot: OrderSnapshot): string;
  isFinal(status: string): boolean;
  /** The durable timer a state starts, if any. */
  timerOf(status: string): OrderTimerSpec | undefined;
  /** What is stored in `orders.snapshot`. */
  persist(snapshot: OrderSnapshot): unknown;
  /** The snapshot stored by `persist` (of this version). */
  restore(persisted: unknown): OrderSnapshot;
}

export interface OrderMachineDefinition<M extends AnyStateMachine> {
  version: number;
  machine: M;
  timers: Readonly<Partial<Record<string, OrderTimerSpec>>>;
  /**
   * Journal event type → the event whose transition emits it. Each transition emits exactly one
   * domain event; which one is not introspectable from the definition (it sits inside an `emit`
   * action), so it is written beside the machine and a unit test checks it against what it emits.
   */
  journal: Readonly<Partial<Record<OrderDomainEventType, string | null>>>;
}

type EmitAction = { type: string; params?: unknown };

/** The domain events the machine emitted during one step. */
export function emittedEvents(actions: readonly EmitAction[]): OrderDomainEvent[] {
  return actions.filter((a) => a.type === 'xstate.emit').map((a) => (a.params as { event: OrderDomainEvent }).event);
}

const PLACEHOLDER_INPUT: OrderInput = { orderId: '', customerId: '', storeId: '', items: [], total: 0, address: { area: '', line: '' } };

/**
 * Wraps a version's XState definition for the runtime, checking what the runtime relies on: a
 * flat machine with the order machine's id, no guards (what a state accepts depends on the state
 * alone), nothing invoked or spawned, and every event either an API command or one of the
 * version's timer events. A definition that breaks one of these fails at start-up.
 */
export function defineOrderMachine<M extends AnyStateMachine>(def: OrderMachineDefinition<M>): OrderMachineVersion {
  const { machine, version } = def;
  const where = `order machine version ${version}`;
  if (machine.id !== ORDER_MACHINE_ID) throw new Error(`${where}: its id is ${machine.id}, not ${ORDER_MACHINE_ID}`);
  if (!Number.isInteger(version) || version < 1) throw new Error(`${where}: a version is a whole number from 1`);
  const timers = Object.fromEntries(Object.entries(def.timers).filter((e): e is [string, OrderTimerSpec] => e[1] !== undefined));
  const timerEvents = [...new Set(Object.values(timers).map((t) => t.event))];
  const commands = new Set<string>(ORDER_COMMANDS);

  /**
   * The events each state accepts, read once from the definition. The machine has no guards
   * (checked here), so what a state accepts depends on the state alone: a lookup replaces
   * `snapshot.can()`, which runs a whole transition each time. A unit test compares the two.
   */
  const accepted: Record<string, ReadonlySet<string>> = {};
  const finals: string[] = [];
  for (const [key, node] of Object.entries(machine.states)) {
    if (Object.keys(node.states).length > 0) throw new Error(`${where}: ${key} has child states; the runtime and the chart take flat machines`);
    if (node.invoke.length > 0) throw new Error(`${where}: ${key} invokes an actor; a persisted order machine must not (it would run again on restore)`);
    if (node.type === 'final') finals.push(key);
    for (const [event, definitions] of node.transitions) {
      if (definitions.some((d) => d.guard !== undefined)) throw new Error(`${where}: ${key} --${event}--> has a guard; allowed events would need can()`);
      if (!commands.has(event) && !timerEvents.includes(event)) throw new Error(`${where}: ${key} takes ${event}, which is neither an API command nor one of its timers' events`);
    }
    accepted[key] = new Set(node.transitions.keys());
  }
  const statuses = Object.keys(accepted);
  for (const [status, timer] of Object.entries(timers)) {
    if (!statuses.includes(status)) throw new Error(`${where}: a timer is set on ${status}, which is not one of its states`);
    if (!accepted[status]!.has(timer.event)) throw new Error(`${where}: ${status} starts the timer ${timer.event} but does not take it`);
  }
  for (const [type, event] of Object.entries(def.journal)) {
    if (event !== null && event !== undefined && !statuses.some((s) => accepted[s]!.has(event))) {
      throw new Error(`${where}: the journal maps ${type} to ${event}, which no state takes`);
    }
  }
  const allowed: Record<string, readonly OrderCommand[]> = Object.fromEntries(
    statuses.map((key) => [key, ORDER_COMMANDS.filter((c) => accepted[key]!.has(c))]),
  );
  const initialStatus = machine.root.initial?.target[0]?.key;
  if (initialStatus === undefined) throw new Error(`${where}: no initial state`);

  /**
   * What XState's `getPersistedSnapshot` gives for such a machine (flat, invoking and spawning
   * nothing: no children, no history, no actor in its context), the same properties in the same
   * order, built in one literal. XState builds it as `{ ...rest, context, children }`, which in
   * Node 20's V8 gives every persisted snapshot, one per command, a hidden class of its own in the
   * old generation (src/objects.ts). A unit test compares the two in every state.
   */
  const persist = (snapshot: OrderSnapshot): unknown => {
    const s = snapshot as unknown as { status: unknown; output: unknown; error: unknown; value: unknown };
    return { status: s.status, output: s.output, error: s.error, value: s.value, historyValue: {}, context: snapshot.context, children: {} };
  };

  /**
   * XState's pure `transition()` builds a throwaway actor for each call, and building an actor
   * computes the machine's initial snapshot (a whole initial microstep) only to discard it. The
   * machine invokes and spawns nothing (checked above), so one inert scope serves every
   * transition; each call gets its own action list. A unit test compares the two.
   */
  type Scope = Parameters<M['transition']>[2];
  let inertScope: Scope | undefined;
  const scope = (): Scope => {
    if (!inertScope) {
      const self = createActor(machine as AnyStateMachine, { input: PLACEHOLDER_INPUT });
      inertScope = {
        self,
        id: '',
        sessionId: '',
        system: self.system,
        logger: () => {},
        defer: () => {},
        emit: () => {},
        stopChild: () => {},
        actionExecutor: () => {},
      } as unknown as Scope;
    }
    return inertScope;
  };

  const statusOf = (snapshot: OrderSnapshot) => String(snapshot.value);
  const finalSet = new Set(finals);
  return {
    id: ORDER_MACHINE_ID,
    version,
    machine,
    statuses,
    finals,
    initialStatus,
    timerEvents,
    journal: { ...def.journal },
    graph: machineGraph(machine, version, def.journal as Record<string, string | null>, Object.fromEntries(Object.values(timers).map((t) => [t.event, t.delay]))),
    initial(input) {
      return initialTransition(machine as AnyStateMachine, input) as [OrderSnapshot, ExecutableActionObject[]];
    },
    accepts: (snapshot, type) => accepted[statusOf(snapshot)]?.has(type) ?? false,
    allowedCommands: (snapshot) => [...(allowed[statusOf(snapshot)] ?? [])],
    transition(snapshot, event) {
      const actions: ExecutableActionObject[] = [];
      const next = machine.transition(snapshot as never, event as never, { ...scope(), actionExecutor: (action: ExecutableActionObject) => void actions.push(action) } as Scope);
      return [next as OrderSnapshot, actions];
    },
    statusOf,
    isFinal: (status) => finalSet.has(status),
    timerOf: (status) => timers[status],
    persist,
    restore: (persisted) => machine.resolveState(persisted as never) as OrderSnapshot,
  };
}
