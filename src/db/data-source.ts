import { ExponentialBackoff, handleWhen, retry } from 'cockatiel';
import pg from 'pg';
import { DataSource, type EntityManager } from 'typeorm';
import { sqlState } from './pg.ts';
import { InitialSchema1764000000000 } from './migrations/1764000000000-initial-schema.ts';
import { Saga1765000000000 } from './migrations/1765000000000-saga.ts';
import { Views1766000000000 } from './migrations/1766000000000-views.ts';
import { BatchGuard1767000000000 } from './migrations/1767000000000-batch-guard.ts';
import { Partitions1768000000000 } from './migrations/1768000000000-partitions.ts';
import { UnpaidOrders1768100000000 } from './migrations/1768100000000-unpaid-orders.ts';
import { ClientRequestId1768200000000 } from './migrations/1768200000000-client-request-id.ts';
import { ReplicaLeases1768300000000 } from './migrations/1768300000000-replica-leases.ts';
import { NotificationUuids1768600000000 } from './migrations/1768600000000-notification-uuids.ts';
import { MachineVersions1769000000000 } from './migrations/1769000000000-machine-versions.ts';
import { ClusterIdentity1769100000000 } from './migrations/1769100000000-cluster-identity.ts';
import { TraceContext1769200000000 } from './migrations/1769200000000-trace-context.ts';
import { OwedEventsAsWork1769300000000 } from './migrations/1769300000000-owed-events-as-work.ts';
import { RedundantUniques1769400000000 } from './migrations/1769400000000-redundant-uniques.ts';
import { OwnersReading1769500000000 } from './migrations/1769500000000-owners-reading.ts';
import { PayloadStatistics1769600000000 } from './migrations/1769600000000-payload-statistics.ts';
import { OwedIndexes1769700000000 } from './migrations/1769700000000-owed-indexes.ts';
import { OrdersHotUpdates1769800000000 } from './migrations/1769800000000-orders-hot-updates.ts';

export const MIGRATIONS = [
  InitialSchema1764000000000,
  Saga1765000000000,
  Views1766000000000,
  BatchGuard1767000000000,
  Partitions1768000000000,
  UnpaidOrders1768100000000,
  ClientRequestId1768200000000,
  ReplicaLeases1768300000000,
  NotificationUuids1768600000000,
  MachineVersions1769000000000,
  ClusterIdentity1769100000000,
  TraceContext1769200000000,
  OwedEventsAsWork1769300000000,
  RedundantUniques1769400000000,
  OwnersReading1769500000000,
  PayloadStatistics1769600000000,
  OwedIndexes1769700000000,
  OrdersHotUpdates1769800000000,
];

/** Any number of replicas may start at once; this lock lets exactly one run migrations at a time. */
const MIGRATION_LOCK_KEY = 0x6ba3da1;

/** Bounds on every wait of the service's connections (none when absent: migrations, scripts). */
export interface DatabaseBounds {
  /** Waiting for a pooled connection, or for a new one to open (the pool's connectionTimeoutMillis). */
  connectMs: number;
  statementMs: number;
  lockMs: number;
  idleInTransactionMs: number;
}

export function createDataSource(databaseUrl: string, poolSize = 10, bounds?: DatabaseBounds): DataSource {
  // The service's statements are fixed and prepared: plan each once per connection, not per call.
  const settings = ['-c plan_cache_mode=force_generic_plan'];
  if (bounds) {
    settings.push(
      `-c statement_timeout=${bounds.statementMs}`,
      `-c lock_timeout=${bounds.lockMs}`,
      `-c idle_in_transaction_session_timeout=${bounds.idleInTransactionMs}`,
    );
  }
  return new DataSource({
    type: 'postgres',
    url: databaseUrl,
    migrations: MIGRATIONS,
    migrationsTableName: 'schema_migrations',
    migrationsTransactionMode: 'each',
    extra: { max: poolSize, options: settings.join(' '), ...(bounds ? { connectionTimeoutMillis: bounds.connectMs } : {}) },
    logging: false,
  });
}

