import type { Redis } from 'ioredis';
import type { Database } from '../db/pg.ts';

/**
 * Raised at startup when the database and the Redis queue prefix belong to different clusters.
 * Its code tells the start-up wait it is no outage: the replica refuses at once.
 */
export class ClusterMismatch extends Error {
  readonly code = 'cluster_mismatch';
}

/** The Redis key that holds the cluster id under a queue prefix. */
export const clusterKey = (prefix: string) => `${prefix}:cluster-id`;

/**
 * The cluster this replica belongs to: the id stored in PostgreSQL (made by the first replica),
 * checked against the one under the queue prefix in Redis (stored there by the first replica to
 * use the prefix, or again after Redis lost its data). A replica pointed at another cluster's
 * database or Redis prefix refuses to start, naming both, instead of taking that cluster's jobs.
 * When Redis cannot be reached, the check waits for the next start (jobs carry the id meanwhile).
 */
export async function establishClusterId(opts: { db: Database; redis: Redis; prefix: string; databaseName: string }): Promise<string> {
  let [row] = await opts.db.query<{ id: string }>(
    `WITH made AS (INSERT INTO cluster_identity DEFAULT VALUES ON CONFLICT (singleton) DO NOTHING RETURNING id)
     SELECT id FROM made UNION ALL SELECT id FROM cluster_identity`,
  );
  // Another replica's first start inserted it at the same moment: the INSERT waited for it and did
  // nothing, but this statement's snapshot was taken before it committed. The next statement sees it.
  if (!row) [row] = await opts.db.query<{ id: string }>('SELECT id FROM cluster_identity');
  const id = row!.id;
  if (opts.redis.status !== 'ready') return id;
  const key = clusterKey(opts.prefix);
  await opts.redis.set(key, id, 'NX');
  const stored = await opts.redis.get(key);
  if (stored !== null && stored !== id) {
    throw new ClusterMismatch(
      `the database "${opts.databaseName}" belongs to cluster ${id}, but the Redis queue prefix "${opts.prefix}" belongs to cluster ${stored}: ` +
        'point QUEUE_PREFIX (or REDIS_URL) at this cluster\'s Redis, or DATABASE_URL at that cluster\'s database',
    );
  }
  return id;
}
