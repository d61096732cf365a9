import { createHash } from 'node:crypto';
import { Queue, Worker } from 'bullmq';
import type { Logger } from '../log.ts';
import { bullConnection, JOB_OPTIONS, within } from './queues.ts';
import { runWork, type WorkKind, type WorkPrompt } from './work.ts';
import { activeTraceparent, ATTR, detached, inSpan, SpanKind } from '../tracing.ts';

export const WORK_QUEUE = 'work';

/** Seconds the oldest waiting job of a queue has waited (0 when none waits). */
export async function oldestWaiting(queue: Queue): Promise<number> {
  const [job] = await queue.getJobs(['waiting'], 0, 0, true);
  return job ? Math.max(0, (Date.now() - job.timestamp) / 1000) : 0;
}

interface WorkJob {
  kind: string;
  keys: string[];
  /** The cluster that prompted it (see cluster-identity.ts). */
  cluster?: string;
  /** Trace contexts of the spans that prompted it (tracing on; a few at most): the job's span links to them. */
  links?: string[];
}

/**
 * The prompt side of durable work: a BullMQ job per batch of items, delayed until they are due
 * (timers fire through these delayed jobs). The rows in PostgreSQL stay the record; a job that is
 * lost only delays its items until the sweeper finds them overdue.
 */
export class WorkQueue implements WorkPrompt {
  readonly queue: Queue<WorkJob>;
  private worker: Worker<WorkJob> | undefined;
  private pending = new Map<string, Prompt>();
  private scheduled = false;
  /** Prompts due FAR_MS or more ahead, held up to FAR_HOLD_MS so that a second's worth share a job. */
  private later = new Map<string, Prompt>();
  private laterTimer: NodeJS.Timeout | undefined;
  private inflight = new Set<Promise<unknown>>();

  constructor(private readonly opts: { redisUrl: string; prefix: string; log: Logger; cluster?: string }) {
    this.queue = new Queue<WorkJob>(WORK_QUEUE, { connection: bullConnection(opts.redisUrl, true), prefix: opts.prefix, defaultJobOptions: JOB_OPTIONS });
    this.queue.on('error', (err) => opts.log.warn({ err: err.message }, 'work queue error'));
  }

  schedule(kind: string, keys: readonly string[], dueAt?: Date): void {
    if (keys.length === 0) return;
    const now = Date.now();
    const ahead = dueAt ? dueAt.getTime() - now : 0;
    if (ahead >= FAR_MS) {
      // Far ahead (an order's deadline, minutes away): items due within the same second share one
      // delayed job, and the prompts of FAR_HOLD_MS are enqueued together, so a busy replica adds
      // a few such jobs a second rather than one per commit. Such a timer fires at most about a
      // second late; a prompt lost to a crash meanwhile only leaves its item to the sweeper.
      this.add(this.later, kind, keys, Math.ceil(dueAt!.getTime() / FAR_BUCKET_MS) * FAR_BUCKET_MS);
      this.laterTimer ??= detached(() =>
        setTimeout(() => {
          this.laterTimer = undefined;
          this.enqueue(this.later);
        }, FAR_HOLD_MS),
      );
      return;
    }
    // Items due within the same tenth of a second share one delayed job (a timer due soon fires at
    // most 100 ms late); items due now share one job per tick.
    this.add(this.pending, kind, keys, ahead > 0 ? Math.ceil(dueAt!.getTime() / DELAY_BUCKET_MS) * DELAY_BUCKET_MS : 0);
    if (this.scheduled) return;
    this.scheduled = true;
    // Outside the span that prompted it: the job is shared by the prompts of the moment.
    detached(() => setImmediate(() => {
      this.scheduled = false;
      this.enqueue(this.pending);
    }));
  }

  private add(into: Map<string, Prompt>, kind: string, keys: readonly string[], due: number): void {
    const batchKey = `${kind}|${due}`;
    const entry = into.get(batchKey);
    if (entry) entry.keys.push(...keys);
    else into.set(batchKey, { kind, keys: [...keys], delay: due });
    const prompter = activeTraceparent();
    if (prompter) {
      const job = into.get(batchKey)!;
      if ((job.links ??= []).length < MAX_LINKS) job.links.push(prompter);
    }
  }

