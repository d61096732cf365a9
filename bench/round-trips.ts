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
  /**
   * pg_stat_wal's wal_records and wal_bytes: what PostgreSQL wrote to its write-ahead log, every
   * row and index entry inserted, updated or deleted (the whole server; the benchmark's database is
   * the only one written to during a run). Bytes include the full page images written after each
   * checkpoint, so they vary more than records from one window to the next.
   */
  walRecords?: number;
  walBytes?: number;
}

export type RoundTrips = TripCounters;

/**
 * Reads the counters; a part that cannot be read is left out (its figure shows as "-"). PostgreSQL
 * publishes a backend's counts at most a second after its transactions, so each edge of a window
 * may miss up to a second of them, and both edges miss alike.
 */
export async function readTripCounters(at: { databaseUrl: string; redisUrl?: string; gatewayUrl?: string }): Promise<TripCounters> {
  const [postgres, redisReads, gatewayCalls] = await Promise.all([
    postgresCountersOf(at.databaseUrl).catch(() => undefined),
    at.redisUrl ? redisReadsOf(at.redisUrl).catch(() => undefined) : undefined,
    at.gatewayUrl ? gatewayCallsOf(at.gatewayUrl).catch(() => undefined) : undefined,
  ]);
  return { postgresTransactions: postgres?.transactions, redisReads, gatewayCalls, walRecords: postgres?.walRecords, walBytes: postgres?.walBytes };
}

async function postgresCountersOf(databaseUrl: string): Promise<{ transactions: number; walRecords: number; walBytes: number }> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ n: string; records: string; bytes: string }>(
      `SELECT (d.xact_commit + d.xact_rollback)::text AS n, w.wal_records::text AS records, w.wal_bytes::text AS bytes
       FROM pg_stat_database d, pg_stat_wal w WHERE d.datname = current_database()`,
    );
    const row = rows[0]!;
    return { transactions: Number(row.n), walRecords: Number(row.records), walBytes: Number(row.bytes) };
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
  return {
    postgresTransactions: per('postgresTransactions'),
    redisReads: per('redisReads'),
    gatewayCalls: per('gatewayCalls'),
    walRecords: per('walRecords'),
    walBytes: per('walBytes'),
  };
}
