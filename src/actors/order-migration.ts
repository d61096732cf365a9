import type { Database } from '../db/pg.ts';
import { ORDER_MACHINE_ID } from '../machines/order/contract.ts';
import type { OrderMachines } from '../machines/order/registry.ts';

/** How many orders in one state of one version moved (or would move) to one state of a newer version. */
export interface MigrationMove {
  from: number;
  state: string;
  to: number;
  toState: string;
  orders: number;
}

/** Orders whose migration refuses their state: they stay on their version and finish there. */
export interface MigrationRefusal {
  version: number;
  state: string;
  /** The version the refusing migration leads to. */
  refusedAt: number;
  reason: string;
  orderIds: string[];
}

export interface MigrationProgress {
  /** Orders looked at so far. */
  done: number;
  /** Orders of older versions when the run started. */
  total: number;
  elapsedMs: number;
}

export interface MigrationReport extends MigrationProgress {
  newest: number;
  dryRun: boolean;
  moves: MigrationMove[];
  refusals: MigrationRefusal[];
  /**
   * Orders left for another run: a payment of theirs was in flight, or a command was writing them
   * at that moment (they move at their next command anyway).
   */
  busy: string[];
  /** Orders of versions this build does not have (older ones it dropped, newer ones it does not know yet). */
  unrunnable: { version: number; orders: number }[];
}

export interface MigrateOptions {
  /** Only count what would move where; change nothing. */
  dryRun: boolean;
  /** Orders per statement. */
  batch: number;
  /** How often orders that were busy are tried again before they are reported (default 3). */
  passes?: number;
  /** Pause between passes (default 1000 ms). */
  pauseMs?: number;
  onProgress?(progress: MigrationProgress): void;
}

interface Candidate {
  id: string;
  machine_id: string;
  machine_version: number;
  version: number;
  snapshot: unknown;
}

/*
 * Writes the migrated snapshots of one batch: only orders still at the version and the machine
 * version they were read at, not locked by a command being written (SKIP LOCKED), and with no
 * payment attempt in flight (its outcome is recorded against the machine version it was judged
 * on). The lock is taken by the first statement and the attempts are read by the second, so an
 * attempt started before the lock was granted is seen.
 */
const LOCK_BATCH = `SELECT id FROM orders WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE SKIP LOCKED`;
const WRITE_BATCH = `
  UPDATE orders o SET machine_version = i.to_version, status = i.status, snapshot = i.snapshot
  FROM jsonb_to_recordset($1::jsonb) AS i(id uuid, version int, from_version int, to_version int, status text, snapshot jsonb)
  WHERE o.id = i.id AND o.id = ANY ($2::uuid[]) AND o.version = i.version AND o.machine_version = i.from_version
    AND NOT EXISTS (SELECT 1 FROM payment_attempts a WHERE a.order_id = o.id AND a.status = 'pending')
  RETURNING o.id`;

/**
 * Moves every order stored with an older machine version to the newest (`npm run
 * machines:migrate`), `batch` orders per transaction, walking the orders by id. Each order's
 * snapshot goes through the migrations one version at a time (pure code, see registry.ts); an
 * order whose state a migration refuses stays where it is. Orders that are busy (a payment in
 * flight, a command being written) are tried again, and reported if they stay busy; their next
 * command moves them anyway. Safe while the service runs: every write checks the version it read.
 */
