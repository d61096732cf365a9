import { expect } from 'chai';
import { eventually, startSystem, type Parties, type TestSystem } from '../support/system.ts';
import { startWebhookReceiver } from '../support/webhook.ts';

/** Every status change notifies the customer (and the store or rider it concerns) through the webhook. */
describe('saga: notifications through a webhook', function () {
  this.timeout(60_000);
  let sys: TestSystem;
  let hook: Awaited<ReturnType<typeof startWebhookReceiver>>;
  let p: Parties;

  before(async () => {
    hook = await startWebhookReceiver();
    sys = await startSystem({ name: 'notify', env: { NOTIFY_WEBHOOK_URL: hook.url } });
  });
  after(async () => {
    await sys?.close();
    await hook?.close();
  });
  beforeEach(async () => {
    p = await sys.newParties();
  });

  const forOrder = (orderId: string) => hook.accepted.filter((n) => n.orderId === orderId);

  it('tells the customer of every status change, the store when paid and cancelled, the rider when delivered', async () => {
    const delivered = await sys.placeOrder(p);
    await sys.drive(p, delivered.id, ['pay', 'accept', 'start-cooking', 'finish-cooking', 'pick', 'confirm-delivery']);
    const cancelled = await sys.placeOrder(p);
    await sys.drive(p, cancelled.id, ['pay', 'cancel']);
    await eventually(async () => forOrder(delivered.id).length === 9 && forOrder(cancelled.id).length === 5, 'every message');

    const who = (orderId: string) => forOrder(orderId).map((n) => `${n.status}→${n.to.role}`);
    expect(who(delivered.id)).to.have.members([
      'awaitingPayment→customer',
      'paid→customer',
      'paid→store',
      'accepted→customer',
      'cooking→customer',
      'cooked→customer',
      'pickedUp→customer',
      'delivered→customer',
      'delivered→rider',
    ]);
    expect(who(cancelled.id)).to.have.members(['awaitingPayment→customer', 'paid→customer', 'paid→store', 'cancelled→customer', 'cancelled→store']);
    const message = forOrder(cancelled.id).find((n) => n.status === 'cancelled' && n.to.role === 'customer')!;
    expect(message).to.include({ orderId: cancelled.id, to: message.to });
    expect(message.to).to.deep.equal({ role: 'customer', id: p.customerId });
    expect(message.text).to.match(/cancelled.*refunded/);
    expect(Object.keys(message).sort()).to.deep.equal(['eventId', 'notificationId', 'orderId', 'status', 'text', 'to']);

    // GET /notifications shows each party its own messages with their delivery state.
    // (The receiver has the messages a moment before the service records their delivery.)
    const store = await eventually(async () => {
      const all = (await sys.request('GET', '/notifications', { token: p.store })).body as { orderId: string; status: string; delivery: { state: string } }[];
      return all.every((n) => n.delivery.state === 'delivered') && all;
    }, "the store's deliveries recorded");
    expect(store.map((n) => `${n.orderId}:${n.status}`)).to.have.members([`${delivered.id}:paid`, `${cancelled.id}:paid`, `${cancelled.id}:cancelled`]);
    const rider = (await sys.request('GET', '/notifications', { token: p.rider })).body as { status: string }[];
    expect(rider.map((n) => n.status)).to.deep.equal(['delivered']);
  });

  it('a webhook that is down delays notifications, never loses them; each notificationId arrives once', async () => {
    hook.setDown(true);
    const order = await sys.placeOrder(p);
    await sys.drive(p, order.id, ['pay', 'accept', 'cancel']);
    await eventually(async () => hook.refused() >= 5, 'the webhook to refuse deliveries');
    const pending = (await sys.request('GET', '/notifications', { token: p.customer })).body as { delivery: { state: string; attempts: number; lastError: string } }[];
    expect(pending).to.have.length(4);
    expect(pending.every((n) => n.delivery.state === 'pending')).to.equal(true);
    expect(pending.some((n) => n.delivery.attempts >= 1 && /503/.test(n.delivery.lastError))).to.equal(true);
    expect(forOrder(order.id)).to.have.length(0);

    hook.setDown(false);
    await eventually(async () => forOrder(order.id).length === 6, 'every message once the webhook is back', 20_000);
    const ids = forOrder(order.id).map((n) => n.notificationId);
    expect(new Set(ids).size).to.equal(ids.length);
    const feed = await eventually(async () => {
      const all = (await sys.request('GET', '/notifications', { token: p.customer })).body as { notificationId: string; delivery: { state: string } }[];
      return all.every((n) => n.delivery.state === 'delivered') && all;
    }, 'the deliveries recorded');
    expect(feed.map((n) => n.notificationId)).to.have.members(forOrder(order.id).filter((n) => n.to.role === 'customer').map((n) => n.notificationId));
  });
});
