import { randomUUID } from 'node:crypto';
import type { Database } from '../db/pg.ts';
import type { Logger } from '../log.ts';
import type { EventRef } from './consumers.ts';
import type { EventBus } from './event-bus.ts';
import { runWork, type WorkKind, type WorkPrompt } from './work.ts';

/** A group whose oldest waiting job is older than this is behind, not missing events. */
const BEHIND_MS = 1000;

export interface SweeperOptions {
  db: Database;
  bus: EventBus;
  consumers: readonly string[];
  kinds: readonly WorkKind[];
  prompt: WorkPrompt;
  log: Logger;
  /** An event still owed to a consumer this long after it happened is sent again. */
  owedAfterMs: number;
  /** How often each replica looks. */
  intervalMs: number;
  /** Work overdue by this much was not prompted (lost job, dead replica): the sweeper does it. */
  workGraceMs: number;
  leaseMs: number;
  /** What is kept how long; the retention pass runs at most once an hour on one replica. */
  retention: RetentionRules;
}

export interface RetentionRules {
  /** Delivered notifications (the feed of GET /notifications). */
  notificationDays: number;
  /** Idempotency keys of POST /orders: a retry after that places a new order. */
  idempotencyKeyHours: number;
  /** Timers that fired or whose order moved on. */
  closedTimerHours: number;
}

/** Deleted per statement, so a large backlog never holds a long transaction. */
const RETENTION_BATCH = 5000;

/**
 * The backstop that makes "delayed, never lost" true. On every replica, every interval:
 * - events the journal holds that some consumer has not applied after `owedAfterMs` are sent to
 *   that consumer again (a Redis flush, a job out of attempts, a crash before publishing); events
 *   every consumer has applied are marked settled, so the next look is cheap;
 * - work items overdue and held by nobody are done here and now.
 */
export class Sweeper {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = true;
  readonly holder = `sweeper-${randomUUID()}`;

