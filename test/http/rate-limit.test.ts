import { randomUUID } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { captureLog } from '../support/capture-log.ts';
import { startServiceProcess, type ServiceProcess } from '../support/service-process.ts';
import { MENU, request, serveApp, sharedSystem, TEST_REDIS_URL, type ApiResponse, type ServedApp, type TestSystem } from '../support/system.ts';

/** The status of a GET sent from `localAddress` (any 127.0.0.0/8 address reaches a server on 127.0.0.1). */
function statusFrom(localAddress: string, url: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { localAddress, headers, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode!));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('rate limit', () => {
  let sys: TestSystem;
  before(async () => {
    sys = await sharedSystem();
  });

  describe('across two service processes sharing one Redis', function () {
    this.timeout(90_000);
    const LIMIT = 5;
    let replicas: ServiceProcess[] = [];
    const storeId = `rl-store-${randomUUID().slice(0, 8)}`;

    before(async () => {
      const env = { RATE_LIMIT_PER_MIN: String(LIMIT), ROLE: 'api' };
      replicas = await Promise.all([
        startServiceProcess({ gatewayUrl: sys.gateway.url, queuePrefix: sys.queuePrefix, env }),
        startServiceProcess({ gatewayUrl: sys.gateway.url, queuePrefix: sys.queuePrefix, env }),
      ]);
    });
    after(async () => {
      for (const replica of replicas) {
        replica.child.kill('SIGTERM');
        await replica.exited;
      }
      // The counters the tests made (they would expire within their minute).
      const redis = new Redis(TEST_REDIS_URL);
      try {
        const identities = [`store:${storeId}`, `store:${storeId}-2`, `customer:${storeId}`];
        await redis.del(...['read', 'write'].flatMap((kind) => identities.map((id) => `baedal:rate:${kind}:${id}`)));
      } finally {
        redis.disconnect();
      }
    });

    it('logs the address it really listens on', () => {
      for (const replica of replicas) {
        expect(replica.output()).to.include(`"msg":"Baedal listening on ${replica.baseUrl}"`);
        expect(replica.output()).to.include('"host":"127.0.0.1"');
      }
    });

    /** `count` requests at once, alternating between the replicas. */
    const burst = (count: number, send: (baseUrl: string) => Promise<ApiResponse>) =>
      Promise.all(Array.from({ length: count }, (_, i) => send(replicas[i % replicas.length]!.baseUrl)));

    it('accepts at most the limit per token in sum over both, then answers 429 with Retry-After', async () => {
      const store = await sys.token('store', storeId);
      const answers = await burst(3 * LIMIT, (baseUrl) => request(baseUrl, 'GET', `/stores/${storeId}/menu`, { token: store }));
      const accepted = answers.filter((r) => r.status === 200);
      const refused = answers.filter((r) => r.status === 429);
      expect(accepted, 'accepted reads').to.have.length(LIMIT);
      expect(refused, 'refused reads').to.have.length(2 * LIMIT);
      for (const res of refused) {
        expect(res.body.error).to.deep.include({ code: 'rate_limited' });
        expect(res.body.error.details).to.deep.equal({ limit: LIMIT, windowSeconds: 60, kind: 'read' });
        const retryAfter = Number(res.headers.get('retry-after'));
        expect(retryAfter).to.be.within(1, 60);
        expect(res.headers.get('x-request-id')).to.be.a('string');
      }
      // Writes have a budget of their own, so exhausted reads leave commands possible.
      const writes = await burst(LIMIT + 2, (baseUrl) => request(baseUrl, 'PUT', `/stores/${storeId}/menu`, { token: store, body: MENU }));
      expect(writes.filter((r) => r.status === 200), 'accepted writes').to.have.length(LIMIT);
      expect(writes.filter((r) => r.status === 429), 'refused writes').to.have.length(2);
      // Another token, and the same sub in another role, are counted apart.
      const other = await sys.token('store', `${storeId}-2`);
      expect((await request(replicas[0]!.baseUrl, 'GET', `/stores/${storeId}/menu`, { token: other })).status).to.equal(200);
      const customer = await sys.token('customer', storeId);
      expect((await request(replicas[1]!.baseUrl, 'GET', `/stores/${storeId}/menu`, { token: customer })).status).to.equal(200);
      // Public routes and refused tokens are not counted.
      expect((await request(replicas[0]!.baseUrl, 'GET', '/healthz')).status).to.equal(200);
      expect((await request(replicas[0]!.baseUrl, 'GET', `/stores/${storeId}/menu`)).status).to.equal(401);
    });
  });

  describe('per client address, for requests without an accepted token', function () {
    // Dozens of requests each, one after another: on a busy machine they take more than the default.
    this.timeout(60_000);
    const LIMIT = 4;
    let app: ServedApp;
    let metricsApp: ServedApp;
    before(async () => {
      // Behind one proxy: the client address is the last X-Forwarded-For entry, so each test can be its own client.
      app = await serveApp(sys.runtime, { publicRateLimitPerMin: LIMIT, trustedProxyHops: 1 });
      metricsApp = await serveApp(sys.runtime, { publicRateLimitPerMin: LIMIT, trustedProxyHops: 1, metricsToken: 'a-metrics-token-0123456789' });
    });
    /** The client addresses the tests used: their counters are removed at the end. */
    const used: string[] = [];
    after(async () => {
      await app?.close();
      await metricsApp?.close();
      const redis = new Redis(TEST_REDIS_URL);
      try {
        if (used.length > 0) await redis.del(...used.map((a) => `baedal:rate-address:${a}`));
      } finally {
        redis.disconnect();
      }
    });

    /** A client address of this test alone (another run on this Redis uses others). */
    const newClient = () => {
      const address = `198.18.${Math.floor(Math.random() * 256)}.${Math.floor(Math.random() * 256)}`;
      used.push(address);
      return address;
    };
    const from = (client: string, headers: Record<string, string> = {}) => ({ headers: { 'x-forwarded-for': `203.0.113.9, ${client}`, ...headers } });
    const expectLimited = (res: ApiResponse, what: string) => {
      expect(res.status, what).to.equal(429);
      expect(res.body.error, what).to.deep.include({ code: 'rate_limited' });
      expect(res.body.error.details, what).to.deep.equal({ limit: LIMIT, windowSeconds: 60, kind: 'address' });
      expect(Number(res.headers.get('retry-after')), what).to.be.within(1, 61);
    };

    it('counts public routes, unknown routes and refused tokens per address, then answers 429 with Retry-After', async () => {
      const client = newClient();
      const answers = [
        await app.request('GET', '/openapi.json', from(client)),
        await app.request('GET', '/machines/order', from(client)),
        await app.request('GET', '/nowhere', from(client)),
        await app.request('GET', '/orders', from(client, { authorization: 'Bearer not.a.token' })),
      ];
      expect(answers.map((r) => r.status)).to.deep.equal([200, 200, 404, 401]);
      for (const [method, path, headers] of [
        ['GET', '/openapi.json', {}],
        ['GET', '/statechart', {}],
        ['GET', '/nowhere', {}],
        ['GET', '/orders', { authorization: 'Bearer not.a.token' }],
        ['GET', '/orders', {}],
        ['PROPFIND', '/orders', {}],
      ] as const) {
        expectLimited(await app.request(method, path, from(client, headers)), `${method} ${path}`);
      }
      // Another address has its own budget.
      expect((await app.request('GET', '/openapi.json', from(newClient()))).status).to.equal(200);
    });

    it('never limits the probes, nor a caller with an accepted token, from an address over its budget', async () => {
      const client = newClient();
      for (let i = 0; i < LIMIT; i += 1) expect((await app.request('GET', '/nowhere', from(client))).status).to.equal(404);
      expectLimited(await app.request('GET', '/openapi.json', from(client)), 'over the budget');
      for (let i = 0; i < 3 * LIMIT; i += 1) {
        expect((await app.request('GET', '/healthz', from(client))).status, 'healthz').to.equal(200);
        expect((await app.request('GET', '/readyz', from(client))).status, 'readyz').to.equal(200);
      }
      // Signed-in users behind the same address (a NAT, a proxy) are served, with their own budgets.
      for (const sub of ['one', 'two']) {
        const token = await sys.token('customer', `addr-${sub}-${randomUUID().slice(0, 8)}`);
        for (let i = 0; i < 2 * LIMIT; i += 1) expect((await app.request('GET', '/orders', { token, ...from(client) })).status).to.equal(200);
      }
      expectLimited(await app.request('GET', '/orders', from(client, { authorization: `Bearer ${await sys.token('customer', 'x')}x` })), 'a forged token');
    });

    it('counts a scrape of /metrics without METRICS_TOKEN, and never one with it', async () => {
      const client = newClient();
      const scrape = (token?: string) => metricsApp.request('GET', '/metrics', { token, ...from(client) });
      for (let i = 0; i < 3 * LIMIT; i += 1) expect((await scrape('a-metrics-token-0123456789')).status).to.equal(200);
      for (let i = 0; i < LIMIT; i += 1) expect((await scrape('wrong-token')).status).to.equal(401);
      expectLimited(await scrape('wrong-token'), 'a wrong metrics token');
      expectLimited(await scrape(), 'no token');
      // The budget is spent for every public route of that address, across apps (it is kept in Redis).
      expectLimited(await app.request('GET', '/machines/order', from(client)), 'another app, the same address');
    });

    it('reads the address from the socket unless a proxy is trusted: X-Forwarded-For cannot make a new client', async () => {
      const direct = await serveApp(sys.runtime, { publicRateLimitPerMin: LIMIT });
      try {
        // Every request of this test comes from one loopback address of its own.
        const local = `127.${1 + Math.floor(Math.random() * 254)}.${Math.floor(Math.random() * 256)}.${1 + Math.floor(Math.random() * 254)}`;
        used.push(local);
        const statuses: number[] = [];
        for (let i = 0; i < LIMIT + 2; i += 1) statuses.push(await statusFrom(local, `${direct.baseUrl}/openapi.json`, { 'x-forwarded-for': newClient() }));
        expect(statuses).to.deep.equal([...Array<number>(LIMIT).fill(200), 429, 429]);
      } finally {
        await direct.close();
      }
    });
  });

  it('lets requests through and logs a warning when Redis cannot answer', async () => {
    const deadRedis = new Redis('redis://127.0.0.1:1', { maxRetriesPerRequest: null, retryStrategy: () => 200, lazyConnect: false });
    deadRedis.on('error', () => undefined);
    const captured = captureLog('warn');
    const app = await serveApp({ ...sys.runtime, redis: deadRedis }, { rateLimitPerMin: 1 }, { log: captured.log });
    try {
      const token = await sys.token('customer', `rl-${randomUUID().slice(0, 8)}`);
      for (let i = 0; i < 3; i += 1) {
        const res = await app.request('GET', '/orders', { token });
        expect(res.status, `request ${i + 1}`).to.equal(200);
      }
      expect(captured.lines().filter((l) => l.msg === 'rate limiter unavailable: letting requests through unlimited')).to.have.length(1);
    } finally {
      await app.close();
      deadRedis.disconnect();
    }
  });
});
