import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { applyPartitions } from '../../src/actors/consumers/apply.ts';
import type { ConsumerGroup } from '../../src/actors/consumers/types.ts';
import { PartitionLeases } from '../../src/actors/partitions.ts';
import { createLogger } from '../../src/log.ts';
import { commandRequest, eventually, request, startInstance, startSystem, type AppInstance, type Parties, type TestSystem, withSharedSystem } from '../support/system.ts';

const log = createLogger('silent');
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Events of the order past the group's positions, and (consumer, order) pairs owed on their own. */
async function pending(sys: TestSystem, orderId: string): Promise<{ behind: number; owed: string[] }> {
  const [{ behind }] = await sys.runtime.db.query(
    `SELECT count(*)::int AS behind FROM order_journal j JOIN consumer_positions p ON p.grp = 'events' AND p.part = j.part
     WHERE j.order_id = $1 AND (j.tx, j.pos) > (p.tx, p.pos)`,
    [orderId],
  );
  const owed = (await sys.runtime.db.query('SELECT consumer FROM consumer_failures WHERE order_id = $1 ORDER BY consumer', [orderId])).map((r: { consumer: string }) => r.consumer);
  return { behind, owed };
}

/** The journal is the outbox: each consumer applies every event once, in order, whatever the delivery does. */
describe('events: journal, partitions and consumers', function () {
  this.timeout(40_000);
  let sys: TestSystem;
  let p: Parties;
  withSharedSystem({ system: (s) => (sys = s), parties: (x) => (p = x) });

  const feedOf = async (orderId: string) =>
    ((await sys.request('GET', '/notifications?limit=200', { token: p.customer })).body as { orderId: string; seq: number }[]).filter((n) => n.orderId === orderId);
  const viewVersion = async (orderId: string) =>
    ((await sys.runtime.db.query('SELECT seq FROM view_customer_orders WHERE order_id = $1', [orderId]))[0] as { seq: number } | undefined)?.seq ?? 0;

  /** Makes the notifier fail on one order, inside its transaction, until `cure`. */
  const poison = async (orderId: string) => {
    await sys.runtime.db.query(`
      CREATE OR REPLACE FUNCTION test_poison() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.order_id = '${orderId}' THEN RAISE EXCEPTION 'poisoned order %', NEW.order_id; END IF; RETURN NEW; END $$`);
    await sys.runtime.db.query('CREATE TRIGGER test_poison BEFORE INSERT ON notifications FOR EACH ROW EXECUTE FUNCTION test_poison()');
  };
  const cure = async () => {
    await sys.runtime.db.query('DROP TRIGGER IF EXISTS test_poison ON notifications');
    await sys.runtime.db.query('DROP FUNCTION IF EXISTS test_poison()');
  };

  it('journals each event once with its envelope, and every consumer applies it', async () => {
    const order = await sys.placeOrder(p);
    await sys.drive(p, order.id, ['pay', 'accept']);
    const journal = (await sys.request('GET', `/orders/${order.id}/events`, { token: p.customer })).body;
    expect(journal.map((e: { seq: number; type: string }) => [e.seq, e.type])).to.deep.equal([
      [1, 'OrderPlaced'],
      [2, 'OrderPaid'],
      [3, 'OrderAccepted'],
    ]);
    expect(journal.map((e: { status: string }) => e.status)).to.deep.equal(['awaitingPayment', 'paid', 'accepted']);
    for (const e of journal) {
      expect(e).to.have.all.keys('eventId', 'seq', 'type', 'data', 'machineVersion', 'status', 'occurredAt', 'at', 'causationId', 'clientRequestId', 'actor');
      expect(e.machineVersion).to.equal(1);
      expect(e.actor.sub).to.be.oneOf([p.customerId, p.storeId]);
    }
    // The events lie in the order's partition, and the group's position there passes all three.
    const parts = await sys.runtime.db.query('SELECT DISTINCT part FROM order_journal WHERE order_id = $1', [order.id]);
    expect(parts.map((r: { part: number }) => r.part)).to.deep.equal([sys.runtime.bus.partitionOf(order.id)]);
    await eventually(async () => (await pending(sys, order.id)).behind === 0, 'the group to pass the events');
    expect(await pending(sys, order.id)).to.deep.equal({ behind: 0, owed: [] });
    expect(await viewVersion(order.id)).to.equal(3);
    expect((await feedOf(order.id)).map((n) => n.seq).sort()).to.deep.equal([1, 2, 3]);
  });

  it("an event whose wake-up was lost (a crash after commit, Redis away) is applied once by its owner's poll", async () => {
    // A partition whose last read had events is read again by itself: start from a quiet owner.
    await eventually(async () => sys.runtime.bus.idle, 'the owner to have nothing to read');
    const publish = sys.runtime.bus.publish;
    sys.runtime.bus.publish = () => {}; // commits happen, nothing reaches Redis
    let order;
    try {
      order = await sys.placeOrder(p);
      await sys.drive(p, order.id, ['pay']);
    } finally {
      sys.runtime.bus.publish = publish;
    }
    // No wake-up went out for these commits. Whatever reads the partition next (its poll, a lease
    // taken, a read again) applies them; the test cannot tell when that starts, only that it happens,
    // and once.
    const feed = await eventually(async () => {
      const f = await feedOf(order.id);
      return f.length === 2 && f;
    }, "the owner's poll to apply the events (EVENTS_POLL_MS)", 15_000);
    expect(feed.map((n) => n.seq).sort()).to.deep.equal([1, 2]);
    await eventually(async () => sys.runtime.bus.idle, 'the owner to have nothing more to read');
    expect((await feedOf(order.id)).map((n) => n.seq).sort(), 'each applied once').to.deep.equal([1, 2]);
  });

  it('deliveries racing over the same partitions apply each event once (the positions decide)', async () => {
    // An API-only system: events are journaled, nobody consumes them until the race below.
    const own = await startSystem({ name: 'race', env: { ROLE: 'api' } });
    try {
      const q = await own.newParties();
      const orders: { id: string }[] = [];
      for (let i = 0; i < 6; i += 1) orders.push(await own.placeOrder(q));
      for (const o of orders.slice(0, 3)) await own.drive(q, o.id, ['pay', 'accept']);
      const group: ConsumerGroup = { name: 'events', consumers: own.runtime.consumers };
      const parts = [...new Set(orders.map((o) => own.runtime.bus.partitionOf(o.id)))];
      // Events become readable once every transaction older than theirs has ended (on the whole server).
      await eventually(async () => {
        const [row] = await own.runtime.db.query('SELECT bool_and(tx < pg_snapshot_xmin(pg_current_snapshot())) AS visible FROM order_journal WHERE order_id = ANY($1::uuid[])', [
          orders.map((o) => o.id),
        ]);
        return row.visible;
      }, 'the events to be readable');
      // Five deliveries of the same partitions at once, some with small batches.
      const results = await Promise.all([1, 2, 50, 50, 3].map((limitPerPart) => applyPartitions(own.runtime.pg, group, parts, { limitPerPart, log })));
      for (let rounds = 0; rounds < 20; rounds += 1) {
        const more = await applyPartitions(own.runtime.pg, group, parts, { limitPerPart: 50, log });
        if (more.byPart.size === 0) break;
      }
      expect(results.some((r) => r.applied > 0)).to.equal(true);
      for (const o of orders) expect(await pending(own, o.id)).to.deep.equal({ behind: 0, owed: [] });
      // Once each: one customer notification per event, views at each order's version.
      const [{ n }] = await own.runtime.db.query("SELECT count(*)::int AS n FROM notifications WHERE order_id = ANY($1::uuid[]) AND to_role = 'customer'", [orders.map((o) => o.id)]);
      expect(n).to.equal(3 + 3 * 3);
      const views = await own.runtime.db.query('SELECT order_id, seq FROM view_customer_orders WHERE order_id = ANY($1::uuid[])', [orders.map((o) => o.id)]);
      expect(new Map(views.map((v: { order_id: string; seq: number }) => [v.order_id, v.seq]))).to.deep.equal(new Map(orders.map((o, i) => [o.id, i < 3 ? 3 : 1])));
    } finally {
      await own.close();
    }
  });

  it('an order a consumer owes on its own is caught up from its first owed event, and the events the group passed meanwhile are owed too', async () => {
    const order = await sys.placeOrder(p);
    await sys.drive(p, order.id, ['pay', 'accept']);
    await eventually(async () => (await pending(sys, order.id)).behind === 0, 'the group to pass the events');
    // As after a failure on seq 4: the view owes the order from there (backing off for an hour).
    await sys.runtime.db.query(
      `INSERT INTO consumer_failures (consumer, order_id, part, seq, upto, attempts, last_error, first_failed_at, last_failed_at, origin, due_at)
       VALUES ('view.deliveries', $1, $2, 4, 3, 1, 'test', now(), now(), 'failure', now() + interval '1 hour')`,
      [order.id, sys.runtime.bus.partitionOf(order.id)],
    );
    await sys.drive(p, order.id, ['start-cooking', 'finish-cooking']);
    // The group passes seq 4 and 5 but the view skips them: they become owed (upto moves on).
    await eventually(async () => (await pending(sys, order.id)).behind === 0, 'the group to pass seq 4 and 5');
    const [owed] = await sys.runtime.db.query("SELECT seq, upto FROM consumer_failures WHERE consumer = 'view.deliveries' AND order_id = $1", [order.id]);
    expect(owed).to.deep.equal({ seq: 4, upto: 5 });
    expect((await sys.request('GET', `/deliveries?area=${p.area}`, { token: p.rider })).body.map((d: { orderId: string }) => d.orderId)).to.not.include(order.id);
    // The operator's replay applies 4 and 5, in order, from the journal; the owed row goes.
    const replay = await sys.request('POST', '/admin/failed-events/replay', { token: p.admin, body: { orderId: order.id } });
    expect(replay.status).to.equal(200);
    expect(await pending(sys, order.id)).to.deep.equal({ behind: 0, owed: [] });
    const offered = (await sys.request('GET', `/deliveries?area=${p.area}`, { token: p.rider })).body;
    expect(offered.map((d: { orderId: string; itemsCount: number }) => [d.orderId, d.itemsCount])).to.deep.equal([[order.id, 2]]);
  });

  it('GET /admin/failed-events lists the orders a consumer failed on, not those a rebuild or an upgrade owes it', async () => {
    const [rebuilt, upgraded, failing] = [randomUUID(), randomUUID(), randomUUID()];
    // Owed, not due for an hour: no owner takes them while the test reads the list.
    await sys.runtime.db.query(
      `INSERT INTO consumer_failures (consumer, order_id, part, seq, upto, attempts, last_error, first_failed_at, last_failed_at, origin, due_at)
       SELECT 'view.deliveries', o.id, 0, 1, 2, o.attempts, o.error, now(), now(), o.origin, now() + interval '1 hour'
       FROM (VALUES ($1::uuid, 0, 'owed to a rebuild', 'rebuild'), ($2::uuid, 0, 'owed to an upgrade', 'upgrade'), ($3::uuid, 2, 'boom', 'failure'))
         AS o(id, attempts, error, origin)`,
      [rebuilt, upgraded, failing],
    );
    try {
      const res = await sys.request('GET', '/admin/failed-events', { token: p.admin });
      expect(res.status).to.equal(200);
      const listed = res.body.consumers.map((f: { orderId: string }) => f.orderId);
      expect(listed).to.include(failing);
      expect(listed).to.not.include(rebuilt);
      expect(listed).to.not.include(upgraded);
    } finally {
      await sys.runtime.db.query('DELETE FROM consumer_failures WHERE order_id = ANY($1::uuid[])', [[rebuilt, upgraded, failing]]);
    }
  });

  it('a consumer failing on one order holds back neither other orders nor other consumers; operators see it and replay it', async () => {
    const poisoned = await sys.placeOrder(p);
    await eventually(async () => (await feedOf(poisoned.id)).length === 1, 'the placement to be notified');
    // A real failure inside the notifier's transaction for this one order.
    await poison(poisoned.id);
    try {
      const healthy = await sys.placeOrder(p);
      await Promise.all([
        sys.drive(p, poisoned.id, ['pay', 'accept', 'start-cooking', 'finish-cooking']),
        sys.drive(p, healthy.id, ['pay']),
      ]);
      await eventually(async () => (await feedOf(healthy.id)).length === 2, "the healthy order's notifications");
      // The other consumer applied the poisoned order's events: it is offered to riders.
      await eventually(async () => {
        const offered = (await sys.request('GET', `/deliveries?area=${p.area}`, { token: p.rider })).body as { orderId: string }[];
        return offered.some((d) => d.orderId === poisoned.id);
      }, 'the deliveries view to apply the poisoned order');
      const failed = await eventually(async () => {
        const res = await sys.request('GET', '/admin/failed-events', { token: p.admin });
        return res.body.consumers.find((f: { orderId: string }) => f.orderId === poisoned.id);
      }, 'the failure to be recorded');
      // Its placement was notified before the poison; it is stuck on the payment (seq 2).
      expect(failed).to.include({ consumer: 'notifier', orderId: poisoned.id, seq: 2 });
      expect(failed.error).to.match(/poisoned order/);
      // The gauge measures at most once a second.
      await eventually(async () => /baedal_failed_events\{consumer="notifier"\} [1-9]/.test((await request<string>(sys.baseUrl, 'GET', '/metrics')).body), 'the failed-events gauge');
      expect((await sys.request('GET', '/admin/failed-events', { token: p.customer })).status).to.equal(403);
    } finally {
      await cure();
    }
    const replay = await sys.request('POST', '/admin/failed-events/replay', { token: p.admin, body: { orderId: poisoned.id } });
    expect(replay.status).to.equal(200);
    expect(replay.body.events).to.deep.equal({ notifier: 1 });
    await eventually(async () => (await feedOf(poisoned.id)).length === 5, 'the replayed notifications');
    const after = await sys.request('GET', '/admin/failed-events', { token: p.admin });
    expect(after.body.consumers.filter((f: { orderId: string }) => f.orderId === poisoned.id)).to.deep.equal([]);
  });

  it("an owed order is work due by the backoff: its owner's loop retries it when due, and each failure puts it off further", async () => {
    const order = await sys.placeOrder(p);
    await eventually(async () => (await feedOf(order.id)).length === 1, 'the placement to be notified');
    await poison(order.id);
    const row = async () =>
      (await sys.runtime.db.query(
        `SELECT attempts, last_error, lease_until, extract(epoch FROM due_at - last_failed_at)::float8 AS wait FROM consumer_failures WHERE consumer = 'notifier' AND order_id = $1`,
        [order.id],
      ))[0] as { attempts: number; last_error: string; lease_until: Date | null; wait: number } | undefined;
    try {
      await sys.drive(p, order.id, ['pay']);
      const first = await eventually(row, 'the failure to be owed');
      // The first retry is due 1 to 2 s after the failure (from 2 s, half jitter), with the error kept.
      expect(first).to.include({ attempts: 1, lease_until: null });
      expect(first.wait).to.be.within(1, 2);
      expect(first.last_error).to.match(/poisoned order/);
      // Once due, the owner's poll retries it; it fails again and is put off 2 to 4 s.
      await sys.runtime.db.query(`UPDATE consumer_failures SET due_at = now() WHERE consumer = 'notifier' AND order_id = $1`, [order.id]);
      const second = await eventually(async () => {
        const r = await row();
        return r?.attempts === 2 && r;
      }, "the owner's retry");
      expect(second.wait).to.be.within(2, 4);
    } finally {
      await cure();
    }
    // Not due yet: nothing happens until it is, then the owner applies it and the row goes.
    expect(await feedOf(order.id)).to.have.length(1);
    await sys.runtime.db.query(`UPDATE consumer_failures SET due_at = now() WHERE consumer = 'notifier' AND order_id = $1`, [order.id]);
    await eventually(async () => (await feedOf(order.id)).length === 2, 'the retried notification');
    expect(await pending(sys, order.id)).to.deep.equal({ behind: 0, owed: [] });
  });

  it("records who issued each command, as causation the service's id of the request, and the client's X-Request-Id beside it", async () => {
    const order = await sys.placeOrder(p);
    const paid = await sys.request('POST', `/orders/${order.id}/pay`, { ...commandRequest(p, 'pay'), headers: { 'x-request-id': 'trace-pay-1' } });
    expect(paid.headers.get('x-request-id')).to.match(UUID);
    const accepted = await sys.request('POST', `/orders/${order.id}/accept`, commandRequest(p, 'accept'));
    const journal = (await sys.request('GET', `/orders/${order.id}/events`, { token: p.store })).body;
    expect(journal.map((e: { actor: unknown }) => e.actor)).to.deep.equal([
      { sub: p.customerId, role: 'customer' },
      { sub: p.customerId, role: 'customer' },
      { sub: p.storeId, role: 'store' },
    ]);
    expect(journal[0].causationId).to.match(UUID);
    expect(journal[1]).to.deep.include({ causationId: paid.headers.get('x-request-id'), clientRequestId: 'trace-pay-1' });
    expect(journal[2]).to.deep.include({ causationId: accepted.headers.get('x-request-id'), clientRequestId: null });
  });

  it("never takes a client's X-Request-Id as a causation id: not another request's, not a timer's", async () => {
    const other = await sys.newParties();
    const theirs = await sys.placeOrder(other);
    const cancelled = await sys.request('POST', `/orders/${theirs.id}/cancel`, { token: other.customer, body: {}, headers: { 'x-request-id': 'shared-id-1' } });
    const mine = await sys.placeOrder(p);
    // The same id sent by another customer, and a timer's id: each is only that client's label.
    const timerId = `${mine.id}:1:payment-timeout`;
    const paid = await sys.request('POST', `/orders/${mine.id}/pay`, { token: p.customer, headers: { 'x-request-id': timerId } });
    const accepted = await sys.request('POST', `/orders/${mine.id}/accept`, { token: p.store, headers: { 'x-request-id': 'shared-id-1' } });
    for (const res of [cancelled, paid, accepted]) expect(res.status, JSON.stringify(res.body)).to.equal(200);
    const theirJournal = (await sys.request('GET', `/orders/${theirs.id}/events`, { token: other.customer })).body;
    const myJournal = (await sys.request('GET', `/orders/${mine.id}/events`, { token: p.customer })).body;
    expect(theirJournal[1]).to.deep.include({ type: 'OrderCancelled', causationId: cancelled.headers.get('x-request-id'), clientRequestId: 'shared-id-1' });
    expect(myJournal[1]).to.deep.include({ type: 'OrderPaid', causationId: paid.headers.get('x-request-id'), clientRequestId: timerId });
    expect(myJournal[2]).to.deep.include({ type: 'OrderAccepted', causationId: accepted.headers.get('x-request-id'), clientRequestId: 'shared-id-1' });
    const causes = [theirJournal[1].causationId, myJournal[1].causationId, myJournal[2].causationId];
    for (const c of causes) expect(c).to.match(UUID);
    expect(new Set(causes).size).to.equal(3);
    // A rider reading a journal sees the request ids of its own commands only.
    await sys.request('POST', `/orders/${mine.id}/start-cooking`, commandRequest(p, 'start-cooking'));
    await sys.request('POST', `/orders/${mine.id}/finish-cooking`, commandRequest(p, 'finish-cooking'));
    expect((await sys.request('POST', `/orders/${mine.id}/pick`, { token: p.rider, headers: { 'x-request-id': 'rider-trace' } })).status).to.equal(200);
    const asRider = (await sys.request('GET', `/orders/${mine.id}/events`, { token: p.rider })).body as { type: string; clientRequestId: string | null }[];
    expect(asRider.map((e) => e.clientRequestId)).to.deep.equal([null, null, null, null, null, 'rider-trace']);
    // Nothing a client sent names a journaled cause.
    const [{ n }] = await sys.runtime.db.query(`SELECT count(*)::int AS n FROM order_journal WHERE causation_id IN ('shared-id-1', $1)`, [timerId]);
    expect(n).to.equal(0);
  });
});

