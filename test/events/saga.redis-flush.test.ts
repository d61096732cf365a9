import { expect } from 'chai';
import { Redis } from 'ioredis';
import { moneyOf } from '../support/saga.ts';
import { randomUUID } from 'node:crypto';
import { commandRequest, eventually, removeQueueKeys, startSystem, TEST_REDIS_URL, type Parties, type TestSystem } from '../support/system.ts';
import { startWebhookReceiver } from '../support/webhook.ts';

/**
 * Redis holds only prompts: losing all of it delays refunds and notifications, never drops or
 * doubles them. The service's whole Redis state is its queue prefix; the test removes every key of
 * it (what a Redis restarted without its data is to the service) and touches nothing else in the
 * Redis it was given, which others may share.
 */
describe('saga: Redis flushed in the middle of a burst', function () {
  this.timeout(90_000);
  let sys: TestSystem;
  let hook: Awaited<ReturnType<typeof startWebhookReceiver>>;
  let redis: Redis;
  let p: Parties;
  /** A key of someone else's in the same Redis: the flushes must leave it alone. */
  const bystander = `{baedal-bystander-${randomUUID()}}:key`;
  const flush = async () => {
    expect(await removeQueueKeys(sys.queuePrefix)).to.be.greaterThan(0);
  };

  before(async () => {
    hook = await startWebhookReceiver();
    redis = new Redis(TEST_REDIS_URL);
    await redis.set(bystander, 'still here');
    sys = await startSystem({ name: 'flush', env: { NOTIFY_WEBHOOK_URL: hook.url } });
    p = await sys.newParties();
  });
  after(async () => {
    await sys?.close();
    await hook?.close();
    await redis?.del(bystander);
    redis?.disconnect();
  });

  it('every refund and every notification still happens, exactly once', async () => {
    const orders = await Promise.all(Array.from({ length: 16 }, () => sys.placeOrder(p)));
    // Both partners fail at first, so retries wait in Redis as delayed jobs when it is flushed.
    hook.setDown(true);
    await sys.setGatewayBehaviour({ failNextRefunds: 40 });
    let flushed = false;
    const drive = async (orderId: string, i: number) => {
      for (const command of ['pay', 'accept', 'cancel']) {
        if (i === 8 && command === 'accept' && !flushed) {
          flushed = true;
          await flush();
        }
        const res = await sys.request('POST', `/orders/${orderId}/${command}`, commandRequest(p, command));
        expect(res.status, `${command}: ${JSON.stringify(res.body)}`).to.equal(200);
      }
    };
    await Promise.all(orders.map((o, i) => drive(o.id, i)));
    expect(flushed).to.equal(true);
    await eventually(async () => (await sys.runtime.work.queue.getDelayedCount()) > 0, 'retries to wait as delayed jobs');
    await flush();
    hook.setDown(false);

    const ids = orders.map((o) => o.id);
    await eventually(
      async () => {
        const ledger = await sys.ledger();
        return ids.every((id) => moneyOf(ledger, id).refunds.length === 1);
      },
      'one refund per cancelled order',
      30_000,
    );
    // 4 to the customer, paid and cancelled to the store; events Redis lost reach the notifier late, not never.
    const rows = orders.length * 6;
    await eventually(
      async () => (await sys.runtime.db.query('SELECT count(*)::int AS n FROM notifications WHERE order_id = ANY($1::uuid[])', [ids]))[0].n === rows,
      'every notification to be written',
      30_000,
    );
    await eventually(async () => hook.accepted.filter((n) => ids.includes(n.orderId)).length >= rows, 'every notification delivered', 30_000);
    const delivered = hook.accepted.filter((n) => ids.includes(n.orderId)).map((n) => n.notificationId);
    expect(new Set(delivered).size).to.equal(delivered.length);
    expect(delivered).to.have.length(rows);
    const ledger = await sys.ledger();
    for (const id of ids) {
      expect(moneyOf(ledger, id).charges).to.have.length(1);
      expect(moneyOf(ledger, id).refunds).to.have.length(1);
    }
    await eventually(async () => {
      const [{ n }] = await sys.runtime.db.query('SELECT count(*)::int AS n FROM view_deliveries WHERE order_id = ANY($1::uuid[])', [ids]);
      const [{ owed }] = await sys.runtime.db.query(
        `SELECT (SELECT count(*)::int FROM order_journal j JOIN consumer_positions p ON p.grp = 'events' AND p.part = j.part
                 WHERE j.order_id = ANY($1::uuid[]) AND (j.tx, j.pos) > (p.tx, p.pos))
              + (SELECT count(*)::int FROM consumer_failures WHERE order_id = ANY($1::uuid[])) AS owed`,
        [ids],
      );
      return n === 0 && owed === 0;
    }, 'every consumer to have applied every event', 20_000);
    expect(await redis.get(bystander), "another's key in the same Redis").to.equal('still here');
  });
});
