import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import pg from 'pg';
import { readTripCounters, tripsPerCommand } from '../../bench/round-trips.ts';
import { createFakeGateway, type FakeGateway } from '../../dev/fake-gateway.ts';
import { eventually, TEST_DATABASE_URL, TEST_REDIS_URL } from '../support/system.ts';

/** The server's own `postgres` database: always there, and nothing else of the run uses it. */
const DATABASE_URL = Object.assign(new URL(TEST_DATABASE_URL), { pathname: '/postgres' }).toString();

describe('bench: round trips per command, counted', function () {
  this.timeout(30_000);

  it('divides each counter\'s growth by the commands, and leaves out a counter missing at either edge', () => {
    const trips = tripsPerCommand(
      { postgresTransactions: 1000, redisReads: 50, gatewayCalls: 3, walRecords: 7000, walBytes: 1_000_000 },
      { postgresTransactions: 1450, redisReads: undefined, gatewayCalls: 13, walRecords: 16_000, walBytes: 1_600_000 },
      300,
    );
    expect(trips.postgresTransactions).to.equal(1.5);
    expect(trips.walRecords).to.equal(30);
    expect(trips.walBytes).to.equal(2000);
    expect(trips.redisReads).to.equal(undefined);
    expect(trips.gatewayCalls).to.be.closeTo(10 / 300, 1e-12);
    expect(tripsPerCommand({ postgresTransactions: 1 }, { postgresTransactions: 9 }, 0).postgresTransactions, 'no commands: no figure').to.equal(undefined);
  });

  describe('reading the counters of the real PostgreSQL, Redis and fake gateway', () => {
    let gateway: FakeGateway;
    before(async () => {
      gateway = await createFakeGateway({ port: 0 });
    });
    after(async () => {
      await gateway?.close();
    });

    it('sees the transactions, WAL records, Redis requests and gateway calls made between two reads', async () => {
      const at = { databaseUrl: DATABASE_URL, redisUrl: TEST_REDIS_URL, gatewayUrl: gateway.url };
      const before = await readTripCounters(at);
      expect(before.postgresTransactions, 'PostgreSQL read').to.be.a('number');
      expect(before.redisReads, 'Redis read').to.be.a('number');
      expect(before.gatewayCalls, 'gateway read').to.be.a('number');
      expect(before.walRecords, 'WAL records read').to.be.a('number');
      expect(before.walBytes, 'WAL bytes read').to.be.a('number');

      const client = new pg.Client({ connectionString: DATABASE_URL });
      await client.connect();
      const redis = new Redis(TEST_REDIS_URL);
      try {
        for (let i = 0; i < 20; i++) await client.query('SELECT $1::int AS n', [i]);
        // 500 rows inserted, each at least one WAL record (a temporary table is not logged; this one is).
        await client.query('CREATE TABLE IF NOT EXISTS bench_round_trips_wal (n int)');
        await client.query('INSERT INTO bench_round_trips_wal SELECT generate_series(1, 500)');
        await client.query('DROP TABLE bench_round_trips_wal');
        for (let i = 0; i < 30; i++) await redis.ping();
        for (let i = 0; i < 2; i++) {
          const res = await fetch(`${gateway.url}/charges`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ orderId: randomUUID(), amount: 1000, idempotencyKey: randomUUID() }),
          });
          expect(res.status).to.be.lessThan(300);
        }
      } finally {
        await client.end();
        redis.disconnect();
      }

      // PostgreSQL publishes a backend's counts within a second or so of its transactions.
      const after = await eventually(async () => {
        const now = await readTripCounters(at);
        return now.postgresTransactions! - before.postgresTransactions! >= 23 && now.walRecords! - before.walRecords! >= 500 && now;
      }, 'the 23 transactions and 500 inserted rows counted');
      expect(after.walBytes! - before.walBytes!, 'WAL bytes').to.be.greaterThan(500 * 20);
      expect(after.redisReads! - before.redisReads!, 'Redis requests (others may send some too)').to.be.at.least(30);
      expect(after.gatewayCalls! - before.gatewayCalls!, 'gateway calls').to.equal(2);
      const trips = tripsPerCommand(before, after, 10);
      expect(trips.gatewayCalls).to.equal(0.2);
    });

    it('leaves out what it cannot read', async () => {
      const counters = await readTripCounters({ databaseUrl: 'postgres://postgres@127.0.0.1:1/none', redisUrl: 'redis://127.0.0.1:1', gatewayUrl: 'http://127.0.0.1:1' });
      expect(counters).to.deep.equal({ postgresTransactions: undefined, redisReads: undefined, gatewayCalls: undefined, walRecords: undefined, walBytes: undefined });
    });
  });
});
