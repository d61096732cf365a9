import { expect } from 'chai';
import { commandRequest, eventually, request, serveApp, startSystem, type Parties, type TestSystem, withSharedSystem } from '../support/system.ts';
import { startWebhookReceiver } from '../support/webhook.ts';

/** /metrics tells the truth: real statuses by route template, commands by outcome, queues and the saga's state. */
describe('metrics', () => {
  let sys: TestSystem;
  let p: Parties;
  withSharedSystem({ system: (s) => (sys = s), parties: (x) => (p = x), resetGateway: false });

  const scrape = async () => (await request<string>(sys.baseUrl, 'GET', '/metrics')).body;
  /** The value of one series, 0 when absent. */
  const value = (text: string, series: string) => {
    const line = text.split('\n').find((l) => l.startsWith(`${series} `));
    return line ? Number(line.slice(series.length + 1)) : 0;
  };
  const http = (method: string, route: string, status: number) => `baedal_http_requests_total{method="${method}",route="${route}",status="${status}"}`;

  it('counts each answer under its route template with the status the client got: 401, 404, 409', async () => {
    const order = await sys.placeOrder(p);
    const before = await scrape();
    expect((await sys.request('GET', `/orders/${order.id}`)).status).to.equal(401);
    expect((await sys.request('GET', '/orders/00000000-0000-4000-8000-000000000000', { token: p.customer })).status).to.equal(404);
    expect((await sys.request('POST', `/orders/${order.id}/accept`, commandRequest(p, 'accept'))).status).to.equal(409);
    const after = await scrape();
    expect(value(after, http('GET', '/orders/:id', 401)) - value(before, http('GET', '/orders/:id', 401))).to.equal(1);
    expect(value(after, http('GET', '/orders/:id', 404)) - value(before, http('GET', '/orders/:id', 404))).to.equal(1);
    expect(value(after, http('POST', '/orders/:id/accept', 409)) - value(before, http('POST', '/orders/:id/accept', 409))).to.equal(1);
    // Commands by type and outcome.
    const refused = 'baedal_commands_total{command="accept",outcome="invalid_transition"}';
    expect(value(after, refused) - value(before, refused)).to.equal(1);
  });

  it('counts commands that went through, and shows the queues, the journal, the breaker and the work owed', async () => {
    const before = await scrape();
    const order = await sys.placeOrder(p);
    // A test before this one may have left the shared system's breaker open (a gateway that was
    // down): it lets a trial call through once its half-open time has passed.
    await eventually(async () => {
      const res = await sys.request('POST', `/orders/${order.id}/pay`, commandRequest(p, 'pay'));
      if (res.status === 503 && res.body.error.details.reason === 'the circuit breaker is open') return false;
      expect(res.status, JSON.stringify(res.body)).to.equal(200);
      return true;
    }, 'the breaker to let the payment through');
    const after = await scrape();
    for (const command of ['place', 'pay']) {
      const series = `baedal_commands_total{command="${command}",outcome="ok"}`;
      expect(value(after, series) - value(before, series), command).to.equal(1);
    }
    expect(after).to.match(/^baedal_queue_backlog\{queue="events"\} \d+/m);
    expect(after).to.match(/^baedal_queue_oldest_job_age_seconds\{queue="work"\} [\d.]+/m);
    expect(after).to.match(/^baedal_journal_oldest_unsettled_seconds [\d.e+-]+$/m);
    expect(after).to.match(/^baedal_payment_breaker_state\{state="closed"\} 1$/m);
    expect(after).to.match(/^baedal_work_owed\{kind="refund"\} \d+$/m);
    expect(after).to.match(/^baedal_stale_writes_total \d+$/m);
    expect(after).to.match(/^baedal_view_lag_seconds\{view="customer-orders"\} [\d.e+-]+$/m);
  });

  it('shows readiness (baedal_ready) and counts each change of it, seen by a probe or by a scrape', async () => {
    let stopping = false;
    // An edge of its own: a fresh registry, and a shutdown the test can turn on and off.
    const app = await serveApp(sys.runtime, { stopping: () => stopping });
    try {
      const scrapeApp = async () => (await app.request<string>('GET', '/metrics')).body;
      const readiness = (text: string) => [value(text, 'baedal_ready'), value(text, 'baedal_readiness_changes_total')];
      const first = await scrapeApp();
      expect(first).to.match(/^# TYPE baedal_ready gauge$/m);
      expect(first).to.match(/^# TYPE baedal_readiness_changes_total counter$/m);
      expect(readiness(first), 'ready, and the first measure is no change').to.deep.equal([1, 0]);
      stopping = true;
      // The probe sees it first; the scrape shows it.
      expect((await app.request('GET', '/readyz')).status).to.equal(503);
      expect(readiness(await scrapeApp())).to.deep.equal([0, 1]);
      stopping = false;
      // A scrape alone measures readiness, and counts what it saw change.
      expect(readiness(await scrapeApp())).to.deep.equal([1, 2]);
      expect(readiness(await scrapeApp()), 'no change, nothing counted').to.deep.equal([1, 2]);
      expect((await app.request('GET', '/readyz')).status).to.equal(200);
      expect(readiness(await scrapeApp())).to.deep.equal([1, 2]);
    } finally {
      await app.close();
    }
  });

  it('counts the events each replica delivered (its share of the consuming)', async () => {
    // A system of its own: in the shared one, other tests' replicas take part of the events.
    const own = await startSystem({ name: 'events_delivered' });
    try {
      const q = await own.newParties();
      const order = await own.placeOrder(q);
      await own.drive(q, order.id, ['pay']);
      const delivered = 'baedal_events_delivered_total{group="events"}';
      const count = async () => value((await request<string>(own.baseUrl, 'GET', '/metrics')).body, delivered);
      expect(await eventually(async () => (await count()) >= 2 && count(), 'the two events to be counted as delivered')).to.equal(2);
    } finally {
      await own.close();
    }
  });

  it('times the calls to partners: payment gateway calls by operation and outcome, webhook requests by outcome', async function () {
    this.timeout(60_000);
    const hook = await startWebhookReceiver();
    // One failed call opens the breaker, so the breaker-open outcome is one refused pay away.
    const own = await startSystem({ name: 'partner_histograms', env: { NOTIFY_WEBHOOK_URL: hook.url, PAYMENT_BREAKER_FAILURES: '1' } });
    try {
      const q = await own.newParties();
      const scrapeOwn = async () => (await request<string>(own.baseUrl, 'GET', '/metrics')).body;
      const payment = (operation: string, outcome: string) => `baedal_payment_duration_seconds_count{operation="${operation}",outcome="${outcome}"}`;
      const webhook = (outcome: string) => `baedal_notification_delivery_duration_seconds_count{outcome="${outcome}"}`;
      const pay = async (orderId: string) => (await own.request('POST', `/orders/${orderId}/pay`, commandRequest(q, 'pay'))).status;

      // charge ok, then a cancel's refund ok
      const paid = await own.placeOrder(q);
      await own.drive(q, paid.id, ['pay', 'cancel']);
      await eventually(async () => value(await scrapeOwn(), payment('refund', 'ok')) === 1, 'the refund timed');
      const paidToCancelLater = await own.placeOrder(q);
      await own.drive(q, paidToCancelLater.id, ['pay']);
      // declined
      await own.setGatewayBehaviour({ decline: true });
      expect(await pay((await own.placeOrder(q)).id)).to.equal(402);
      // unavailable (5xx after the retries), which opens the breaker: the refund of a cancel is then
      // refused without a call (pay itself fails fast before calling, and is counted elsewhere)
      await own.setGatewayBehaviour({ decline: false, failRate: 1 });
      expect(await pay((await own.placeOrder(q)).id)).to.equal(503);
      await own.drive(q, paidToCancelLater.id, ['cancel']);
      await eventually(async () => value(await scrapeOwn(), payment('refund', 'breaker-open')) >= 1, 'a refund refused by the open breaker');
      await own.setGatewayBehaviour({ failRate: 0 });
      await eventually(async () => value(await scrapeOwn(), payment('refund', 'ok')) === 2, 'the refund done once the breaker lets it through');
      // a lost answer: the charge times out, and reconciliation looks it up later
      await eventually(async () => own.runtime.payments.breakerState() !== 'open', 'the breaker to let a probe through');
      await own.setGatewayBehaviour({ answerDelayMs: 5000 });
      expect(await pay((await own.placeOrder(q)).id)).to.equal(503);
      await own.setGatewayBehaviour({ answerDelayMs: 0 });
      await eventually(async () => value(await scrapeOwn(), payment('lookup', 'ok')) >= 1, 'the reconciliation lookup timed', 20_000);

      // webhook: delivered, then refused while it is down
      await eventually(async () => value(await scrapeOwn(), webhook('delivered')) >= 2, 'deliveries timed');
      hook.setDown(true);
      await own.placeOrder(q);
      await eventually(async () => value(await scrapeOwn(), webhook('refused')) >= 1, 'a refused delivery timed');
      hook.setDown(false);

      const text = await scrapeOwn();
      expect(value(text, payment('charge', 'ok'))).to.equal(2);
      expect(value(text, payment('charge', 'declined'))).to.equal(1);
      expect(value(text, payment('charge', 'unavailable'))).to.equal(1);
      expect(value(text, payment('charge', 'timeout'))).to.equal(1);
      expect(value(text, payment('refund', 'ok'))).to.equal(2);
      expect(value(text, payment('refund', 'breaker-open'))).to.be.at.least(1);
      // The timeout waited for the deadline (PAYMENT_TIMEOUT_MS, 2 s): its sum says so, its buckets below 1 s are empty.
      expect(value(text, 'baedal_payment_duration_seconds_sum{operation="charge",outcome="timeout"}')).to.be.within(1.9, 5);
      expect(value(text, 'baedal_payment_duration_seconds_bucket{le="1",operation="charge",outcome="timeout"}')).to.equal(0);
      expect(value(text, 'baedal_payment_duration_seconds_bucket{le="+Inf",operation="charge",outcome="timeout"}')).to.equal(1);
      // Every webhook request is counted once, under the outcome the receiver gave it.
      const requests = hook.requests.length;
      expect(value(text, webhook('delivered')) + value(text, webhook('refused'))).to.equal(requests);
      expect(value(text, webhook('refused'))).to.equal(hook.refused());
      expect(value(text, 'baedal_notification_delivery_duration_seconds_bucket{le="+Inf",outcome="delivered"}')).to.equal(value(text, webhook('delivered')));
    } finally {
      await own.close();
      await hook.close();
    }
  });

  it('counts a write refused by the version check (another replica moved the order first)', async () => {
    const replica = await sys.startReplica();
    const order = await sys.placeOrder(p);
    await sys.drive(p, order.id, ['pay']);
    // The main instance caches the order as paid; the replica accepts it behind its back.
    expect((await replica.request('POST', `/orders/${order.id}/accept`, commandRequest(p, 'accept'))).status).to.equal(200);
    const before = value(await scrape(), 'baedal_stale_writes_total');
    // Cancel is allowed in both states: judged on the stale entry, its write is refused, then judged again.
    const cancelled = await sys.request('POST', `/orders/${order.id}/cancel`, commandRequest(p, 'cancel'));
    expect(cancelled.status).to.equal(200);
    expect(cancelled.body.version).to.equal(4);
    expect(value(await scrape(), 'baedal_stale_writes_total')).to.be.greaterThan(before);
  });
});
