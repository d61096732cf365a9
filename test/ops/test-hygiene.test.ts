import { expect } from 'chai';
import { readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { Redis } from 'ioredis';
import { eventually, startSystem, TEST_DATABASE_URL, TEST_REDIS_URL, testDatabaseUrl } from '../support/system.ts';

/** Tests use only the PostgreSQL server and the Redis they are given, and leave nothing behind there. */
describe('what a test run touches', function () {
  this.timeout(60_000);

  it('a system, once closed, leaves no key of its queue prefix in Redis', async () => {
    const sys = await startSystem({ name: 'hygiene' });
    const redis = new Redis(TEST_REDIS_URL);
    try {
      const p = await sys.newParties();
      const order = await sys.placeOrder(p);
      await sys.drive(p, order.id, ['pay', 'cancel']);
      // Events, work (the refund) and their jobs went through Redis under the system's prefix.
      await eventually(async () => (await sys.ledger()).refunds.length === 1, 'the refund');
      expect(await redis.keys(`${sys.queuePrefix}*`)).not.to.deep.equal([]);
      await sys.close();
      expect(await redis.keys(`${sys.queuePrefix}*`)).to.deep.equal([]);
    } finally {
      await sys.close();
      redis.disconnect();
    }
  });

  it('databases of their own are named after TEST_DATABASE_URL, on its server', () => {
    const given = new URL(TEST_DATABASE_URL);
    const own = new URL(testDatabaseUrl('build'));
    expect({ host: own.host, user: own.username, search: own.search }).to.deep.equal({ host: given.host, user: given.username, search: given.search });
    expect(own.pathname).to.equal(`${given.pathname}_build`);
  });

  it('no test names a database or a Redis database of its own, or empties a whole Redis database', () => {
    const dir = new URL('../', import.meta.url);
    const offences: string[] = [];
    const files = (readdirSync(dir, { recursive: true }) as string[]).filter((f) => f.endsWith('.ts'));
    expect(files.length).to.be.at.least(60);
    for (const file of files) {
      // This file, the configuration tests, which parse URLs (the defaults) and connect to nothing,
      // and the set-up that defines TEST_DATABASE_URL's default, from which every other name derives.
      if (basename(file) === 'test-hygiene.test.ts' || basename(file).startsWith('config.') || file === join('support', 'system.ts')) continue;
      readFileSync(new URL(file, dir), 'utf8')
        .split('\n')
        .forEach((line, i) => {
          // A database name spelled out, a Redis database chosen by number, FLUSHDB / FLUSHALL.
          if (/postgres:\/\/[^`'"]*\/baedal|pathname = ['"`]\/\d|\.flush(db|all)\(/i.test(line)) offences.push(`test/${file}:${i + 1}: ${line.trim()}`);
        });
    }
    expect(offences).to.deep.equal([]);
  });
});
