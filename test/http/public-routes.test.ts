import { expect } from 'chai';
import type { DataSource } from 'typeorm';
import type { Redis } from 'ioredis';
import { measuredAtMostEvery } from '../../src/measured.ts';
import { createRuntimeMetrics, observe, type ObservedSources } from '../../src/metrics.ts';
import type { Database } from '../../src/db/pg.ts';
import type { WorkKind } from '../../src/actors/work.ts';
import { request, serveApp, sharedSystem, type TestSystem } from '../support/system.ts';

/** What the public routes cost the databases: at most one measure a second, however many ask. */
describe('public routes answer from memory', () => {
  let sys: TestSystem;
  before(async () => {
    sys = await sharedSystem();
  });

  it('/readyz measures PostgreSQL and Redis at most once a second, shared by concurrent callers', async () => {
    let selects = 0;
    let pings = 0;
    // The real database and Redis, each call counted on its way.
    const db = new Proxy(sys.runtime.db, {
      get: (target, prop) => (prop === 'query' ? (sql: string, ...rest: unknown[]) => ((selects += 1), target.query(sql, ...(rest as []))) : Reflect.get(target, prop)),
    }) as DataSource;
    const redis = new Proxy(sys.runtime.redis, {
      get: (target, prop) => (prop === 'ping' ? () => ((pings += 1), target.ping()) : Reflect.get(target, prop)),
    }) as Redis;
    const app = await serveApp({ ...sys.runtime, db, redis });
    try {
      const started = Date.now();
      const answers = await Promise.all(Array.from({ length: 50 }, () => app.request('GET', '/readyz')));
      for (const res of answers) expect(res.body).to.deep.include({ status: 'ready', checks: { postgres: true, redis: true } });
      for (let i = 0; i < 50; i += 1) expect((await app.request('GET', '/readyz')).status).to.equal(200);
      const seconds = Math.ceil((Date.now() - started) / 1000);
      expect(selects, `SELECT 1 sent for 100 readiness requests in ${seconds} s`).to.be.within(1, seconds + 1);
      expect(pings, `PING sent for 100 readiness requests in ${seconds} s`).to.be.within(1, seconds + 1);
      // A second later it measures again.
      const before = selects;
      await new Promise((resolve) => setTimeout(resolve, 1100));
      expect((await app.request('GET', '/readyz')).status).to.equal(200);
      expect(selects).to.equal(before + 1);
    } finally {
      await app.close();
    }
  });

  it('/readyz reads the shutdown live, not from the measure', async () => {
    let stopping = false;
    const app = await serveApp(sys.runtime, { stopping: () => stopping });
    try {
      expect((await app.request('GET', '/readyz')).status).to.equal(200);
      stopping = true;
      const res = await app.request('GET', '/readyz');
      expect(res.status).to.equal(503);
      expect(res.body.status).to.equal('stopping');
    } finally {
      await app.close();
    }
  });

  it('the gauges that query PostgreSQL or Redis measure at most once a second, however often /metrics is read', async () => {
    const calls: Record<string, number> = {};
    const counted = <T>(name: string, value: T) => async () => ((calls[name] = (calls[name] ?? 0) + 1), value);
    const db = {
      query: async (sql: string) => {
        const name = /consumer_failures/.test(sql) ? 'failed' : 'journal';
        calls[name] = (calls[name] ?? 0) + 1;
        return name === 'failed' ? [{ consumer: 'notifier', n: 2 }] : [{ behind: 7, oldest: new Date(Date.now() - 1500), full: false }];
      },
    } as unknown as Database;
    const kind = { name: 'refund', table: { countOwed: counted('owed', { owed: 3, failing: 1 }) } } as unknown as WorkKind;
    const sources: ObservedSources = {
      db,
      breakerState: () => 'closed',
      kinds: [kind],
      backlog: counted('backlog', { events: 4 }),
      oldestJobAge: counted('age', { events: 0.5 }),
      partitionsOwned: () => 4,
      group: 'events',
    };
    const metrics = createRuntimeMetrics();
    observe(metrics, sources);
    const started = Date.now();
    const texts = await Promise.all(Array.from({ length: 20 }, () => metrics.registry.metrics()));
    for (let i = 0; i < 20; i += 1) texts.push(await metrics.registry.metrics());
    const seconds = Math.ceil((Date.now() - started) / 1000);
    for (const text of texts) {
      expect(text).to.match(/^baedal_failed_events\{consumer="notifier"\} 2$/m);
      expect(text).to.match(/^baedal_work_owed\{kind="refund"\} 3$/m);
      expect(text).to.match(/^baedal_work_failing\{kind="refund"\} 1$/m);
      expect(text).to.match(/^baedal_queue_backlog\{queue="events"\} 4$/m);
      expect(text).to.match(/^baedal_events_unsettled 7$/m);
    }
    for (const name of ['failed', 'journal', 'owed', 'backlog', 'age']) {
      expect(calls[name], `${name} measured for 40 scrapes in ${seconds} s`).to.be.within(1, seconds + 1);
    }
  });

  it('a measure is shared by concurrent callers, kept for its age, and a failed one is not kept', async () => {
    let now = 0;
    let runs = 0;
    let fail = false;
    const measure = measuredAtMostEvery(
      1000,
      async () => {
        runs += 1;
        await new Promise((resolve) => setTimeout(resolve, 10));
        if (fail) throw new Error('down');
        return runs;
      },
      () => now,
    );
    expect(await Promise.all([measure(), measure(), measure()])).to.deep.equal([1, 1, 1]);
    now = 999;
    expect(await measure()).to.equal(1);
    now = 1000;
    expect(await measure()).to.equal(2);
    now = 2000;
    fail = true;
    await measure().then(
      () => expect.fail('a failed measure answered'),
      (err: Error) => expect(err.message).to.equal('down'),
    );
    fail = false;
    expect(await measure()).to.equal(4);
  });

  it('/openapi.json is built once and served with an ETag: If-None-Match answers 304 without a body', async () => {
    const first = await request(sys.baseUrl, 'GET', '/openapi.json');
    const second = await request(sys.baseUrl, 'GET', '/openapi.json');
    expect(first.status).to.equal(200);
    expect(first.headers.get('cache-control')).to.equal('no-cache');
    const etag = first.headers.get('etag');
    expect(etag).to.match(/^"[A-Za-z0-9_-]{27}"$/);
    expect(second.headers.get('etag')).to.equal(etag);
    expect(second.body).to.deep.equal(first.body);
    for (const path of ['/openapi.json', '/machines/order', '/statechart']) {
      const fresh = await request(sys.baseUrl, 'GET', path);
      const again = await request(sys.baseUrl, 'GET', path, { headers: { 'if-none-match': fresh.headers.get('etag')! } });
      expect(again.status, path).to.equal(304);
      expect(again.body, path).to.equal('');
      expect((await request(sys.baseUrl, 'GET', path, { headers: { 'if-none-match': '"another"' } })).status, path).to.equal(200);
    }
  });
});
