import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { ROOT } from '../support/manifests.ts';
import { seedOrders } from '../../scripts/cluster/seed-orders.ts';
import { eventually, startSystem, type Parties, type TestSystem } from '../support/system.ts';
import { expectedViews, LIVES, plain, prng, shuffled, tablesAsExpected, viewTables, type ScriptedOrder, type Step } from '../support/views.ts';

const SEEDED = Number(process.env.VIEWS_REBUILD_ORDERS ?? 3000);
const SEED = process.env.VIEWS_SEED !== undefined ? Number(process.env.VIEWS_SEED) : Math.floor(Math.random() * 2 ** 31);

const FOODS = [
  { foodId: 'bibimbap', name: 'Bibimbap', price: 9000, available: true },
  { foodId: 'tteokbokki', name: 'Tteokbokki', price: 6500, available: true },
  { foodId: 'japchae', name: 'Japchae', price: 8000, available: true },
];

const VIEW_CONSUMERS = ['view.customer-orders', 'view.store-orders', 'view.store-food-counts', 'view.rider-delivery-counts', 'view.deliveries'];

interface Finished {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `npm run views:rebuild` as an operator runs it, against the service's database. */
function runRebuild(databaseUrl: string, args: string[] = []): Promise<Finished> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/views-rebuild.ts', ...args], {
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
 * `npm run views:rebuild` empties the views and replays the journal while the service keeps
 * running and taking orders; afterwards the views equal what live delivery built, and what the
 * script of every order says they must show.
 */
describe(`views: rebuild equals live (${SEEDED} orders, seed ${SEED})`, function () {
  this.timeout(120_000);
  let sys: TestSystem;

  before(async () => {
    sys = await startSystem({ name: 'views_rebuild' });
  });
  after(async () => {
    await sys?.close();
  });

  /** Every view has applied every event of every order. */
  async function caughtUp(what: string): Promise<void> {
    await eventually(
      async () => {
        const [row] = await sys.runtime.db.query(
          `SELECT (SELECT count(*) FROM order_journal j JOIN consumer_positions p ON p.grp = 'events' AND p.part = j.part WHERE (j.tx, j.pos) > (p.tx, p.pos))::int
                + (SELECT count(*) FROM consumer_failures WHERE consumer = ANY($1::text[]))::int AS owed`,
          [VIEW_CONSUMERS],
        );
        return row.owed === 0;
      },
      what,
      60_000,
    );
  }

  it('rebuilds every view, with new orders arriving meanwhile, into exactly what the live views hold and the script implies', async () => {
    const random = prng(SEED);
    const pick = <T>(xs: readonly T[]) => xs[Math.floor(random() * xs.length)]!;
    const tag = randomUUID().slice(0, 6);
    const customers = Array.from({ length: 40 }, (_, i) => `c${i}-${tag}`);
    const stores = Array.from({ length: 5 }, (_, i) => `s${i}-${tag}`);
    const riders = Array.from({ length: 4 }, (_, i) => `r${i}-${tag}`);
    const areas = ['gangnam', 'mapo', 'jongno'];

    // Given thousands of orders in every state, written as the service would have written them.
    const seeded: ScriptedOrder[] = Array.from({ length: SEEDED }, () => {
      const foods = shuffled(FOODS, random).slice(0, 1 + Math.floor(random() * 3));
      return {
        orderId: randomUUID(),
        customerId: pick(customers),
        storeId: pick(stores),
        area: pick(areas),
        items: foods.map((f) => ({ foodId: f.foodId, qty: 1 + Math.floor(random() * 4), unitPrice: f.price })),
        steps: pick(LIVES),
        riderId: pick(riders),
      };
    });
    const { events } = await sys.runtime.pg.transaction((tx) => seedOrders(tx, seeded));
    expect(events).to.equal(seeded.reduce((n, o) => n + o.steps.length + 1, 0));

    // Live: the partitions' owner reads the seeded events from its positions (nobody woke it: its poll finds them).
    await caughtUp('the live views to apply the seeded orders');
    const live = await viewTables(sys.runtime.pg);
    expect(plain(tablesAsExpected(live)), 'the live views').to.deep.equal(plain(expectedViews(seeded)));

    // When the rebuild runs while customers, stores and riders keep working through the API…
    const party = async (): Promise<Parties> => {
      const p = await sys.newParties();
      expect((await sys.request('PUT', `/stores/${p.storeId}/menu`, { token: p.store, body: FOODS })).status).to.equal(200);
      return p;
    };
    const workers = [await party(), await party(), await party()];
    const arrived: ScriptedOrder[] = [];
    let stop = false;
    const work = async (p: Parties) => {
      while (!stop) {
        const foods = shuffled(FOODS, random).slice(0, 1 + Math.floor(random() * 3));
        const items = foods.map((f) => ({ foodId: f.foodId, qty: 1 + Math.floor(random() * 4) }));
        const order = await sys.placeOrder(p, items);
        const steps = pick(LIVES).filter((s): s is Exclude<Step, 'store-accept-timeout' | 'payment-timeout'> => !s.endsWith('timeout'));
        if (steps.length > 0) await sys.drive(p, order.id, steps);
        arrived.push({
          orderId: order.id,
          customerId: p.customerId,
          storeId: p.storeId,
          area: p.area,
          items: foods.map((f, i) => ({ foodId: f.foodId, qty: items[i]!.qty, unitPrice: f.price })),
          steps,
          riderId: p.riderId,
        });
      }
    };
    const working = Promise.all(workers.map(work));
    await eventually(async () => arrived.length >= 3, 'the first new orders');
    const rebuild = await runRebuild(sys.databaseUrl, ['--batch', '250']);
    stop = true;
    await working;

    // …it finishes, reports its progress, and nothing is left over once the live events are in.
    expect(rebuild.code, rebuild.stderr).to.equal(0);
    expect(rebuild.stderr).to.match(/100% \d+\/\d+ orders/);
    expect(rebuild.stdout).to.match(/^rebuilt customer-orders, store-orders, store-food-counts, rider-delivery-counts, deliveries: \d+ orders/);
    const status = (await sys.request('GET', '/views/_status', { token: workers[0]!.admin })).body;
    const rebuilt = status.views.map((v: any) => v.lastRebuild);
    for (const r of rebuilt) expect(r.finishedAt).to.be.a('string');
    // Orders did arrive while it ran: events were journaled between its start and its end.
    const [{ n: during }] = await sys.runtime.db.query('SELECT count(*)::int AS n FROM order_journal WHERE at > $1 AND at < $2', [rebuilt[0].startedAt, rebuilt[0].finishedAt]);
    expect(during, 'events journaled during the rebuild').to.be.greaterThan(0);
    await caughtUp('the views to apply the orders that arrived during the rebuild');
    for (const v of status.views) expect(v.rebuildNeeded, v.view).to.equal(false);

    // Then the views are what the script of every order says…
    const after = await viewTables(sys.runtime.pg);
    expect(plain(tablesAsExpected(after)), 'the rebuilt views').to.deep.equal(plain(expectedViews([...seeded, ...arrived])));
    // …and, row for row (timestamps, items, seqs), what live delivery had built for the seeded orders.
    const seededIds = new Set(seeded.map((o) => o.orderId));
    for (const table of ['view_customer_orders', 'view_store_orders', 'view_deliveries']) {
      const only = (rows: unknown[]) => (rows as { order_id: string }[]).filter((r) => seededIds.has(r.order_id));
      expect(only(after[table]!), table).to.deep.equal(only(live[table]!));
    }
    expect(arrived.length, 'orders placed during the rebuild').to.be.greaterThan(3);
  });

  it('--view rebuilds one view and leaves the others alone', async () => {
    const before = await viewTables(sys.runtime.pg);
    const positions = await sys.runtime.db.query(`SELECT part, tx::text, pos FROM consumer_positions ORDER BY grp, part`);
    const rebuild = await runRebuild(sys.databaseUrl, ['--view', 'store-food-counts']);
    expect(rebuild.code, rebuild.stderr).to.equal(0);
    expect(rebuild.stdout).to.match(/^rebuilt store-food-counts: /);
    expect(await viewTables(sys.runtime.pg)).to.deep.equal(before);
    // Live delivery's positions did not move (no event arrived), and nothing is owed to any view.
    expect(await sys.runtime.db.query(`SELECT part, tx::text, pos FROM consumer_positions ORDER BY grp, part`)).to.deep.equal(positions);
    expect((await sys.runtime.db.query('SELECT count(*)::int AS n FROM consumer_failures'))[0].n).to.equal(0);
  });
});
