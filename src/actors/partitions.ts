import { randomBytes } from 'node:crypto';
import type { Database } from '../db/pg.ts';

/** The consumer group of the service's consumers (the notifier and the views): its positions are live delivery's. */
export const EVENTS_GROUP = 'events';

/**
 * The partition of an order's events: the last 32 bits of its id (random in UUID v4 and v7) modulo
 * the partition count. `PARTITION_SQL` computes the same in PostgreSQL.
 */
export function partitionOf(orderId: string, partitions: number): number {
  return Number.parseInt(orderId.slice(-8), 16) % partitions;
}

/** `partitionOf` in SQL, for a uuid expression and a count expression. */
export const partitionSql = (orderId: string, count: string) => `(('x' || right(${orderId}::text, 8))::bit(32)::bigint % ${count})::smallint`;

/** Raised at startup when EVENT_PARTITIONS disagrees with the count the database was set up with. */
export class PartitionCountMismatch extends Error {}

/**
 * Makes sure the database has `count` partitions and every consumer group a position in each.
 * The count is fixed once events exist: the first replica sets it; a replica configured with
 * another count refuses to start (events already placed in partitions would move). Idempotent and
 * safe for replicas starting together (one transaction under an advisory lock).
 */
export async function ensurePartitions(db: Database, count: number, groups: readonly string[]): Promise<void> {
  await db.transaction(async (tx) => {
    await tx.query(`SELECT pg_advisory_xact_lock(hashtextextended('baedal:event-partitions', 0))`);
    const [{ n }] = (await tx.query<{ n: number }>('SELECT count(*)::int AS n FROM event_partitions')) as [{ n: number }];
    if (n !== count) {
      if (n > 0) {
        const [{ events }] = (await tx.query<{ events: boolean }>('SELECT EXISTS (SELECT 1 FROM order_journal) AS events')) as [{ events: boolean }];
        if (events) {
          throw new PartitionCountMismatch(
            `EVENT_PARTITIONS is ${count}, but the database's events are split into ${n} partitions; the count is fixed once events exist: set EVENT_PARTITIONS=${n}`,
          );
        }
        await tx.query('DELETE FROM event_partitions');
        await tx.query('DELETE FROM consumer_positions');
      }
      await tx.query('INSERT INTO event_partitions (part) SELECT generate_series(0, $1::int - 1)', [count]);
      // Events journaled before partitions were set up (an upgrade), and orders owed since then.
      await tx.query(`UPDATE order_journal SET part = ${partitionSql('order_id', '$1::int')} WHERE part IS NULL`, [count]);
      await tx.query(`UPDATE consumer_failures SET part = ${partitionSql('order_id', '$1::int')} WHERE part IS NULL`, [count]);
    }
    // A group without a position starts at the head: events written before it existed are not its.
    await tx.query(
      `INSERT INTO consumer_positions (grp, part, tx, pos)
       SELECT g, p.part, pg_snapshot_xmin(pg_current_snapshot()), 0 FROM unnest($1::text[]) AS g CROSS JOIN event_partitions p
       ON CONFLICT (grp, part) DO NOTHING`,
      [groups],
    );
  });
}

/** The partitions count stored in the database (0 before any replica set it up). */
export async function partitionCount(db: Database): Promise<number> {
  const [row] = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM event_partitions');
  return row?.n ?? 0;
}

export interface LeaseOptions {
  db: Database;
  partitions: number;
  /** How long a lease lasts without renewal: a replica that dies frees its partitions after this. */
  leaseMs: number;
  /** This replica takes part in consuming (false: it only needs to know who owns what). */
  consumes: boolean;
}

export interface LeaseTick {
  /** Partitions this replica holds after the tick. */
  mine: number[];
  /** Newly acquired (to catch up from their positions). */
  acquired: number[];
  /** Released to make room for other replicas. */
  released: number[];
  /** Owner of each partition held by another live replica. */
  owners: Map<number, string>;
  /** Replicas taking part, this one included. */
  live: number;
  /** Replicas gone for a while (their wake-up queues can be removed). */
  gone: string[];
  /**
   * Other replicas that promised to read all their partitions by themselves, with how much of the
   * promise was left (ms) when the tick's statement ran (see `EventBus`).
   */
  reading: Map<string, number>;
}

