import { expect } from 'chai';
import pg from 'pg';
import { migrateOrders } from '../../src/actors/order-migration.ts';
import type { TimerRow } from '../../src/actors/timers.work.ts';
import type { WorkKind } from '../../src/actors/work.ts';
import { createLogger } from '../../src/log.ts';
import { rebuildViews } from '../../src/views/rebuild.ts';
import { VIEWS } from '../../src/views/registry.ts';
import { nothingOwed, owedNow, viewTables } from '../../scripts/cluster/invariants.ts';
import { ORDER_MACHINES_V2, ORDER_MACHINES_V2_REFUSING_COOKING } from '../fixtures/order-v2.ts';
import { commandRequest, eventually, startSystem, type AppInstance, type Parties, type TestSystem } from '../support/system.ts';

/**
 * Two replicas of different machine versions on one database, in one process: the system's own
 * instance runs the shipped machine (version 1), a replica runs the version 2 fixture.
 */
describe('order machine versions side by side (a rolling deploy, in process)', function () {
  this.timeout(60_000);
  let sys: TestSystem;
  let v2: AppInstance;
  let p: Parties;

  before(async () => {
    sys = await startSystem({ name: 'machines_mixed' });
    v2 = await sys.startReplica({ machines: ORDER_MACHINES_V2 });
  });
  after(async () => {
    await sys?.close();
  });
  beforeEach(async () => {
    p = await sys.newParties();
  });

  const on = (instance: AppInstance, orderId: string, command: string) => instance.request('POST', `/orders/${orderId}/${command}`, commandRequest(p, command));
  const stored = async (orderId: string) =>
    (await sys.runtime.pg.query<{ version: number; status: string; machine_version: number }>('SELECT version, status, machine_version FROM orders WHERE id = $1', [orderId]))[0]!;
  const journal = async (orderId: string) =>
    sys.runtime.pg.query<{ type: string; machine_version: number; status: string }>('SELECT type, machine_version, status FROM order_journal WHERE order_id = $1 ORDER BY seq', [orderId]);
  const timerKind = (instance: AppInstance) => instance.runtime.kinds.find((k) => k.name === 'timer') as WorkKind<TimerRow>;
  const timerOf = async (orderId: string) => (await sys.runtime.pg.query<TimerRow>('SELECT * FROM timers WHERE order_id = $1 ORDER BY version DESC LIMIT 1', [orderId]))[0]!;

  it('moves an order of version 1 to version 2 at its next command on a version 2 replica; a version 1 replica then refuses it with 503 machine_version_ahead and changes nothing', async () => {
    const order = await sys.placeOrder(p);
    expect(order.machineVersion).to.equal(1);

    const paid = await on(v2, order.id, 'pay');
    expect(paid.status, JSON.stringify(paid.body)).to.equal(200);
    expect(paid.body).to.include({ status: 'paid', version: 2, machineVersion: 2 });
    expect(await stored(order.id)).to.deep.equal({ version: 2, status: 'paid', machine_version: 2 });

    for (const [method, path] of [['POST', `/orders/${order.id}/accept`], ['GET', `/orders/${order.id}`], ['GET', `/orders?limit=200`]] as const) {
      const who = method === 'POST' ? p.store : p.customer;
      const res = await sys.request(method, path, { token: who });
      expect(res.status, `${method} ${path} on version 1`).to.equal(503);
      expect(res.headers.get('retry-after')).to.equal('1');
      expect(res.body.error).to.deep.include({ code: 'machine_version_ahead', details: { orderId: order.id, machineVersion: 2, newestKnown: 1 } });
    }
    expect(await stored(order.id), 'the refused command changed nothing').to.deep.equal({ version: 2, status: 'paid', machine_version: 2 });

    // The load balancer's retry on the version 2 replica goes through.
    expect((await on(v2, order.id, 'accept')).body).to.include({ status: 'accepted', version: 3, machineVersion: 2 });
    const events = await v2.request('GET', `/orders/${order.id}/events`, { token: p.customer });
    expect(events.body.map((e: { type: string; machineVersion: number; status: string }) => [e.type, e.machineVersion, e.status])).to.deep.equal([
      ['OrderPlaced', 1, 'awaitingPayment'],
      ['OrderPaid', 2, 'paid'],
      ['OrderAccepted', 2, 'accepted'],
    ]);
  });

  it('never judges on version 1 an order placed on version 2', async () => {
    const placed = await v2.request('POST', '/orders', { token: p.customer, body: { storeId: p.storeId, items: [{ foodId: 'bibimbap', qty: 1 }], address: { area: p.area, line: '1 Teheran-ro' } } });
    expect(placed.status).to.equal(201);
    expect(placed.body).to.include({ machineVersion: 2, status: 'awaitingPayment' });
    const refused = await on(sys, placed.body.id, 'cancel');
    expect(refused.status).to.equal(503);
    expect(refused.body.error.code).to.equal('machine_version_ahead');
    // Someone who may not see the order learns nothing more on version 1 than on version 2.
    const stranger = await sys.token('customer', `stranger-${placed.body.id}`);
    expect((await sys.request('POST', `/orders/${placed.body.id}/cancel`, { token: stranger })).status).to.equal(404);
    expect((await on(v2, placed.body.id, 'cancel')).body).to.include({ status: 'cancelled', machineVersion: 2 });
  });

  it('never lets a replica write back, on version 1, an order machines:migrate moved after it judged it (its cached copy)', async () => {
    const [a, b] = [await sys.placeOrder(p), await sys.placeOrder(p)];
    await sys.drive(p, b.id, ['pay']);
    // Version 1 wrote both last, so it holds them in its cache; then they move without an event.
    const report = await migrateOrders(sys.runtime.pg, ORDER_MACHINES_V2, { dryRun: false, batch: 500 });
    expect(report.busy).to.deep.equal([]);
    for (const [order, command, was] of [[a, 'cancel', 'awaitingPayment'], [a, 'pay', 'awaitingPayment'], [b, 'accept', 'paid']] as const) {
      const res = await on(sys, order.id, command);
      expect(res.status, `${command} on version 1: ${JSON.stringify(res.body)}`).to.equal(503);
      expect(res.body.error.code).to.equal('machine_version_ahead');
      expect(await stored(order.id)).to.deep.equal({ version: order.id === a.id ? 1 : 2, status: was, machine_version: 2 });
    }
    expect((await sys.ledger()).charges.filter((c) => c.orderId === a.id), 'nothing charged').to.have.length(0);
    expect((await on(v2, a.id, 'cancel')).body).to.include({ status: 'cancelled', machineVersion: 2 });
  });

  it('keeps an order on version 1 while its migration refuses its state, and moves it at its first command in a state it accepts', async () => {
    const refusing = await sys.startReplica({ machines: ORDER_MACHINES_V2_REFUSING_COOKING });
    try {
      const order = await sys.placeOrder(p);
      await sys.drive(p, order.id, ['pay', 'accept', 'start-cooking']);
      const cooked = await on(refusing, order.id, 'finish-cooking');
      expect(cooked.body, 'judged on version 1: cooking does not move').to.include({ status: 'cooked', machineVersion: 1 });
      expect(await stored(order.id)).to.include({ machine_version: 1 });
      // Version 1 replicas still serve it.
      expect((await sys.request('GET', `/orders/${order.id}`, { token: p.customer })).body).to.include({ status: 'cooked', machineVersion: 1 });
      const picked = await refusing.request('POST', `/orders/${order.id}/pick`, { token: p.rider });
      expect(picked.body).to.include({ status: 'pickedUp', machineVersion: 2 });
      expect((await journal(order.id)).map((e) => e.machine_version)).to.deep.equal([1, 1, 1, 1, 1, 2]);
    } finally {
      await refusing.close();
    }
  });

  // Durable timers fire on the right version.
  {
    it("timers: a version 1 replica leaves a version 2 order's timer due (retried in 1 s) and changes nothing", async () => {
      const placed = await v2.request('POST', '/orders', { token: p.customer, body: { storeId: p.storeId, items: [{ foodId: 'bibimbap', qty: 1 }], address: { area: p.area, line: '1 Teheran-ro' } } });
      const timer = await timerOf(placed.body.id);
      expect(timer).to.include({ event: 'unpaid-timeout', machine_version: 2 });
      const outcome = await timerKind(sys).perform(timer);
      expect(outcome).to.deep.include({ retryInMs: 1000 });
      expect((outcome as { error: string }).error).to.match(/runs version 2 of the order machine/);
      expect(await stored(placed.body.id)).to.deep.equal({ version: 1, status: 'awaitingPayment', machine_version: 2 });
      expect(await timerOf(placed.body.id)).to.include({ fired_at: null });
    });

    it('timers: one started on version 1 fires, under its version 2 name, for an order a version 2 replica moved', async () => {
      const order = await sys.placeOrder(p);
      const timer = await timerOf(order.id);
      expect(timer).to.include({ event: 'payment-timeout', machine_version: 1 });
      await timerKind(v2).perform(timer);
      expect(await stored(order.id)).to.deep.equal({ version: 2, status: 'expired', machine_version: 2 });
      expect((await journal(order.id)).at(-1)).to.deep.equal({ type: 'PaymentTimedOut', machine_version: 2, status: 'expired' });
      expect(await timerOf(order.id)).to.include({ outcome: 'fired' });
    });

    it('timers: an order moved by machines:migrate expires when its version 1 timer comes due, whichever replica takes it', async () => {
      const order = await sys.placeOrder(p);
      const report = await migrateOrders(sys.runtime.pg, ORDER_MACHINES_V2, { dryRun: false, batch: 500 });
      expect(report.busy).to.deep.equal([]);
      expect(await stored(order.id)).to.include({ machine_version: 2, status: 'awaitingPayment' });
      expect(await timerOf(order.id)).to.include({ event: 'payment-timeout', machine_version: 1 });
      // Due now: both replicas' workers may take it; version 1 leaves it to version 2.
      const id = (await timerOf(order.id)).id;
      await sys.runtime.pg.query('UPDATE timers SET due_at = now(), fire_at = now() WHERE id = $1', [id]);
      sys.runtime.work.schedule('timer', [id]);
      v2.runtime.work.schedule('timer', [id]);
      // Each time version 1 takes the job it is retried a second later, by whichever worker BullMQ
      // hands the job to: in eight runs version 1 took 0 to 6 turns in a row (about two in three
      // of all), and once in CI it held the order past a deadline of 20 s. This one allows some 45.
      await eventually(async () => (await stored(order.id)).status === 'expired', 'the order to expire', 45_000);
      expect((await journal(order.id)).at(-1)).to.deep.equal({ type: 'PaymentTimedOut', machine_version: 2, status: 'expired' });
    });
  }

  it('GET /machines/order lists the versions in use with their order counts, as each replica knows them', async () => {
    await sys.placeOrder(p); // one on version 1 (machines:migrate above moved the others)
    const counts = async () => {
      const rows = await sys.runtime.pg.query<{ v: number; orders: number; active: number }>(
        `SELECT machine_version AS v, count(*)::int AS orders,
                count(*) FILTER (WHERE status NOT IN ('delivered', 'cancelled', 'rejected', 'expired'))::int AS active
         FROM orders GROUP BY 1 ORDER BY 1`,
      );
      return rows;
    };
    const expected = await counts();
    expect(expected.map((r) => r.v)).to.deep.equal([1, 2]);
    // Counts are kept up to 5 s: wait for a count made after this test's orders.
    const fromV2 = await eventually(async () => {
      const res = await v2.request('GET', '/machines/order');
      return res.body.versions[0].orders === expected[0]!.orders && res.body.versions[1].orders === expected[1]!.orders ? res : undefined;
    }, 'version 2 to count the orders', 15_000);
    expect(fromV2.status).to.equal(200);
    expect(fromV2.body).to.include({ id: 'order', version: 2 });
    expect(fromV2.body.states.map((s: { id: string }) => s.id)).to.include('expired');
    expect(fromV2.body.versions).to.deep.equal([
      { version: 1, current: false, known: true, orders: expected[0]!.orders, active: expected[0]!.active },
      { version: 2, current: true, known: true, orders: expected[1]!.orders, active: expected[1]!.active },
    ]);
    const v1Graph = await v2.request('GET', '/machines/order?version=1');
    expect(v1Graph.body).to.include({ version: 1 });
    expect(v1Graph.body.states.map((s: { id: string }) => s.id)).not.to.include('expired');
    expect((await v2.request('GET', '/machines/order?version=3')).status).to.equal(404);
    expect((await v2.request('GET', '/machines/order?version=two')).status).to.equal(400);

    const fromV1 = await eventually(async () => {
      const res = await sys.request('GET', '/machines/order');
      return res.body.versions.at(-1)?.orders === expected[1]!.orders ? res : undefined;
    }, 'version 1 to count the orders', 15_000);
    expect(fromV1.body).to.include({ version: 1 });
    expect(fromV1.body.versions).to.deep.equal([
      { version: 1, current: true, known: true, orders: expected[0]!.orders, active: expected[0]!.active },
      { version: 2, current: false, known: false, orders: expected[1]!.orders, active: null },
    ]);
  });

  it('the consumers of both replicas took the events of both versions: every view equals a replay of the journal', async () => {
    const pool = new pg.Pool({ connectionString: sys.databaseUrl, max: 2 });
    try {
      await eventually(async () => nothingOwed(await owedNow(pool)), 'nothing to be owed', 30_000);
    } finally {
      await pool.end();
    }
    const customers = await sys.runtime.pg.query<{ status: string }>(`SELECT status FROM view_customer_orders WHERE status = 'expired'`);
    expect(customers.length, 'orders expired on version 2 show as expired').to.be.greaterThan(0);
    const live = await viewTables(sys.runtime.pg);
    await rebuildViews(sys.runtime.pg, VIEWS, { log: createLogger('silent') });
    expect(await viewTables(sys.runtime.pg)).to.deep.equal(live);
  });
});
