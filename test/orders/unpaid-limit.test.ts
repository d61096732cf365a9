import { expect } from 'chai';
import { eventually, request, startSystem, type AppInstance, type Parties, type TestSystem } from '../support/system.ts';

const LIMIT = 3;

/** MAX_UNPAID_ORDERS_PER_CUSTOMER: one customer cannot open orders without bound and never pay them. */
describe('unpaid orders per customer (MAX_UNPAID_ORDERS_PER_CUSTOMER)', function () {
  this.timeout(60_000);
  let sys: TestSystem;
  let replica: AppInstance;
  let p: Parties;

  before(async () => {
    sys = await startSystem({ name: 'unpaid', env: { MAX_UNPAID_ORDERS_PER_CUSTOMER: String(LIMIT) } });
    replica = await sys.startReplica();
  });
  after(() => sys?.close());
  beforeEach(async () => {
    p = await sys.newParties();
  });

  const body = (p: Parties) => ({ storeId: p.storeId, items: [{ foodId: 'bibimbap', qty: 1 }], address: { area: p.area, line: '1 Teheran-ro' } });
  const place = (p: Parties, opts: { key?: string; via?: { baseUrl: string } } = {}) =>
    request((opts.via ?? sys).baseUrl, 'POST', '/orders', { token: p.customer, body: body(p), headers: opts.key ? { 'idempotency-key': opts.key } : {} });
  const unpaid = async (customerId: string) =>
    (await sys.runtime.db.query(`SELECT count(*)::int AS n FROM orders WHERE customer_id = $1 AND status = 'awaitingPayment'`, [customerId]))[0].n as number;

  it(`answers 429 too_many_unpaid_orders to the order past ${LIMIT} unpaid ones, and writes nothing`, async () => {
    for (let i = 0; i < LIMIT; i += 1) expect((await place(p)).status).to.equal(201);
    const refused = await place(p);
    expect(refused.status, JSON.stringify(refused.body)).to.equal(429);
    expect(refused.body.error).to.deep.include({ code: 'too_many_unpaid_orders', details: { max: LIMIT } });
    expect(await unpaid(p.customerId)).to.equal(LIMIT);
    const [{ n }] = await sys.runtime.db.query('SELECT count(*)::int AS n FROM orders WHERE customer_id = $1', [p.customerId]);
    expect(n, 'no order row for the refused request').to.equal(LIMIT);
    // Another customer is not held back by this one.
    const other = await sys.newParties();
    expect((await place(other)).status).to.equal(201);
  });

  it('a cancelled, a paid and an expired order each give their slot back', async () => {
    const orders: string[] = [];
    for (let i = 0; i < LIMIT; i += 1) orders.push((await place(p)).body.id);
    expect((await place(p)).status).to.equal(429);

    expect((await sys.request('POST', `/orders/${orders[0]}/cancel`, { token: p.customer, body: {} })).status).to.equal(200);
    expect((await place(p)).status, 'after a cancel').to.equal(201);
    expect((await place(p)).status).to.equal(429);

    expect((await sys.request('POST', `/orders/${orders[1]}/pay`, { token: p.customer })).status).to.equal(200);
    expect((await place(p)).status, 'after a pay').to.equal(201);
    expect((await place(p)).status).to.equal(429);

    // The unpaid-order timer of one order comes due (as if UNPAID_ORDER_TIMEOUT_MS had passed): the sweeper fires it.
    await sys.runtime.db.query(`UPDATE timers SET fire_at = now() - interval '5 seconds', due_at = now() - interval '5 seconds' WHERE order_id = $1`, [orders[2]]);
    await eventually(async () => (await sys.request('GET', `/orders/${orders[2]}`, { token: p.customer })).body.status === 'cancelled', 'the unpaid order to expire');
    expect((await place(p)).status, 'after an expiry').to.equal(201);
    expect((await place(p)).status).to.equal(429);
    expect(await unpaid(p.customerId)).to.equal(LIMIT);
  });

  it('an idempotent replay of an order already placed is answered at the limit; a new request is not', async () => {
    const first = await place(p, { key: 'lunch-1' });
    for (let i = 1; i < LIMIT; i += 1) expect((await place(p)).status).to.equal(201);
    const replay = await place(p, { key: 'lunch-1' });
    expect(replay.status, JSON.stringify(replay.body)).to.equal(201);
    expect(replay.headers.get('idempotent-replayed')).to.equal('true');
    expect(replay.body.id).to.equal(first.body.id);
    const fresh = await place(p, { key: 'lunch-2' });
    expect(fresh.status).to.equal(429);
    expect(fresh.body.error.code).to.equal('too_many_unpaid_orders');
    // The refused key was not remembered: once a slot is free, the same key places an order.
    expect((await sys.request('POST', `/orders/${first.body.id}/cancel`, { token: p.customer, body: {} })).status).to.equal(200);
    const later = await place(p, { key: 'lunch-2' });
    expect(later.status).to.equal(201);
    expect(later.headers.get('idempotent-replayed')).to.equal(null);
  });

  it(`holds across two replicas and 40 concurrent requests of a new customer: exactly ${LIMIT} orders`, async () => {
    const answers = await Promise.all(
      Array.from({ length: 40 }, (_, i) => place(p, { via: i % 2 === 0 ? sys : replica, key: i % 4 < 2 ? `k-${i}` : undefined })),
    );
    const statuses = answers.map((a) => a.status);
    expect(statuses.filter((s) => s === 201), JSON.stringify(statuses)).to.have.length(LIMIT);
    expect(statuses.filter((s) => s === 429)).to.have.length(40 - LIMIT);
    expect(await unpaid(p.customerId)).to.equal(LIMIT);
    const [slot] = await sys.runtime.db.query('SELECT unpaid FROM customer_unpaid_orders WHERE customer_id = $1', [p.customerId]);
    expect(slot.unpaid).to.equal(LIMIT);
  });

  it('pays and placements of one customer racing on two replicas keep the count exact', async () => {
    const first = await Promise.all(Array.from({ length: LIMIT }, () => place(p)));
    const ids = first.map((a) => a.body.id as string);
    // Each pay frees a slot while new placements race for them.
    const [pays, places] = await Promise.all([
      Promise.all(ids.map((id, i) => request((i % 2 ? sys : replica).baseUrl, 'POST', `/orders/${id}/pay`, { token: p.customer }))),
      Promise.all(Array.from({ length: 12 }, (_, i) => place(p, { via: i % 2 ? replica : sys }))),
    ]);
    expect(pays.map((a) => a.status)).to.deep.equal(Array(LIMIT).fill(200));
    const placed = places.filter((a) => a.status === 201).length;
    expect(placed).to.be.within(0, LIMIT);
    expect(places.every((a) => a.status === 201 || a.status === 429)).to.equal(true);
    expect(await unpaid(p.customerId)).to.equal(placed);
    const [slot] = await sys.runtime.db.query('SELECT unpaid FROM customer_unpaid_orders WHERE customer_id = $1', [p.customerId]);
    expect(slot.unpaid).to.equal(placed);
    // Whatever the interleaving, the customer can fill the limit again and no further.
    for (let i = placed; i < LIMIT; i += 1) expect((await place(p)).status).to.equal(201);
    expect((await place(p)).status).to.equal(429);
  });
});
