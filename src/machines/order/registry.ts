import { DomainError, MachineVersionAheadError } from '../../errors.ts';
import { ORDER_COMMANDS, ORDER_CONTRACT_STATES, ORDER_MACHINE_ID, type OrderContext } from './contract.ts';
import type { OrderMachineVersion, OrderSnapshot } from './define.ts';
import { orderV1 } from './v1.ts';

/**
 * How orders move from one machine version to the next (`from` → `from + 1`): pure data and a
 * pure function, applied to an order's stored snapshot lazily (at its next command) or eagerly
 * (`npm run machines:migrate`).
 */
export interface OrderMigration {
  from: number;
  to: number;
  /**
   * Every state of `from`: the state of `to` an order in it moves to, or why it cannot move. An
   * order whose state is refused stays on `from` (whose definition stays in the code) and
   * finishes its life there.
   */
  states: Readonly<Record<string, string | { refuse: string }>>;
  /**
   * Events of `from` that `to` knows by another name, so that a timer scheduled before the move
   * fires under its new name; null when `to` has no equivalent (the timer is then dropped as
   * moved on). Events not named here keep their name.
   */
  events?: Readonly<Record<string, string | null>>;
  /** The context in `to`, from the context in `from` and the state it was in; unchanged when absent. */
  context?(context: OrderContext, state: string): OrderContext;
}

/**
 * A migration with its states checked by the compiler: every state of `From` must be mapped to a
 * state of `To` or refused with a reason, so no state can be forgotten.
 */
export function defineMigration<From extends string, To extends string>(m: {
  from: number;
  to: number;
  states: Record<From, To | { refuse: string }>;
  events?: Record<string, string | null>;
  context?(context: OrderContext, state: From): OrderContext;
}): OrderMigration {
  return m as OrderMigration;
}

/** What moving an order to the newest version gives: its new machine and snapshot, or the step that refuses it. */
export type Upgrade =
  | { moved: true; machine: OrderMachineVersion; snapshot: OrderSnapshot; from: number }
  | { moved: false; from: number; refusedAt: number; state: string; reason: string };

/** The parts of an `orders` row that say which machine judges it. */
export interface StoredMachine {
  id: string;
  machine_id: string;
  machine_version: number;
  snapshot: unknown;
}

/**
 * The order machine versions this build runs: the newest (`current`), on which new orders start
 * and to which others are moved, and the older ones that still have orders, with the migrations
 * between them. Checked whole when built, so a registry that could strand an order fails at
 * start-up rather than at the order's next command.
 */
export class OrderMachines {
  readonly versions: readonly OrderMachineVersion[];
  readonly current: OrderMachineVersion;
  private readonly byVersion: ReadonlyMap<number, OrderMachineVersion>;
  private readonly steps: ReadonlyMap<number, OrderMigration>;

  constructor(versions: readonly OrderMachineVersion[], migrations: readonly OrderMigration[] = []) {
    if (versions.length === 0) throw new Error('order machines: at least one version');
    this.versions = [...versions].sort((a, b) => a.version - b.version);
    this.byVersion = new Map(this.versions.map((v) => [v.version, v]));
    if (this.byVersion.size !== versions.length) throw new Error('order machines: a version is given twice');
    this.current = this.versions.at(-1)!;
    for (const v of this.versions) {
      const missing = ORDER_CONTRACT_STATES.filter((s) => !v.statuses.includes(s));
      if (missing.length > 0) throw new Error(`order machines: version ${v.version} has no ${missing.join(', ')} (states the service relies on by name)`);
    }
    const steps = new Map<number, OrderMigration>();
    for (const m of migrations) {
      if (m.to !== m.from + 1) throw new Error(`order machines: a migration goes one version up, not ${m.from} → ${m.to}`);
      if (steps.has(m.from)) throw new Error(`order machines: two migrations from version ${m.from}`);
      steps.set(m.from, m);
    }
    this.steps = steps;
    for (let i = 1; i < this.versions.length; i += 1) {
      const from = this.versions[i - 1]!;
      const to = this.versions[i]!;
      if (to.version !== from.version + 1) throw new Error(`order machines: versions ${from.version} and ${to.version} are not consecutive`);
      const step = steps.get(from.version);
      if (!step) throw new Error(`order machines: no migration from version ${from.version} to ${to.version}`);
      checkMigration(step, from, to);
    }
    for (const m of migrations) {
      if (!this.byVersion.has(m.from) || !this.byVersion.has(m.to)) throw new Error(`order machines: a migration ${m.from} → ${m.to} of a version not given`);
    }
  }

  /** The newest version this build knows. */
  get newest(): number {
    return this.current.version;
  }

  get(version: number): OrderMachineVersion | undefined {
    return this.byVersion.get(version);
  }

