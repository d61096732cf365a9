import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { captureLog } from './support/capture-log.ts';
import { startServiceProcess, type ServiceProcess } from './support/service-process.ts';
import { MENU, request, serveApp, sharedSystem, TEST_REDIS_URL, type ApiResponse, type TestSystem } from './support/system.ts';

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
