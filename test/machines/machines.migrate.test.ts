import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import pg from 'pg';
import { migrateOrders } from '../../src/actors/order-migration.ts';
import { COOKING_REFUSED, ORDER_MACHINES_V2, orderV2 } from '../fixtures/order-v2.ts';
import { ROOT } from '../support/manifests.ts';
import { seedOrders } from '../../scripts/cluster/seed-orders.ts';
import { startSystem, type TestSystem } from '../support/system.ts';
import { LIVES, statusOfScript, type ScriptedOrder } from '../support/views.ts';

interface Finished {
  code: number | null;
  stdout: string;
  stderr: string;
}

const V2 = './test/fixtures/order-v2.install.ts';
const V2_REFUSING_COOKING = './test/fixtures/order-v2-refusing-cooking.install.ts';

/** `npm run machines:migrate` as an operator runs it, on a build with the machines `preload` installs (the shipped ones when absent). */
function runMigrate(databaseUrl: string, args: string[], preload?: string): Promise<Finished> {
  const imports = preload ? ['--import', preload] : [];
  const child = spawn(process.execPath, ['--import', 'tsx', ...imports, 'src/machines-migrate.ts', ...args], {
    cwd: ROOT,
    env: { ...process.env, DATABASE_URL: databaseUrl, LOG_LEVEL: 'error' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.once('exit', (code) => resolve({ code, stdout, stderr })));
}

/**
 * `npm run machines:migrate` on a database of version 1 orders (written as the service writes
 * them), by a build that runs the version 2 fixture.
 */
describe('machines:migrate: moving orders to the newest machine version', function () {
  this.timeout(90_000);
  let sys: TestSystem;
  const tag = randomUUID().slice(0, 6);
  /** Each life of the views' script, three times: orders in every state of version 1. */
  const orders: ScriptedOrder[] = LIVES.flatMap((steps, i) =>
    [0, 1, 2].map((k) => ({
      orderId: randomUUID(),
      customerId: `c${k}-${tag}`,
      storeId: `s${i % 3}-${tag}`,
      area: 'gangnam',
      items: [{ foodId: 'bibimbap', qty: 1 + k, unitPrice: 9000 }],
      steps,
      riderId: `r${k}-${tag}`,
    })),
  );
  const byStatus = new Map<string, number>();
  for (const o of orders) byStatus.set(statusOfScript(o), (byStatus.get(statusOfScript(o)) ?? 0) + 1);
  const versions = async () =>
    Object.fromEntries(
      (await sys.runtime.pg.query<{ v: number; n: number }>('SELECT machine_version AS v, count(*)::int AS n FROM orders GROUP BY 1 ORDER BY 1')).map((r) => [r.v, r.n]),
    );

  before(async () => {
    sys = await startSystem({ name: 'machines_migrate' });
    await seedOrders(sys.runtime.pg, orders);
  });
  after(async () => {
    await sys?.close();
  });

  it('--dry-run prints how many orders in each state would move where, and changes nothing', async () => {
    const before = await sys.runtime.pg.query('SELECT id, machine_version, status, snapshot FROM orders ORDER BY id');
    const run = await runMigrate(sys.databaseUrl, ['--dry-run', '--batch', '7'], V2);
    expect(run.code, run.stderr).to.equal(0);
    const lines = run.stdout.split('\n');
    expect(lines[0]).to.equal('machines:migrate: the newest order machine this build runs is version 2 (it also runs 1 for the orders that stay on them); dry run: nothing is changed');
    expect(lines[1]).to.equal(`would move ${orders.length} of ${orders.length} orders of older versions:`);
    const plan = Object.fromEntries(
      lines
        .map((l) => /^ {2}version 1 → 2 {2}(\w+) +→ (\w+) +(\d+)$/.exec(l))
        .filter((m) => m !== null)
        .map((m) => [`${m[1]} → ${m[2]}`, Number(m[3])]),
    );
    expect(plan).to.deep.equal(Object.fromEntries([...byStatus].map(([s, n]) => [`${s} → ${s}`, n])));
    expect(run.stderr, 'the progress bar').to.match(/planning \[#{30}\] 100% 45\/45 orders/);
    expect(await sys.runtime.pg.query('SELECT id, machine_version, status, snapshot FROM orders ORDER BY id')).to.deep.equal(before);
  });

  it('moves every order whose state its migration takes, lists those it refuses, and leaves them on version 1', async () => {
    const run = await runMigrate(sys.databaseUrl, ['--batch', '10'], V2_REFUSING_COOKING);
    expect(run.code, run.stderr).to.equal(0);
    const cooking = orders.filter((o) => statusOfScript(o) === 'cooking').map((o) => o.orderId).sort();
    expect(cooking).to.have.length(3);
    expect(run.stdout).to.include(`moved ${orders.length - 3} of ${orders.length} orders of older versions:`);
    expect(run.stdout).to.include('kept 3 orders on their version (the migration to the next version refuses their state):');
    expect(run.stdout).to.include(`  version 1  cooking: 3 (refused by the migration to version 2: ${COOKING_REFUSED})`);
    for (const id of cooking) expect(run.stdout).to.include(`      ${id}\n`);
    expect(run.stderr).to.match(/migrating \[#{30}\] 100% 45\/45 orders/);
    expect(await versions()).to.deep.equal({ 1: 3, 2: orders.length - 3 });
    const rows = await sys.runtime.pg.query<{ id: string; status: string; machine_version: number; snapshot: unknown }>('SELECT id, status, machine_version, snapshot FROM orders');
    for (const row of rows) {
      const expected = statusOfScript(orders.find((o) => o.orderId === row.id)!);
      expect(row.status).to.equal(expected);
      if (row.machine_version === 2) expect(orderV2.statusOf(orderV2.restore(row.snapshot)), 'a version 2 snapshot').to.equal(expected);
      else expect(cooking).to.include(row.id);
    }
  });

  it('moves the rest once the migration takes them, then finds nothing to move; a build without version 2 says it cannot run them', async () => {
    const run = await runMigrate(sys.databaseUrl, [], V2);
    expect(run.code, run.stderr).to.equal(0);
    expect(run.stdout).to.include('moved 3 of 3 orders of older versions:\n  version 1 → 2  cooking → cooking       3\n');
    expect(await versions()).to.deep.equal({ 2: orders.length });

    const again = await runMigrate(sys.databaseUrl, [], V2);
    expect(again.code).to.equal(0);
    expect(again.stdout).to.include('every order already runs version 2: nothing to move');

    const shipped = await runMigrate(sys.databaseUrl, ['--dry-run']);
    expect(shipped.code).to.equal(1);
    expect(shipped.stdout).to.include('every order already runs version 1: nothing to move');
    expect(shipped.stderr).to.include(`machines:migrate: ${orders.length} orders run version 2, a newer version than this build runs`);
  });

  it('leaves an order with a payment in flight, or one a command is writing, for later, and names them', async () => {
    const parties = await sys.newParties();
    const [a, b, c] = [await sys.placeOrder(parties), await sys.placeOrder(parties), await sys.placeOrder(parties)];
    await sys.runtime.pg.query(
      `INSERT INTO payment_attempts (idempotency_key, order_id, n, amount, status, started_at, due_at) VALUES ($1, $2, 1, $3, 'pending', now(), now() + interval '1 hour')`,
      [`order-${a.id}-charge-1`, a.id, a.total],
    );
    const holder = new pg.Client({ connectionString: sys.databaseUrl });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT id FROM orders WHERE id = $1 FOR UPDATE', [b.id]);
      const report = await migrateOrders(sys.runtime.pg, ORDER_MACHINES_V2, { dryRun: false, batch: 100, passes: 2, pauseMs: 10 });
      expect(report.busy.sort()).to.deep.equal([a.id, b.id].sort());
      expect(report.moves).to.deep.equal([{ from: 1, state: 'awaitingPayment', to: 2, toState: 'awaitingPayment', orders: 1 }]);
      expect(await versions()).to.deep.equal({ 1: 2, 2: orders.length + 1 });
      const [moved] = await sys.runtime.pg.query<{ machine_version: number }>('SELECT machine_version FROM orders WHERE id = $1', [c.id]);
      expect(moved!.machine_version).to.equal(2);
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined);
      await holder.end();
    }
    await sys.runtime.pg.query(`UPDATE payment_attempts SET status = 'failed', due_at = NULL WHERE order_id = $1`, [a.id]);
    const later = await migrateOrders(sys.runtime.pg, ORDER_MACHINES_V2, { dryRun: false, batch: 100 });
    expect(later.busy).to.deep.equal([]);
    expect(await versions()).to.deep.equal({ 2: orders.length + 3 });
  });
});
