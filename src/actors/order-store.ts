import type { Database } from '../db/pg.ts';
import { MachineVersionAheadError } from '../errors.ts';
import { ORDER_MACHINE_ID } from '../machines/order/contract.ts';
import type { OrderMachineVersion, OrderSnapshot } from '../machines/order/define.ts';
import type { OrderMachines } from '../machines/order/registry.ts';
import { Batcher } from '../db/batcher.ts';
import { withFields } from '../objects.ts';
import type { OrderRow } from './order-repository.ts';
import { commitStatement, commitTransitions, type CommitGuard, type CommitRules, type Committed, type Transition } from './order-commit.ts';

/** An order a command step can judge: its row, and the machine that judges its next command with its snapshot. */
export interface JudgeableOrder {
  row: OrderRow;
  /**
   * The order's own machine version, or the newest when its next command moves it up (a lazy
   * migration: the write then stores it with the newest version, if it is still where it was).
   */
  machine: OrderMachineVersion;
  snapshot: OrderSnapshot;
  /** Whether it came from this replica's cache (it may be stale: judge, then verify). */
  cached: boolean;
  ahead?: undefined;
}

/**
 * An order as a command step loads it. One stored by a newer machine version than this replica
 * runs cannot be judged here; the step still checks who may see it first (an order that is not
 * yours stays not found), then refuses with `ahead`.
 */
export type LoadedOrder = JudgeableOrder | { row: OrderRow; cached: false; ahead: MachineVersionAheadError; machine?: undefined; snapshot?: undefined };

/** The loaded order, or its `machine_version_ahead` refusal. */
export function judgeable(loaded: LoadedOrder): JudgeableOrder {
  if (loaded.ahead) throw loaded.ahead;
  return loaded;
}

export interface OrderStoreOptions extends Omit<CommitRules, 'statement'> {
  /** The guard a feature adds to the statement that writes orders (the payment's charge), if any. */
  guard?: CommitGuard;
  /** Orders kept in memory per replica; 0 turns the cache off. */
  cacheSize: number;
  /** Most transitions (or loads) in one statement. */
  maxBatch: number;
  /** Most statements of each kind on their way at once. */
  maxInFlight: number;
  /** While commands keep coming, at most one write statement starts per this many milliseconds (0: no spacing). */
  spacingMs?: number;
  /** Called when a write is refused because another writer moved the order first. */
  onStaleWrite?: () => void;
}

const ORDER_COLUMNS = `id, machine_id, machine_version, version, status, snapshot, customer_id, store_id, rider_id, area, created_at, updated_at`;

/**
 * Where command steps read and write orders. Reads and writes that arrive together share one
 * statement (group commit). A per-replica cache of recently written orders saves the read; it is
 * never trusted over PostgreSQL: a write judged on a stale entry fails its version check (the entry
 * is dropped and the step judges again on a fresh read), and a refusal judged on a cached entry
 * is confirmed on a fresh read before it is answered.
 */
export class OrderStore {
  private readonly cache = new Map<string, { row: OrderRow; machine: OrderMachineVersion; snapshot: OrderSnapshot }>();
  private readonly loads: Batcher<string, OrderRow | undefined>;
  private readonly commits: Batcher<Transition, Committed | undefined>;
  /** What the statement that writes orders enforces (also for writes inside a caller's transaction). */
  readonly rules: CommitRules;

  constructor(
    db: Database,
    private readonly opts: OrderStoreOptions,
    readonly machines: OrderMachines,
  ) {
    this.loads = new Batcher(
      async (ids) => {
        const rows = await db.query<OrderRow>(`SELECT ${ORDER_COLUMNS} FROM orders WHERE id = ANY($1::uuid[])`, [ids]);
        const byId = new Map(rows.map((r) => [r.id, r]));
        return ids.map((id) => byId.get(id));
      },
      { maxBatch: opts.maxBatch, maxInFlight: opts.maxInFlight },
    );
    this.rules = { partitions: opts.partitions, maxUnpaidOrders: opts.maxUnpaidOrders, statement: commitStatement(opts.guard) };
    this.commits = new Batcher((ts) => commitTransitions(db, ts, this.rules), { maxBatch: opts.maxBatch, maxInFlight: opts.maxInFlight, key: (t) => t.orderId, alone: true, spacingMs: opts.spacingMs });
  }

