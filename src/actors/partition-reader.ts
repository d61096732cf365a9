import type { Database } from '../db/pg.ts';
import type { Logger } from '../log.ts';
import { applyPartitions, type ReadAhead } from './consumers/apply.ts';
import { retryOwed } from './consumers/owed.ts';
import type { Carried, ConsumerGroup } from './consumers/types.ts';
import type { PartitionLeases } from './partitions.ts';
import { detached } from '../tracing.ts';

const BATCH_EVENTS = 2000;
/** Owed orders retried per statement. */
export const OWED_BATCH = 200;

export interface PartitionReaderOptions {
  db: Database;
  group: ConsumerGroup;
  /** Which partitions this replica holds. */
  leases: PartitionLeases;
  /** The partitions this replica holds now, in order. */
  owned: () => number[];
  log: Logger;
  /** How long a read waits for more wake-ups to join its batch. */
  lingerMs?: number;
  /** Most events read per batch, over all the partitions of the batch. */
  batchEvents?: number;
  onApplied?: (part: number, events: number) => void;
  /** What else each batch's statement may write (see `Carried`). */
  carry?: () => Carried | undefined;
  /** Called when the reader has nothing under way, scheduled or to read again. */
  onIdle?: () => void;
  /**
   * Called after each batch with how late it ran: the age (ms) of its oldest event when it was
   * written, 0 when the read found none; and with 0 when the reader goes idle.
   */
  onLate?: (ms: number) => void;
  /**
   * Called after each batch that read events with when each was decided (its journal `at`) and
   * the clock's time once the batch was written (ms since the epoch): each event's lag.
   */
  onEventsApplied?: (decidedAt: readonly number[], writtenAt: number) => void;
  /**
   * The clock the journal's event times were taken from (ms since the epoch): the runtime's, when
   * it is given one. Lateness is measured against it. Default `Date.now`.
   */
  now?: () => number;
}

/**
 * The owner's side of the event bus: reads the partitions it holds from their positions and
 * applies batches across all of them in one statement each, when woken or polled, and retries the
 * owed orders when due. A partition that had events is read again one linger later by itself
 * (until a read finds none), so an owner busy with a partition needs no wake-up for each of its
 * commits from other replicas (see `WakeUps`).
 */
export class PartitionReader {
  private readonly dirty = new Set<number>();
  /** Partitions whose last read had events: read again with the next batch, or one linger later. */
  private readonly hot = new Set<number>();
  private pumping: Promise<void> | undefined;
  private lingering: NodeJS.Timeout | undefined;
  private owedDue = false;
  private stopped = false;
  /** What the last batch's statement read of the next one (see READ_AHEAD), until a batch uses it or it goes stale. */
  private ahead: ReadAhead | undefined;
  /** When (performance.now()) the statement that read `ahead` was on its way: at or before its snapshot. */
  private aheadSent = 0;
  /** Until when (performance.now()) this replica has promised to read every partition it holds by itself (see `readOnItsOwn`). */
  private readsUntil = 0;
  /** When the last read of every partition held was sent (at or before the snapshot it saw). */
  private lastFullRead = 0;
  /** Batches that applied events, and time spent applying, since `activity()` last asked. */
  private found = 0;
  private busyMs = 0;

  constructor(private readonly opts: PartitionReaderOptions) {}

  /** The batches under way, if any (until the woken partitions are read to their end). */
  get reading(): Promise<void> | undefined {
    return this.pumping;
  }

  private current: Promise<unknown> | undefined;

  /**
   * The one batch under way (with its owed retry), if any: once it ends, no batch reads a partition
   * this replica no longer holds. Under steady load the pump may never stop, so a hand-over waits
   * for this only.
   */
  get batch(): Promise<unknown> | undefined {
    return this.current;
  }

  /** No batch under way or waiting to start, no partition to read again by itself, and no promise to read them all. */
  get idle(): boolean {
    return !this.pumping && !this.lingering && this.hot.size === 0 && this.dirty.size === 0 && !this.promised;
  }

  /** A read of every partition held, sent at or after the promise's end, is still owed. */
  private get promised(): boolean {
    return this.lastFullRead < this.readsUntil && !this.stopped;
  }

  /**
   * Promises to read every partition this replica holds, once a linger at least, until `until`
   * (performance.now()), and once more after it: an event committed before then is applied within
   * a linger or so of its commit without anyone waking this replica. Later promises extend it.
   */
  readOnItsOwn(until: number): void {
    if (until <= this.readsUntil) return;
    this.readsUntil = until;
    this.wake(this.opts.owned());
  }

  /** Batches that applied events, and milliseconds spent in batches, since the last call. */
  activity(): { found: number; busyMs: number } {
    const out = { found: this.found, busyMs: this.busyMs };
    this.found = 0;
    this.busyMs = 0;
    return out;
  }

  /** The owed orders are retried with the next batch. */
  oweRetry(): void {
    this.owedDue = true;
  }

  /**
   * Marks partitions as having new events, and reads them if this replica holds them. The read
   * waits `lingerMs` first, so the wake-ups of every replica's commits of that moment make one
   * batch (one read and one write for all of them); what arrives while a batch is applied is read
   * right after it.
   */
  wake(parts: readonly number[]): void {
    for (const p of parts) if (this.opts.leases.holds(p)) this.dirty.add(p);
    if (this.pumping || this.lingering || this.stopped || (this.dirty.size === 0 && !this.owedDue)) return;
    const linger = this.opts.lingerMs ?? 0;
    if (linger <= 0) return this.startPump();
    this.lingering = setTimeout(() => {
      this.lingering = undefined;
      this.startPump();
    }, linger);
  }

