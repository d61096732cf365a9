import { expect } from 'chai';
import { Cluster } from '../../scripts/cluster/cluster.ts';
import { checkInvariants, nothingOwed, owedNow, type Acknowledged } from '../../scripts/cluster/invariants.ts';
import { runLoad } from '../../scripts/load/runner.ts';
import { MENU } from '../../scripts/load/scenario.ts';
import { signToken } from '../../scripts/load/tokens.ts';
import { ORDER_MACHINES_V2 } from '../fixtures/order-v2.ts';
import { eventually, request, TEST_REDIS_URL, testDatabaseUrl } from '../support/system.ts';

/** Preloaded into a replica: it runs the order machine version 2 fixture instead of the shipped version 1. */
const V2 = './test/fixtures/order-v2.install.ts';
const LOAD_SECONDS = Number(process.env.ROLLING_TEST_SECONDS ?? 45);
/** Short enough for unpaid orders placed under version 1 to time out while both versions run. */
const UNPAID_ORDER_TIMEOUT_MS = 6000;

/**
 * A rolling deploy of a new order machine under load, replicas as production runs them (src/main.ts
 * processes on one database and one Redis, behind a round-robin proxy that retries a 503
 * machine_version_ahead on another replica, as a load balancer configured for it does): a replica
 * on version 1 alone, then beside one on version 2 (the test fixture: one added state, one renamed
 * event), then the old one stopped and `machines:migrate` run; then the invariants of the chaos
 * test, with histories judged by the version that recorded each event.
 */
