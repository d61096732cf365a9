import { expect } from 'chai';
import { applyPartitions } from '../../src/actors/consumers/apply.ts';
import { runWork } from '../../src/actors/work.ts';
import { createLogger } from '../../src/log.ts';
import { moneyOf, sagaSpec } from '../support/saga.ts';
import { commandRequest, eventually, sharedSystem, type TestSystem } from '../support/system.ts';

/** Every compensation path of the saga, each counted on the gateway's ledger. */
describe('saga: compensation, counted on the gateway ledger', function () {
  this.timeout(60_000);
  let sys: TestSystem;
  const spec = sagaSpec(() => sys);

  before(async () => {
    sys = await sharedSystem();
  });
  beforeEach(async () => {
    await sys.resetGateway();
  });

  it('given a paid order, when the customer cancels, then the charge is refunded once', async () => {
    await spec.given(['pay']);
    const cancelled = (await spec.when('cancel')) as { refund: { status: string; amount: number } };
    expect(cancelled.refund).to.deep.include({ status: 'pending', amount: 18000 });
    const { order } = await spec.then({ status: 'cancelled', charges: 1, refunds: 1, refund: 'refunded', notified: 'cancelled' });
    expect(order.refund).to.include({ status: 'refunded', amount: 18000 });
    expect(order.refund!.refundedAt).to.be.a('string');
  });

  it('given an accepted order, when the customer cancels, then the charge is refunded once', async () => {
    await spec.given(['pay', 'accept']);
    await spec.when('cancel');
    await spec.then({ status: 'cancelled', charges: 1, refunds: 1, refund: 'refunded', notified: 'cancelled' });
  });

  it('given a paid order, when the store rejects it, then the charge is refunded once', async () => {
    await spec.given(['pay']);
    await spec.when('reject');
    await spec.then({ status: 'rejected', charges: 1, refunds: 1, refund: 'refunded', notified: 'rejected' });
  });

  it('given an unpaid order, when the customer cancels, then nothing is charged or refunded', async () => {
    await spec.given([]);
    await spec.when('cancel');
    await spec.then({ status: 'cancelled', charges: 0, refunds: 0, refund: null, notified: 'cancelled' });
  });

  it('given a delivered order, then the money stays charged', async () => {
    await spec.given(['pay', 'accept', 'start-cooking', 'finish-cooking', 'pick', 'confirm-delivery']);
    await spec.then({ status: 'delivered', charges: 1, refunds: 0, refund: null, notified: 'delivered' });
  });

  it('given a charge in flight, when the customer cancels, then pay answers 409 and the charge is refunded', async () => {
    const { p, order } = await spec.given([]);
    await sys.setGatewayBehaviour({ answerDelayMs: 700 });
    const paying = sys.request('POST', `/orders/${order.id}/pay`, { token: p.customer });
    await eventually(async () => (await sys.ledger()).charges.some((c) => c.orderId === order.id), 'the gateway to record the charge');
    await spec.when('cancel');
    const paid = await paying;
    expect(paid.status).to.equal(409);
    expect(paid.body.error).to.deep.include({ code: 'invalid_transition' });
    expect(paid.body.error.details).to.deep.include({ status: 'cancelled' });
    expect(paid.body.error.details.refund).to.deep.include({ status: 'pending', amount: order.total });
    await spec.then({ status: 'cancelled', charges: 1, refunds: 1, notified: 'cancelled' });
  });

  it('given a declined card, when the customer pays again, then one charge and the order is paid', async () => {
    const { p, order } = await spec.given([]);
    await sys.setGatewayBehaviour({ decline: true });
    const declined = await sys.request('POST', `/orders/${order.id}/pay`, { token: p.customer });
    expect(declined.status).to.equal(402);
    expect(declined.body.error.code).to.equal('payment_declined');
    await sys.setGatewayBehaviour({ decline: false });
    await spec.when('pay');
    await spec.then({ status: 'paid', charges: 1, refunds: 0, notified: 'paid' });
    const keys = await sys.runtime.db.query('SELECT idempotency_key, status FROM payment_attempts WHERE order_id = $1 ORDER BY n', [order.id]);
    expect(keys.map((k: { status: string }) => k.status)).to.deep.equal(['declined', 'charged']);
    expect(new Set(keys.map((k: { idempotency_key: string }) => k.idempotency_key)).size).to.equal(2);
  });

  it('given a lost answer (charged, then timed out), when reconciled, then the order is paid with that charge, once', async () => {
    const { p, order } = await spec.given([]);
    await sys.setGatewayBehaviour({ answerDelayMs: 3000 }); // longer than PAYMENT_TIMEOUT_MS
    const lost = await sys.request('POST', `/orders/${order.id}/pay`, { token: p.customer });
    expect(lost.status).to.equal(503);
    expect(lost.headers.get('retry-after')).to.match(/^\d+$/);
    await sys.setGatewayBehaviour({ answerDelayMs: 0 });
    // The unknown attempt is reconciled: the gateway has its charge, and the order still waits for one.
    const { ledger } = await spec.then({ status: 'paid', charges: 1, refunds: 0, notified: 'paid' });
    const journal = (await sys.request('GET', `/orders/${order.id}/events`, { token: p.customer })).body as { type: string; data: any; actor: unknown; causationId: string }[];
    const paid = journal.find((e) => e.type === 'OrderPaid')!;
    expect(paid.data.chargeId).to.equal(moneyOf(ledger, order.id).charges[0]!.chargeId);
    expect(paid.actor).to.deep.equal({ sub: p.customerId, role: 'customer' });
    expect(paid.causationId, 'caused by the attempt that charged').to.equal(moneyOf(ledger, order.id).charges[0]!.idempotencyKey);
    const [attempt] = await sys.runtime.db.query('SELECT status FROM payment_attempts WHERE order_id = $1', [order.id]);
    expect(attempt.status).to.equal('charged');
  });

  it('given a lost answer, when the customer pays again at once, then no second charge: the order is paid with the first', async () => {
    const { p, order } = await spec.given([]);
    await sys.setGatewayBehaviour({ answerDelayMs: 3000 });
    expect((await sys.request('POST', `/orders/${order.id}/pay`, { token: p.customer })).status).to.equal(503);
    await sys.setGatewayBehaviour({ answerDelayMs: 0 });
    // The retry either takes the undecided attempt over (same key: the gateway returns its charge)
    // or waits for its reconciliation; either way it is answered with the order paid.
    const again = await sys.request('POST', `/orders/${order.id}/pay`, { token: p.customer });
    if (again.status === 200) expect(again.body.status).to.equal('paid');
    else expect(again.body.error, JSON.stringify(again.body)).to.deep.include({ code: 'invalid_transition', details: { command: 'pay', status: 'paid', allowed: ['accept', 'reject', 'cancel'] } });
    const { ledger } = await spec.then({ status: 'paid', charges: 1, refunds: 0 });
    expect(moneyOf(ledger, order.id).kept).to.have.length(1);
    const keys = await sys.runtime.db.query('SELECT status FROM payment_attempts WHERE order_id = $1 ORDER BY n', [order.id]);
    expect(keys.map((k: { status: string }) => k.status)).to.deep.equal(['charged']);
  });

  it('a refund whose gateway call fails twice first is made once, after retries', async () => {
    const { order } = await spec.given(['pay']);
    await sys.setGatewayBehaviour({ failNextRefunds: 2 });
    await spec.when('cancel');
    const { ledger } = await spec.then({ status: 'cancelled', charges: 1, refunds: 1, refund: 'refunded' });
    // Three calls for this order's charge reached the gateway (two failed, retried with backoff
    // inside one attempt), one refund exists. Counted by charge: refunds other tests still owe (of
    // charges made before the gateway was reset) may reach it meanwhile, answered 404.
    const { chargeId } = moneyOf(ledger, order.id).charges[0]!;
    expect((await sys.gatewayStats()).refundsByCharge[chargeId]).to.equal(3);
    const [row] = await sys.runtime.db.query('SELECT status, due_at FROM refunds WHERE order_id = $1', [order.id]);
    expect(row).to.deep.equal({ status: 'refunded', due_at: null });
  });

  it("a refund still owed from before a reset (its charge gone from the gateway) takes none of the failures meant for another order's refund", async () => {
    const log = createLogger('silent');
    const kind = sys.runtime.kinds.find((k) => k.name === 'refund')!;
    // An order whose charge the gateway then forgets: its refund can never be made, and is retried.
    const stray = await spec.given(['pay']);
    await sys.resetGateway();
    await spec.when('cancel');
    const [{ idempotency_key: strayKey }] = await sys.runtime.db.query('SELECT idempotency_key FROM refunds WHERE order_id = $1', [stray.order.id]);
    const attempts = async () => (await sys.runtime.db.query('SELECT attempts, last_error FROM refunds WHERE idempotency_key = $1', [strayKey]))[0];
    try {
      const { order } = await spec.given(['pay']);
      await sys.setGatewayBehaviour({ failNextRefunds: 2 });
      // The stray refund is tried while the two failures are set, before this order's refund.
      const before = (await attempts()).attempts;
      await sys.runtime.db.query('UPDATE refunds SET due_at = now(), lease_until = NULL WHERE idempotency_key = $1', [strayKey]);
      await runWork(kind, [strayKey], { leaseMs: 4000, prompt: sys.runtime.work, log });
      const tried = await eventually(async () => {
        const row = await attempts();
        return row.attempts > before && row;
      }, 'the stray refund to be tried again');
      expect(tried.last_error).to.match(/404/);
      await spec.when('cancel');
      const { ledger } = await spec.then({ status: 'cancelled', charges: 1, refunds: 1, refund: 'refunded' });
      const { chargeId } = moneyOf(ledger, order.id).charges[0]!;
      // Both failures fell on this order's refund: two failed calls and the one that made it.
      expect((await sys.gatewayStats()).refundsByCharge[chargeId]).to.equal(3);
    } finally {
      // Off the books, as an operator would settle it, so that later tests do not meet it.
      await sys.runtime.db.query('UPDATE refunds SET due_at = NULL, lease_until = NULL WHERE idempotency_key = $1', [strayKey]);
    }
  });

  it('a refund that keeps failing stays pending and owed, is retried with backoff, and is made once when the gateway heals', async () => {
    const { order } = await spec.given(['pay']);
    await sys.setGatewayBehaviour({ failNextRefunds: 1000 });
    await spec.when('cancel');
    const pending = await eventually(async () => {
      const [row] = await sys.runtime.db.query('SELECT status, attempts, last_error, due_at FROM refunds WHERE order_id = $1', [order.id]);
      return row.attempts >= 3 && row;
    }, 'three failed refund attempts');
    expect(pending.status).to.equal('pending');
    expect(pending.due_at).to.be.instanceOf(Date);
    expect(pending.last_error).to.match(/503/);
    const view = (await sys.request('GET', `/orders/${order.id}`, { token: (await spec.given([])).p.admin })).body;
    expect(view.refund).to.deep.include({ status: 'pending' });
    await sys.setGatewayBehaviour({ failNextRefunds: 0 });
    const { ledger } = await eventually(async () => {
      const l = await sys.ledger();
      return moneyOf(l, order.id).refunds.length === 1 && { ledger: l };
    }, 'the refund once the gateway heals', 15_000);
    expect(moneyOf(ledger, order.id).refunds).to.have.length(1);
    // The failures opened the shared breaker; the successful refund (a half-open probe) closed it.
    await eventually(async () => sys.runtime.payments.breakerState() === 'closed', 'the breaker to close again');
  });

  it('a refund prompted twice at once, with its event delivered twice, is made once and notified once', async () => {
    const { p, order } = await spec.given(['pay']);
    await sys.setGatewayBehaviour({ latencyMs: 150 });
    await spec.when('cancel');
    const [refund] = await sys.runtime.db.query('SELECT idempotency_key FROM refunds WHERE order_id = $1', [order.id]);
    const log = createLogger('silent');
    const kind = sys.runtime.kinds.find((k) => k.name === 'refund')!;
    // Two workers take the same prompt at once; two deliveries read the cancel's partition at once.
    const group = { name: 'events', consumers: sys.runtime.consumers };
    const part = [sys.runtime.bus.partitionOf(order.id)];
    await Promise.all([
      runWork(kind, [refund.idempotency_key], { leaseMs: 4000, prompt: sys.runtime.work, log }),
      runWork(kind, [refund.idempotency_key], { leaseMs: 4000, prompt: sys.runtime.work, log }),
      applyPartitions(sys.runtime.pg, group, part, { limitPerPart: 50, log }),
      applyPartitions(sys.runtime.pg, group, part, { limitPerPart: 50, log }),
    ]);
    await spec.then({ status: 'cancelled', charges: 1, refunds: 1, refund: 'refunded', notified: 'cancelled' });
    const feed = (await sys.request('GET', '/notifications', { token: p.customer })).body as { orderId: string; seq: number }[];
    expect(feed.filter((n) => n.orderId === order.id && n.seq === 3)).to.have.length(1);
  });

  it('a second pay while one is in flight answers 409 payment_in_progress and charges nothing more', async () => {
    const { p, order } = await spec.given([]);
    await sys.setGatewayBehaviour({ latencyMs: 500 });
    const first = sys.request('POST', `/orders/${order.id}/pay`, { token: p.customer });
    await eventually(async () => (await sys.gatewayStats()).charges >= 1, 'the first charge to reach the gateway');
    const second = await sys.request('POST', `/orders/${order.id}/pay`, commandRequest(p, 'pay'));
    expect(second.status).to.equal(409);
    expect(second.body.error.code).to.equal('payment_in_progress');
    expect((await first).status).to.equal(200);
    await spec.then({ status: 'paid', charges: 1, refunds: 0 });
    expect((await sys.gatewayStats()).charges).to.equal(1);
  });
});
