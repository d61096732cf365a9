import { expect } from 'chai';
import { deliver } from '../src/actors/consumers.ts';
import { createLogger } from '../src/log.ts';
import { commandRequest, eventually, request, sharedSystem, startInstance, startSystem, type AppInstance, type Parties, type TestSystem } from './support/system.ts';

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

describe('events: a consumer that fell behind catches up in large batches', function () {
  this.timeout(40_000);

  it('a worker takes the jobs waiting behind its own and applies them as one batch, each event once', async () => {
    // An API-only instance commits and publishes; no worker consumes yet, so jobs pile up.
    const sys = await startSystem({ name: 'coalesce', env: { ROLE: 'api' } });
    let worker: AppInstance | undefined;
    try {
      const p = await sys.newParties();
      const orders = [];
      for (let i = 0; i < 8; i += 1) orders.push(await sys.placeOrder(p));
      const refs = (await sys.runtime.db.query('SELECT order_id, seq FROM order_journal ORDER BY at')).map((r: { order_id: string; seq: number }) => ({ orderId: r.order_id, seq: r.seq }));
      // One job per event, as a slow consumer would find them.
      for (const ref of refs) await sys.runtime.bus.send('events', [ref]);
      const queue = sys.runtime.bus.queues.get('events')!;
      const waiting = await queue.getWaitingCount();
      expect(waiting).to.be.at.least(refs.length);

      worker = await startInstance({ gatewayUrl: sys.gateway.url, queuePrefix: sys.queuePrefix, env: { DATABASE_URL: sys.databaseUrl, ROLE: 'worker' } });
      await eventually(async () => (await queue.getWaitingCount()) === 0 && (await queue.getActiveCount()) === 0, 'the queue to drain');
      // Far fewer jobs ran than were waiting: the others were taken along as one batch.
      const completed = await queue.getCompletedCount();
      expect(completed, `${completed} jobs ran for ${waiting} waiting`).to.be.below(waiting / 2);
      for (const order of orders) {
        await eventually(async () => {
          const rows = await sys.runtime.db.query("SELECT seq FROM consumer_checkpoints WHERE order_id = $1 AND consumer = 'notifier'", [order.id]);
          return rows[0]?.seq === 1;
        }, `order ${order.id} to be applied`);
      }
      // Applied once: one customer notification per event, however many times it was queued.
      const [n] = await sys.runtime.db.query("SELECT count(*)::int AS n FROM notifications WHERE order_id = ANY($1::uuid[]) AND to_role = 'customer'", [orders.map((o) => o.id)]);
      expect(n.n).to.equal(orders.length);
    } finally {
      await worker?.close();
      await sys.close();
    }
  });
});

describe('events: the sweeper and a consumer that is behind', function () {
  this.timeout(40_000);

  it('does not send again what is still waiting in a backed-up queue, and sends it once the queue lost it', async () => {
    // API only: events are published, nobody consumes them, and the sweeper runs only when called.
    const sys = await startSystem({ name: 'sweep_behind', env: { ROLE: 'api' } });
    try {
      const p = await sys.newParties();
      const order = await sys.placeOrder(p);
      const queue = sys.runtime.bus.queues.get('events')!;
      await eventually(async () => (await queue.getWaitingCount()) > 0, 'the event to be queued');
      // Older than OWED_AFTER_MS (2 s here), and waiting in the queue for more than a second.
      await eventually(async () => {
        const [row] = await sys.runtime.db.query(`SELECT now() - at > interval '2.5 seconds' AS old FROM order_journal WHERE order_id = $1`, [order.id]);
        return row.old;
      }, 'the event to be owed for longer than OWED_AFTER_MS');
      expect(await sys.runtime.sweeper.sweepEvents()).to.deep.equal({ resent: 0 });
      expect(await queue.getWaitingCount()).to.equal(1);
      // Redis loses the queue: the same event is now owed and nowhere else.
      await queue.drain();
      expect(await sys.runtime.sweeper.sweepEvents()).to.deep.equal({ resent: 1 });
      expect(await queue.getWaitingCount()).to.equal(1);
    } finally {
      await sys.close();
    }
  });
});