  /**
   * How often a write judged on the cache found the order moved on (another replica wrote it):
   * behind a load balancer that spreads one order's commands over replicas the cache is mostly
   * stale, and a fresh read is then cheaper than a lost write. A tenth of the reads still try the
   * cache, so it comes back when the traffic changes.
   */
  private staleRate = 0;

  /** The event partitions the journal is split into. */
  get partitions(): number {
    return this.opts.partitions;
  }

  /** Records whether a write judged on a cached entry went through. */
  noteOutcome(cached: boolean, written: boolean): void {
    if (cached) this.staleRate = this.staleRate * 0.95 + (written ? 0 : 0.05);
  }

  private trustCache(): boolean {
    return this.staleRate < 0.3 || Math.random() < 0.1;
  }

  /**
   * The order as this replica last wrote it, or as PostgreSQL has it now, ready for its next
   * command: an order of an older machine version is moved to the newest here, in memory (unless
   * its migration refuses its state); the command's write stores the move.
   */
  async load(orderId: string, fresh = false): Promise<LoadedOrder | undefined> {
    if (!fresh && this.trustCache()) {
      const hit = this.cache.get(orderId);
      if (hit) {
        // Least recently used goes first: re-inserting moves the entry to the end.
        this.cache.delete(orderId);
        this.cache.set(orderId, hit);
        return withFields(this.upgraded(hit), { cached: true });
      }
    }
    const row = await this.loads.submit(orderId);
    if (!row) {
      this.cache.delete(orderId);
      return undefined;
    }
    let restored;
    try {
      restored = this.machines.restore(row);
    } catch (err) {
      if (err instanceof MachineVersionAheadError) return { row, cached: false, ahead: err };
      throw err;
    }
    return withFields(this.upgraded({ row, ...restored }), { cached: false });
  }

  /** The order on the newest version, unless its migration refuses its state (its row still says where it is stored). */
  private upgraded(order: { row: OrderRow; machine: OrderMachineVersion; snapshot: OrderSnapshot }): { row: OrderRow; machine: OrderMachineVersion; snapshot: OrderSnapshot } {
    if (order.machine.version >= this.machines.newest) return order;
    const up = this.machines.upgrade(order.machine, order.snapshot);
    return up.moved ? { row: order.row, machine: up.machine, snapshot: up.snapshot } : order;
  }

  /** Writes a transition (with others arriving together); undefined when the order moved on. */
  async commit(t: Transition): Promise<Committed | undefined> {
    const committed = await this.commits.submit(t);
    if (committed) this.remember(t, committed);
    else {
      this.cache.delete(t.orderId);
      if (!t.guard && !t.unwritten) this.opts.onStaleWrite?.();
    }
    return committed;
  }

  /** After a write outside the store (inside a transaction): keep the cache right. */
  remember(t: Transition, committed: Committed): void {
    if (this.opts.cacheSize === 0) return;
    const ctx = t.snapshot.context;
    const previous = this.cache.get(t.orderId)?.row;
    const row: OrderRow = {
      id: t.orderId,
      machine_id: ORDER_MACHINE_ID,
      machine_version: t.machine.version,
      version: committed.version,
      status: t.machine.statusOf(t.snapshot),
      snapshot: undefined,
      customer_id: ctx.customerId,
      store_id: ctx.storeId,
      rider_id: ctx.riderId,
      area: ctx.address.area,
      created_at: previous?.created_at ?? t.at,
      updated_at: t.at,
    };
    this.cache.delete(t.orderId);
    this.cache.set(t.orderId, { row, machine: t.machine, snapshot: t.snapshot });
    while (this.cache.size > this.opts.cacheSize) this.cache.delete(this.cache.keys().next().value!);
  }

  forget(orderId: string): void {
    this.cache.delete(orderId);
  }

}