/** Live replicas' promises to read by themselves: how much of each is left, in ms (a subquery; more conditions may follow). */
const READING = `SELECT jsonb_object_agg(holder, floor(extract(epoch FROM reads_until - now()) * 1000)::int) FROM event_consumers
   WHERE until > now() AND reads_until > now()`;

const partsOf = (owners: Record<string, string> | null | undefined) => new Map(Object.entries(owners ?? {}).map(([p, h]) => [Number(p), h]));
const readingOf = (reading: Record<string, number> | null | undefined) => new Map(Object.entries(reading ?? {}));

/**
 * One replica's share of the partitions, as Kafka consumer groups share theirs: each replica that
 * consumes renews its leases on every tick and takes free or expired partitions until it holds
 * ceil(partitions ÷ live replicas); when more replicas join, those above their share give some
 * back. A replica that dies stops renewing, and its partitions are taken by the others once its
 * leases expire (`leaseMs`). A replica that only produces reads the owners.
 */
export class PartitionLeases {
  readonly holder = `r-${randomBytes(6).toString('hex')}`;
  private mine = new Set<number>();
  /** Handed back, not yet written: no longer renewed or read here. */
  private readonly releasing = new Set<number>();

  constructor(private readonly opts: LeaseOptions) {}

  owned(): ReadonlySet<number> {
    return this.mine;
  }

  holds(part: number): boolean {
    return this.mine.has(part);
  }

  /**
   * Renews this replica's leases and heartbeat, rebalances, and learns the owners. `readsForMs`:
   * this replica promises to read all its partitions by itself for that long from now (0: no promise).
   */
  async tick(opts: { keep?: boolean; readsForMs?: number } = {}): Promise<LeaseTick> {
    const { db, leaseMs } = this.opts;
    if (!this.opts.consumes) {
      const [state] = await db.query<{ owners: Record<string, string> | null; reading: Record<string, number> | null }>(
        `SELECT (SELECT jsonb_object_agg(part, holder) FROM event_partitions WHERE until > now() AND holder IS NOT NULL) AS owners, (${READING}) AS reading`,
      );
      return { mine: [], acquired: [], released: [], owners: partsOf(state?.owners), live: 0, gone: [], reading: readingOf(state?.reading) };
    }
    const [state] = await db.query<{ live: number; mine: number[]; others: Record<string, string> | null; gone: string[]; reading: Record<string, number> | null }>(
      `WITH hb AS (
         INSERT INTO event_consumers (holder, until, reads_until)
         VALUES ($1, now() + make_interval(secs => $2::float8 / 1000), CASE WHEN $4::float8 > 0 THEN now() + make_interval(secs => $4::float8 / 1000) END)
         ON CONFLICT (holder) DO UPDATE SET until = EXCLUDED.until, reads_until = EXCLUDED.reads_until
       ), renewed AS (
         UPDATE event_partitions SET until = now() + make_interval(secs => $2::float8 / 1000) WHERE holder = $1 AND part <> ALL($3::smallint[]) RETURNING part
       ), gone AS (
         DELETE FROM event_consumers WHERE until < now() - interval '1 minute' RETURNING holder
       )
       SELECT (SELECT count(*)::int FROM event_consumers WHERE until > now() AND holder <> $1) + 1 AS live,
              (SELECT coalesce(array_agg(part::int ORDER BY part), '{}') FROM renewed) AS mine,
              (SELECT jsonb_object_agg(part, holder) FROM event_partitions WHERE until > now() AND holder <> $1) AS others,
              (SELECT coalesce(array_agg(holder), '{}') FROM gone) AS gone,
              (${READING} AND holder <> $1) AS reading`,
      [this.holder, leaseMs, [...this.releasing], opts.readsForMs ?? 0],
    );
    const mine = new Set(state!.mine);
    const owners = partsOf(state!.others);
    const target = Math.ceil(this.opts.partitions / state!.live);
    const acquired: number[] = [];
    const released: number[] = [];
    if (mine.size < target && !opts.keep) {
      const rows = await db.query<{ part: number }>(
        `UPDATE event_partitions e SET holder = $1, until = now() + make_interval(secs => $2::float8 / 1000)
         WHERE e.part IN (SELECT part FROM event_partitions WHERE holder IS NULL OR until < now() ORDER BY random() LIMIT $3 FOR UPDATE SKIP LOCKED)
           AND (e.holder IS NULL OR e.until < now())
         RETURNING part`,
        [this.holder, leaseMs, target - mine.size],
      );
      for (const r of rows) {
        mine.add(r.part);
        owners.delete(r.part);
        acquired.push(r.part);
      }
    } else if (mine.size > target && !opts.keep) {
      released.push(...[...mine].sort((a, b) => b - a).slice(0, mine.size - target));
    }
    // Partitions lost to another replica (this one paused past its lease) stop being processed here,
    // and so do those being handed back.
    for (const p of released) {
      mine.delete(p);
      this.releasing.add(p);
    }
    this.mine = mine;
    return { mine: [...this.mine].sort((a, b) => a - b), acquired, released, owners, live: state!.live, gone: state!.gone, reading: readingOf(state!.reading) };
  }

