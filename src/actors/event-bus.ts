import { Worker } from 'bullmq';
import type { Database } from '../db/pg.ts';
import type { Logger } from '../log.ts';
import { owedTable, retryOwed } from './consumers/owed.ts';
import type { Carried, ConsumerGroup, EventRef } from './consumers/types.ts';
import { OWED_BATCH, PartitionReader } from './partition-reader.ts';
import { groupBacklog, PartitionLeases, partitionOf, type LeaseTick } from './partitions.ts';
import { bullConnection, within } from './queues.ts';
import { wakeQueueName, WakeUps, type Wake } from './wake-ups.ts';
import { ATTR, detached, inSpan, SpanKind } from '../tracing.ts';

/** Owed orders made due now per statement of a replay. */
const REPLAY_BATCH = 1000;

export interface EventBusOptions {
  db: Database;
  /** This replica's cluster: wake-ups of another cluster are ignored. */
  cluster?: string;
  redisUrl: string;
  prefix: string;
  /** The consumers; one position per partition for all of them. */
  group: ConsumerGroup;
  /** How many partitions the events are split into (fixed once events exist). */
  partitions: number;
  log: Logger;
  /** How long events committed close together wait to travel in one wake-up. */
  lingerMs?: number;
  /** At most one wake-up per other owner this often (see `WakeUps`). */
  remoteWakeMs?: number;
  /** A partition's lease: a replica that dies frees its partitions after this long. */
  leaseMs: number;
  /** How often leases are renewed and rebalanced (and producers learn the owners). */
  renewMs: number;
  /** How often an owner reads its partitions and its owed orders without being woken. */
  pollMs: number;
  /**
   * How long a busy owner promises, at each lease tick, to read all its partitions by itself
   * (default: three ticks). The other replicas send it no wake-ups meanwhile.
   */
  readingMs?: number;
  /** Most events read per batch, over all the partitions of the batch. */
  batchEvents?: number;
  /** This replica consumes (ROLE all or worker); otherwise it only produces. */
  consumes: boolean;
  onApplied?: (part: number, events: number) => void;
  /** What else each event batch's statement may write (see `Carried`). */
  carry?: () => Carried | undefined;
  /** Called when the reader has nothing under way, scheduled or to read again. */
  onIdle?: () => void;
  /** How late each event batch ran (see `PartitionReaderOptions.onLate`). */
  onLate?: (ms: number) => void;
  /** Each event's lag once its batch was written (see `PartitionReaderOptions.onEventsApplied`). */
  onEventsApplied?: (decidedAt: readonly number[], writtenAt: number) => void;
  /** The clock the events' times come from (see `PartitionReaderOptions.now`). */
  now?: () => number;
}

/**
 * Carries journaled events to the consumers. The journal's events are split into partitions by
 * order id; each partition is consumed by one replica at a time under a lease (see
 * `PartitionLeases`), which reads it from its position and applies batches across all its
 * partitions in one statement each. After a commit, the replica that wrote the events sends a
 * wake-up naming their partitions to each owner's BullMQ queue (at most one per owner per
 * `remoteWakeMs`; a busy owner reads its partitions again by itself);
 * its own partitions it wakes in-process. A wake-up is only a hint: the positions are in
 * PostgreSQL, so a lost wake-up (Redis flushed, an owner that died) only delays events until the
 * owner's next poll, or until a new owner takes the partition and reads on from its position.
 */
export class EventBus {
  readonly leases: PartitionLeases;
  private readonly wakeUps: WakeUps;
  private readonly reader: PartitionReader;
  private worker: Worker<Wake> | undefined;
  private owners = new Map<number, string>();
  private timers: NodeJS.Timeout[] = [];
  private ticking: Promise<unknown> | undefined;
  private stopped = false;
  private started = false;
  private lastTick: LeaseTick | undefined;
  /** When the last lease tick was sent (performance.now()). */
  private lastTickSent: number | undefined;
  /** Other owners reading all their partitions by themselves: until when (performance.now(), never later than they promised). */
  private reading = new Map<string, number>();
  /** Hand-overs of partitions waiting for the batch under way. */
  private readonly handing = new Set<Promise<unknown>>();

