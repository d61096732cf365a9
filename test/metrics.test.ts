import { expect } from 'chai';
import { commandRequest, eventually, request, sharedSystem, startSystem, type Parties, type TestSystem } from './support/system.ts';

/** /metrics tells the truth: real statuses by route template, commands by outcome, queues and the saga's state. */
describe('metrics', () => {
  let sys: TestSystem;
  let p: Parties;
  before(async () => {
    sys = await sharedSystem();
  });
  beforeEach(async () => {
    p = await sys.newParties();
  });

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
