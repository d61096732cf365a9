import { expect } from 'chai';
import { applyPartitions } from '../../src/actors/consumers/apply.ts';
import type { EventRef } from '../../src/actors/consumers/types.ts';
import { createLogger } from '../../src/log.ts';
import { eventually, startSystem, type Parties, type TestSystem } from '../support/system.ts';
import { expectedViews, shuffled, statusOfScript, viewTables, type ScriptedOrder, type Step } from '../support/views.ts';

const log = createLogger('silent');

/** Three foods, all available, the same at both stores. */
const FOODS = [
  { foodId: 'bibimbap', name: 'Bibimbap', price: 9000, available: true },
  { foodId: 'tteokbokki', name: 'Tteokbokki', price: 6500, available: true },
  { foodId: 'japchae', name: 'Japchae', price: 8000, available: true },
];
const price = (foodId: string) => FOODS.find((f) => f.foodId === foodId)!.price;

const VIEW_CONSUMERS = ['view.customer-orders', 'view.store-orders', 'view.store-food-counts', 'view.rider-delivery-counts', 'view.deliveries'];

/**
 * The read models after a scripted mix of orders: completed, cancelled before and after payment,
 * rejected by the store and by the accept timer, picked by two riders, three foods, two stores.
 * Every expected figure is worked out from the script (test/support/views.ts), not the journal.
 */
