import { ExponentialBackoff, halfJitterGenerator, type IBackoff } from 'cockatiel';
import type { Database } from '../db/pg.ts';
import type { Logger } from '../log.ts';
import { activeTraceparent, ATTR, endSpan, startSpan, tracingEnabled, withSpan, type Span } from '../tracing.ts';

/**
 * Durable work: a side effect that must happen once a transaction has recorded it (a refund, a
 * notification, a timer, a payment reconciliation). The row itself is the record: `due_at` set
 * means work is owed, `lease_until` in the future means a replica is on it. A BullMQ job is only
 * the prompt to do it on time; the sweeper does whatever is overdue, so a lost job or a dead
 * replica delays work by a bounded time and never drops it.
 */

/** When an item is due again: `delayMs` (an SQL expression, in milliseconds) from now. */
export const dueIn = (delayMs: string) => `now() + make_interval(secs => ${delayMs} / 1000)`;

/**
 * What a retry sets, in any statement that records one (a work table's `retryLater`, or an owed
 * order's in the statement that applies the others): released, its error kept, due after the delay.
 */
export const retryLaterSet = (error: string, delayMs: string) => `lease_until = NULL, last_error = ${error}, due_at = ${dueIn(delayMs)}`;

/**
 * A subquery that locks a work table's rows with the given keys in key order (as `key`), so that
 * statements updating several rows of the table take their locks in one order and cannot deadlock
 * each other. `keys`: an SQL array expression.
 */
const lockedInKeyOrder = (table: string, keyColumn: string, keys: string) =>
  `(SELECT ${keyColumn} AS key FROM ${table} WHERE ${keyColumn} = ANY(${keys}) ORDER BY ${keyColumn} FOR NO KEY UPDATE)`;

/** Columns every work table has. */
export interface WorkColumns {
  due_at: Date | null;
  lease_until: Date | null;
  attempts: number;
  last_error: string | null;
  /** The trace context of the span that recorded the item (null when tracing was off). */
  traceparent?: string | null;
}

/** What one performed item asks for when it did not finish: when to try again and why. */
export interface Retry {
  retryInMs: number;
  error: string;
}

export interface WorkKind<Row extends WorkColumns = any> {
  /** Job name and metrics label: `refund`, `notification`, `timer`, `payment-reconcile`. */
  name: string;
  table: WorkTable<Row>;
  /**
   * Does the work of one claimed item (I/O outside any transaction) and records a success itself
   * (unless the kind has `completeMany`); returns a Retry (or throws) when the item must be tried
   * again later.
   */
  perform(row: Row): Promise<void | Retry>;
  /** When present, records the successes of a whole run in one statement (perform then records nothing). */
  completeMany?(rows: Row[]): Promise<void>;
  /** Delay before retry number `attempts` + 1 when perform threw. */
  backoffMs(attempts: number): number;
  /**
   * Items of one run performed at once (default 16, or the caller's). A kind whose perform only
   * queues the item for something that bounds its own concurrency (the webhook's pool) takes the
   * whole run at once.
   */
  concurrency?: number;
}

export class WorkTable<Row extends WorkColumns> {
  constructor(
    private readonly db: Database,
    readonly table: string,
    readonly keyColumn: string,
    private readonly keyType: 'text' | 'uuid',
    readonly keyOf: (row: Row) => string,
  ) {}

  /**
   * Leases the items that are owed and due now (a little slack for clock skew), and counts an
   * attempt. Rows are locked in key order, and a row another transaction holds is skipped, not
   * waited for: whoever holds it (another claim, a retry being recorded, a delivery being marked)
   * settles it, so a claim never waits on a lock and can never be part of a deadlock. (Locking a
   * row before updating it writes a WAL record of its own, so the "delivered" mark, which every
   * notification meets, is left to its plan's order: the claims it could meet no longer wait.)
   */
  async claim(keys: readonly string[], leaseMs: number): Promise<Row[]> {
    if (keys.length === 0) return [];
    return this.db.query<Row>(
      `UPDATE ${this.table} AS w SET lease_until = now() + make_interval(secs => $2::float8 / 1000), attempts = w.attempts + 1
       FROM (SELECT ${this.keyColumn} AS key FROM ${this.table}
             WHERE ${this.keyColumn} = ANY($1::${this.keyType}[]) AND due_at IS NOT NULL AND due_at <= now() + interval '1 second'
               AND (lease_until IS NULL OR lease_until < now())
             ORDER BY ${this.keyColumn} FOR NO KEY UPDATE SKIP LOCKED) AS c
       WHERE w.${this.keyColumn} = c.key
       RETURNING w.*`,
      [keys, leaseMs],
    );
  }

