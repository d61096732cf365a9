import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import type { DataSource } from 'typeorm';
import type { Config } from '../config.ts';
import { createDataSource, ensureDatabase, runMigrations } from '../db/data-source.ts';
import type { Logger } from '../log.ts';
import type { PaymentGateway } from '../payment/payment-gateway.ts';
import { refundConsumer } from '../payment/refund.consumer.ts';
import { notificationsView } from '../views/notifications.view.ts';
import { dispatch, type Consumer } from './consumers.ts';
import type { OrderEventMessage } from './messages.ts';
import { createOrderActors, type OrderActors } from './order-actor.ts';
import { OutboxRelay } from './outbox-relay.ts';

export const EVENTS_QUEUE = 'order-events';

export type RuntimeConfig = Pick<
  Config,
  'DATABASE_URL' | 'REDIS_URL' | 'QUEUE_PREFIX' | 'RELAY_POLL_MS' | 'WORKER_CONCURRENCY' | 'JOB_LOCK_MS' | 'SHUTDOWN_GRACE_MS' | 'ROLE'
>;

export interface Runtime {
  db: DataSource;
  redis: Redis;
  queue: Queue<OrderEventMessage>;
  actors: OrderActors;
  relay: OutboxRelay;
  worker: Worker<OrderEventMessage> | undefined;
  consumers: readonly Consumer[];
  /** Stops taking work, drains in-flight jobs within SHUTDOWN_GRACE_MS, closes every connection. */
  close(): Promise<void>;
}

export interface RuntimeDeps {
  config: RuntimeConfig;
  log: Logger;
  payments: PaymentGateway;
  clock?: () => Date;
}

/** Connects to PostgreSQL and Redis, migrates, and starts the relay and (unless ROLE=api) the workers. */
export async function startRuntime({ config, log, payments, clock }: RuntimeDeps): Promise<Runtime> {
  await ensureDatabase(config.DATABASE_URL);
  const db = createDataSource(config.DATABASE_URL);
  await db.initialize();
  const migrated = await runMigrations(db);
  if (migrated.length > 0) log.info({ migrations: migrated }, 'database migrated');

  const redis = new Redis(config.REDIS_URL, { maxRetriesPerRequest: null });
  const queue = new Queue<OrderEventMessage>(EVENTS_QUEUE, {
    connection: redis,
    prefix: config.QUEUE_PREFIX,
    defaultJobOptions: {
      attempts: 15,
      backoff: { type: 'exponential', delay: 500 },
      removeOnComplete: { age: 3600, count: 10_000 },
      removeOnFail: { age: 7 * 24 * 3600 },
    },
  });
  const relay = new OutboxRelay({ db, queue, log: log.child({ part: 'outbox-relay' }), pollMs: config.RELAY_POLL_MS });
  const actors = createOrderActors({ db, payments, clock, onCommit: () => relay.poke() });
  const consumers: Consumer[] = [refundConsumer(payments), notificationsView()];

  let worker: Worker<OrderEventMessage> | undefined;
  // BullMQ closes only connections it created itself; the worker's blocking one is ours to close.
  let workerRedis: Redis | undefined;
  if (config.ROLE !== 'api') {
    workerRedis = redis.duplicate();
    const workerLog = log.child({ part: 'worker' });
    worker = new Worker<OrderEventMessage>(EVENTS_QUEUE, async (job) => dispatch(db, consumers, job.data), {
      connection: workerRedis,
      prefix: config.QUEUE_PREFIX,
      concurrency: config.WORKER_CONCURRENCY,
      lockDuration: config.JOB_LOCK_MS,
      stalledInterval: Math.max(1000, Math.floor(config.JOB_LOCK_MS / 2)),
    });
    worker.on('failed', (job, err) => workerLog.warn({ err, jobId: job?.id, attempts: job?.attemptsMade }, 'event job failed'));
    worker.on('error', (err) => workerLog.error({ err }, 'worker error'));
  }
  relay.start();

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      const steps: [string, () => Promise<unknown>][] = [
        ['relay', () => relay.stop()],
        ['worker', () => (worker ? closeWorker(worker, config.SHUTDOWN_GRACE_MS) : Promise.resolve())],
        ['queue', () => queue.close()],
        ['redis', () => Promise.all([redis.quit(), workerRedis?.quit()])],
        ['database', () => db.destroy()],
      ];
      for (const [name, step] of steps) {
        try {
          await step();
        } catch (err) {
          log.error({ err, step: name }, 'shutdown step failed');
        }
      }
    })());

  return { db, redis, queue, actors, relay, worker, consumers, close };
}

/** Lets in-flight jobs finish within the grace period, then forces the worker closed. */
async function closeWorker(worker: Worker, graceMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const graceful = worker.close();
  const timedOut = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), graceMs);
  });
  const outcome = await Promise.race([graceful, timedOut]);
  clearTimeout(timer);
  if (outcome === 'timeout') await worker.close(true);
}
