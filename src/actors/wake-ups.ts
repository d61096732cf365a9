import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import type { Logger } from '../log.ts';
import { within } from './queues.ts';
import { activeTraceparent, detached } from '../tracing.ts';

/** A wake-up: these partitions have new events (the owner reads them from its positions). */
export interface Wake {
  parts: number[];
  /** The cluster of the replica that sent it (see cluster-identity.ts). */
  cluster?: string;
  /** Trace contexts of (some of) the commands whose events it announces (tracing on): its span links to them. */
  links?: string[];
}

/** Queue name of a replica's wake-ups. */
export const wakeQueueName = (holder: string) => `events-${holder}`;

/** Trace contexts one wake-up carries at most. */
const MAX_LINKS = 8;

export interface WakeUpsOptions {
  redisUrl: string;
  prefix: string;
  /** This replica's cluster, sent with each wake-up. */
  cluster?: string;
  /** How long events committed close together wait to travel in one wake-up. */
  lingerMs?: number;
  /**
   * At most one wake-up per other owner this often: an owner that is applying events reads its
   * partitions again on its own, so more would only cost (a BullMQ job costs each side CPU).
   */
  remoteEveryMs?: number;
  log: Logger;
  /** This replica's name in the leases: its own partitions are woken in-process. */
  holder: string;
  /** A partition's owner, as this replica last learnt it. */
  ownerOf: (part: number) => string | undefined;
  /** Wakes partitions this replica holds. */
  wakeHere: (parts: number[]) => void;
  /** Whether another owner is known to be reading all its partitions by itself now: it is sent nothing. */
  readsAnyway?: (owner: string) => boolean;
}

/**
 * The producer's side of the event bus: after a commit, the partitions with new events are sent
 * to each owner's BullMQ queue (this replica's own partitions are woken in-process, once per
 * linger). Another owner gets one job per linger when it has had none for `remoteEveryMs`, else
 * the partitions wait for the end of that interval: the first events after a quiet spell travel at
 * once, and under load an owner, which reads its busy partitions again by itself, is not sent a
 * job for every linger by every replica. An owner that has promised to read all its partitions by
 * itself for now (`readsAnyway`) is sent nothing.
 */
export class WakeUps {
  private readonly producer: Redis;
  private readonly queues = new Map<string, Queue<Wake>>();
  private pendingParts = new Set<number>();
  /** Per partition, trace contexts of the commits it was woken for since the last flush (tracing on; a few). */
  private pendingLinks = new Map<number, string[]>();
  private scheduled = false;
  private readonly inflight = new Set<Promise<unknown>>();
  /** Per other owner: when its last wake-up went, and the partitions held back since. */
  private readonly remote = new Map<string, { sentAt: number; held: Set<number>; links: string[]; timer?: NodeJS.Timeout }>();

  constructor(private readonly opts: WakeUpsOptions) {
    // One connection for every owner's queue: producers fail fast while Redis is away (the owner's poll has the events).
    this.producer = new Redis(opts.redisUrl, { enableOfflineQueue: false, maxRetriesPerRequest: 1, lazyConnect: true });
    this.producer.on('error', (err) => opts.log.debug({ err: err.message }, 'event producer connection error'));
  }

  async connect(): Promise<void> {
    await this.producer.connect().catch((err: Error) => this.opts.log.warn({ err: err.message }, 'Redis is not reachable yet; events wait for the poll'));
  }

  /** The wake-up queue of a replica that is gone: nobody will read it again. */
  async forget(holder: string): Promise<void> {
    clearTimeout(this.remote.get(holder)?.timer);
    this.remote.delete(holder);
    const queue = this.queueOf(holder);
    this.queues.delete(holder);
    await queue.obliterate({ force: true }).catch(() => undefined);
    await queue.close().catch(() => undefined);
  }

  /** Announces new events of a partition to its owner (batched with others of the same linger). */
  announce(part: number): void {
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

  flush(): void {
    this.scheduled = false;
    if (this.pendingParts.size === 0) return;
    const byOwner = new Map<string, number[]>();
    for (const p of this.pendingParts) {
      const owner = this.opts.ownerOf(p);
      if (owner) byOwner.set(owner, [...(byOwner.get(owner) ?? []), p]);
    }
    this.pendingParts.clear();
    const pendingLinks = this.pendingLinks;
    if (pendingLinks.size > 0) this.pendingLinks = new Map();
    for (const [owner, parts] of byOwner) {
      if (owner === this.opts.holder) {
        this.opts.wakeHere(parts);
        continue;
      }
      const links = pendingLinks.size > 0 ? parts.flatMap((p) => pendingLinks.get(p) ?? []) : [];
      this.toRemote(owner, parts, links);
    }
  }

  /** Sends another owner its partitions now, or at the end of its `remoteEveryMs` if one went lately. */
  private toRemote(owner: string, parts: readonly number[], links: readonly string[]): void {
    if (this.opts.readsAnyway?.(owner)) return;
    const every = this.opts.remoteEveryMs ?? 0;
    let state = this.remote.get(owner);
    if (!state) {
      state = { sentAt: -Infinity, held: new Set(), links: [] };
      this.remote.set(owner, state);
    }
    for (const p of parts) state.held.add(p);
    if (state.links.length < MAX_LINKS) state.links.push(...links.slice(0, MAX_LINKS - state.links.length));
    if (state.timer) return;
    const wait = state.sentAt + every - performance.now();
    if (wait <= 0) return this.send(owner);
    state.timer = setTimeout(() => this.send(owner), wait);
    state.timer.unref?.();
  }

  private send(owner: string): void {
    const state = this.remote.get(owner);
    if (!state) return;
    clearTimeout(state.timer);
    state.timer = undefined;
    if (state.held.size === 0) return;
    const parts = [...state.held].sort((a, b) => a - b);
    const links = state.links;
    state.held = new Set();
    state.links = [];
    state.sentAt = performance.now();
    const sending = this.queueOf(owner)
      .add('wake', { parts, cluster: this.opts.cluster, ...(links.length > 0 && { links }) }, { removeOnComplete: true, removeOnFail: true })
      .catch((err: Error) => this.opts.log.debug({ err: err.message, owner }, 'could not wake the owner; its poll will find the events'))
      .finally(() => this.inflight.delete(sending));
    this.inflight.add(sending);
  }

  /** Sends every wake-up held back at once (closing). */
  private sendHeld(): void {
    for (const owner of this.remote.keys()) this.send(owner);
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

  /** Sends what is pending or held back, lets the wake-ups on their way go out (within `graceMs`), then closes the queues and the connection. */
  async close(graceMs: number): Promise<void> {
    this.flush();
    this.sendHeld();
    await within(Promise.all(this.inflight), graceMs);
    await Promise.all([...this.queues.values()].map((q) => q.close().catch(() => undefined)));
    this.producer.disconnect();
  }
}