describe('events: a replica that starts behind catches up in large batches', function () {
  this.timeout(40_000);

  it('takes the partitions and applies what was journaled before it came, each event once, in few batches', async () => {
    // An API-only instance commits; no replica consumes yet.
    const sys = await startSystem({ name: 'catch_up', env: { ROLE: 'api' } });
    let worker: AppInstance | undefined;
    try {
      const p = await sys.newParties();
      const orders = [];
      /** When each placement was asked for and answered (ms since the epoch): its event was decided between. */
      const placed: { asked: number; answered: number }[] = [];
      for (let i = 0; i < 12; i += 1) {
        const asked = Date.now();
        orders.push(await sys.placeOrder(p));
        placed.push({ asked, answered: Date.now() });
      }
      expect((await pending(sys, orders[0]!.id)).behind).to.equal(1);
      const workerAsked = Date.now();
      worker = await startInstance({ gatewayUrl: sys.gateway.url, queuePrefix: sys.queuePrefix, env: { DATABASE_URL: sys.databaseUrl, ROLE: 'worker' } });
      expect(worker.runtime.bus.owned()).to.have.length(32);
      for (const order of orders) await eventually(async () => (await pending(sys, order.id)).behind === 0, `order ${order.id} to be applied`);
      const allApplied = Date.now();
      // Applied once: one customer notification per event.
      const [n] = await sys.runtime.db.query("SELECT count(*)::int AS n FROM notifications WHERE order_id = ANY($1::uuid[]) AND to_role = 'customer'", [orders.map((o) => o.id)]);
      expect(n.n).to.equal(orders.length);
      const metrics = (await request(worker.baseUrl, 'GET', '/metrics')).body as string;
      const applied = [...metrics.matchAll(/^baedal_events_applied_total\{partition="\d+"\} (\d+)$/gm)].reduce((sum, m) => sum + Number(m[1]), 0);
      expect(applied).to.equal(orders.length);
      expect(metrics).to.match(/^baedal_event_partitions_owned 32$/m);
      // Each event's lag, from its decision to its batch's commit: none was applied before the
      // worker was asked to start, and all were by the time every order was seen applied.
      const lag = (name: string) => Number(new RegExp(`^baedal_event_lag_seconds_${name} (\\S+)$`, 'm').exec(metrics)?.[1]);
      expect(lag('count')).to.equal(orders.length);
      const atLeast = placed.reduce((s, t) => s + (workerAsked - t.answered), 0) / 1000;
      const atMost = placed.reduce((s, t) => s + (allApplied - t.asked), 0) / 1000;
      expect(lag('sum')).to.be.within(atLeast, atMost);
      expect(metrics).to.match(/^baedal_event_lag_seconds_bucket\{le="\+Inf"\} 12$/m);
    } finally {
      await worker?.close();
      await sys.close();
    }
  });
});

