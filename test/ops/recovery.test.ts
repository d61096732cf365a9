import { expect } from 'chai';
import { connect, createServer as createNetServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { Cluster } from '../../scripts/cluster/cluster.ts';
import { onServer } from '../../scripts/cluster/infra.ts';
import { checkInvariants, nothingOwed, owedNow, type Acknowledged } from '../../scripts/cluster/invariants.ts';
import { ReplicaProxy } from '../../scripts/cluster/proxy.ts';
import { runLoad } from '../../scripts/load/runner.ts';
import { MENU } from '../../scripts/load/scenario.ts';
import { signToken } from '../../scripts/load/tokens.ts';
import { commandRequest, eventually, request, startSystem, TEST_DATABASE_URL, TEST_REDIS_URL, testDatabaseUrl, type Parties, type TestSystem } from '../support/system.ts';

/** The production defaults the bound rests on: WORK_LEASE_MS 10 s, SWEEP_INTERVAL_MS 2 s, JOB_LOCK_MS 10 s. */
const RECOVERY_BOUND_MS = 15_000;

/**
 * Replicas as production runs them (src/main.ts processes, default settings), sharing one database
 * and one Redis: a replica killed in the middle of a refund, and one stopped under load.
 */
describe('recovery of a replica cluster (production settings)', function () {
  this.timeout(180_000);
  let cluster: Cluster;

  afterEach(async () => {
    await cluster?.stop();
  });

  const parties = async (c: Cluster) => {
    const tag = c.tag;
    const ids = { storeId: `store-${tag}`, customerId: `customer-${tag}`, riderId: `rider-${tag}` };
    return {
      ...ids,
      store: await signToken(c.secret, 'store', ids.storeId),
      customer: await signToken(c.secret, 'customer', ids.customerId),
      admin: await signToken(c.secret, 'admin', `admin-${tag}`),
    };
  };

  it(`kill -9 of the replica in the middle of a refund: another replica completes it within ${RECOVERY_BOUND_MS / 1000} s, once`, async () => {
    cluster = new Cluster({ databaseUrl: testDatabaseUrl('recovery'), redisUrl: TEST_REDIS_URL });
    await cluster.start();
    // Each replica reaches the gateway through a proxy of its own, so the test sees which one calls.
    const gatewayPort = Number(new URL(cluster.gatewayUrl).port);
    const routes = await Promise.all(
      ['replica-1', 'replica-2'].map(async (name) => {
        const route = new ReplicaProxy();
        route.set('gateway', gatewayPort);
        return { name, route, url: await route.listen() };
      }),
    );
    try {
      for (const r of routes) await cluster.startReplica(r.name, { PAYMENT_URL: r.url });
      const p = await parties(cluster);
      const api = (method: string, path: string, token: string, body?: unknown) => request(cluster.url, method, path, { token, body });
      expect((await api('PUT', `/stores/${p.storeId}/menu`, p.store, MENU)).status).to.equal(200);
      const placed = await api('POST', '/orders', p.customer, { storeId: p.storeId, items: [{ foodId: 'bibimbap', qty: 2 }], address: { area: 'gangnam', line: '1 Teheran-ro' } });
      expect(placed.status).to.equal(201);
      const orderId = placed.body.id as string;
      expect((await api('POST', `/orders/${orderId}/pay`, p.customer)).status).to.equal(200);

      // The gateway records the refund and then sits on its answer: the replica that called waits.
      await fetch(`${cluster.gatewayUrl}/_admin/behaviour`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ answerDelayMs: 60_000 }) });
      expect((await api('POST', `/orders/${orderId}/cancel`, p.customer, { reason: 'changed my mind' })).status).to.equal(200);
      const holder = await eventually(async () => routes.find((r) => (r.route.counts().gateway?.inFlight['/refunds'] ?? 0) > 0), 'a replica to call the gateway for the refund');
      const killedAt = performance.now();
      await cluster.kill(holder.name, 'SIGKILL');
      await fetch(`${cluster.gatewayUrl}/_admin/behaviour`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ answerDelayMs: 0 }) });

      const refunded = await eventually(
        async () => (await cluster.db.query("SELECT refund_id FROM refunds WHERE order_id = $1 AND status = 'refunded'", [orderId])).rows[0],
        'the refund to be recorded by the surviving replica',
        RECOVERY_BOUND_MS + 5000,
      );
      const tookMs = performance.now() - killedAt;
      expect(tookMs, `refund completed ${Math.round(tookMs)} ms after the kill`).to.be.at.most(RECOVERY_BOUND_MS);
      const survivor = routes.find((r) => r !== holder)!;
      expect(survivor.route.counts().gateway!.requests, 'the survivor called the gateway').to.be.greaterThan(0);

      // The gateway had recorded the first call: the retry, same key, got the same refund back.
      const ledger = await cluster.ledger();
      const charges = ledger.charges.filter((c) => c.orderId === orderId);
      expect(charges).to.have.length(1);
      const refunds = ledger.refunds.filter((r) => r.chargeId === charges[0]!.chargeId);
      expect(refunds).to.have.length(1);
      expect(refunds[0]!.refundId).to.equal(refunded.refund_id);
      const order = await api('GET', `/orders/${orderId}`, p.customer);
      expect(order.body).to.deep.include({ status: 'cancelled' });
      expect(order.body.refund).to.include({ status: 'refunded' });
    } finally {
      for (const r of routes) await r.route.close();
    }
  });

  it('SIGTERM under load: the replica exits 0 within SHUTDOWN_TIMEOUT_MS, and nothing it accepted is lost', async () => {
    cluster = new Cluster({ databaseUrl: testDatabaseUrl('recovery'), redisUrl: TEST_REDIS_URL });
    await cluster.start();
    await Promise.all([cluster.startReplica('replica-1', { LOG_LEVEL: 'info' }), cluster.startReplica('replica-2')]);
    const acknowledged: Acknowledged[] = [];
    let stop: { exit: { code: number | null; signal: NodeJS.Signals | null }; tookMs: number } | undefined;
    const load = runLoad({
      urls: [cluster.url],
      target: 'baedal',
      concurrency: 8,
      durationS: 15,
      warmupS: 0,
      stores: 3,
      secret: cluster.secret,
      seed: 7,
      timeoutMs: 20_000,
      progressS: 0,
      verify: false,
      runId: `sigterm-${cluster.tag}`,
      log: () => undefined,
      onAnswer: (name, call, res) => {
        if (res.status < 200 || res.status >= 300) return;
        acknowledged.push({ orderId: String(name === 'place' ? res.body.id : call.path.split('/')[2]), command: name, version: Number(res.body.version) });
      },
    });
    await eventually(async () => acknowledged.length >= 200, 'the load to get going', 30_000);
    const before = cluster.proxy.counts()['replica-1']!.ok;
    expect(before, 'replica-1 serves part of the load').to.be.greaterThan(0);
    const t0 = performance.now();
    const exit = await cluster.kill('replica-1', 'SIGTERM');
    stop = { exit, tookMs: performance.now() - t0 };
    const atStop = acknowledged.length;
    await load;

    expect(stop.exit).to.deep.equal({ code: 0, signal: null });
    expect(stop.tookMs, `stopped in ${Math.round(stop.tookMs)} ms`).to.be.below(20_000);
    const logged = cluster.replicas.get('replica-1')!.process.tail(200);
    expect(logged).to.include('"msg":"stopped"');
    // The load went on through the other replica.
    expect(acknowledged.length, 'commands accepted after the stop').to.be.greaterThan(atStop);

    // Once everything settled: every acknowledged command is journaled, once; money, views and
    // notifications hold.
    await eventually(async () => nothingOwed(await owedNow(cluster.db)), 'nothing to be owed', 60_000);
    await cluster.kill('replica-2', 'SIGTERM');
    const report = await checkInvariants(cluster.db, await cluster.ledger(), acknowledged, cluster.webhook.received);
    expect(report.failures).to.deep.equal([]);
    expect(report.figures.acknowledged).to.equal(acknowledged.length);
  });
});

