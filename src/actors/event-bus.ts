import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import type { Database } from '../db/pg.ts';
import type { Logger } from '../log.ts';
import { applyPartitions } from './consumers/apply.ts';
import { retryOwed } from './consumers/owed.ts';
import type { ConsumerGroup, EventRef } from './consumers/types.ts';
import { groupBacklog, PartitionLeases, partitionOf, type LeaseTick } from './partitions.ts';
import { bullConnection, within } from './queues.ts';
import { activeTraceparent, ATTR, detached, inSpan, SpanKind } from '../tracing.ts';

/** A wake-up: these partitions have new events (the owner reads them from its positions). */
export interface Wake {
  parts: number[];
  /** The cluster of the replica that sent it (see cluster-identity.ts). */
  cluster?: string;
  /** Trace contexts of (some of) the commands whose events it announces (tracing on): its span links to them. */
  links?: string[];
}

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
  /** A partition's lease: a replica that dies frees its partitions after this long. */
  leaseMs: number;
  /** How often leases are renewed and rebalanced (and producers learn the owners). */
  renewMs: number;
  /** How often an owner reads its partitions and its owed orders without being woken. */
  pollMs: number;
  /** Most events read per batch, over all the partitions of the batch. */
  batchEvents?: number;
  /** This replica consumes (ROLE all or worker); otherwise it only produces. */
  consumes: boolean;
  onApplied?: (part: number, events: number) => void;
}

/** Queue name of a replica's wake-ups. */
export const wakeQueueName = (holder: string) => `events-${holder}`;

const BATCH_EVENTS = 2000;
/** Trace contexts one wake-up carries at most. */
const MAX_LINKS = 8;
/** Owed orders retried per statement. */
const OWED_BATCH = 200;

/**
 * Carries journaled events to the consumers. The journal's events are split into partitions by
 * order id; each partition is consumed by one replica at a time under a lease (see
 * `PartitionLeases`), which reads it from its position and applies batches across all its
 * partitions in one statement each. After a commit, the replica that wrote the events sends a
 * wake-up naming their partitions to each owner's BullMQ queue (one job per owner per linger);
 * its own partitions it wakes in-process. A wake-up is only a hint: the positions are in
 * PostgreSQL, so a lost wake-up (Redis flushed, an owner that died) only delays events until the
 * owner's next poll, or until a new owner takes the partition and reads on from its position.
 */
export class EventBus {
  readonly leases: PartitionLeases;
  private readonly producer: Redis;
  private readonly queues = new Map<string, Queue<Wake>>();
  private worker: Worker<Wake> | undefined;
  private owners = new Map<number, string>();
  private pendingParts = new Set<number>();
  /** Per partition, trace contexts of the commits it was woken for since the last flush (tracing on; a few). */
  private pendingLinks = new Map<number, string[]>();
  private scheduled = false;
  private readonly inflight = new Set<Promise<unknown>>();
  private readonly dirty = new Set<number>();
  private pumping: Promise<void> | undefined;
  private lingering: NodeJS.Timeout | undefined;
  private owedDue = false;
  private timers: NodeJS.Timeout[] = [];
  private ticking: Promise<unknown> | undefined;
  private stopped = false;
  private started = false;
  private lastTick: LeaseTick | undefined;

  constructor(private readonly opts: EventBusOptions) {
    this.leases = new PartitionLeases({ db: opts.db, partitions: opts.partitions, leaseMs: opts.leaseMs, consumes: opts.consumes });
    // One connection for every owner's queue: producers fail fast while Redis is away (the owner's poll has the events).
    this.producer = new Redis(opts.redisUrl, { enableOfflineQueue: false, maxRetriesPerRequest: 1, lazyConnect: true });
    this.producer.on('error', (err) => opts.log.debug({ err: err.message }, 'event producer connection error'));
  }