  /** Items owed but not yet due, with when they are due (a job that came early is put back). */
  async notYetDue(keys: readonly string[]): Promise<{ key: string; due_at: Date }[]> {
    if (keys.length === 0) return [];
    return this.db.query(
      `SELECT ${this.keyColumn}::text AS key, due_at FROM ${this.table}
       WHERE ${this.keyColumn} = ANY($1::${this.keyType}[]) AND due_at > now() + interval '1 second'`,
      [keys],
    );
  }

  /** Items that are overdue by more than `graceMs` and held by nobody: their prompt was lost. */
  async overdue(graceMs: number, limit: number): Promise<string[]> {
    const rows = await this.db.query<{ key: string }>(
      `SELECT ${this.keyColumn}::text AS key FROM ${this.table}
       WHERE due_at IS NOT NULL AND due_at <= now() - make_interval(secs => $1::float8 / 1000)
         AND (lease_until IS NULL OR lease_until < now())
       ORDER BY due_at LIMIT $2`,
      [graceMs, limit],
    );
    return rows.map((r) => r.key);
  }

  /** Releases the leases and sets when to try each item again, in one statement (rows locked in key order); returns when each is due. */
  async retryLater(items: readonly { key: string; error: string; delayMs: number }[]): Promise<{ key: string; due_at: Date }[]> {
    if (items.length === 0) return [];
    return this.db.query<{ key: string; due_at: Date }>(
      `UPDATE ${this.table} AS w SET ${retryLaterSet('r.error', 'r.delay_ms')}
       FROM unnest($1::${this.keyType}[], $2::text[], $3::float8[]) AS r(key, error, delay_ms),
            ${lockedInKeyOrder(this.table, this.keyColumn, `$1::${this.keyType}[]`)} AS l
       WHERE w.${this.keyColumn} = r.key AND l.key = r.key AND w.due_at IS NOT NULL
       RETURNING w.${this.keyColumn}::text AS key, w.due_at`,
      [items.map((i) => i.key), items.map((i) => i.error.slice(0, 2000)), items.map((i) => i.delayMs)],
    );
  }

  /** Makes items due now again (an operator's replay); rows locked in key order. */
  async dueNow(keys: readonly string[]): Promise<string[]> {
    const rows = await this.db.query<{ key: string }>(
      `UPDATE ${this.table} AS w SET due_at = now(), lease_until = NULL
       FROM ${lockedInKeyOrder(this.table, this.keyColumn, `$1::${this.keyType}[]`)} AS l
       WHERE w.${this.keyColumn} = l.key AND w.due_at IS NOT NULL RETURNING w.${this.keyColumn}::text AS key`,
      [keys],
    );
    return rows.map((r) => r.key);
  }

  /** Items still owed after `minAttempts` attempts: failing work an operator should see. */
  async failing(minAttempts: number, limit: number): Promise<(Row & { key: string })[]> {
    return this.db.query(
      `SELECT ${this.keyColumn}::text AS key, * FROM ${this.table}
       WHERE due_at IS NOT NULL AND attempts >= $1 ORDER BY due_at LIMIT $2`,
      [minAttempts, limit],
    );
  }

  async countOwed(): Promise<{ owed: number; failing: number }> {
    const [row] = await this.db.query<{ owed: number; failing: number }>(
      `SELECT count(*)::int AS owed, count(*) FILTER (WHERE attempts >= 3)::int AS failing FROM ${this.table} WHERE due_at IS NOT NULL`,
    );
    return row ?? { owed: 0, failing: 0 };
  }
}

/** Powers of two past which every delay is the cap, whatever the base (2^40 ms is 35 years). */
const DOUBLINGS = 40;

/**
 * The one retry schedule of durable work and owed events: cockatiel's exponential backoff from
 * `baseMs`, doubling per attempt and capped at `maxMs`, with half jitter (retry n waits between
 * half and all of min(maxMs, baseMs·2^(n-1))), so retries spread out and never wait past the cap.
 * Returns the delay before retry `attempts` + 1 for an item that failed `attempts` times.
 */
