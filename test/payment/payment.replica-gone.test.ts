import { expect } from 'chai';
import { moneyOf } from '../support/saga.ts';
import { startServiceProcess, type ServiceProcess } from '../support/service-process.ts';
import { eventually, request, sharedSystem, type ApiResponse, type Parties, type TestSystem } from '../support/system.ts';

/** The bound a dead replica may lock a customer out of paying (REPLICA_LEASE_MS is 3 s). */
const LOCKOUT_BOUND_MS = 5000;

/**
 * A replica that dies (kill -9) or stops (SIGTERM) while the gateway works on a pay: the attempt is
 * reconciled as soon as the replica is known gone, and the customer's retry neither waits for
 * PAYMENT_SETTLE_MS nor charges twice. Money is counted on the fake gateway's ledger.
 */
describe('payments of a replica that is gone', function () {
  this.timeout(90_000);
  let sys: TestSystem;
  let p: Parties;
  let service: ServiceProcess | undefined;
  /** The dying replica's payment settings are production's, so the bound cannot come from short test delays. */
  const production = () => ({ ...sys.env, PAYMENT_RECONCILE_AFTER_MS: '10000', PAYMENT_SETTLE_MS: '60000', WORK_LEASE_MS: '10000' });

  before(async () => {
    sys = await sharedSystem();
  });
  beforeEach(async () => {
    await sys.resetGateway();
    p = await sys.newParties();
  });
  afterEach(async () => {
    service?.child.kill('SIGKILL');
    await service?.exited;
    service = undefined;
    await sys.resetGateway();
  });

  /** The customer pays again and again through the surviving replica until the order is paid. */
  async function retryUntilPaid(orderId: string, since: number): Promise<{ answers: { ms: number; status: number; code?: string }[]; paidAfterMs: number }> {
    const answers: { ms: number; status: number; code?: string }[] = [];
    for (;;) {
      const res: ApiResponse = await sys.request('POST', `/orders/${orderId}/pay`, { token: p.customer });
      const ms = performance.now() - since;
      answers.push({ ms: Math.round(ms), status: res.status, code: res.body?.error?.code });
      const paid = res.status === 200 || (res.status === 409 && res.body.error.details?.status === 'paid');
      if (paid) return { answers, paidAfterMs: ms };
      if (ms > 15_000) throw new Error(`not paid 15 s after: ${JSON.stringify(answers)}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  /** Once everything settled: one charge kept, no refund, the order paid, no attempt undecided. */
  async function expectPaidOnce(orderId: string): Promise<void> {
    await eventually(async () => {
      const [open] = await sys.runtime.db.query(`SELECT count(*)::int AS n FROM payment_attempts WHERE order_id = $1 AND status IN ('pending', 'unknown')`, [orderId]);
      return open.n === 0;
    }, 'every attempt of the order to be decided', 20_000);
    const money = moneyOf(await sys.ledger(), orderId);
    expect(money.charges, 'charges at the gateway').to.have.length(1);
    expect(money.refunds, 'refunds at the gateway').to.have.length(0);
    const [{ n }] = await sys.runtime.db.query('SELECT count(*)::int AS n FROM refunds WHERE order_id = $1', [orderId]);
    expect(n, 'refunds owed').to.equal(0);
    expect((await sys.request('GET', `/orders/${orderId}`, { token: p.customer })).body.status).to.equal('paid');
  }

  it(`kill -9 after the gateway charged: the customer can pay again within ${LOCKOUT_BOUND_MS / 1000} s and is charged once`, async () => {
    service = await startServiceProcess({ gatewayUrl: sys.gateway.url, queuePrefix: sys.queuePrefix, env: production() });
    const order = await sys.placeOrder(p);
    await sys.setGatewayBehaviour({ answerDelayMs: 60_000 }); // the charge is made, its answer never comes
    void request(service.baseUrl, 'POST', `/orders/${order.id}/pay`, { token: p.customer }).catch(() => undefined);
    await eventually(async () => moneyOf(await sys.ledger(), order.id).charges.length === 1, 'the gateway to charge');
    service.child.kill('SIGKILL');
    const killedAt = performance.now();
    await service.exited;
    await sys.setGatewayBehaviour({ answerDelayMs: 0 });

    const { answers, paidAfterMs } = await retryUntilPaid(order.id, killedAt);
    expect(paidAfterMs, JSON.stringify(answers)).to.be.below(LOCKOUT_BOUND_MS);
    // Until then the customer was told a payment is in progress, nothing else.
    for (const a of answers.slice(0, -1)) expect(a, JSON.stringify(answers)).to.deep.include({ status: 409, code: 'payment_in_progress' });
    await expectPaidOnce(order.id);
  });

  it(`kill -9 before the gateway recorded anything: the retry within ${LOCKOUT_BOUND_MS / 1000} s charges once, with the dead replica's key`, async () => {
    service = await startServiceProcess({ gatewayUrl: sys.gateway.url, queuePrefix: sys.queuePrefix, env: production() });
    const order = await sys.placeOrder(p);
    await sys.setGatewayBehaviour({ latencyMs: 60_000 }); // the request waits at the gateway, unhandled
    void request(service.baseUrl, 'POST', `/orders/${order.id}/pay`, { token: p.customer }).catch(() => undefined);
    await eventually(async () => (await sys.gatewayStats()).charges === 1, 'the charge request to reach the gateway');
    service.child.kill('SIGKILL');
    const killedAt = performance.now();
    await service.exited;
    await sys.setGatewayBehaviour({ latencyMs: 0 });

    const { answers, paidAfterMs } = await retryUntilPaid(order.id, killedAt);
    expect(paidAfterMs, JSON.stringify(answers)).to.be.below(LOCKOUT_BOUND_MS);
    await expectPaidOnce(order.id);
    // Taken over, not started anew: whatever the dead replica's request does later, it has the same key.
    const attempts = await sys.runtime.db.query('SELECT n, status FROM payment_attempts WHERE order_id = $1', [order.id]);
    expect(attempts).to.deep.equal([{ n: 1, status: 'charged' }]);
    expect(moneyOf(await sys.ledger(), order.id).charges[0]!.idempotencyKey).to.equal(`order-${order.id}-charge-1`);
  });

  it('a pay interrupted by SIGTERM is handed to reconciliation at once: the retry is not locked out for PAYMENT_SETTLE_MS', async () => {
    // A gateway slower than the shutdown budget: the pay cannot finish before the process must go.
    const env = { ...production(), SHUTDOWN_TIMEOUT_MS: '3000', PAYMENT_TIMEOUT_MS: '8000' };
    service = await startServiceProcess({ gatewayUrl: sys.gateway.url, queuePrefix: sys.queuePrefix, env });
    const order = await sys.placeOrder(p);
    await sys.setGatewayBehaviour({ latencyMs: 60_000 });
    const interrupted = request(service.baseUrl, 'POST', `/orders/${order.id}/pay`, { token: p.customer }).catch(() => 'cut');
    await eventually(async () => (await sys.gatewayStats()).charges === 1, 'the charge request to reach the gateway');
    // That request stays stuck; anything sent from now on is answered at once.
    await sys.setGatewayBehaviour({ latencyMs: 0 });
    service.child.kill('SIGTERM');
    const exit = await service.exited;
    const stoppedAt = performance.now();
    expect(exit).to.deep.equal({ code: 0, signal: null });
    expect(await interrupted).to.equal('cut');
    expect(service.output()).to.include('payments in flight at shutdown handed to reconciliation');
    const [attempt] = await sys.runtime.db.query('SELECT status, replica FROM payment_attempts WHERE order_id = $1', [order.id]);
    expect(attempt.status, 'handed over, not left pending').to.not.equal('pending');

    const { answers, paidAfterMs } = await retryUntilPaid(order.id, stoppedAt);
    expect(paidAfterMs, JSON.stringify(answers)).to.be.below(2000);
    await expectPaidOnce(order.id);
  });
});