  constructor(private readonly opts: EventBusOptions) {
    this.leases = new PartitionLeases({ db: opts.db, partitions: opts.partitions, leaseMs: opts.leaseMs, consumes: opts.consumes });
    this.wakeUps = new WakeUps({
      redisUrl: opts.redisUrl,
      prefix: opts.prefix,
      cluster: opts.cluster,
      lingerMs: opts.lingerMs,
      remoteEveryMs: opts.remoteWakeMs,
      log: opts.log,
      holder: this.leases.holder,
      ownerOf: (p) => (this.leases.holds(p) ? this.holder : this.owners.get(p)),
      wakeHere: (parts) => this.wake(parts),
      readsAnyway: (owner) => (this.reading.get(owner) ?? 0) > performance.now(),
    });
    this.reader = new PartitionReader({
      db: opts.db,
      group: opts.group,
      leases: this.leases,
      owned: () => this.owned(),
      log: opts.log,
      lingerMs: opts.lingerMs,
      batchEvents: opts.batchEvents,
      onApplied: opts.onApplied,
      carry: opts.carry,
      onIdle: opts.onIdle,
      onLate: opts.onLate,
      onEventsApplied: opts.onEventsApplied,
      now: opts.now,
    });
  }

  get holder(): string {
    return this.leases.holder;
  }

  /** Whether this replica's reader has nothing under way, scheduled or to read again (tests wait for it). */
  get idle(): boolean {
    return this.reader.idle;
  }

  /** Partitions this replica holds now. */
  owned(): number[] {
    return [...this.leases.owned()].sort((a, b) => a - b);
  }

  /** The partition an order's events go to. */
  partitionOf(orderId: string): number {
    return partitionOf(orderId, this.opts.partitions);
  }

  /** Owner of each partition, as this replica last learnt it. */
  ownersNow(): ReadonlyMap<number, string> {
    const out = new Map(this.owners);
    for (const p of this.leases.owned()) out.set(p, this.holder);
    return out;
  }

