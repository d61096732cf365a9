// Moves every order stored with an older version of the order machine to the newest one this build
// runs: `npm run machines:migrate [-- --dry-run]` from a checkout, `node dist/machines-migrate.js`
// from the image. See the README, "Changing the machine".
import { commandLine, progressBar, usageError } from './cli.ts';
import { ConfigError, loadConfig } from './config.ts';

const USAGE = `usage: npm run machines:migrate [-- --dry-run] [--batch N]
       (from the image: node dist/machines-migrate.js [--dry-run] [--batch N])

Moves every order stored with an older version of the order machine to the newest version this
build runs, N orders per transaction, with a progress bar on stderr; then prints how many orders
in each state moved to which state of which version. An order whose state its migration refuses
stays on its version (the build keeps that version to finish it) and is listed. An order that is
busy (a payment in flight, a command being written) is tried again, then listed: it moves at its
next command anyway. Safe while the service runs. Orders move lazily at their next command too;
this command is for moving the rest, e.g. before removing an old version from the code.
Connects to DATABASE_URL, the service's database.
  --dry-run  change nothing: print how many orders in each state would move where
  --batch    orders per transaction, 1 to 5000 (default 500)
  --help     this text`;

/** Order ids listed per refused state (and for busy orders) before "… and N more". */
const LISTED = 20;

function fail(message: string): never {
  return usageError('machines:migrate', USAGE, message);
}

async function main(): Promise<number> {
  const values = commandLine('machines:migrate', USAGE, {
    'dry-run': { type: 'boolean', default: false },
    batch: { type: 'string', default: '500' },
  });
  const batch = /^[0-9]{1,4}$/.test(values.batch ?? '') ? Number(values.batch) : Number.NaN;
  if (!(batch >= 1 && batch <= 5000)) fail(`--batch must be a whole number from 1 to 5000, not ${values.batch}`);
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message);
    throw err;
  }
  const dryRun = values['dry-run'] === true;
  // Loaded only now: --help or a bad option needs none of it.
  const [{ default: pg }, { Database }, { migrateOrders }, { orderMachines }] = await Promise.all([
    import('pg'),
    import('./db/pg.ts'),
    import('./actors/order-migration.ts'),
    import('./machines/order/registry.ts'),
  ]);
  const machines = orderMachines();
  const pool = new pg.Pool({ connectionString: config.DATABASE_URL, max: 2 });
  try {
    const db = new Database(pool);
    const [schema] = await db.query<{ ok: boolean }>(`SELECT to_regclass('orders') IS NOT NULL AS ok`).catch(() => [{ ok: false }]);
    if (!schema?.ok) {
      console.error('machines:migrate: the database has no orders table: start the service once (it migrates), or run `node --import tsx src/migrate.ts`');
      return 1;
    }
    const older = machines.versions.slice(0, -1).map((v) => v.version);
    console.log(
      `machines:migrate: the newest order machine this build runs is version ${machines.newest}` +
        (older.length > 0 ? ` (it also runs ${older.join(', ')} for the orders that stay on them)` : '') +
        (dryRun ? '; dry run: nothing is changed' : ''),
    );
    const bar = progressBar(dryRun ? 'planning' : 'migrating');
    const detail = (elapsedMs: number) => `orders, ${(elapsedMs / 1000).toFixed(1)} s`;
    const report = await migrateOrders(db, machines, { dryRun, batch, onProgress: (p) => bar(p.done, p.total, detail(p.elapsedMs)) });
    bar(report.done, report.total, detail(report.elapsedMs), true);

    const moved = report.moves.reduce((n, m) => n + m.orders, 0);
    if (report.total === 0) console.log(`every order already runs version ${report.newest}: nothing to move`);
    else console.log(`${dryRun ? 'would move' : 'moved'} ${moved} of ${report.total} orders of older versions:`);
    const width = Math.max(0, ...report.moves.map((m) => m.state.length));
    for (const m of report.moves) {
      console.log(`  version ${m.from} → ${m.to}  ${m.state.padEnd(width)} → ${m.toState.padEnd(width)} ${String(m.orders).padStart(7)}`);
    }
    const list = (ids: readonly string[]) => {
      for (const id of ids.slice(0, LISTED)) console.log(`      ${id}`);
      if (ids.length > LISTED) console.log(`      … and ${ids.length - LISTED} more`);
    };
    if (report.refusals.length > 0) {
      const kept = report.refusals.reduce((n, r) => n + r.orderIds.length, 0);
      console.log(`${dryRun ? 'would keep' : 'kept'} ${kept} orders on their version (the migration to the next version refuses their state):`);
      for (const r of report.refusals) {
        console.log(`  version ${r.version}  ${r.state}: ${r.orderIds.length} (refused by the migration to version ${r.refusedAt}: ${r.reason})`);
        list(r.orderIds);
      }
    }
    if (report.busy.length > 0) {
      console.log(`${report.busy.length} orders were busy (a payment in flight, or a command writing them) and did not move: run it again, or let them move at their next command`);
      list(report.busy);
    }
    let status = 0;
    for (const u of report.unrunnable) {
      const why = u.version > report.newest ? 'a newer version than this build runs: run this command from a build that has it' : 'a version this build no longer has: restore that version in the code';
      console.error(`machines:migrate: ${u.orders} orders run version ${u.version}, ${why}`);
      status = 1;
    }
    return status;
  } finally {
    await pool.end();
  }
}

main().then(
  (status) => process.exit(status),
  (err: unknown) => {
    console.error(`machines:migrate: failed: ${err instanceof Error ? err.message : String(err)}; what it moved stays moved, run it again`);
    process.exit(1);
  },
);