export function exponentialBackoff(baseMs: number, maxMs: number): (attempts: number) => number {
  const backoff = new ExponentialBackoff<number>({ initialDelay: baseMs, maxDelay: maxMs, generator: halfJitterGenerator });
  return (attempts) => {
    let delay: IBackoff<unknown> = backoff.next();
    for (let n = 1; n < Math.min(attempts, DOUBLINGS); n += 1) delay = delay.next(undefined);
    return Math.max(1, delay.duration);
  };
}

export interface WorkPrompt {
  /** Asks for a job that runs these items at `dueAt` (now when absent). Best effort: the sweeper is the backstop. */
  schedule(kind: string, keys: readonly string[], dueAt?: Date): void;
}

/**
 * Claims and performs items of one kind, recording a retry (and prompting it) for each that does
 * not finish. Never throws for one item; throws only when the claim itself fails.
 */
export async function runWork(
  kind: WorkKind,
  keys: readonly string[],
  opts: { leaseMs: number; prompt: WorkPrompt; log: Logger; concurrency?: number },
): Promise<number> {
  const rows = await kind.table.claim(keys, opts.leaseMs);
  if (rows.length < keys.length) {
    // A delayed job can fire a moment before PostgreSQL's clock says the item is due.
    for (const early of await kind.table.notYetDue(keys)) opts.prompt.schedule(kind.name, [early.key], early.due_at);
  }
  return runClaimed(kind, rows, opts);
}

/**
 * Performs items this replica holds the lease of (claimed, or written already leased), then
 * records the retries of the run in one statement and its successes in another (`completeMany`).
 */
export async function runClaimed<Row extends WorkColumns>(
  kind: WorkKind<Row>,
  rows: readonly Row[],
  opts: { prompt: WorkPrompt; log: Logger; concurrency?: number },
): Promise<number> {
  const queue = [...rows];
  const done: Row[] = [];
  const retries: { key: string; attempts: number; error: string; delayMs: number }[] = [];
  // With tracing on, each item is a span in the trace of what recorded it, linked to what prompted this run.
  const prompter = tracingEnabled() ? activeTraceparent() : undefined;
  const workers = Array.from({ length: Math.min(kind.concurrency ?? opts.concurrency ?? 16, queue.length) }, async () => {
    for (let row = queue.shift(); row; row = queue.shift()) {
      const span = tracingEnabled() ? itemSpan(kind, row, prompter) : undefined;
      let retry: Retry | undefined;
      try {
        retry = (await withSpan(span, () => kind.perform(row!))) ?? undefined;
      } catch (err) {
        retry = { retryInMs: kind.backoffMs(row.attempts), error: err instanceof Error ? err.message : String(err) };
      }
      if (retry) retries.push({ key: kind.table.keyOf(row), attempts: row.attempts, error: retry.error, delayMs: retry.retryInMs });
      else done.push(row);
      if (span) span.setAttribute(ATTR.workOutcome, retry ? 'retry' : 'done');
      endSpan(span, retry ? new Error(retry.error) : undefined);
    }
  });
  await Promise.all(workers);
  if (retries.length > 0) {
    const [first] = retries;
    opts.log.warn({ kind: kind.name, items: retries.length, key: first!.key, attempts: first!.attempts, error: first!.error }, 'work not done; will retry');
    try {
      for (const { key, due_at } of await kind.table.retryLater(retries)) opts.prompt.schedule(kind.name, [key], due_at);
    } catch (err) {
      // The leases run out and the sweeper takes the items again.
      opts.log.error({ err, kind: kind.name, items: retries.length }, 'could not record retries');
    }
  }
  // If this fails the items stay leased and owed: done again after the lease (their keys make it harmless).
  if (kind.completeMany && done.length > 0) await kind.completeMany(done);
  return rows.length;
}

/** The span of one work item: a child of the span that recorded it, linked to what prompted the run. */
function itemSpan<Row extends WorkColumns>(kind: WorkKind<Row>, row: Row, prompter: string | undefined): Span | undefined {
  const orderId = (row as { order_id?: unknown }).order_id;
  return startSpan(`work.${kind.name}`, {
    parent: row.traceparent ?? null,
    links: [prompter],
    attributes: {
      [ATTR.workKind]: kind.name,
      [ATTR.workKey]: kind.table.keyOf(row),
      [ATTR.workAttempt]: row.attempts,
      ...(typeof orderId === 'string' ? { [ATTR.orderId]: orderId } : {}),
    },
  });
}