  get holder(): string {
    return this.leases.holder;
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
    await this.producer.connect().catch((err: Error) => this.opts.log.warn({ err: err.message }, 'Redis is not reachable yet; events wait for the poll'));
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
        this.owedDue = true;
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
      const t = await this.leases.tick({ keep: this.stopped });
      this.owners = t.owners;
      this.lastTick = t;
      if (t.released.length > 0) {
        // Stop reading them first, so the next owner starts where this replica's last batch ended.
        await this.pumping;
        await this.leases.release(t.released);
        this.opts.log.info({ released: t.released, live: t.live }, 'handed event partitions to other replicas');
      }
      if (t.acquired.length > 0) {
        this.opts.log.info({ acquired: t.acquired, live: t.live }, 'took event partitions');
        this.owedDue = true;
        this.wake(t.acquired);
      }
      for (const holder of t.gone) void this.forget(holder);
      return t;
    })();
    this.ticking = run;
    try {
      return await run;
    } finally {
      if (this.ticking === run) this.ticking = undefined;
    }
  }

  /** The wake-up queue of a replica that is gone: nobody will read it again. */
  private async forget(holder: string): Promise<void> {
    const queue = this.queueOf(holder);
    this.queues.delete(holder);
    await queue.obliterate({ force: true }).catch(() => undefined);
    await queue.close().catch(() => undefined);
  }

  /** Hands a committed event to its partition's owner (batched with others of the same linger). */
  publish(ref: EventRef): void {
    const part = this.partitionOf(ref.orderId);
    this.pendingParts.add(part);
    const committer = activeTraceparent();
    if (committer) {
      const links = this.pendingLinks.get(part) ?? [];
      if (links.length < MAX_LINKS) this.pendingLinks.set(part, [...links, committer]);
    }
    if (this.scheduled) return;
    this.scheduled = true;
    const linger = this.opts.lingerMs ?? 0;
    // Outside the committing request's span: one wake-up carries the events of many commands.
    detached(() => {
      if (linger > 0) setTimeout(() => this.flush(), linger);
      else setImmediate(() => this.flush());
    });
  }

  private flush(): void {
    this.scheduled = false;
    if (this.pendingParts.size === 0) return;
    const byOwner = new Map<string, number[]>();
    for (const p of this.pendingParts) {
      const owner = this.leases.holds(p) ? this.holder : this.owners.get(p);
      if (owner) byOwner.set(owner, [...(byOwner.get(owner) ?? []), p]);
    }
    this.pendingParts.clear();
    const pendingLinks = this.pendingLinks;
    if (pendingLinks.size > 0) this.pendingLinks = new Map();
    for (const [owner, parts] of byOwner) {
      if (owner === this.holder) {
        this.wake(parts);
        continue;
      }
      const links = pendingLinks.size > 0 ? parts.flatMap((p) => pendingLinks.get(p) ?? []).slice(0, MAX_LINKS) : [];
      const sending = this.queueOf(owner)
        .add('wake', { parts, cluster: this.opts.cluster, ...(links.length > 0 && { links }) }, { removeOnComplete: true, removeOnFail: true })
        .catch((err: Error) => this.opts.log.debug({ err: err.message, owner }, 'could not wake the owner; its poll will find the events'))
        .finally(() => this.inflight.delete(sending));
      this.inflight.add(sending);
    }
  }

  private queueOf(holder: string): Queue<Wake> {
    let queue = this.queues.get(holder);
    if (!queue) {
      queue = new Queue<Wake>(wakeQueueName(holder), { connection: this.producer, prefix: this.opts.prefix });
      queue.on('error', (err) => this.opts.log.debug({ err: err.message, holder }, 'wake-up queue error'));
      this.queues.set(holder, queue);
    }
    return queue;
  }

  /**
   * Marks partitions as having new events, and reads them if this replica holds them. The read
   * waits `lingerMs` first, so the wake-ups of every replica's commits of that moment make one
   * batch (one read and one write for all of them); what arrives while a batch is applied is read
   * right after it.
   */
  wake(parts: readonly number[]): void {
    for (const p of parts) if (this.leases.holds(p)) this.dirty.add(p);
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
    // A batch applies many orders' events: it must not run inside the span of whatever woke it.
    this.pumping = detached(() => this.pump()).finally(() => {
      this.pumping = undefined;
      if ((this.dirty.size > 0 || this.owedDue) && !this.stopped) this.startPump();
    });
  }

  /** Applies batches until the woken partitions are read to their end; retries owed orders when due. */
  private async pump(): Promise<void> {
    const limit = this.opts.batchEvents ?? BATCH_EVENTS;
    while (!this.stopped) {
      const parts = [...this.dirty].filter((p) => this.leases.holds(p));
      this.dirty.clear();
      const owed = this.owedDue;
      this.owedDue = false;
      if (parts.length === 0 && !owed) return;
      try {
        if (parts.length > 0) {
          const result = await applyPartitions(this.opts.db, this.opts.group, parts, {
            limitPerPart: Math.max(50, Math.ceil(limit / parts.length)),
            log: this.opts.log,
          });
          for (const [part, n] of result.byPart) this.opts.onApplied?.(part, n);
          for (const p of result.more) this.dirty.add(p);
        }
        if (owed && this.leases.owned().size > 0) {
          const r = await retryOwed(this.opts.db, this.opts.group, { parts: this.owned(), limit: OWED_BATCH }, this.opts.log);
          if (r.more) this.owedDue = true;
        }
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
   * An operator's replay: the owed orders (of one consumer, or one order) are retried now, as far
   * as the partitions' positions got, without waiting for their backoff. Any replica may do it.
   */
  async replayOwed(filter: { consumer?: string; orderId?: string }): Promise<{ done: number; failed: number }> {
    let done = 0;
    let failed = 0;
    for (;;) {
      const r = await retryOwed(this.opts.db, this.opts.group, { ...filter, now: true, limit: OWED_BATCH }, this.opts.log);
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
    clearTimeout(this.lingering);
    this.flush();
    if (this.worker) {
      const worker = this.worker;
      if ((await within(worker.close(), graceMs)) === 'timeout') await worker.close(true);
    }
    await within(Promise.all([this.pumping, this.ticking]), graceMs);
    if (this.opts.consumes && this.started) {
      await this.leases.leave().catch((err: Error) => this.opts.log.warn({ err: err.message }, 'could not hand back event partitions; they free themselves when the lease runs out'));
      await this.forget(this.holder);
    }
    await within(Promise.all(this.inflight), graceMs);
    await Promise.all([...this.queues.values()].map((q) => q.close().catch(() => undefined)));
    this.producer.disconnect();
  }
}