  constructor(private readonly opts: SweeperOptions) {}

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.arm();
  }

  private arm(): void {
    if (this.stopped) return;
    // Jitter spreads the replicas' sweeps apart.
    const wait = this.opts.intervalMs * (0.75 + Math.random() * 0.5);
    this.timer = setTimeout(() => {
      this.running = this.sweep()
        .then(() => undefined)
        .catch((err: Error) => this.opts.log.warn({ err: err.message }, 'sweep failed; will try again'))
        .finally(() => {
          this.running = undefined;
          this.arm();
        });
    }, wait);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  /** One full pass; returns what it did (tests call it directly). */
  async sweep(): Promise<{ resent: number; work: number }> {
    const { resent } = await this.sweepEvents();
    const work = await this.sweepWork();
    // Once an hour across the replicas, the replica that ran it last included: a lease its holder
    // could renew would let that replica scan the tables on every sweep.
    if (await this.lease('retention', 3600_000, { renewable: false })) await this.retain();
    return { resent, work };
  }

  /**
   * Retention: rows that grow with the traffic and are not records are deleted once they are no
   * longer needed. The journal, orders, payment attempts and refunds are the records and are kept
   * (archiving them is an operator's decision); checkpoints and read models grow per order, not
   * per event.
   */
  async retain(): Promise<Record<string, number>> {
    const r = this.opts.retention;
    const rules: [string, string, unknown][] = [
      [
        'notifications',
        `DELETE FROM notifications WHERE id IN (SELECT id FROM notifications WHERE delivered_at IS NOT NULL AND due_at IS NULL
           AND created_at < now() - make_interval(days => $1::int) LIMIT ${RETENTION_BATCH})`,
        r.notificationDays,
      ],
      [
        'order_requests',
        `DELETE FROM order_requests WHERE (customer_id, idempotency_key) IN (SELECT customer_id, idempotency_key FROM order_requests
           WHERE created_at < now() - make_interval(hours => $1::int) LIMIT ${RETENTION_BATCH})`,
        r.idempotencyKeyHours,
      ],
      [
        'timers',
        `DELETE FROM timers WHERE id IN (SELECT id FROM timers WHERE due_at IS NULL AND fire_at < now() - make_interval(hours => $1::int) LIMIT ${RETENTION_BATCH})`,
        r.closedTimerHours,
      ],
    ];
    const deleted: Record<string, number> = {};
    for (const [table, text, age] of rules) {
      deleted[table] = 0;
      for (;;) {
        const rows = await this.opts.db.query(`WITH gone AS (${text} RETURNING 1) SELECT count(*)::int AS n FROM gone`, [age]);
        const n = (rows[0] as { n: number }).n;
        deleted[table] += n;
        if (n < RETENTION_BATCH) break;
      }
    }
    if (Object.values(deleted).some((n) => n > 0)) this.opts.log.info({ deleted }, 'retention: deleted rows past their keep time');
    return deleted;
  }

  /** Takes a named lease for `ms` so only one replica does a pass at a time. */
  /**
   * Takes the lease `name` for `ms`: true when this replica may do the task now. A renewable lease
   * (the sweeps) stays with its holder while it keeps sweeping; one that is not (retention) is
   * taken only once the last one ran out, by whichever replica asks first.
   */
  private async lease(name: string, ms: number, opts: { renewable: boolean } = { renewable: true }): Promise<boolean> {
    const rows = await this.opts.db.query(
      `INSERT INTO leases (name, holder, until) VALUES ($1, $2, now() + make_interval(secs => $3::float8 / 1000))
       ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, until = EXCLUDED.until
       WHERE leases.until < now() OR ($4::boolean AND leases.holder = EXCLUDED.holder)
       RETURNING 1`,
      [name, this.holder, ms, opts.renewable],
    );
    return rows.length > 0;
  }

  async sweepEvents(): Promise<{ resent: number }> {
    if (!(await this.lease('owed-events', this.opts.intervalMs * 2))) return { resent: 0 };
    // For each unsettled event: the consumers that still owe it. Events every consumer has applied
    // are settled at once; those older than the bound are sent again to whoever still owes them
    // (skipping a consumer that failed on the order recently: it is retried with backoff).
    const rows = await this.opts.db.query<{ order_id: string; seq: number; owed_to: string[] }>(
      `WITH candidates AS (
         SELECT j.order_id, j.seq FROM order_journal j
         WHERE j.settled_at IS NULL AND j.at < now() - interval '1 second'
         ORDER BY j.at LIMIT 5000
       ), owing AS (
         SELECT c.order_id, c.seq,
                coalesce(array_agg(k.consumer) FILTER (WHERE coalesce(cp.seq, 0) < c.seq), '{}') AS owed_to,
                bool_or(coalesce(cp.seq, 0) < c.seq AND f.order_id IS NOT NULL
                        AND f.last_failed_at > now() - least(interval '5 minutes', interval '1 second' * power(2, least(f.attempts, 12)))) AS backing_off
         FROM candidates c
         CROSS JOIN unnest($1::text[]) AS k(consumer)
         LEFT JOIN consumer_checkpoints cp ON cp.consumer = k.consumer AND cp.order_id = c.order_id
         LEFT JOIN consumer_failures f ON f.consumer = k.consumer AND f.order_id = c.order_id
         GROUP BY c.order_id, c.seq
       ), settle AS (
         UPDATE order_journal j SET settled_at = now() FROM owing o
         WHERE j.order_id = o.order_id AND j.seq = o.seq AND cardinality(o.owed_to) = 0
       )
       SELECT o.order_id, o.seq, o.owed_to FROM owing o JOIN order_journal j ON j.order_id = o.order_id AND j.seq = o.seq
       WHERE cardinality(o.owed_to) > 0 AND NOT coalesce(o.backing_off, false) AND j.at < now() - make_interval(secs => $2::float8 / 1000)`,
      [this.opts.consumers, this.opts.owedAfterMs],
    );
    // Per group: its consumers read on from their own checkpoints, so one ref serves them all.
    const byGroup = new Map<string, Map<string, EventRef>>();
    for (const r of rows) {
      for (const consumer of r.owed_to) {
        const group = this.opts.bus.groupOf(consumer)?.name ?? consumer;
        const refs = byGroup.get(group) ?? new Map<string, EventRef>();
        refs.set(`${r.order_id}/${r.seq}`, { orderId: r.order_id, seq: r.seq });
        byGroup.set(group, refs);
      }
    }
    let resent = 0;
    for (const [group, refs] of byGroup) {
      try {
        // Consumers that are behind still have these events in their queue: wait for them.
        if (await this.opts.bus.behind(group, BEHIND_MS)) {
          this.opts.log.debug({ group, owed: refs.size }, 'consumers are behind; not re-sending what they still owe');
          continue;
        }
        await this.opts.bus.send(group, [...refs.values()]);
        resent += refs.size;
      } catch (err) {
        this.opts.log.warn({ err: (err as Error).message, group }, 'could not re-send owed events');
      }
    }
    if (resent > 0) this.opts.log.info({ resent, groups: [...byGroup.keys()] }, 're-sent events still owed to consumers');
    return { resent };
  }

  async sweepWork(): Promise<number> {
    let done = 0;
    for (const kind of this.opts.kinds) {
      const keys = await kind.table.overdue(this.opts.workGraceMs, 100);
      if (keys.length === 0) continue;
      this.opts.log.info({ kind: kind.name, items: keys.length }, 'doing overdue work');
      done += await runWork(kind, keys, { leaseMs: this.opts.leaseMs, prompt: this.opts.prompt, log: this.opts.log });
    }
    return done;
  }
}