export async function migrateOrders(db: Database, machines: OrderMachines, opts: MigrateOptions): Promise<MigrationReport> {
  const started = performance.now();
  const newest = machines.newest;
  const [{ n: total }] = (await db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM orders WHERE machine_id = $1 AND machine_version < $2`,
    [ORDER_MACHINE_ID, newest],
  )) as [{ n: number }];
  const report: MigrationReport = { newest, dryRun: opts.dryRun, done: 0, total, elapsedMs: 0, moves: [], refusals: [], busy: [], unrunnable: [] };
  const moves = new Map<string, MigrationMove>();
  const refusals = new Map<string, MigrationRefusal>();
  const unrunnable = new Map<number, number>();
  const progress = () => opts.onProgress?.({ done: report.done, total, elapsedMs: performance.now() - started });

  /** Judges and (unless a dry run) writes one batch; returns the ids left busy. */
  const runBatch = async (rows: readonly Candidate[], count: boolean): Promise<string[]> => {
    const writes: { id: string; version: number; from_version: number; to_version: number; status: string; snapshot: unknown; move: MigrationMove }[] = [];
    for (const row of rows) {
      const machine = machines.get(row.machine_version);
      if (!machine) {
        if (count) unrunnable.set(row.machine_version, (unrunnable.get(row.machine_version) ?? 0) + 1);
        continue;
      }
      const snapshot = machine.restore(row.snapshot);
      const state = machine.statusOf(snapshot);
      const up = machines.upgrade(machine, snapshot);
      if (!up.moved) {
        if (!count) continue;
        const key = `${row.machine_version} ${state}`;
        let refusal = refusals.get(key);
        if (!refusal) refusals.set(key, (refusal = { version: row.machine_version, state, refusedAt: up.refusedAt + 1, reason: up.reason, orderIds: [] }));
        refusal.orderIds.push(row.id);
        continue;
      }
      const toState = up.machine.statusOf(up.snapshot);
      const key = `${row.machine_version} ${state} ${toState}`;
      let move = moves.get(key);
      if (!move) moves.set(key, (move = { from: row.machine_version, state, to: up.machine.version, toState, orders: 0 }));
      writes.push({ id: row.id, version: row.version, from_version: row.machine_version, to_version: up.machine.version, status: toState, snapshot: up.machine.persist(up.snapshot), move });
    }
    if (opts.dryRun) {
      for (const w of writes) w.move.orders += 1;
      return [];
    }
    if (writes.length === 0) return [];
    const written = await db.transaction(async (tx) => {
      const locked = (await tx.query<{ id: string }>(LOCK_BATCH, [writes.map((w) => w.id)])).map((r) => r.id);
      if (locked.length === 0) return new Set<string>();
      const rows = await tx.query<{ id: string }>(WRITE_BATCH, [JSON.stringify(writes.map(({ move: _, ...w }) => w)), locked]);
      return new Set(rows.map((r) => r.id));
    });
    for (const w of writes) if (written.has(w.id)) w.move.orders += 1;
    return writes.filter((w) => !written.has(w.id)).map((w) => w.id);
  };

  const read = (where: string, params: unknown[]) =>
    db.query<Candidate>(`SELECT id, machine_id, machine_version, version, snapshot FROM orders WHERE machine_id = $1 AND ${where} ORDER BY id LIMIT $2`, [
      ORDER_MACHINE_ID,
      opts.batch,
      ...params,
    ]);

  let busy: string[] = [];
  let after = '00000000-0000-0000-0000-000000000000';
  for (;;) {
    const rows = await read(`machine_version < $3 AND id > $4::uuid`, [newest, after]);
    if (rows.length === 0) break;
    after = rows.at(-1)!.id;
    busy.push(...(await runBatch(rows, true)));
    report.done += rows.length;
    progress();
  }
  // Busy orders: look again a little later (an order a command moved meanwhile is judged afresh).
  for (let pass = 1; pass < (opts.passes ?? 3) && busy.length > 0; pass += 1) {
    await new Promise((resolve) => setTimeout(resolve, opts.pauseMs ?? 1000));
    const again: string[] = [];
    for (let i = 0; i < busy.length; i += opts.batch) {
      const rows = await read(`machine_version < $3 AND id = ANY($4::uuid[])`, [newest, busy.slice(i, i + opts.batch)]);
      again.push(...(await runBatch(rows, false)));
    }
    busy = again;
  }
  const [{ n: ahead }] = (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM orders WHERE machine_id = $1 AND machine_version > $2`, [
    ORDER_MACHINE_ID,
    newest,
  ])) as [{ n: number }];
  if (ahead > 0) {
    for (const row of await db.query<{ v: number; n: number }>(
      `SELECT machine_version AS v, count(*)::int AS n FROM orders WHERE machine_id = $1 AND machine_version > $2 GROUP BY 1 ORDER BY 1`,
      [ORDER_MACHINE_ID, newest],
    )) {
      unrunnable.set(row.v, row.n);
    }
  }
  // In the order the machines declare their states.
  const rank = (version: number, state: string) => machines.get(version)?.statuses.indexOf(state) ?? 0;
  report.moves = [...moves.values()].filter((m) => m.orders > 0).sort((a, b) => a.from - b.from || rank(a.from, a.state) - rank(b.from, b.state) || rank(a.to, a.toState) - rank(b.to, b.toState));
  report.refusals = [...refusals.values()].sort((a, b) => a.version - b.version || rank(a.version, a.state) - rank(b.version, b.state));
  report.busy = busy;
  report.unrunnable = [...unrunnable].map(([version, orders]) => ({ version, orders })).sort((a, b) => a.version - b.version);
  report.elapsedMs = performance.now() - started;
  return report;
}
