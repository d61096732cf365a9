import { Queue, Worker, type Job } from 'bullmq';
import type { Database } from '../db/pg.ts';
import type { Logger } from '../log.ts';
import { deliver, type ConsumerGroup, type EventRef } from './consumers.ts';
import { bullConnection, JOB_OPTIONS, within } from './queues.ts';

export interface EventBatch {
  refs: EventRef[];
}

export interface EventBusOptions {
  redisUrl: string;
  prefix: string;
  /** One queue per group; a group's consumers apply a batch together. */
  groups: readonly ConsumerGroup[];
  log: Logger;
  /** Most refs per job. */
  batchSize?: number;
  /** How long the first event of a batch waits for others before the batch is sent. */
  lingerMs?: number;
}

/** Seconds the oldest waiting job of a queue has waited (0 when none waits). */
export async function oldestWaiting(queue: Queue): Promise<number> {
  const [job] = await queue.getJobs(['waiting'], 0, 0, true);
  return job ? Math.max(0, (Date.now() - job.timestamp) / 1000) : 0;
}

/** Most waiting jobs, and events, a worker takes along with its own job (see `withWaiting`). */
const COALESCE_JOBS = 50;
const COALESCE_MAX = 2000;

/** Queue name of a consumer group. */
export const queueNameOf = (group: string) => `events-${group.replaceAll('.', '-')}`;

/**
 * Carries journaled events to every consumer through BullMQ. Events committed close together
 * travel in one job per consumer (refs only: consumers read the journal). Publishing happens after
 * the commit and is best effort: the sweeper re-sends whatever a consumer still owes.
 */
export class EventBus {
  readonly queues = new Map<string, Queue<EventBatch>>();
  private readonly workers: Worker<EventBatch>[] = [];
  private pending: EventRef[] = [];
  private scheduled = false;
  private readonly batchSize: number;
  private inflight = new Set<Promise<void>>();

  constructor(private readonly opts: EventBusOptions) {
    this.batchSize = opts.batchSize ?? 500;
    for (const g of opts.groups) {
      this.queues.set(
        g.name,
        new Queue<EventBatch>(queueNameOf(g.name), { connection: bullConnection(opts.redisUrl, true), prefix: opts.prefix, defaultJobOptions: JOB_OPTIONS }),
      );
    }
    for (const q of this.queues.values()) q.on('error', (err) => opts.log.warn({ err: err.message, queue: q.name }, 'event queue error'));
  }

  /** Hands a committed event to every group's queue, batched with others of the same tick. */
  publish(ref: EventRef): void {
    this.pending.push(ref);
    if (this.pending.length >= this.batchSize) {
      this.flush();
      return;
    }
    if (this.scheduled) return;
    this.scheduled = true;
    const linger = this.opts.lingerMs ?? 0;
    if (linger > 0) setTimeout(() => this.flush(), linger);
    else setImmediate(() => this.flush());
  }

  private flush(): void {
    this.scheduled = false;
    if (this.pending.length === 0) return;
    const refs = this.pending;
    this.pending = [];
    const sending = this.sendToAll(refs).finally(() => this.inflight.delete(sending));
    this.inflight.add(sending);
  }

  private async sendToAll(refs: EventRef[]): Promise<void> {
    await Promise.all(
      [...this.queues.keys()].map((group) =>
        this.send(group, refs).catch((err: Error) =>
          this.opts.log.warn({ err: err.message, group, events: refs.length }, 'could not enqueue events; the sweeper will re-send them'),
        ),
      ),
    );
  }

  /** The group a consumer belongs to (or the group of that name). */
  groupOf(name: string): ConsumerGroup | undefined {
    return this.opts.groups.find((g) => g.name === name || g.consumers.some((c) => c.name === name));
  }

  /** Enqueues refs for a consumer's group (the sweeper's re-send, or an operator's replay). */
  async send(consumerOrGroup: string, refs: readonly EventRef[]): Promise<void> {
    const group = this.groupOf(consumerOrGroup);
    const queue = group && this.queues.get(group.name);
    if (!queue) throw new Error(`no consumer named ${consumerOrGroup}`);
    const jobs = [];
    for (let i = 0; i < refs.length; i += this.batchSize) {
      jobs.push({ name: 'events', data: { refs: refs.slice(i, i + this.batchSize) } });
    }
    if (jobs.length > 0) await queue.addBulk(jobs);
  }

