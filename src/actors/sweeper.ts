import { randomUUID } from 'node:crypto';
import type { Database } from '../db/pg.ts';
import type { Logger } from '../log.ts';
import { runWork, type WorkKind, type WorkPrompt } from './work.ts';

export interface SweeperOptions {
  db: Database;
  kinds: readonly WorkKind[];
  prompt: WorkPrompt;
  log: Logger;
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
 * The backstop that makes "delayed, never lost" true for durable work: every interval, each replica
 * does the work items that are overdue and held by nobody (a lost job, a dead replica; the rows'
 * leases keep two replicas off one item). Events need no sweep: each partition's owner reads on
 * from its position.
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
  async sweep(): Promise<{ work: number }> {
    const work = await this.sweepWork();
    // Once an hour across the replicas, the replica that ran it last included: a lease its holder
    // could renew would let that replica scan the tables on every sweep.
    if (await this.lease('retention', 3600_000, { renewable: false })) await this.retain();
    return { work };
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
