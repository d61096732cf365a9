import { Redis } from 'ioredis';
import type { DataSource } from 'typeorm';
import type { Config } from '../config.ts';
import { createDataSource, ensureDatabase, initialize, migrate, whenDatabaseAnswers } from '../db/data-source.ts';
import { Database } from '../db/pg.ts';
import type { Logger } from '../log.ts';
import { establishClusterId } from './cluster-identity.ts';

export type PostgresConfig = Pick<
  Config,
  | 'DATABASE_URL'
  | 'DATABASE_POOL_SIZE'
  | 'DATABASE_CONNECT_TIMEOUT_MS'
  | 'DATABASE_STATEMENT_TIMEOUT_MS'
  | 'DATABASE_LOCK_TIMEOUT_MS'
  | 'DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS'
  | 'STARTUP_WAIT_MS'
>;

/** Runs a start-up step on PostgreSQL, waiting out its unavailability until the start-up deadline. */
export type WhileStarting = <T>(step: () => Promise<T>) => Promise<T>;

/**
 * Waits (up to STARTUP_WAIT_MS) for PostgreSQL, creates the database if need be, migrates it and
 * opens the pool. `whileStarting` runs the later start-up steps under the same deadline, so an
 * outage that begins in the middle of a start is waited out as one at its beginning is.
 */
export async function connectPostgres(config: PostgresConfig, log: Logger): Promise<{ db: DataSource; pg: Database; whileStarting: WhileStarting }> {
  const waiting = (err: Error, pauseMs: number) => log.warn({ err: err.message, retryInMs: pauseMs }, 'PostgreSQL is not available yet; waiting');
  const startupDeadline = Date.now() + config.STARTUP_WAIT_MS;
  const untilDeadline = () => Math.max(0, startupDeadline - Date.now());
  const whileStarting: WhileStarting = (step) => whenDatabaseAnswers(step, untilDeadline(), waiting);
  const migrated = await whileStarting(async () => {
    await ensureDatabase(config.DATABASE_URL);
    return migrate(config.DATABASE_URL);
  });
  const db = await whileStarting(() =>
    initialize(
      createDataSource(config.DATABASE_URL, config.DATABASE_POOL_SIZE, {
        connectMs: config.DATABASE_CONNECT_TIMEOUT_MS,
        statementMs: config.DATABASE_STATEMENT_TIMEOUT_MS,
        lockMs: config.DATABASE_LOCK_TIMEOUT_MS,
        idleInTransactionMs: config.DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS,
      }),
    ),
  );
  const [vacuum] = (await whileStarting(() => db.query(`SELECT current_setting('autovacuum') AS autovacuum`))) as { autovacuum: string }[];
  if (vacuum?.autovacuum !== 'on') {
    log.warn(
      { autovacuum: vacuum?.autovacuum },
      "PostgreSQL's autovacuum is off: the tables will fill with dead rows and their statistics go stale, and the service slows down over time. Turn it on, or run VACUUM (ANALYZE) regularly",
    );
  }
  if (migrated.length > 0) log.info({ migrations: migrated }, 'database migrated');
  return { db, pg: Database.of(db), whileStarting };
}

/**
 * Connects to Redis (without waiting for it) and establishes the cluster's identity; when that
 * fails, Redis and the database are closed before the error is thrown.
 */
export async function connectRedis(
  config: Pick<Config, 'REDIS_URL' | 'QUEUE_PREFIX' | 'DATABASE_URL'>,
  log: Logger,
  { db, pg, whileStarting }: { db: DataSource; pg: Database; whileStarting: WhileStarting },
): Promise<{ redis: Redis; clusterId: string }> {
  // Fail fast rather than queue commands while Redis is away: callers degrade, nothing waits forever.
  const redis = new Redis(config.REDIS_URL, { maxRetriesPerRequest: 1, enableOfflineQueue: false, lazyConnect: true });
  redis.on('error', (err) => log.debug({ err: err.message }, 'redis client error'));
  await redis.connect().catch((err: Error) => log.warn({ err: err.message }, 'Redis is not reachable yet'));
  let clusterId: string;
  try {
    clusterId = await whileStarting(() => establishClusterId({ db: pg, redis, prefix: config.QUEUE_PREFIX, databaseName: new URL(config.DATABASE_URL).pathname.slice(1) }));
  } catch (err) {
    redis.disconnect();
    await db.destroy().catch(() => undefined);
    throw err;
  }
  return { redis, clusterId };
}
