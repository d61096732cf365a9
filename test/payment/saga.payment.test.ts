import { expect } from 'chai';
import { moneyOf } from '../support/saga.ts';
import { startServiceProcess } from '../support/service-process.ts';
import { eventually, request, startSystem, type Parties, type TestSystem, withSharedSystem } from '../support/system.ts';

const timed = async <T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> => {
  const started = performance.now();
  const value = await fn();
  return { ms: performance.now() - started, value };
};

/** A slow or failing gateway: pay answers 503 fast, holds nothing, and the breaker opens and heals. */
describe('saga: payment behind a circuit breaker, outside any transaction', function () {
  this.timeout(90_000);
  let sys: TestSystem;
  let p: Parties;

  before(async () => {
    // A system of its own: the breaker it opens must not fail other tests' payments.
    sys = await startSystem({ name: 'breaker', env: { PAYMENT_SETTLE_MS: '6000', PAYMENT_BREAKER_HALF_OPEN_MS: '1500' } });
  });
  after(() => sys?.close());
  beforeEach(async () => {
    p = await sys.newParties();
  });

  it('30 concurrent pays against a 6 s gateway stall neither GET /orders/:id nor /readyz; every pay answers 503 and no money is kept', async () => {
    const orders = await Promise.all(Array.from({ length: 30 }, () => sys.placeOrder(p)));
    await sys.setGatewayBehaviour({ latencyMs: 6000 });
    const pays = Promise.all(orders.map((o) => sys.request('POST', `/orders/${o.id}/pay`, { token: p.customer })));
    await eventually(async () => (await sys.gatewayStats()).charges >= 30, 'all 30 charges to be in flight at the gateway');
    const reads: number[] = [];
    const readies: number[] = [];
    for (let i = 0; i < 10; i += 1) {
      const read = await timed(() => sys.request('GET', `/orders/${orders[i]!.id}`, { token: p.customer }));
      expect(read.value.status).to.equal(200);
      reads.push(read.ms);
      const ready = await timed(() => request(sys.baseUrl, 'GET', '/readyz'));
      expect(ready.value.status).to.equal(200);
      readies.push(ready.ms);
    }
    expect(Math.max(...reads), `GET /orders/:id took ${reads.map(Math.round).join(', ')} ms`).to.be.below(200);
    expect(Math.max(...readies), `/readyz took ${readies.map(Math.round).join(', ')} ms`).to.be.below(200);

    const answers = await pays;
    for (const a of answers) {
      expect(a.status).to.equal(503);
      expect(a.body.error.code).to.equal('payment_unavailable');
      expect(Number(a.headers.get('retry-after'))).to.be.at.least(1);
    }
    for (const o of orders) expect((await sys.request('GET', `/orders/${o.id}`, { token: p.customer })).body.status).to.equal('awaitingPayment');

    // Every attempt's outcome was unknown to the service: reconciliation asks the gateway about each
    // and settles it (this gateway drops a request its caller abandoned), keeping no money.
    await sys.setGatewayBehaviour({ latencyMs: 0 });
    const ids = orders.map((o) => o.id);
    await eventually(
      async () => {
        const [open] = await sys.runtime.db.query(
          `SELECT count(*)::int AS n FROM payment_attempts WHERE order_id = ANY($1::uuid[]) AND status IN ('pending', 'unknown')`,
          [ids],
        );
        return open.n === 0;
      },
      'every attempt to be reconciled',
      40_000,
    );
    const ledger = await sys.ledger();
    for (const o of orders) expect(moneyOf(ledger, o.id).kept, `money kept for ${o.id}`).to.have.length(0);
    expect((await sys.gatewayStats()).lookups).to.be.at.least(30);
  });

  it('slow gateway → 503 with Retry-After and the order unchanged → breaker open, fast 503s without a call → healed → pay succeeds', async () => {
    await eventually(async () => sys.runtime.payments.breakerState() === 'closed', 'the breaker to start closed', 20_000);
    const orders = await Promise.all(Array.from({ length: 7 }, () => sys.placeOrder(p)));
    await sys.setGatewayBehaviour({ latencyMs: 2500 });
    // PAYMENT_BREAKER_FAILURES (5) slow calls in a row open the breaker.
    for (const o of orders.slice(0, 5)) {
      const before = (await sys.request('GET', `/orders/${o.id}`, { token: p.customer })).body;
      const res = await sys.request('POST', `/orders/${o.id}/pay`, { token: p.customer });
      expect(res.status).to.equal(503);
      expect(res.headers.get('retry-after')).to.match(/^\d+$/);
      expect((await sys.request('GET', `/orders/${o.id}`, { token: p.customer })).body).to.deep.equal(before);
    }
    expect(sys.runtime.payments.breakerState()).to.equal('open');
    expect((await request(sys.baseUrl, 'GET', '/readyz')).body).to.deep.include({ status: 'ready', details: { paymentBreaker: 'open' } });
    expect((await request(sys.baseUrl, 'GET', '/metrics')).body).to.include('baedal_payment_breaker_state{state="open"} 1');

    const calls = (await sys.gatewayStats()).charges;
    const fast = await timed(() => sys.request('POST', `/orders/${orders[5]!.id}/pay`, { token: p.customer }));
    expect(fast.value.status).to.equal(503);
    expect(fast.value.body.error.message).to.match(/circuit breaker is open/);
    expect(Number(fast.value.headers.get('retry-after'))).to.be.within(1, 2);
    expect(fast.ms).to.be.below(50);
    expect((await sys.gatewayStats()).charges, 'no call while open').to.equal(calls);

    await sys.setGatewayBehaviour({ latencyMs: 0 });
    const paid = await eventually(async () => {
      const res = await sys.request('POST', `/orders/${orders[6]!.id}/pay`, { token: p.customer });
      return res.status === 200 && res.body;
    }, 'a pay to succeed once the breaker lets a probe through', 15_000);
    expect(paid.status).to.equal('paid');
    expect(sys.runtime.payments.breakerState()).to.equal('closed');
    expect((await request(sys.baseUrl, 'GET', '/readyz')).body.details).to.deep.equal({ paymentBreaker: 'closed' });

    // Exactly one kept charge for the paid order; every charge the slow gateway made for the others is refunded.
    await eventually(
      async () => {
        const ledger = await sys.ledger();
        return (
          moneyOf(ledger, orders[6]!.id).kept.length === 1 &&
          moneyOf(ledger, orders[6]!.id).charges.length === 1 &&
          orders.slice(0, 6).every((o) => moneyOf(ledger, o.id).kept.length === 0)
        );
      },
      'one kept charge for the paid order, none for the others',
      30_000,
    );
  });
});