  /** Adds what `from` holds as jobs (one per kind and due time) and empties it. */
  private enqueue(from: Map<string, Prompt>): void {
    if (from.size === 0) return;
    const now = Date.now();
    const batch = [...from.values()].map((b) => (b.delay > 0 ? { ...b, delay: Math.max(0, b.delay - now), jobId: jobIdOf(b.kind, b.keys, b.delay) } : b));
    from.clear();
    const adding = detached(() =>
      this.queue.addBulk(
        batch.map((b) => ({
          name: b.kind,
          data: { kind: b.kind, keys: b.keys, cluster: this.opts.cluster, ...(b.links ? { links: b.links } : {}) },
          opts: { delay: b.delay, jobId: b.jobId },
        })),
      ),
    )
      .then(() => undefined)
      .catch((err: Error) => this.opts.log.warn({ err: err.message, jobs: batch.length }, 'could not enqueue work; the sweeper will find it overdue'))
      .finally(() => this.inflight.delete(adding));
    this.inflight.add(adding);
  }

  startWorker(kinds: readonly WorkKind[], opts: { concurrency: number; lockMs: number; leaseMs: number }): void {
    const byName = new Map(kinds.map((k) => [k.name, k]));
    const log = this.opts.log.child({ part: 'work' });
    this.worker = new Worker<WorkJob>(
      WORK_QUEUE,
      async (job) => {
        if (job.data.cluster && this.opts.cluster && job.data.cluster !== this.opts.cluster) {
          // Never done (nor acknowledged) here: it stays retryable for its own cluster's replicas.
          log.error({ jobCluster: job.data.cluster, cluster: this.opts.cluster }, 'a work job of another cluster reached this replica: its Redis prefix is shared');
          throw new Error(`work job of cluster ${job.data.cluster} refused by a replica of cluster ${this.opts.cluster}`);
        }
        const kind = byName.get(job.data.kind);
        if (!kind) throw new Error(`unknown work kind ${job.data.kind}`);
        const run = () => runWork(kind, job.data.keys, { leaseMs: opts.leaseMs, prompt: this, log });
        if (!job.data.links) return run();
        return inSpan(
          'work.job',
          { kind: SpanKind.CONSUMER, parent: null, links: job.data.links, attributes: { [ATTR.workKind]: kind.name, 'baedal.work.items': job.data.keys.length } },
          run,
        );
      },
      {
        connection: bullConnection(this.opts.redisUrl, false),
        prefix: this.opts.prefix,
        concurrency: opts.concurrency,
        lockDuration: opts.lockMs,
        stalledInterval: Math.max(1000, Math.floor(opts.lockMs / 2)),
      },
    );
    this.worker.on('failed', (job, err) => log.warn({ err: err.message, jobId: job?.id, kind: job?.data.kind }, 'work job failed'));
    this.worker.on('error', (err) => log.warn({ err: err.message }, 'work worker error'));
  }

  async backlog(): Promise<number> {
    const counts = await this.queue.getJobCounts('waiting', 'active', 'prioritized');
    return (counts.waiting ?? 0) + (counts.active ?? 0) + (counts.prioritized ?? 0);
  }

  async close(graceMs: number): Promise<void> {
    if (this.worker && (await within(this.worker.close(), graceMs)) === 'timeout') await this.worker.close(true);
    // The prompts still held are enqueued now, not dropped.
    clearTimeout(this.laterTimer);
    this.laterTimer = undefined;
    this.enqueue(this.later);
    this.enqueue(this.pending);
    await within(Promise.all(this.inflight), graceMs);
    await this.queue.close();
  }
}

interface Prompt {
  kind: string;
  keys: string[];
  /** When its items are due (ms since the epoch), or 0: now. */
  delay: number;
  jobId?: string;
  links?: string[];
}

const DELAY_BUCKET_MS = 100;
/** A prompt due this far ahead or more is held and bucketed by the second (see schedule). */
export const FAR_MS = 10_000;
const FAR_BUCKET_MS = 1000;
const FAR_HOLD_MS = 1000;
/** Trace contexts one job carries at most (the prompts of a busy moment may be many). */
const MAX_LINKS = 8;

/** A delayed job's id, from its items and when they are due: the same prompt is enqueued once (BullMQ ids may not contain ':'). */
function jobIdOf(kind: string, keys: readonly string[], dueAt: number): string {
  const digest = createHash('sha1').update(keys.join('\n')).digest('hex').slice(0, 16);
  return `${kind}_${dueAt}_${keys.length}_${digest}`;
}
