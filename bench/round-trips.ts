import { Redis } from 'ioredis';
import pg from 'pg';

/**
 * What a command costs in round trips to the shared parts, counted rather than timed: the
 * counters of PostgreSQL (transactions of the benchmark's database), Redis (requests it read) and
 * the fake payment gateway (calls it answered), read as a measured window opens and as it closes.
 * Counts do not drift with the host's speed, so two runs minutes apart compare where their CPU
 * figures cannot.
 */
export interface TripCounters {
  /** pg_stat_database's xact_commit + xact_rollback of the database (each statement outside a transaction is one). */
  postgresTransactions?: number;
  /**
   * Redis's total_reads_processed: requests read off its clients' sockets, so a pipeline or a
   * script (BullMQ's are many commands each) is one (the whole server: the benchmark's few included).
   */
  redisReads?: number;
  /** The fake gateway's charges, refunds and lookups. */
  gatewayCalls?: number;
}

export interface RoundTrips {
  postgresTransactions?: number;
  redisReads?: number;
  gatewayCalls?: number;
}

/**
 * Reads the counters; a part that cannot be read is left out (its figure shows as "-"). PostgreSQL
 * publishes a backend's counts at most a second after its transactions, so each edge of a window
 * may miss up to a second of them, and both edges miss alike.
 */
export async function readTripCounters(at: { databaseUrl: string; redisUrl?: string; gatewayUrl?: string }): Promise<TripCounters> {
  const [postgresTransactions, redisReads, gatewayCalls] = await Promise.all([
    postgresTransactionsOf(at.databaseUrl).catch(() => undefined),
    at.redisUrl ? redisReadsOf(at.redisUrl).catch(() => undefined) : undefined,
    at.gatewayUrl ? gatewayCallsOf(at.gatewayUrl).catch(() => undefined) : undefined,
  ]);
  return { postgresTransactions, redisReads, gatewayCalls };
}

async function postgresTransactionsOf(databaseUrl: string): Promise<number> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ n: string }>(
      'SELECT (xact_commit + xact_rollback)::text AS n FROM pg_stat_database WHERE datname = current_database()',
    );
    return Number(rows[0]!.n);
  } finally {
    await client.end();
  }
}

async function redisReadsOf(redisUrl: string): Promise<number> {
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 1, lazyConnect: true, retryStrategy: () => null });
  redis.on('error', () => undefined); // the failed connect rejects below
  try {
    await redis.connect();
    const stats = await redis.info('stats');
    const n = /^total_reads_processed:(\d+)/m.exec(stats)?.[1];
    if (n === undefined) throw new Error('INFO stats names no total_reads_processed (Redis before 6.2?)');
    return Number(n);
  } finally {
    redis.disconnect();
  }
}

async function gatewayCallsOf(gatewayUrl: string): Promise<number> {
  const res = await fetch(`${gatewayUrl}/_admin/stats`, { signal: AbortSignal.timeout(2000) });
  if (!res.ok) throw new Error(`GET /_admin/stats answered ${res.status}`);
  const stats = (await res.json()) as Record<string, unknown>;
  return ['charges', 'refunds', 'lookups'].reduce((sum, k) => sum + (typeof stats[k] === 'number' ? (stats[k] as number) : 0), 0);
}

/** Each counter's growth over the window, per command; a counter missing at either edge is left out. */
export function tripsPerCommand(before: TripCounters, after: TripCounters, commands: number): RoundTrips {
  const per = (k: keyof TripCounters) => {
    const a = before[k];
    const b = after[k];
    return a === undefined || b === undefined || commands <= 0 ? undefined : Math.max(0, b - a) / commands;
  };
  return { postgresTransactions: per('postgresTransactions'), redisReads: per('redisReads'), gatewayCalls: per('gatewayCalls') };
}