/**
 * Runs the migrations on a DataSource of their own, without the service's bounds: a migration may
 * take long on large tables, and a replica waits for another's migrations to finish.
 */
export async function migrate(databaseUrl: string): Promise<string[]> {
  // Two connections: runMigrations holds the advisory lock on one while the migrations use another.
  const source = await initialize(createDataSource(databaseUrl, 2));
  try {
    return await runMigrations(source);
  } finally {
    await source.destroy();
  }
}

/**
 * Connects a DataSource; if its first connection fails, the pool TypeORM made for it is closed
 * before the error is thrown (a caller that tries again makes a new one).
 */
export async function initialize(source: DataSource): Promise<DataSource> {
  try {
    return await source.initialize();
  } catch (err) {
    await (source.driver as unknown as { master?: { end(): Promise<void> } }).master?.end().catch(() => undefined);
    throw err;
  }
}

/** Creates the database named in the URL when it does not exist yet. */
export async function ensureDatabase(databaseUrl: string): Promise<void> {
  const url = new URL(databaseUrl);
  const name = decodeURIComponent(url.pathname.replace(/^\//, ''));
  if (!name) throw new Error(`DATABASE_URL names no database: ${databaseUrl}`);
  url.pathname = '/postgres';
  const client = new pg.Client({ connectionString: url.toString() });
  await client.connect();
  try {
    const found = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (found.rowCount === 0) {
      await client.query(`CREATE DATABASE "${name.replaceAll('"', '""')}"`).catch((err: { code?: string }) => {
        // Another replica created it between our check and our CREATE.
        if (err.code !== '42P04' && err.code !== '23505') throw err;
      });
    }
  } finally {
    await client.end();
  }
}

export async function runMigrations(db: DataSource): Promise<string[]> {
  const lock = db.createQueryRunner();
  await lock.connect();
  try {
    await lock.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
    const ran = await db.runMigrations({ transaction: 'each' });
    return ran.map((m) => m.name);
  } finally {
    await lock.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]).catch(() => undefined);
    await lock.release();
  }
}

/** Runs a parameterised query inside a transaction and returns its rows. */
export async function sql<Row = Record<string, unknown>>(
  tx: EntityManager,
  text: string,
  params: unknown[] = [],
): Promise<Row[]> {
  const runner = tx.queryRunner;
  if (!runner) throw new Error('sql() needs a transactional EntityManager');
  const result = await runner.query(text, params, true);
  return result.records as Row[];
}

/** Errors of a database that is away for now (down, restarting, refusing connections), worth waiting out. */
function isUnavailable(err: unknown): boolean {
  const code = sqlState(err);
  if (code === undefined) return true;
  // Connection failures, "not accepting connections", "cannot connect now", admin shutdown, too many connections.
  return /^(08|53|57P)/.test(code) || code === '55000' || /^E[A-Z]+$/.test(code);
}

/**
 * Runs `connect` until PostgreSQL lets it through, waiting out an unavailable database (a replica
 * starting while PostgreSQL restarts or refuses connections) with a growing, jittered pause
 * (cockatiel's exponential backoff, 250 ms up to 5 s). A failure after `waitMs`, or any other
 * error, is thrown: the wait ends at most one pause past the deadline.
 */
export async function whenDatabaseAnswers<T>(connect: () => Promise<T>, waitMs: number, onWait: (err: Error, pauseMs: number) => void): Promise<T> {
  const deadline = Date.now() + waitMs;
  const untilItAnswers = retry(
    handleWhen((err) => isUnavailable(err) && Date.now() < deadline),
    { maxAttempts: Number.POSITIVE_INFINITY, backoff: new ExponentialBackoff({ initialDelay: 250, maxDelay: 5000 }) },
  );
  untilItAnswers.onRetry((r) => {
    if ('error' in r) onWait(r.error, r.delay);
  });
  return untilItAnswers.execute(() => connect());
}