describe('saga: no orphaned charge', function () {
  this.timeout(90_000);
  let sys: TestSystem;
  let p: Parties;
  withSharedSystem({ system: (s) => (sys = s), parties: (x) => (p = x) });

  it('a process killed between the gateway charge and its commit, then a cancel: one charge, one refund', async () => {
    const service = await startServiceProcess({ gatewayUrl: sys.gateway.url, queuePrefix: sys.queuePrefix, env: sys.env });
    try {
      const order = await sys.placeOrder(p);
      await sys.setGatewayBehaviour({ answerDelayMs: 5000 });
      const paying = request(service.baseUrl, 'POST', `/orders/${order.id}/pay`, { token: p.customer }).catch(() => 'killed');
      await eventually(async () => (await sys.ledger()).charges.some((c) => c.orderId === order.id), 'the gateway to charge');
      service.child.kill('SIGKILL');
      expect(await paying).to.equal('killed');
      await sys.setGatewayBehaviour({ answerDelayMs: 0 });

      const cancelled = await sys.request('POST', `/orders/${order.id}/cancel`, { token: p.customer });
      expect(cancelled.status).to.equal(200);
      expect(cancelled.body.refund).to.equal(null); // the order never recorded the charge
      const ledger = await eventually(async () => {
        const l = await sys.ledger();
        return moneyOf(l, order.id).refunds.length === 1 && l;
      }, 'reconciliation to refund the orphaned charge', 20_000);
      const money = moneyOf(ledger, order.id);
      expect(money.charges).to.have.length(1);
      expect(money.refunds).to.have.length(1);
      expect(money.kept).to.have.length(0);
      const [attempt] = await sys.runtime.db.query('SELECT status, charge_id FROM payment_attempts WHERE order_id = $1', [order.id]);
      expect(attempt).to.deep.equal({ status: 'orphaned', charge_id: money.charges[0]!.chargeId });
    } finally {
      service.child.kill('SIGKILL');
      await service.exited;
    }
  });
});