  /** Hands partitions back (after this replica stopped processing them), so another takes them at once. */
  async release(parts: readonly number[]): Promise<void> {
    if (parts.length === 0) return;
    for (const p of parts) {
      this.mine.delete(p);
      this.releasing.add(p);
    }
    try {
      await this.opts.db.query('UPDATE event_partitions SET holder = NULL, until = NULL WHERE holder = $1 AND part = ANY($2::smallint[])', [this.holder, parts]);
    } finally {
      // Written, or not (PostgreSQL away): then the next tick finds them still held here, and rebalances again.
      for (const p of parts) this.releasing.delete(p);
    }
  }

  /** Leaves the group: every lease and the heartbeat go, so the others rebalance on their next tick. */
  async leave(): Promise<void> {
    this.mine.clear();
    await this.opts.db.query(
      `WITH freed AS (UPDATE event_partitions SET holder = NULL, until = NULL WHERE holder = $1)
       DELETE FROM event_consumers WHERE holder = $1`,
      [this.holder],
    );
  }
}

export interface GroupBacklog {
  /** Journaled events past the group's positions (not applied yet), counting at most `scan` per partition. */
  behind: number;
  /** When the oldest of them happened; null when there are none. */
  oldest: Date | null;
  /** False when a partition had more than `scan`: `behind` is then a lower bound. */
  complete: boolean;
}

/**
 * The SELECT of how far a consumer group trails the journal (`behind`, `oldest`, `full`), with the
 * placeholders of its group and scan limit: one index probe per partition when it keeps up, at
 * most `scan` events read per partition. Also a part of the views' status statement.
 */
export const backlogQuery = (group: string, scan: string) =>
  `SELECT coalesce(sum(b.n), 0)::int AS behind, min(b.oldest) AS oldest, coalesce(bool_or(b.n >= ${scan}), false) AS full
     FROM consumer_positions p
     CROSS JOIN LATERAL (
       SELECT count(*) AS n, min(x.at) AS oldest FROM (
         SELECT j.at FROM order_journal j WHERE j.part = p.part AND (j.tx, j.pos) > (p.tx, p.pos) ORDER BY j.tx, j.pos LIMIT ${scan}
       ) x
     ) b
     WHERE p.grp = ${group}`;

/** How far a consumer group trails the journal: one index probe per partition when it keeps up. */
export async function groupBacklog(db: Database, group: string, scan = 10_000): Promise<GroupBacklog> {
  const [row] = await db.query<{ behind: number; oldest: Date | null; full: boolean }>(
    backlogQuery('$1', '$2'),
    [group, scan],
  );
  return { behind: row?.behind ?? 0, oldest: row?.oldest ?? null, complete: !(row?.full ?? false) };
}
