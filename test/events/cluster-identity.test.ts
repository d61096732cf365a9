import { expect } from 'chai';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import pg from 'pg';
import { randomUUID } from 'node:crypto';
import { clusterKey, establishClusterId } from '../../src/actors/cluster-identity.ts';
import { Database } from '../../src/db/pg.ts';
import { WORK_QUEUE } from '../../src/actors/work-queue.ts';
import { eventually, freshMigratedDatabase, removeQueueKeys, resetDatabase, startInstance, startSystem, testDatabaseUrl, TEST_REDIS_URL, type TestSystem } from '../support/system.ts';

/** Issue: a replica pointed at another database but sharing Redis silently took that cluster's jobs. */
describe('cluster identity', function () {
  this.timeout(60_000);
  let sys: TestSystem;
  const other = testDatabaseUrl('other_cluster');

  before(async () => {
    sys = await startSystem({ name: 'cluster_identity' });
  });
  after(async () => {
    await sys?.close();
    await resetDatabase(other);
  });

  it('stores one id in PostgreSQL and under the queue prefix in Redis', async () => {
    const [{ id }] = await sys.runtime.db.query('SELECT id FROM cluster_identity');
    expect(await sys.runtime.redis.get(clusterKey(sys.queuePrefix))).to.equal(id);
    // A second replica of the same cluster starts and agrees.
    const replica = await sys.startReplica();
    expect((await replica.request('GET', '/healthz')).status).to.equal(200);
  });

  it('a replica whose database and Redis prefix belong to different clusters refuses to start, naming both', async () => {
    await resetDatabase(other);
    let refused: Error | undefined;
    try {
      const wrong = await startInstance({ gatewayUrl: sys.gateway.url, queuePrefix: sys.queuePrefix, env: { DATABASE_URL: other } });
      await wrong.close();
    } catch (err) {
      refused = err as Error;
    }
    expect(refused, 'the replica started').to.be.instanceOf(Error);
    const [{ id }] = await sys.runtime.db.query('SELECT id FROM cluster_identity');
    expect(refused!.message).to.include(sys.queuePrefix).and.to.include(id).and.to.match(/other_cluster/);
  });

  // Regression: two replicas starting at once on a new database, one of them failed with "Cannot read properties of undefined (reading 'id')".
  it('a replica whose first start races another one takes the id the other made', async () => {
    const url = testDatabaseUrl('cluster_race');
    const prefix = `{baedal-test-${randomUUID()}}`;
    await freshMigratedDatabase(url);
    const first = new pg.Client({ connectionString: url });
    const pool = new pg.Pool({ connectionString: url, max: 2 });
    const redis = new Redis(TEST_REDIS_URL);
    try {
      await first.connect();
      // The other replica's insert, not committed yet: this one's INSERT waits for it, then does nothing.
      await first.query('BEGIN');
      const { id } = (await first.query<{ id: string }>('INSERT INTO cluster_identity DEFAULT VALUES RETURNING id')).rows[0]!;
      const racing = establishClusterId({ db: new Database(pool), redis, prefix, databaseName: 'cluster_race' });
      await eventually(
        // Asked outside the open transaction: it would see the activity as it was when it began.
        async () => (await pool.query(`SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`)).rowCount === 1,
        'the racing statement to wait for the insert',
      );
      await first.query('COMMIT');
      expect(await racing).to.equal(id);
      expect(await redis.get(clusterKey(prefix))).to.equal(id);
    } finally {
      await first.end();
      await pool.end();
      redis.disconnect();
      await removeQueueKeys(prefix);
      await resetDatabase(url);
    }
  });

  it("a work job of another cluster is never done by this cluster's replicas; its own are", async () => {
    const queue = new Queue(WORK_QUEUE, { connection: { url: TEST_REDIS_URL }, prefix: sys.queuePrefix });
    try {
      const foreign = await queue.add('timer', { kind: 'timer', keys: ['nothing-here'], cluster: '00000000-0000-4000-8000-000000000000' }, { attempts: 1 });
      const [{ id }] = await sys.runtime.db.query('SELECT id FROM cluster_identity');
      const own = await queue.add('timer', { kind: 'timer', keys: ['nothing-here-either'], cluster: id }, { attempts: 1 });
      await eventually(async () => (await queue.getJobState(foreign.id!)) === 'failed' && (await queue.getJobState(own.id!)) === 'completed', 'both jobs to be taken');
      const failed = await queue.getJob(foreign.id!);
      expect(failed!.failedReason).to.match(/refused by a replica of cluster/);
    } finally {
      await queue.close();
    }
  });
});