describe('rolling deploy of order machine version 2 under load (replicas as processes)', function () {
  this.timeout(240_000);
  let cluster: Cluster;

  after(async () => {
    await cluster?.stop();
  });

  it('an old replica never writes an order the new one moved; nothing accepted is lost; money, journal and views hold', async () => {
    const databaseUrl = testDatabaseUrl('rolling');
    const crashes: string[] = [];
    cluster = new Cluster({
      databaseUrl,
      redisUrl: TEST_REDIS_URL,
      env: { UNPAID_ORDER_TIMEOUT_MS: String(UNPAID_ORDER_TIMEOUT_MS) },
      onCrash: (name, how, tail) => crashes.push(`${name} ${how}:\n${tail}`),
    });
    await cluster.start();
    cluster.proxy.retryVersionAhead = true;
    await cluster.startReplica('replica-1');
    const acknowledged: Acknowledged[] = [];
    const log: string[] = [];
    const load = runLoad({
      urls: [cluster.url],
      target: 'baedal',
      concurrency: 8,
      durationS: LOAD_SECONDS,
      warmupS: 0,
      stores: 3,
      secret: cluster.secret,
      seed: 17,
      timeoutMs: 20_000,
      progressS: 0,
      verify: true,
      runId: `rolling-${cluster.tag}`,
      log: (line) => log.push(line),
      onAnswer: (name, call, res) => {
        if (res.status < 200 || res.status >= 300) return;
        acknowledged.push({ orderId: String(name === 'place' ? res.body.id : call.path.split('/')[2]), command: name, version: Number(res.body.version) });
      },
    });

    // Orders nobody pays, placed all along: their timers fire under both versions.
    const store = `unpaid-store-${cluster.tag}`;
    const storeToken = await signToken(cluster.secret, 'store', store);
    const customer = await signToken(cluster.secret, 'customer', `unpaid-customer-${cluster.tag}`);
    expect((await request(cluster.url, 'PUT', `/stores/${store}/menu`, { token: storeToken, body: MENU })).status).to.equal(200);
    const unpaid: string[] = [];
    let placing = true;
    const placeUnpaid = (async () => {
      while (placing) {
        const res = await request(cluster.url, 'POST', '/orders', { token: customer, body: { storeId: store, items: [{ foodId: 'bibimbap', qty: 1 }], address: { area: 'mapo', line: '2 Mapo-daero' } } });
        if (res.status === 201) {
          unpaid.push(res.body.id);
          acknowledged.push({ orderId: res.body.id, command: 'place', version: res.body.version });
        }
        await new Promise((resolve) => setTimeout(resolve, 400));
      }
    })();

    // Version 1 alone, until orders are in flight in every state.
    await eventually(async () => acknowledged.length >= 150, 'orders on version 1', 30_000);
    await cluster.startReplica('replica-2', {}, [V2]);
    const onVersion = async (v: number) => (await cluster.db.query<{ n: number }>('SELECT count(*)::int AS n FROM orders WHERE machine_version = $1', [v])).rows[0]!.n;
    // Both, until the old replica has refused orders the new one moved, and long enough for timers of version 1 orders to come due.
    const mixedFrom = Date.now();
    await eventually(
      async () => (cluster.proxy.versionAhead.get('replica-1') ?? 0) >= 5 && (await onVersion(2)) >= 50 && Date.now() - mixedFrom >= UNPAID_ORDER_TIMEOUT_MS + 2000,
      'both versions to serve orders',
      45_000,
    );
    const v1Left = await onVersion(1);
    expect(v1Left, 'orders still on version 1 when the old replica stops').to.be.greaterThan(0);

    // The old replica goes (SIGTERM, as a rollout does); the load goes on through the new one.
    expect(await cluster.kill('replica-1', 'SIGTERM')).to.deep.equal({ code: 0, signal: null });
    const atStop = acknowledged.length;
    const migrate = cluster.run('machines-migrate', 'src/machines-migrate.ts', [], {
      preload: [V2],
      env: { ...process.env, DATABASE_URL: databaseUrl, LOG_LEVEL: 'error' },
    });
    expect(await migrate.exited, migrate.tail(40)).to.deep.equal({ code: 0, signal: null });
    const migrated = migrate.tail(40);
    expect(migrated).to.match(/moved \d+ of \d+ orders of older versions/);

    const summary = await load;
    expect(crashes, 'replicas that died').to.deep.equal([]);
    expect(acknowledged.length - atStop, 'commands the new replica accepted after the old one stopped').to.be.greaterThan(50);
    placing = false;
    await placeUnpaid;
    expect(summary.lifecycles.completedAllPhases, 'lifecycles completed').to.be.greaterThan(50);
    expect(summary.verify?.mismatches, JSON.stringify(summary.verify?.examples)).to.equal(0);

    const unpaidTimersOpen = async () =>
      (await cluster.db.query<{ n: number }>('SELECT count(*)::int AS n FROM timers WHERE order_id = ANY($1::uuid[]) AND due_at IS NOT NULL', [unpaid])).rows[0]!.n;
    await eventually(async () => (await unpaidTimersOpen()) === 0 && nothingOwed(await owedNow(cluster.db)), 'the last unpaid orders to time out, and nothing to be owed', 90_000);
    const versions = (await request(cluster.replicas.get('replica-2')!.url, 'GET', '/machines/order')).body.versions;
    await cluster.kill('replica-2', 'SIGTERM');

    // Every order runs version 2 now; the refusals came from the old replica only.
    expect(await onVersion(1), `orders left on version 1 (machines:migrate said: ${migrated})`).to.equal(0);
    expect(versions.map((v: { version: number; current: boolean }) => [v.version, v.current])).to.deep.equal([[2, true]]);
    expect(cluster.proxy.versionAhead.get('replica-2') ?? 0, 'the new replica never refused an order').to.equal(0);
    const journal = (await cluster.db.query<{ v: number; n: number; mixed: number }>(
      `SELECT machine_version AS v, count(*)::int AS n, count(DISTINCT order_id) FILTER (WHERE order_id IN (
         SELECT order_id FROM order_journal GROUP BY order_id HAVING count(DISTINCT machine_version) = 2))::int AS mixed
       FROM order_journal GROUP BY 1 ORDER BY 1`,
    )).rows;
    expect(journal.map((r) => r.v), 'events of both versions').to.deep.equal([1, 2]);
    expect(journal[1]!.mixed, 'orders moved to version 2 in the middle of their life').to.be.greaterThan(0);
    // Unpaid orders: cancelled when version 1 fired their timer, expired when version 2 did.
    const ends = (await cluster.db.query<{ status: string; v: number; n: number }>(
      `SELECT o.status, j.machine_version AS v, count(*)::int AS n FROM orders o JOIN order_journal j ON j.order_id = o.id AND j.type = 'PaymentTimedOut'
       WHERE o.id = ANY($1::uuid[]) GROUP BY 1, 2 ORDER BY 1, 2`,
      [unpaid],
    )).rows;
    expect(ends.reduce((n, r) => n + r.n, 0), 'every unpaid order timed out').to.equal(unpaid.length);
    for (const r of ends) expect(`${r.status} by version ${r.v}`).to.be.oneOf(['cancelled by version 1', 'expired by version 2']);
    expect(ends.some((r) => r.status === 'expired'), 'timers fired on version 2').to.equal(true);

    const report = await checkInvariants(cluster.db, await cluster.ledger(), acknowledged, cluster.webhook.received, ORDER_MACHINES_V2);
    expect(report.failures).to.deep.equal([]);
    expect(report.figures.acknowledged).to.equal(acknowledged.length);
  });
});