  /** Starts one worker per group queue on this replica. */
  startWorkers(db: Database, opts: { concurrency: number; lockMs: number; onDelivered?: (group: string, events: number) => void }): void {
    for (const group of this.opts.groups) {
      const log = this.opts.log.child({ group: group.name });
      const queue = this.queues.get(group.name)!;
      // A group's batches are applied one at a time across all replicas. Each replica publishes
      // the events it committed, and behind a load balancer one order's events come from every
      // replica: concurrent batches would hold the same orders, and all but one would be undone by
      // the checkpoint check and read again. The waiting jobs are taken along before the lock is
      // taken: the lock's connection never waits on Redis.
      const process = async (job: { data: EventBatch }) => {
        const refs = await this.withWaiting(queue, job.data.refs);
        const applied = await db.exclusively(`baedal:events:${group.name}`, () => deliver(db, group, refs, log));
        opts.onDelivered?.(group.name, refs.length);
        return applied;
      };
      const worker = new Worker<EventBatch>(queueNameOf(group.name), process, {
        connection: bullConnection(this.opts.redisUrl, false),
        prefix: this.opts.prefix,
        concurrency: opts.concurrency,
        lockDuration: opts.lockMs,
        stalledInterval: Math.max(1000, Math.floor(opts.lockMs / 2)),
      });
      worker.on('failed', (job, err) => log.warn({ err: err.message, jobId: job?.id, attempts: job?.attemptsMade }, 'event job failed'));
      worker.on('error', (err) => log.warn({ err: err.message }, 'event worker error'));
      this.workers.push(worker);
    }
  }

  /**
   * When the consumers fall behind, jobs of a few events each pile up, and applying them one by
   * one costs a statement each: the backlog would only grow. So a worker that takes a job also
   * takes the jobs waiting behind it (the oldest first, up to `COALESCE_MAX` events) and applies
   * them as one batch. Removing a waiting job is atomic in Redis, so each goes to one worker; if
   * this replica dies before its batch commits, those events are still unsettled in the journal
   * and the sweeper sends them again, as for any lost job.
   */
  private async withWaiting(queue: Queue<EventBatch>, refs: EventRef[]): Promise<EventRef[]> {
    const waiting = await queue.getJobs(['waiting'], 0, COALESCE_JOBS - 1, true).catch(() => []);
    if (waiting.length === 0) return refs;
    const taken: Job<EventBatch>[] = [];
    let size = refs.length;
    for (const next of waiting) {
      if (!next?.data?.refs || size + next.data.refs.length > COALESCE_MAX) break;
      taken.push(next);
      size += next.data.refs.length;
    }
    // Removed all at once; a job another worker took meanwhile fails to go, and stays its.
    const removed = await Promise.all(taken.map((job) => job.remove().then(() => true, () => false)));
    return refs.concat(...taken.filter((_, i) => removed[i]).map((job) => job.data.refs));
  }

  /**
   * Whether a group's consumers are behind: its oldest waiting job has waited longer than `ms`.
   * Events they still owe are then in the queue, not lost, and sending them again would only
   * add to the backlog.
   */
  async behind(group: string, ms: number): Promise<boolean> {
    const queue = this.queues.get(group);
    if (!queue) return false;
    return (await oldestWaiting(queue)) * 1000 > ms;
  }

  /** Waiting + active jobs per group queue (the backlog the autoscaler can follow). */
  async backlog(): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const [group, queue] of this.queues) {
      const counts = await queue.getJobCounts('waiting', 'active', 'prioritized');
      out[queueNameOf(group)] = (counts.waiting ?? 0) + (counts.active ?? 0) + (counts.prioritized ?? 0);
    }
    return out;
  }

  /** Age in seconds of the oldest waiting job per group queue. */
  async oldestJobAge(): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const [group, queue] of this.queues) out[queueNameOf(group)] = await oldestWaiting(queue);
    return out;
  }

  /** Stops the workers (in-flight jobs get `graceMs`, then are handed back), flushes, closes the queues. */
  async close(graceMs: number): Promise<void> {
    this.flush();
    await Promise.all(
      this.workers.map(async (w) => {
        if ((await within(w.close(), graceMs)) === 'timeout') await w.close(true);
      }),
    );
    await within(Promise.all(this.inflight), graceMs);
    await Promise.all([...this.queues.values()].map((q) => q.close()));
  }
}
