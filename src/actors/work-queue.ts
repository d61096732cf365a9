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
  private pending = new Map<string, { kind: string; keys: string[]; delay: number; jobId?: string; links?: string[] }>();
  private scheduled = false;
  private inflight = new Set<Promise<unknown>>();

  constructor(private readonly opts: { redisUrl: string; prefix: string; log: Logger; cluster?: string }) {
    this.queue = new Queue<WorkJob>(WORK_QUEUE, { connection: bullConnection(opts.redisUrl, true), prefix: opts.prefix, defaultJobOptions: JOB_OPTIONS });
    this.queue.on('error', (err) => opts.log.warn({ err: err.message }, 'work queue error'));
  }

  schedule(kind: string, keys: readonly string[], dueAt?: Date): void {
    if (keys.length === 0) return;
    // Items due within the same tenth of a second share one delayed job (a timer fires at most
    // 100 ms late); items due now share one job per tick.
    const due = dueAt && dueAt.getTime() > Date.now() ? Math.ceil(dueAt.getTime() / DELAY_BUCKET_MS) * DELAY_BUCKET_MS : 0;
    const batchKey = `${kind}|${due}`;
    const entry = this.pending.get(batchKey);
    if (entry) entry.keys.push(...keys);
    else this.pending.set(batchKey, { kind, keys: [...keys], delay: due, jobId: undefined });
    const prompter = activeTraceparent();
    if (prompter) {
      const job = this.pending.get(batchKey)!;
      if ((job.links ??= []).length < MAX_LINKS) job.links.push(prompter);
    }
    if (this.scheduled) return;
    this.scheduled = true;
    // Outside the span that prompted it: the job is shared by the prompts of the moment.
    detached(() => setImmediate(() => {
      this.scheduled = false;
      const batch = [...this.pending.values()].map((b) =>
        b.delay > 0 ? { ...b, delay: Math.max(0, b.delay - Date.now()), jobId: jobIdOf(b.kind, b.keys, b.delay) } : b,
      );
      this.pending.clear();
      const adding = this.queue
        .addBulk(
          batch.map((b) => ({
            name: b.kind,
            data: { kind: b.kind, keys: b.keys, cluster: this.opts.cluster, ...(b.links ? { links: b.links } : {}) },
            opts: { delay: b.delay, jobId: b.jobId },
          })),
        )
        .catch((err: Error) => this.opts.log.warn({ err: err.message, jobs: batch.length }, 'could not enqueue work; the sweeper will find it overdue'))
        .finally(() => this.inflight.delete(adding));
      this.inflight.add(adding);
    }));
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
    await within(Promise.all(this.inflight), graceMs);
    await this.queue.close();
  }
}

const DELAY_BUCKET_MS = 100;
/** Trace contexts one job carries at most (the prompts of a busy moment may be many). */
const MAX_LINKS = 8;

/** A delayed job's id, from its items and when they are due: the same prompt is enqueued once (BullMQ ids may not contain ':'). */
function jobIdOf(kind: string, keys: readonly string[], dueAt: number): string {
  const digest = createHash('sha1').update(keys.join('\n')).digest('hex').slice(0, 16);
  return `${kind}_${dueAt}_${keys.length}_${digest}`;
}
