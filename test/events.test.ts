import { expect } from 'chai';
import { deliver } from '../src/actors/consumers.ts';
import { createLogger } from '../src/log.ts';
import { commandRequest, eventually, request, sharedSystem, type Parties, type TestSystem } from './support/system.ts';

const log = createLogger('silent');

/** The journal is the outbox: each consumer applies every event once, in order, whatever the delivery does. */
describe('events: journal, consumers and the owed-event sweeper', function () {
  this.timeout(40_000);
  let sys: TestSystem;
  let p: Parties;
  before(async () => {
    sys = await sharedSystem();
  });
  beforeEach(async () => {
    await sys.resetGateway();
    p = await sys.newParties();
  });

  const checkpoints = async (orderId: string) =>
    Object.fromEntries(
      (await sys.runtime.db.query('SELECT consumer, seq FROM consumer_checkpoints WHERE order_id = $1', [orderId])).map((r: { consumer: string; seq: number }) => [
        r.consumer,
        r.seq,
      ]),
    );
  const feedOf = async (orderId: string) =>
    ((await sys.request('GET', '/notifications?limit=200', { token: p.customer })).body as { orderId: string; seq: number }[]).filter((n) => n.orderId === orderId);

  it('journals each event once with its envelope, and every consumer applies it', async () => {
    const order = await sys.placeOrder(p);
    await sys.drive(p, order.id, ['pay', 'accept']);
    const journal = (await sys.request('GET', `/orders/${order.id}/events`, { token: p.customer })).body;
    expect(journal.map((e: { seq: number; type: string }) => [e.seq, e.type])).to.deep.equal([
      [1, 'OrderPlaced'],
      [2, 'OrderPaid'],
      [3, 'OrderAccepted'],
    ]);
    for (const e of journal) {
      expect(e).to.have.all.keys('eventId', 'seq', 'type', 'data', 'occurredAt', 'at', 'causationId', 'actor');
      expect(e.actor.sub).to.be.oneOf([p.customerId, p.storeId]);
    }
    const expected = Object.fromEntries(sys.runtime.consumers.map((c) => [c.name, 3]));
    await eventually(async () => {
      const now = await checkpoints(order.id);
      return Object.keys(expected).every((name) => now[name] === 3);
    }, 'every consumer to reach seq 3');
    expect(await checkpoints(order.id)).to.deep.equal(expected);
    // Once every consumer has applied them, the sweeper marks the events settled.
    await eventually(async () => {
      const [{ n }] = await sys.runtime.db.query('SELECT count(*)::int AS n FROM order_journal WHERE order_id = $1 AND settled_at IS NULL', [order.id]);
      return n === 0;
    }, 'the events to be settled', 15_000);
  });

  it('an event whose publication was lost (a crash after commit, Redis away) is re-sent by the sweeper and applied once', async () => {
    const publish = sys.runtime.bus.publish;
    sys.runtime.bus.publish = () => {}; // commits happen, nothing reaches Redis
    let order;
    try {
      order = await sys.placeOrder(p);
      await sys.drive(p, order.id, ['pay']);
    } finally {
      sys.runtime.bus.publish = publish;
    }
    expect(await feedOf(order.id)).to.have.length(0);
    const feed = await eventually(async () => {
      const f = await feedOf(order.id);
      return f.length === 2 && f;
    }, 'the sweeper to re-send the owed events (after OWED_AFTER_MS)', 15_000);
    expect(feed.map((n) => n.seq).sort()).to.deep.equal([1, 2]);
  });

  it('duplicate and reordered deliveries change nothing: the checkpoint reads on from the journal', async () => {
    const order = await sys.placeOrder(p);
    await sys.drive(p, order.id, ['pay', 'accept']);
    const notifier = sys.runtime.consumers.find((c) => c.name === 'notifier')!;
    await eventually(async () => (await feedOf(order.id)).length === 3, 'the three notifications');
    const before = await sys.runtime.db.query('SELECT id, seq FROM notifications WHERE order_id = $1 ORDER BY seq, id', [order.id]);
    // Seq 3, then 2, then 3 again, then 1, some at the same time.
    expect(await deliver(sys.runtime.pg, notifier, [{ orderId: order.id, seq: 3 }], log)).to.equal(0);
    await Promise.all([
      deliver(sys.runtime.pg, notifier, [{ orderId: order.id, seq: 2 }], log),
      deliver(sys.runtime.pg, notifier, [{ orderId: order.id, seq: 3 }], log),
      deliver(sys.runtime.pg, notifier, [{ orderId: order.id, seq: 1 }], log),
    ]);
    expect(await sys.runtime.db.query('SELECT id, seq FROM notifications WHERE order_id = $1 ORDER BY seq, id', [order.id])).to.deep.equal(before);
    expect((await checkpoints(order.id)).notifier).to.equal(3);
  });

  it('a consumer that misses events catches up from the journal in order, even when the newest arrives first', async () => {
    const order = await sys.placeOrder(p);
    await sys.drive(p, order.id, ['pay', 'accept']);
    const view = sys.runtime.consumers.find((c) => c.name === 'view.deliveries')!;
    await eventually(async () => (await checkpoints(order.id))['view.deliveries'] === 3, 'the view to apply the events');
    await sys.runtime.db.query("DELETE FROM consumer_checkpoints WHERE consumer = 'view.deliveries' AND order_id = $1", [order.id]);
    await sys.drive(p, order.id, ['start-cooking', 'finish-cooking']);
    // Deliver only the newest event: seq 1..5 are applied from the journal, in order.
    await deliver(sys.runtime.pg, view, [{ orderId: order.id, seq: 5 }], log);
    expect((await checkpoints(order.id))['view.deliveries']).to.be.at.least(5);
    const offered = (await sys.request('GET', `/deliveries?area=${p.area}`, { token: p.rider })).body;
    expect(offered.map((d: { orderId: string; itemsCount: number }) => [d.orderId, d.itemsCount])).to.deep.equal([[order.id, 2]]);
  });

  it('a consumer failing on one order holds back neither other orders nor other consumers; operators see it and replay it', async () => {
    const poisoned = await sys.placeOrder(p);
    await eventually(async () => (await feedOf(poisoned.id)).length === 1, 'the placement to be notified');
    // A real failure inside the notifier's transaction for this one order.
    await sys.runtime.db.query(`
      CREATE OR REPLACE FUNCTION test_poison() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.order_id = '${poisoned.id}' THEN RAISE EXCEPTION 'poisoned order %', NEW.order_id; END IF; RETURN NEW; END $$`);
    await sys.runtime.db.query('CREATE TRIGGER test_poison BEFORE INSERT ON notifications FOR EACH ROW EXECUTE FUNCTION test_poison()');
    try {
      const healthy = await sys.placeOrder(p);
      await Promise.all([
        sys.drive(p, poisoned.id, ['pay', 'accept', 'start-cooking', 'finish-cooking']),
        sys.drive(p, healthy.id, ['pay']),
      ]);
      await eventually(async () => (await feedOf(healthy.id)).length === 2, "the healthy order's notifications");
      // The other consumer applied the poisoned order's events: it is offered to riders.
      await eventually(async () => (await checkpoints(poisoned.id))['view.deliveries'] === 5, 'the deliveries view to apply the poisoned order');
      const failed = await eventually(async () => {
        const res = await sys.request('GET', '/admin/failed-events', { token: p.admin });
        return res.body.consumers.find((f: { orderId: string }) => f.orderId === poisoned.id);
      }, 'the failure to be recorded');
      // Its placement was notified before the poison; it is stuck on the payment (seq 2).
      expect(failed).to.include({ consumer: 'notifier', orderId: poisoned.id, seq: 2 });
      expect(failed.error).to.match(/poisoned order/);
      expect((await request(sys.baseUrl, 'GET', '/metrics')).body).to.match(/baedal_failed_events\{consumer="notifier"\} [1-9]/);
      expect((await sys.request('GET', '/admin/failed-events', { token: p.customer })).status).to.equal(403);
    } finally {
      await sys.runtime.db.query('DROP TRIGGER IF EXISTS test_poison ON notifications');
      await sys.runtime.db.query('DROP FUNCTION IF EXISTS test_poison()');
    }
    const replay = await sys.request('POST', '/admin/failed-events/replay', { token: p.admin, body: { orderId: poisoned.id } });
    expect(replay.status).to.equal(200);
    expect(replay.body.events).to.deep.equal({ notifier: 1 });
    await eventually(async () => (await feedOf(poisoned.id)).length === 5, 'the replayed notifications');
    const after = await sys.request('GET', '/admin/failed-events', { token: p.admin });
    expect(after.body.consumers.filter((f: { orderId: string }) => f.orderId === poisoned.id)).to.deep.equal([]);
  });

  it('records who issued each command, and as causation the request id that carried it', async () => {
    const order = await sys.placeOrder(p);
    const paid = await sys.request('POST', `/orders/${order.id}/pay`, { ...commandRequest(p, 'pay'), headers: { 'x-request-id': 'trace-pay-1' } });
    expect(paid.headers.get('x-request-id')).to.equal('trace-pay-1');
    const accepted = await sys.request('POST', `/orders/${order.id}/accept`, commandRequest(p, 'accept'));
    const journal = (await sys.request('GET', `/orders/${order.id}/events`, { token: p.store })).body;
    expect(journal.map((e: { actor: unknown }) => e.actor)).to.deep.equal([
      { sub: p.customerId, role: 'customer' },
      { sub: p.customerId, role: 'customer' },
      { sub: p.storeId, role: 'store' },
    ]);
    expect(journal[0].causationId).to.be.a('string');
    expect(journal[1].causationId).to.equal('trace-pay-1');
    expect(journal[2].causationId).to.equal(accepted.headers.get('x-request-id'));
  });
});
