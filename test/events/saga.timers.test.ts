import { expect } from 'chai';
import pg from 'pg';
import { STORE_ACCEPT_TIMEOUT_REASON, PAYMENT_TIMEOUT_REASON } from '../../src/machines/order/v1.ts';
import { moneyOf } from '../support/saga.ts';
import { startServiceProcess } from '../support/service-process.ts';
import { eventually, request, startSystem, type Parties, type TestSystem } from '../support/system.ts';

const ACCEPT_MS = 2500;
const UNPAID_MS = 2500;

/** Durable timers: in PostgreSQL with the transition that starts them, fired by delayed jobs, restart-proof. */
describe('saga: durable timers', function () {
  this.timeout(60_000);
  let sys: TestSystem;
  let p: Parties;

  before(async () => {
    sys = await startSystem({ name: 'timers', env: { STORE_ACCEPT_TIMEOUT_MS: String(ACCEPT_MS), UNPAID_ORDER_TIMEOUT_MS: String(UNPAID_MS) } });
  });
  after(async () => {
    await inspect?.end();
    await sys?.close();
  });
  beforeEach(async () => {
    p = await sys.newParties();
  });

  // Its own connection: the last test stops the system's runtime (and with it the runtime's pool).
  let inspect: pg.Pool;
  before(() => {
    inspect = new pg.Pool({ connectionString: sys.databaseUrl, max: 2 });
  });
  const timersOf = async (orderId: string) =>
    (await inspect.query('SELECT id, version, event, fire_at, fired_at, outcome, due_at FROM timers WHERE order_id = $1 ORDER BY version', [orderId])).rows;

  it('writes the timer with the transition that starts it', async () => {
    const order = await sys.placeOrder(p);
    const [timer] = await timersOf(order.id);
    expect(timer).to.include({ id: `${order.id}:1:payment-timeout`, version: 1, event: 'payment-timeout', outcome: null });
    expect(timer.fire_at.getTime() - new Date(order.createdAt).getTime()).to.equal(UNPAID_MS);
    await sys.drive(p, order.id, ['cancel']);
  });

  it('rejects and refunds a paid order the store did not accept in time; the customer and the store hear of it', async () => {
    const order = await sys.placeOrder(p);
    await sys.drive(p, order.id, ['pay']);
    const rejected = await eventually(async () => {
      const o = (await sys.request('GET', `/orders/${order.id}`, { token: p.customer })).body;
      return o.status === 'rejected' && o.refund?.status === 'refunded' && o;
    }, 'the store-accept timer to reject and refund', 15_000);
    expect(rejected.reason).to.equal(STORE_ACCEPT_TIMEOUT_REASON);
    const money = moneyOf(await sys.ledger(), order.id);
    expect(money.charges).to.have.length(1);
    expect(money.refunds).to.have.length(1);
    const journal = (await sys.request('GET', `/orders/${order.id}/events`, { token: p.customer })).body;
    expect(journal.at(-1)).to.deep.include({ type: 'StoreAcceptTimedOut', causationId: `${order.id}:2:store-accept-timeout`, actor: { sub: 'timer', role: 'system' } });
    const timers = await timersOf(order.id);
    expect(timers.map((t: { outcome: string }) => t.outcome)).to.deep.equal(['moved-on', 'fired']);
    await eventually(async () => {
      const feed = (await sys.request('GET', '/notifications', { token: p.store })).body as { orderId: string; status: string }[];
      return feed.some((n) => n.orderId === order.id && n.status === 'rejected');
    }, 'the store to hear of the automatic rejection');
  });

  it('cancels an order left unpaid', async () => {
    const order = await sys.placeOrder(p);
    const cancelled = await eventually(async () => {
      const o = (await sys.request('GET', `/orders/${order.id}`, { token: p.customer })).body;
      return o.status === 'cancelled' && o;
    }, 'the unpaid-order timer to cancel', 15_000);
    expect(cancelled.reason).to.equal(PAYMENT_TIMEOUT_REASON);
    expect(cancelled.refund).to.equal(null);
    expect(moneyOf(await sys.ledger(), order.id).charges).to.have.length(0);
  });

  it('a timer whose order moved on does nothing', async () => {
    const order = await sys.placeOrder(p);
    const accepted = await sys.drive(p, order.id, ['pay', 'accept']);
    const [, storeTimer] = await timersOf(order.id);
    await eventually(async () => (await timersOf(order.id)).every((t: { fired_at: Date | null }) => t.fired_at !== null), 'both timers to come due', 15_000);
    expect((await timersOf(order.id)).map((t: { outcome: string }) => t.outcome)).to.deep.equal(['moved-on', 'moved-on']);
    expect(storeTimer.event).to.equal('store-accept-timeout');
    const now = (await sys.request('GET', `/orders/${order.id}`, { token: p.customer })).body;
    expect(now).to.deep.include({ status: 'accepted', version: accepted.version });
    expect(moneyOf(await sys.ledger(), order.id).refunds).to.have.length(0);
  });

  it('survives a restart of every process: the timer fires from PostgreSQL when the service comes back', async () => {
    const order = await sys.placeOrder(p);
    const paid = await sys.drive(p, order.id, ['pay']);
    // Every process of this system stops before the timer is due...
    await sys.runtime.close();
    const due = new Date(paid.updatedAt).getTime() + ACCEPT_MS;
    await eventually(async () => Date.now() > due + 500, 'the timer to be overdue while nothing runs', 10_000);
    expect((await timersOf(order.id)).at(-1).fired_at).to.equal(null);
    // ...and a fresh process fires it.
    const service = await startServiceProcess({ gatewayUrl: sys.gateway.url, queuePrefix: sys.queuePrefix, env: sys.env });
    try {
      const rejected = await eventually(async () => {
        const o = (await request(service.baseUrl, 'GET', `/orders/${order.id}`, { token: p.customer })).body;
        return o.status === 'rejected' && o.refund?.status === 'refunded' && o;
      }, 'the restarted service to fire the overdue timer', 20_000);
      expect(rejected.reason).to.equal(STORE_ACCEPT_TIMEOUT_REASON);
      const money = moneyOf(await sys.ledger(), order.id);
      expect(money.refunds).to.have.length(1);
      expect(money.kept).to.have.length(0);
    } finally {
      service.child.kill('SIGTERM');
      await service.exited;
    }
  });
});