describe('views: customer, store, rider and dispatch read models', function () {
  this.timeout(60_000);
  let sys: TestSystem;
  let a: Parties;
  let b: Parties;
  const script: ScriptedOrder[] = [];

  /** The parties of one order: any mix of the two sets. */
  const party = (customer: Parties, store: Parties, rider: Parties = customer): Parties => ({
    ...customer,
    storeId: store.storeId,
    store: store.store,
    riderId: rider.riderId,
    rider: rider.rider,
  });

  async function run(p: Parties, items: [string, number][], steps: Step[]): Promise<ScriptedOrder> {
    const order = await sys.placeOrder(p, items.map(([foodId, qty]) => ({ foodId, qty })));
    const commands = steps.filter((s) => s !== 'store-accept-timeout' && s !== 'payment-timeout');
    if (commands.length > 0) await sys.drive(p, order.id, commands);
    const scripted: ScriptedOrder = {
      orderId: order.id,
      customerId: p.customerId,
      storeId: p.storeId,
      area: p.area,
      items: items.map(([foodId, qty]) => ({ foodId, qty, unitPrice: price(foodId) })),
      steps,
      riderId: steps.includes('pick') ? p.riderId : undefined,
    };
    script.push(scripted);
    return scripted;
  }

  const get = (path: string, token: string) => sys.request('GET', path, { token });
  const version = async (orderId: string) => (await get(`/orders/${orderId}`, a.admin)).body.version as number;

  /** Waits until every view consumer has applied every event of the scripted orders. */
  async function settled(): Promise<void> {
    await eventually(async () => {
      const [row] = await sys.runtime.db.query(
        `SELECT (SELECT count(*) FROM order_journal j JOIN consumer_positions p ON p.grp = 'events' AND p.part = j.part
                 WHERE j.order_id = ANY($1::uuid[]) AND (j.tx, j.pos) > (p.tx, p.pos))::int
              + (SELECT count(*) FROM consumer_failures WHERE order_id = ANY($1::uuid[]))::int AS owed`,
        [script.map((o) => o.orderId)],
      );
      return row.owed === 0;
    }, 'every view to apply every scripted event', 20_000);
  }

  before(async () => {
    sys = await startSystem({ name: 'views', env: { STORE_ACCEPT_TIMEOUT_MS: '1500' } });
    a = await sys.newParties();
    b = await sys.newParties();
    for (const p of [a, b]) expect((await sys.request('PUT', `/stores/${p.storeId}/menu`, { token: p.store, body: FOODS })).status).to.equal(200);

    const full: Step[] = ['pay', 'accept', 'start-cooking', 'finish-cooking', 'pick', 'confirm-delivery'];
    await run(party(a, a, a), [['bibimbap', 2], ['tteokbokki', 1]], full); // delivered by rider A
    await run(party(a, a, b), [['japchae', 3]], full); // delivered by rider B
    await run(party(b, a), [['bibimbap', 1], ['japchae', 1]], ['pay', 'accept', 'cancel']); // cancelled after payment
    await run(party(b, a), [['tteokbokki', 4]], ['cancel']); // cancelled before payment: never received
    await run(party(a, a), [['bibimbap', 5]], ['pay', 'reject']); // rejected by the store
    const timedOut = await run(party(b, a), [['japchae', 2], ['tteokbokki', 1]], ['pay', 'store-accept-timeout']); // rejected by the timer
    await run(party(b, a), [['bibimbap', 1], ['tteokbokki', 2]], ['pay', 'accept', 'start-cooking', 'finish-cooking']); // waiting for a rider
    await run(party(a, b, a), [['bibimbap', 1]], ['pay', 'accept', 'start-cooking', 'finish-cooking', 'pick']); // on its way, rider A
    await run(party(a, a), [['tteokbokki', 1]], ['pay', 'accept']); // accepted
    await run(party(b, b), [['japchae', 2]], ['pay', 'cancel']); // cancelled after payment, other store
    await run(party(a, a), [['japchae', 1]], []); // not paid yet
    await eventually(async () => (await get(`/orders/${timedOut.orderId}`, a.admin)).body.status === 'rejected', 'the accept timer to reject the order', 15_000);
    // The script is what the system did: each order is in the state the script says.
    for (const o of script) expect((await get(`/orders/${o.orderId}`, a.admin)).body.status, o.orderId).to.equal(statusOfScript(o));
    await settled();
  });

  after(async () => {
    await sys?.close();
  });

  it("the customer's orders: every order with its status, store, total and rider, newest first, as GET /orders/:id has them", async () => {
    const expected = expectedViews(script);
    for (const p of [a, b]) {
      const res = await get(`/views/customers/${p.customerId}/orders`, p.customer);
      expect(res.status).to.equal(200);
      const rows = res.body as { orderId: string; placedAt: string; updatedAt: string; version: number }[];
      const comparable = rows.map(({ orderId, status, storeId, total, riderId }: any) => ({ orderId, status, storeId, total, riderId })).sort((x, y) => (x.orderId < y.orderId ? -1 : 1));
      expect(comparable).to.deep.equal(expected.customerOrders.get(p.customerId));
      // Newest first, and caught up with the strongly consistent source.
      expect(rows.map((r) => r.placedAt)).to.deep.equal(rows.map((r) => r.placedAt).sort().reverse());
      for (const r of rows) {
        const order = (await get(`/orders/${r.orderId}`, p.customer)).body;
        expect({ placedAt: r.placedAt, updatedAt: r.updatedAt, version: r.version }).to.deep.equal({ placedAt: order.createdAt, updatedAt: order.updatedAt, version: order.version });
      }
      expect(res.headers.get('x-view-lag-ms')).to.match(/^\d+$/);
      expect(res.headers.get('x-view-events-behind')).to.match(/^\d+$/);
    }
    expect((await get(`/views/customers/${a.customerId}/orders?limit=2`, a.customer)).body).to.have.length(2);
  });

  it("the store's inbox: the orders it received (from payment on), by status", async () => {
    const expected = expectedViews(script);
    for (const p of [a, b]) {
      const res = await get(`/views/stores/${p.storeId}/orders`, p.store);
      expect(res.status).to.equal(200);
      const rows = (res.body as any[]).map(({ orderId, status, total, riderId, items }) => ({ orderId, status, total, riderId, items: items.map(({ foodId, qty }: any) => ({ foodId, qty })) }));
      expect(rows.sort((x, y) => (x.orderId < y.orderId ? -1 : 1))).to.deep.equal(expected.storeOrders.get(p.storeId));
      expect((res.body as { paidAt: string }[]).map((r) => r.paidAt)).to.deep.equal((res.body as { paidAt: string }[]).map((r) => r.paidAt).sort().reverse());
    }
    for (const status of ['accepted', 'cancelled', 'rejected', 'cooked', 'delivered']) {
      const res = await get(`/views/stores/${a.storeId}/orders?status=${status}`, a.store);
      expect(res.status).to.equal(200);
      expect(res.body.map((r: { orderId: string }) => r.orderId).sort(), status).to.deep.equal(
        expected.storeOrders.get(a.storeId)!.filter((r) => r.status === status).map((r) => r.orderId),
      );
    }
    // The store sees what it needs to cook, not who ordered or where to.
    const one = (await get(`/views/stores/${a.storeId}/orders?status=cooked`, a.store)).body[0];
    expect(one.items[0]).to.have.all.keys('foodId', 'name', 'qty');
    expect(JSON.stringify(one)).not.to.include(b.customerId);
    expect((await get(`/views/stores/${a.storeId}/orders?status=awaitingPayment`, a.store)).status).to.equal(400);
  });

  it('the store food counts: quantities received, less cancelled, rejected and timed-out orders', async () => {
    const expected = expectedViews(script);
    // Worked out by hand from the script too, so the model in the test cannot be wrong alone.
    expect(Object.fromEntries(expected.foodCounts.get(a.storeId)!)).to.deep.equal({ bibimbap: 3, tteokbokki: 4, japchae: 3 });
    expect(Object.fromEntries(expected.foodCounts.get(b.storeId)!)).to.deep.equal({ bibimbap: 1 });
    for (const p of [a, b]) {
      const res = await get(`/views/stores/${p.storeId}/food-counts`, p.store);
      expect(res.status).to.equal(200);
      const want = [...expected.foodCounts.get(p.storeId)!].map(([foodId, count]) => ({ foodId, count })).sort((x, y) => (x.foodId < y.foodId ? -1 : 1));
      expect(res.body).to.deep.equal(want);
    }
  });

  it('the rider delivery counts: one per pick', async () => {
    expect(Object.fromEntries(expectedViews(script).riderCounts)).to.deep.equal({ [a.riderId]: 2, [b.riderId]: 1 });
    expect((await get(`/views/riders/${a.riderId}/delivery-count`, a.rider)).body).to.deep.equal({ riderId: a.riderId, count: 2 });
    expect((await get(`/views/riders/${b.riderId}/delivery-count`, b.rider)).body).to.deep.equal({ riderId: b.riderId, count: 1 });
    const idle = await sys.token('rider', 'rider-who-never-picked');
    expect((await get('/views/riders/rider-who-never-picked/delivery-count', idle)).body).to.deep.equal({ riderId: 'rider-who-never-picked', count: 0 });
  });

  it('the deliveries available by area: cooked orders only, the same projection machinery', async () => {
    const expected = expectedViews(script);
    for (const p of [a, b]) {
      const res = await get(`/deliveries?area=${p.area}`, p.rider);
      expect(res.status).to.equal(200);
      expect(res.body.map((d: { orderId: string }) => d.orderId).sort()).to.deep.equal(expected.deliveries.get(p.area) ?? []);
      expect(res.headers.get('x-view-lag-ms')).to.match(/^\d+$/);
    }
  });

  it('the same partitions read again, several times at once, change no view', async () => {
    await settled();
    const before = await viewTables(sys.runtime.pg);
    const group = { name: 'events', consumers: sys.runtime.consumers.filter((c) => VIEW_CONSUMERS.includes(c.name)) };
    expect(group.consumers.map((c) => c.name).sort()).to.deep.equal([...VIEW_CONSUMERS].sort());
    const parts = [...new Set(script.map((o) => sys.runtime.bus.partitionOf(o.orderId)))];
    const runs = await Promise.all([1, 5, 50, 50].map((limitPerPart) => applyPartitions(sys.runtime.pg, group, parts, { limitPerPart, log })));
    sys.runtime.bus.wake(parts);
    expect(runs.reduce((n, r) => n + r.applied, 0)).to.equal(0);
    expect(await viewTables(sys.runtime.pg)).to.deep.equal(before);
    expect((await sys.runtime.db.query('SELECT count(*)::int AS n FROM consumer_failures')).at(0).n).to.equal(0);
  });

  it('rows keyed by an order never move backwards: a replay of old events from a lost position changes nothing', async () => {
    await settled();
    const before = await viewTables(sys.runtime.pg);
    const rowViews = ['view.customer-orders', 'view.store-orders', 'view.deliveries'];
    // A group whose positions are at the very start: it reads every old event again.
    const replay = { name: `replay-${Date.now()}`, consumers: sys.runtime.consumers.filter((c) => rowViews.includes(c.name)) };
    await sys.runtime.db.query(`INSERT INTO consumer_positions (grp, part, tx, pos) SELECT $1, part, '0', 0 FROM event_partitions`, [replay.name]);
    try {
      const parts = [...new Set(script.map((o) => sys.runtime.bus.partitionOf(o.orderId)))];
      // Small batches, so an order's old events arrive across batches, and two replays at once.
      for (let round = 0; round < 200; round += 1) {
        const [x, y] = await Promise.all([applyPartitions(sys.runtime.pg, replay, parts, { limitPerPart: 2, log }), applyPartitions(sys.runtime.pg, replay, parts, { limitPerPart: 3, log })]);
        expect(await viewTables(sys.runtime.pg)).to.deep.equal(before);
        if (x.byPart.size === 0 && y.byPart.size === 0) break;
      }
      const [{ n }] = await sys.runtime.db.query(
        `SELECT count(*)::int AS n FROM order_journal j JOIN consumer_positions p ON p.grp = $1 AND p.part = j.part WHERE j.part = ANY($2::smallint[]) AND (j.tx, j.pos) > (p.tx, p.pos)`,
        [replay.name, parts],
      );
      expect(n, 'events the replay did not reach').to.equal(0);
    } finally {
      await sys.runtime.db.query('DELETE FROM consumer_positions WHERE grp = $1', [replay.name]);
    }
  });

  describe('access', () => {
    it('a customer reads only their own orders; a store, a rider or another customer gets 403; an admin reads any', async () => {
      const path = `/views/customers/${a.customerId}/orders`;
      expect((await get(path, a.customer)).status).to.equal(200);
      for (const token of [b.customer, a.store, a.rider]) {
        const res = await get(path, token);
        expect(res.status).to.equal(403);
        expect(res.body.error.code).to.equal('forbidden');
      }
      // An id nobody has is refused the same way: ids cannot be probed.
      expect((await get('/views/customers/nobody-at-all/orders', a.customer)).status).to.equal(403);
      expect((await get(path, a.admin)).body).to.have.length(script.filter((o) => o.customerId === a.customerId).length);
      expect((await sys.request('GET', path)).status).to.equal(401);
    });

    it("a store reads only its own inbox and food counts; another store, a customer or a rider gets 403", async () => {
      for (const path of [`/views/stores/${a.storeId}/orders`, `/views/stores/${a.storeId}/food-counts`]) {
        expect((await get(path, a.store)).status, path).to.equal(200);
        expect((await get(path, a.admin)).status, path).to.equal(200);
        for (const token of [b.store, a.customer, a.rider]) expect((await get(path, token)).status, path).to.equal(403);
      }
    });

    it("a rider reads only their own delivery count", async () => {
      const path = `/views/riders/${a.riderId}/delivery-count`;
      expect((await get(path, a.rider)).status).to.equal(200);
      expect((await get(path, a.admin)).status).to.equal(200);
      for (const token of [b.rider, a.customer, a.store]) expect((await get(path, token)).status).to.equal(403);
    });

    it('/views/_status is for admins', async () => {
      const res = await get('/views/_status', a.admin);
      expect(res.status).to.equal(200);
      expect(res.body.views.map((v: { view: string }) => v.view)).to.deep.equal(['customer-orders', 'store-orders', 'store-food-counts', 'rider-delivery-counts', 'deliveries']);
      for (const token of [a.customer, a.store, a.rider]) expect((await get('/views/_status', token)).status).to.equal(403);
    });
  });
});
