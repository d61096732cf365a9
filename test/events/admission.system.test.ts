import { expect } from 'chai';
import { commandRequest, eventually, request, startSystem, type Parties, type TestSystem } from '../support/system.ts';

/** The replica's `baedal_commands_held_seconds` histogram so far: commands held, and seconds held in all. */
async function held(sys: TestSystem): Promise<{ count: number; seconds: number }> {
  const lines = (await request<string>(sys.baseUrl, 'GET', '/metrics')).body.split('\n');
  const value = (name: string) => Number(lines.find((l) => l.startsWith(`${name} `))?.split(' ')[1] ?? 0);
  return { count: value('baedal_commands_held_seconds_count'), seconds: value('baedal_commands_held_seconds_sum') };
}

/**
 * How long an owner waits before it reads a woken partition, and reads a partition again after a
 * batch that found events. A batch's lateness is noted when it is written and cleared by the read
 * after it that finds nothing, one linger later: commands sent in between are held. At the default
 * 20 ms a client's next command lands in that span or not by chance; at 300 ms, sent as soon as
 * the batch shows in a view, it does.
 */
const LINGER_MS = '300';

/**
 * Places four orders and drives each to cooking, sending each command once the order's last step
 * has reached the customer's view (an event batch applied it, and its lateness was noted).
 * Answers the orders' ids.
 */
async function driveAfterBatches(sys: TestSystem, p: Parties): Promise<string[]> {
  const applied = (orderId: string, status: string) =>
    eventually(async () => {
      const rows = (await sys.request('GET', `/views/customers/${p.customerId}/orders`, { token: p.customer })).body as { orderId: string; status: string }[];
      return rows.some((r) => r.orderId === orderId && r.status === status);
    }, `order ${orderId} to show ${status} in the customer's view`);
  const orders: string[] = [];
  for (let i = 0; i < 4; i++) {
    let order = await sys.placeOrder(p);
    for (const command of ['pay', 'accept', 'start-cooking']) {
      await applied(order.id, order.status);
      order = await sys.drive(p, order.id, [command]);
    }
    expect(order.status).to.equal('cooking');
    orders.push(order.id);
  }
  return orders;
}

/**
 * The service holds new commands while its event batches run later than EVENTS_LAG_BUDGET_MS, at
 * most EVENTS_LAG_HOLD_MS each, and refuses none of them for it. With a budget of 1 ms every batch
 * that applies an event runs late, so the commands that follow one are held.
 */
describe('admission: a replica holds new commands while its event batches run late', function () {
  this.timeout(60_000);
  let sys: TestSystem;
  let p: Parties;

  before(async () => {
    sys = await startSystem({ name: 'admission', env: { EVENTS_LAG_BUDGET_MS: '1', EVENTS_LAG_HOLD_MS: '150', EVENTS_LINGER_MS: LINGER_MS } });
    p = await sys.newParties();
  });
  after(async () => {
    await sys?.close();
  });

  it('holds commands after late batches, each at most the longest wait, and every one of them goes through', async () => {
    const before = await held(sys);
    const orders = await driveAfterBatches(sys, p);
    const after = await held(sys);
    expect(after.count - before.count, 'commands held').to.be.at.least(1);
    expect(after.seconds - before.seconds, 'seconds held in all').to.be.at.most(((after.count - before.count) * 150 + 100) / 1000);
    for (const id of orders) {
      const res = await sys.request('GET', `/orders/${id}`, { token: p.customer });
      expect(res.status).to.equal(200);
      expect(res.body.status).to.equal('cooking');
    }
    // A cancel after cooking started is still judged by the machine, held or not.
    const refused = await sys.request('POST', `/orders/${orders[0]!}/cancel`, commandRequest(p, 'cancel'));
    expect(refused.status).to.equal(409);
  });
});

/**
 * A batch's lateness is taken against the clock its events' times came from. A runtime whose clock
 * runs an hour ahead of the machine's writes events an hour in the machine's future: measured
 * against the machine's clock, no batch would ever look late, and nothing would be held.
 */
describe('admission: lateness is measured on the runtime\'s clock', function () {
  this.timeout(60_000);
  let sys: TestSystem;
  let p: Parties;

  before(async () => {
    sys = await startSystem({
      name: 'admission_clock',
      clock: () => new Date(Date.now() + 3_600_000),
      env: { EVENTS_LAG_BUDGET_MS: '1', EVENTS_LAG_HOLD_MS: '150', EVENTS_LINGER_MS: LINGER_MS },
    });
    p = await sys.newParties();
  });
  after(async () => {
    await sys?.close();
  });

  it('holds commands after batches late by that clock', async () => {
    const before = (await held(sys)).count;
    await driveAfterBatches(sys, p);
    expect((await held(sys)).count - before, 'commands held').to.be.at.least(1);
  });
});