  /** Starts taking part: leases, the wake-up worker, the polls. Producers learn the owners too. */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    await this.wakeUps.connect();
    if (this.opts.consumes) {
      this.worker = new Worker<Wake>(wakeQueueName(this.holder), async (job) => {
        if (job.data.cluster && this.opts.cluster && job.data.cluster !== this.opts.cluster) {
          this.opts.log.error({ jobCluster: job.data.cluster, cluster: this.opts.cluster }, 'a wake-up of another cluster reached this replica: ignored');
          return;
        }
        const links = job.data.links;
        if (!links) return this.wake(job.data.parts);
        // Only a hint arrives: the span shows which commits woke this owner (their events are applied in a batch of their own).
        return inSpan('events.wake', { kind: SpanKind.CONSUMER, parent: null, links, attributes: { [ATTR.partitions]: job.data.parts.join(',') } }, async () =>
          detached(() => this.wake(job.data.parts)),
        );
      }, {
        connection: bullConnection(this.opts.redisUrl, false),
        prefix: this.opts.prefix,
        concurrency: 1,
      });
      this.worker.on('error', (err) => this.opts.log.warn({ err: err.message }, 'event wake-up worker error'));
    }
    await this.tick().catch((err: Error) => this.opts.log.warn({ err: err.message }, 'could not take partitions yet'));
    this.every(this.opts.renewMs, () => this.tick());
    if (this.opts.consumes) {
      this.every(this.opts.pollMs, async () => {
        this.reader.oweRetry();
        this.wake(this.owned());
      });
    }
  }

  private every(ms: number, fn: () => Promise<unknown> | void): void {
    const run = () => {
      if (this.stopped) return;
      const timer = setTimeout(async () => {
        try {
          await fn();
        } catch (err) {
          this.opts.log.warn({ err: (err as Error).message }, 'event partition upkeep failed; will try again');
        }
        run();
      }, ms * (0.8 + Math.random() * 0.4));
      this.timers.push(timer);
      if (this.timers.length > 16) this.timers = this.timers.slice(-8);
    };
    run();
  }

  /** Renews and rebalances the leases; catches up on partitions just taken, hands back the extra. */
  async tick(): Promise<LeaseTick> {
    const run = (async () => {
      const sent = performance.now();
      const readsForMs = this.promiseNow(sent);
      // Kept from when the answer came (at or after the promise's start in the database's clock), or
      // the error (the statement may have committed all the same); another replica's, counted from
      // when this tick was sent (at or before it), less a linger.
      const keep = () => readsForMs > 0 && this.reader.readOnItsOwn(performance.now() + readsForMs);
      const t = await this.leases.tick({ keep: this.stopped, readsForMs }).catch((err: unknown) => {
        keep();
        throw err;
      });
      keep();
      const margin = this.opts.lingerMs ?? 0;
      this.reading = new Map([...t.reading].map(([holder, leftMs]) => [holder, sent + leftMs - margin]));
      this.owners = t.owners;
      this.lastTick = t;
      if (t.released.length > 0) {
        // Written once the batch under way ends (none after it reads them), so the next owner
        // starts where this replica's last batch ended. Not waited for here: the renewals go on
        // meanwhile, and a pump kept busy by steady load never stops for a hand-over.
        const released = t.released;
        const handing = (async () => {
          await this.reader.batch;
          await this.leases.release(released);
          this.opts.log.info({ released, live: t.live }, 'handed event partitions to other replicas');
        })().catch((err: Error) => this.opts.log.warn({ err: err.message, released }, 'could not hand event partitions back; their leases run out'));
        this.handing.add(handing);
        void handing.finally(() => this.handing.delete(handing));
      }
      if (t.acquired.length > 0) {
        this.opts.log.info({ acquired: t.acquired, live: t.live }, 'took event partitions');
        this.reader.oweRetry();
        this.wake(t.acquired);
      }
      for (const holder of t.gone) void this.wakeUps.forget(holder);
      return t;
    })();
    this.ticking = run;
    try {
      return await run;
    } finally {
      if (this.ticking === run) this.ticking = undefined;
    }
  }

  /**
   * How long this replica promises, with the tick being sent, to read all its partitions by itself:
   * only while it is busy enough that reading them once a linger costs little more than it does
   * anyway (batches with events at least every other linger since the last tick, or applying for
   * half the time), and never while stopping or without a linger. 0: no promise.
   */
  private promiseNow(now: number): number {
    const since = this.lastTickSent;
    this.lastTickSent = now;
    const { found, busyMs } = this.reader.activity();
    const linger = this.opts.lingerMs ?? 0;
    if (!this.opts.consumes || this.stopped || linger <= 0 || since === undefined || this.leases.owned().size === 0) return 0;
    const elapsed = now - since;
    const busy = found * 2 * linger >= elapsed || busyMs * 2 >= elapsed;
    return busy ? (this.opts.readingMs ?? 3 * this.opts.renewMs) : 0;
  }

  /** Hands a committed event to its partition's owner (batched with others of the same linger). */
  publish(ref: EventRef): void {
    this.wakeUps.announce(this.partitionOf(ref.orderId));
  }

  /** Marks partitions as having new events, and reads them if this replica holds them (see `PartitionReader.wake`). */
  wake(parts: readonly number[]): void {
    this.reader.wake(parts);
  }

  /**
   * An operator's replay: the owed orders (of one consumer, or one order) are made due now, as any
   * failing work is (`dueNow`), and retried at once, as far as the partitions' positions got. Any
   * replica may do it: the owed rows' versions make a retry that races the owner's read again.
   */
  async replayOwed(filter: { consumer?: string; orderId?: string }): Promise<{ done: number; failed: number }> {
    const table = owedTable(this.opts.db);
    for (;;) {
      const keys = await this.opts.db.query<{ work_key: string }>(
        `SELECT work_key FROM consumer_failures WHERE consumer = ANY($1::text[]) AND ($2::text IS NULL OR consumer = $2) AND ($3::uuid IS NULL OR order_id = $3)
           AND due_at > now() LIMIT $4`,
        [this.opts.group.consumers.map((c) => c.name), filter.consumer ?? null, filter.orderId ?? null, REPLAY_BATCH],
      );
      await table.dueNow(keys.map((k) => k.work_key));
      if (keys.length < REPLAY_BATCH) break;
    }
    let done = 0;
    let failed = 0;
    for (;;) {
      const r = await retryOwed(this.opts.db, this.opts.group, { ...filter, limit: OWED_BATCH }, this.opts.log);
      done += r.done;
      failed += r.failed;
      if (!r.more || r.done === 0) return { done, failed };
    }
  }

  /** Events not applied yet, over the partitions (the backlog an autoscaler can follow). */
  async backlog(): Promise<Record<string, number>> {
    return { events: (await groupBacklog(this.opts.db, this.opts.group.name)).behind };
  }

  /** What the last lease tick saw (for /readyz and metrics). */
  state(): { holder: string; owned: number[]; live: number } {
    return { holder: this.holder, owned: this.owned(), live: this.lastTick?.live ?? 0 };
  }

  /**
   * Stops reading (a batch under way finishes within `graceMs`), hands the partitions back so the
   * other replicas take them at once, and closes the queues. Idempotent.
   */
  async close(graceMs: number): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.reader.stop();
    this.wakeUps.flush();
    if (this.worker) {
      const worker = this.worker;
      if ((await within(worker.close(), graceMs)) === 'timeout') await worker.close(true);
    }
    await within(Promise.all([this.reader.reading, this.ticking, ...this.handing]), graceMs);
    if (this.opts.consumes && this.started) {
      await this.leases.leave().catch((err: Error) => this.opts.log.warn({ err: err.message }, 'could not hand back event partitions; they free themselves when the lease runs out'));
      await this.wakeUps.forget(this.holder);
    }
    await this.wakeUps.close(graceMs);
  }
}
