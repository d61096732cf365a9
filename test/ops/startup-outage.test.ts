import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import { connectPostgres, connectRedis } from '../../src/actors/connect.ts';
import { loadConfig } from '../../src/config.ts';
import { createLogger } from '../../src/log.ts';
import { onServer } from '../../scripts/cluster/infra.ts';
import { eventually, removeQueueKeys, resetDatabase, testDatabaseUrl, TEST_REDIS_URL } from '../support/system.ts';

/**
 * Regression (found by the chaos run): PostgreSQL began refusing connections after a starting
 * replica had opened its pool but before it stored the cluster id, and the replica exited
 * ("database … is not currently accepting connections") instead of waiting, as it waits for an
 * outage that is there when it starts.
 */
describe('a replica starting into a PostgreSQL outage that begins mid-start', function () {
  this.timeout(60_000);
  const url = testDatabaseUrl('startup_outage');
  const database = new URL(url).pathname.slice(1);
  const prefix = `{baedal-start-${randomUUID()}}`;
  after(async () => {
    await onServer(url, `ALTER DATABASE "${database}" ALLOW_CONNECTIONS true`).catch(() => undefined);
    await removeQueueKeys(prefix);
    await resetDatabase(url);
  });

  it('waits it out within STARTUP_WAIT_MS and takes the cluster id once PostgreSQL answers again', async () => {
    await resetDatabase(url);
    const lines: string[] = [];
    const log = createLogger('warn', 'baedal', { write: (line: string) => void lines.push(line) });
    const config = loadConfig({ DATABASE_URL: url, REDIS_URL: TEST_REDIS_URL, QUEUE_PREFIX: prefix, STARTUP_WAIT_MS: '30000' });
    const { db, pg, whileStarting } = await connectPostgres(config, log);
    // The outage begins now: no new connection is let in, and the pool's are ended.
    await onServer(url, `ALTER DATABASE "${database}" ALLOW_CONNECTIONS false`);
    await onServer(url, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '${database}' AND pid <> pg_backend_pid()`);
    const starting = connectRedis(config, log, { db, pg, whileStarting });
    let settled = false;
    void starting.then(
      () => (settled = true),
      () => (settled = true),
    );
    await eventually(async () => lines.some((l) => l.includes('PostgreSQL is not available yet; waiting')), 'the replica to wait for PostgreSQL');
    expect(settled, 'the start ended during the outage').to.equal(false);
    await onServer(url, `ALTER DATABASE "${database}" ALLOW_CONNECTIONS true`);
    const { redis, clusterId } = await starting;
    try {
      const [row] = await pg.query<{ id: string }>('SELECT id FROM cluster_identity');
      expect(clusterId).to.equal(row!.id);
    } finally {
      redis.disconnect();
      await db.destroy();
    }
  });
});