  private startPump(): void {
    if (this.pumping || this.stopped) return;
    const started = performance.now();
    // A batch applies many orders' events: it must not run inside the span of whatever woke it.
    this.pumping = detached(() => this.pump()).finally(() => {
      this.pumping = undefined;
      this.busyMs += performance.now() - started;
      if (this.stopped) return;
      if (this.dirty.size > 0 || this.owedDue) return this.startPump();
      if (this.hot.size > 0 || this.promised) {
        const again = this.promised ? [...new Set([...this.hot, ...this.opts.owned()])] : [...this.hot];
        this.hot.clear();
        this.wake(again);
      }
      if (this.idle) {
        this.opts.onLate?.(0);
        this.opts.onIdle?.();
      }
    });
  }

  /** Applies batches until the woken partitions are read to their end; retries owed orders when due. */
  private async pump(): Promise<void> {
    const limit = this.opts.batchEvents ?? BATCH_EVENTS;
    while (!this.stopped) {
      const woken = [...this.dirty].filter((p) => this.opts.leases.holds(p));
      this.dirty.clear();
      const owed = this.owedDue;
      this.owedDue = false;
      // Only a wake-up reads at once; the partitions read again by themselves join it, or wait a linger.
      if (woken.length === 0 && !owed) return;
      const parts = [...new Set([...woken, ...[...this.hot].filter((p) => this.opts.leases.holds(p))])];
      this.hot.clear();
      try {
        // A hand-over waits for this (the owed retry too, which reads the partitions held now).
        const step = this.readOnce(parts, owed, limit);
        this.current = step.catch(() => undefined);
        await step.finally(() => {
          this.current = undefined;
        });
      } catch (err) {
        // PostgreSQL away, or races that kept repeating: the poll comes back to these partitions.
        this.opts.log.warn({ err: (err as Error).message, parts }, 'could not apply events now; will try again');
        for (const p of parts) this.dirty.add(p);
        if (owed) this.owedDue = true;
        await new Promise((resolve) => setTimeout(resolve, 250));
        return;
      }
    }
  }

  /**
   * One batch of `parts`, then the owed orders' retry when due. The statement that writes a batch
   * also reads the next one of every partition held (READ_AHEAD): the next batch uses those rows
   * instead of a read of its own when they have events and cover its partitions, all still held;
   * events committed since are in its own statement's read ahead, for the batch after. An owed
   * retry changes owed rows that read did not see: the rows read before it are dropped.
   */
  private async readOnce(parts: readonly number[], owed: boolean, limit: number): Promise<void> {
    const ahead = this.takeAhead(parts);
    const batchParts = ahead ? ahead.parts : parts;
    if (batchParts.length > 0) {
      const perPart = (n: number) => Math.max(50, Math.ceil(limit / n));
      const sent = performance.now();
      const readAt = ahead ? this.aheadSent : sent;
      const result = await applyPartitions(this.opts.db, this.opts.group, batchParts, {
        limitPerPart: perPart(batchParts.length),
        log: this.opts.log,
        carry: this.opts.carry,
        ahead,
        readAhead: () => {
          const owned = this.opts.owned();
          return { parts: owned, limitPerPart: perPart(owned.length) };
        },
      });
      const writtenAt = (this.opts.now ?? Date.now)();
      const { decidedAt } = result;
      // The batch's lateness: how old its oldest event was once written (0 when it read none).
      this.opts.onLate?.(decidedAt.length === 0 ? 0 : Math.max(0, writtenAt - decidedAt.reduce((a, b) => Math.min(a, b))));
      if (decidedAt.length > 0) this.opts.onEventsApplied?.(decidedAt, writtenAt);
      this.ahead = owed ? undefined : result.ahead;
      this.aheadSent = sent;
      if (this.opts.owned().every((p) => batchParts.includes(p))) this.lastFullRead = Math.max(this.lastFullRead, readAt);
      if ([...result.byPart.values()].some((n) => n > 0)) this.found += 1;
      for (const [part, n] of result.byPart) {
        this.opts.onApplied?.(part, n);
        if (n > 0) this.hot.add(part);
      }
      for (const p of result.more) this.dirty.add(p);
    }
    if (owed && this.opts.leases.owned().size > 0) {
      const r = await retryOwed(this.opts.db, this.opts.group, { parts: this.opts.owned(), limit: OWED_BATCH }, this.opts.log);
      if (r.more) this.owedDue = true;
    }
  }

  /** The rows read ahead, if they can stand for a read of `parts` (see readOnce); taken once either way. */
  private takeAhead(parts: readonly number[]): ReadAhead | undefined {
    const ahead = this.ahead;
    this.ahead = undefined;
    if (!ahead || ahead.rows.length === 0) return undefined;
    if (!ahead.parts.every((p) => this.opts.leases.holds(p)) || !parts.every((p) => ahead.parts.includes(p))) return undefined;
    return ahead;
  }

  /** Reads no more: a batch under way ends after its statement, a lingering read never starts. */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.lingering);
  }
}