describe('events: replicas share the partitions', function () {
  this.timeout(60_000);

  it('a second replica takes half the partitions; when it leaves, the first takes them back and nothing is lost', async () => {
    const sys = await startSystem({ name: 'share' });
    try {
      const second = await sys.startReplica();
      const both = () => [sys.runtime.bus.owned(), second.runtime.bus.owned()];
      await eventually(async () => both().every((o) => o.length === 16), 'each replica to hold 16 partitions', 15_000);
      const [a, b] = both();
      expect([...a!, ...b!].sort((x, y) => x - y)).to.deep.equal([...Array(32).keys()]);
      const p = await sys.newParties();
      const orders = [];
      for (let i = 0; i < 10; i += 1) orders.push(await sys.placeOrder(p));
      for (const o of orders) await eventually(async () => (await pending(sys, o.id)).behind === 0, 'every order applied');
      await second.close();
      await eventually(async () => sys.runtime.bus.owned().length === 32, 'the first replica to take every partition back', 15_000);
      const later = await sys.placeOrder(p);
      await eventually(async () => (await pending(sys, later.id)).behind === 0, 'a new order applied after the hand-over');
    } finally {
      await sys.close();
    }
  });

  it('a busy owner promises to read by itself with its lease tick; every replica learns for how long, until it stops promising', async () => {
    const sys = await startSystem({ name: 'reading' });
    try {
      const db = sys.runtime.pg;
      // A replica that keeps its partitions as they are (keep) and one that only produces.
      const owner = new PartitionLeases({ db, partitions: 32, leaseMs: 5000, consumes: true });
      const producer = new PartitionLeases({ db, partitions: 32, leaseMs: 5000, consumes: false });
      try {
        await owner.tick({ keep: true, readsForMs: 3000 });
        const left = (await producer.tick()).reading.get(owner.holder);
        expect(left, 'what is left of the promise').to.be.within(2000, 3000);
        expect((await sys.runtime.bus.leases.tick({ keep: true })).reading.get(owner.holder), 'a consuming replica learns it too').to.be.within(2000, 3000);
        await owner.tick({ keep: true });
        expect((await producer.tick()).reading.has(owner.holder), 'no promise once it stopped promising').to.equal(false);
      } finally {
        await owner.leave();
      }
    } finally {
      await sys.close();
    }
  });
});