describe('PostgreSQL away for a moment', function () {
  this.timeout(60_000);
  let sys: TestSystem;
  let p: Parties;
  const name = 'pg_away';
  const database = `${new URL(TEST_DATABASE_URL).pathname.slice(1)}_${name}`;
  const admin = (sql: string) => onServer(TEST_DATABASE_URL, sql);

  before(async () => {
    sys = await startSystem({ name });
    p = await sys.newParties();
  });
  after(async () => {
    await admin(`ALTER DATABASE "${database}" ALLOW_CONNECTIONS true`).catch(() => undefined);
    await sys?.close();
  });

  it('answers 503 database_unavailable with Retry-After while PostgreSQL refuses it, changes nothing, and serves again once it is back', async () => {
    const order = await sys.placeOrder(p);
    await admin(`ALTER DATABASE "${database}" ALLOW_CONNECTIONS false`);
    try {
      await admin(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '${database}'`);
      const refused = await sys.request('POST', `/orders/${order.id}/pay`, { token: p.customer });
      expect(refused.status, JSON.stringify(refused.body)).to.equal(503);
      expect(refused.body.error.code).to.equal('database_unavailable');
      expect(refused.headers.get('retry-after')).to.equal('1');
      expect((await sys.request('GET', '/readyz')).status).to.equal(503);
    } finally {
      await admin(`ALTER DATABASE "${database}" ALLOW_CONNECTIONS true`);
    }
    const now = await eventually(async () => {
      const res = await sys.request('GET', `/orders/${order.id}`, { token: p.customer });
      return res.status === 200 && res.body;
    }, 'the service to read the order again');
    expect(now.status, 'the refused pay changed nothing').to.equal('awaitingPayment');
    expect((await sys.request('POST', `/orders/${order.id}/pay`, { token: p.customer })).status).to.equal(200);
    expect((await sys.ledger()).charges.filter((c) => c.orderId === order.id)).to.have.length(1);
  });
});

/** A TCP proxy in front of the real Redis that can be cut (connections reset, new ones refused) and restored. */
async function cuttableRedis(target = new URL(TEST_REDIS_URL)) {
  const sockets = new Set<Socket>();
  let server: Server | undefined;
  let port = 0;
  const listen = async () => {
    server = createNetServer((client) => {
      const upstream = connect(Number(target.port || 6379), target.hostname);
      for (const s of [client, upstream]) {
        sockets.add(s);
        s.on('close', () => sockets.delete(s));
        s.on('error', () => undefined);
      }
      client.pipe(upstream).pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((resolve) => server!.listen(port, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  };
  const cut = async () => {
    const closed = new Promise<void>((resolve) => server!.close(() => resolve()));
    for (const s of sockets) s.destroy();
    await closed;
  };
  await listen();
  return { url: `redis://127.0.0.1:${port}`, cut, restore: listen, close: cut };
}

describe('Redis away for a while', function () {
  this.timeout(90_000);
  let sys: TestSystem;
  let p: Parties;
  let redis: Awaited<ReturnType<typeof cuttableRedis>>;

  before(async () => {
    redis = await cuttableRedis();
    sys = await startSystem({ name: 'redis_away', env: { REDIS_URL: redis.url } });
    p = await sys.newParties();
  });
  after(async () => {
    await sys?.close();
    await redis?.close().catch(() => undefined);
  });

  it('readiness names Redis, commands still commit, and once Redis is back the events they owe are applied and notified by themselves', async () => {
    const order = await sys.placeOrder(p);
    await sys.drive(p, order.id, ['pay']);
    await redis.cut();
    try {
      const ready = await eventually(async () => {
        const res = await sys.request('GET', '/readyz');
        return res.status === 503 && res.body;
      }, 'readiness to turn 503');
      expect(ready.checks).to.deep.equal({ postgres: true, redis: false });
      // The command commits in PostgreSQL; publishing its event is best effort after the commit.
      const accepted = await sys.request('POST', `/orders/${order.id}/accept`, commandRequest(p, 'accept'));
      expect(accepted.status, JSON.stringify(accepted.body)).to.equal(200);
      expect(accepted.body.status).to.equal('accepted');
    } finally {
      await redis.restore();
    }
    await eventually(async () => (await sys.request('GET', '/readyz')).status === 200, 'readiness to come back', 30_000);
    // Nobody replays anything by hand: the partition's owner reads on from its position.
    await eventually(async () => {
      const mine = (await sys.request('GET', `/views/customers/${p.customerId}/orders`, { token: p.customer })).body as { orderId: string; status: string }[];
      return mine.find((o) => o.orderId === order.id)?.status === 'accepted';
    }, 'the customer view to show the accepted order', 30_000);
    await eventually(async () => {
      const feed = (await sys.request('GET', '/notifications?limit=50', { token: p.customer })).body as { orderId: string; status: string }[];
      return feed.some((n) => n.orderId === order.id && n.status === 'accepted');
    }, 'the customer to be notified of the acceptance', 30_000);
    await eventually(async () => {
      const [owed] = await sys.runtime.db.query(
        `SELECT (SELECT count(*) FROM order_journal j JOIN consumer_positions p ON p.grp = 'events' AND p.part = j.part
                 WHERE j.order_id = $1 AND (j.tx, j.pos) > (p.tx, p.pos))::int
              + (SELECT count(*) FROM consumer_failures WHERE order_id = $1)::int AS n`,
        [order.id],
      );
      return owed.n === 0;
    }, 'every event of the order to be applied by every consumer', 30_000);
  });
});