  /**
   * The machine of the order's own version and its snapshot. An order stored by a newer version
   * than this build knows (another replica moved it during a rolling deploy) is refused with
   * `machine_version_ahead`, so it is never judged, and never written, by an older machine.
   */
  restore(row: StoredMachine): { machine: OrderMachineVersion; snapshot: OrderSnapshot } {
    if (row.machine_id !== ORDER_MACHINE_ID) {
      throw new DomainError('internal', `order ${row.id} was stored by machine ${row.machine_id}@${row.machine_version}; this build runs ${ORDER_MACHINE_ID}`);
    }
    const machine = this.byVersion.get(row.machine_version);
    if (!machine) {
      if (row.machine_version > this.newest) throw new MachineVersionAheadError(row.id, row.machine_version, this.newest);
      throw new DomainError(
        'internal',
        `order ${row.id} was stored by machine ${ORDER_MACHINE_ID}@${row.machine_version}, which this build no longer has (it runs versions ${this.versions.map((v) => v.version).join(', ')})`,
      );
    }
    return { machine, snapshot: machine.restore(row.snapshot) };
  }

  /** Moves a snapshot to the newest version, one migration at a time; refused as a whole if one step refuses. */
  upgrade(machine: OrderMachineVersion, snapshot: OrderSnapshot): Upgrade {
    let at = machine;
    let current = snapshot;
    while (at.version < this.newest) {
      const step = this.steps.get(at.version)!;
      const next = this.byVersion.get(step.to)!;
      const state = at.statusOf(current);
      const target = step.states[state];
      if (target === undefined || typeof target !== 'string') {
        return { moved: false, from: machine.version, refusedAt: at.version, state, reason: target?.refuse ?? `no state of version ${step.to} for ${state}` };
      }
      const persisted = at.persist(current) as Record<string, unknown>;
      const context = step.context ? step.context(current.context, state) : current.context;
      current = next.restore({ ...persisted, value: target, context });
      at = next;
    }
    return { moved: true, machine: at, snapshot: current, from: machine.version };
  }

  /** The name an event of version `from` has in version `to` (a later one); null when it has none there. */
  eventIn(event: string, from: number, to: number): string | null {
    let name: string | null = event;
    for (let v = from; v < to && name !== null; v += 1) {
      const renamed: string | null | undefined = this.steps.get(v)?.events?.[name];
      if (renamed !== undefined) name = renamed;
    }
    return name;
  }

  /** The state a status of version `from` becomes in version `to` (a later one); null when a step refuses it. */
  statusIn(status: string, from: number, to: number): string | null {
    let state: string | null = status;
    for (let v = from; v < to && state !== null; v += 1) {
      const target: string | { refuse: string } | undefined = this.steps.get(v)?.states[state];
      state = typeof target === 'string' ? target : null;
    }
    return state;
  }

  /** Every status of every version, in version order, each once (for the API's schemas). */
  allStatuses(): string[] {
    return [...new Set(this.versions.flatMap((v) => v.statuses))];
  }
}

function checkMigration(m: OrderMigration, from: OrderMachineVersion, to: OrderMachineVersion): void {
  const where = `migration ${from.version} → ${to.version}`;
  const mapped = Object.keys(m.states);
  const missing = from.statuses.filter((s) => !mapped.includes(s));
  if (missing.length > 0) throw new Error(`${where}: says nothing of ${missing.join(', ')} (map each state, or refuse it with a reason)`);
  const unknown = mapped.filter((s) => !from.statuses.includes(s));
  if (unknown.length > 0) throw new Error(`${where}: maps ${unknown.join(', ')}, which version ${from.version} does not have`);
  for (const [state, target] of Object.entries(m.states)) {
    if (typeof target === 'string' && !to.statuses.includes(target)) throw new Error(`${where}: maps ${state} to ${target}, which version ${to.version} does not have`);
    if (typeof target === 'string' && from.isFinal(state) !== to.isFinal(target)) {
      throw new Error(`${where}: maps ${state} to ${target}, but one is final and the other is not`);
    }
    if (typeof target !== 'string' && !(typeof target?.refuse === 'string' && target.refuse.length > 0)) throw new Error(`${where}: refuses ${state} without a reason`);
    if (typeof target === 'string' && target !== state && ((ORDER_CONTRACT_STATES as readonly string[]).includes(state) || (ORDER_CONTRACT_STATES as readonly string[]).includes(target))) {
      throw new Error(`${where}: maps ${state} to ${target}; a state the service relies on by name keeps its name`);
    }
  }
  const eventsOf = (v: OrderMachineVersion) => new Set<string>([...ORDER_COMMANDS, ...v.timerEvents]);
  for (const [event, renamed] of Object.entries(m.events ?? {})) {
    if (!eventsOf(from).has(event)) throw new Error(`${where}: renames ${event}, which version ${from.version} does not take`);
    if (renamed !== null && !eventsOf(to).has(renamed)) throw new Error(`${where}: renames ${event} to ${renamed}, which version ${to.version} does not take`);
  }
}

/** The machines this service ships: every version that may still have orders, and the migrations between them. */
export const SHIPPED_ORDER_MACHINES = new OrderMachines([orderV1]);

let installed = SHIPPED_ORDER_MACHINES;

/** The machines this process runs: the shipped ones, unless a test fixture installed others first. */
export function orderMachines(): OrderMachines {
  return installed;
}

/**
 * Makes a process run other machines (a test fixture preloaded with `node --import`, before the
 * service's modules load). Nothing in the service calls it.
 */
export function installOrderMachines(machines: OrderMachines): void {
  installed = machines;
}
