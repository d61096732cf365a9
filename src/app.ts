import type { Redis } from 'ioredis';
import type { DataSource } from 'typeorm';
import type { Config } from './config.ts';
import type { Database } from './db/pg.ts';
import type { Logger } from './log.ts';
import { createRuntimeMetrics, observe, type RuntimeMetrics } from './metrics.ts';
import { DeliveredMarks } from './notifications/delivered-marks.ts';
import { notificationDelivery } from './notifications/delivery.work.ts';
import { notifierConsumer } from './notifications/notifier.consumer.ts';
import { notificationTransport, sendAfterCommit } from './notifications/sender.ts';
import type { NotificationTransport } from './notifications/transports.ts';
import { chargeGuard } from './payment/charge-guard.ts';
import { createPay } from './payment/pay.ts';
import type { PaymentGateway } from './payment/payment-gateway.ts';
import { handOverAbandoned, paymentReconciliation } from './payment/reconcile.work.ts';
import { refundWork } from './payment/refund.work.ts';
import { createResilientGateway, type ResilientGateway } from './payment/resilient-gateway.ts';
import { viewConsumers } from './views/registry.ts';
import type { AnyConsumer, ConsumerGroup } from './actors/consumers/types.ts';
import { connectPostgres, connectRedis, type PostgresConfig } from './actors/connect.ts';
import { EventBus } from './actors/event-bus.ts';
import { AdmissionGate } from './actors/admission.ts';
import { oldestWaiting } from './actors/work-queue.ts';
import { ensurePartitions, EVENTS_GROUP } from './actors/partitions.ts';
import { createOrderActors, type OrderActors } from './actors/order-actor.ts';
import { createOrderSteps } from './actors/order-step.ts';
import { OrderStore } from './actors/order-store.ts';
import { ReplicaLease } from './actors/replica-lease.ts';
import { runShutdownSteps } from './actors/shutdown-steps.ts';
import { batchedMenuLookup, cachedMenuLookup, type MenuLookup } from './catalog/pricing.ts';
import { Sweeper } from './actors/sweeper.ts';
import { timerWork } from './actors/timers.work.ts';
import { WorkQueue } from './actors/work-queue.ts';
import type { WorkKind } from './actors/work.ts';
import { orderMachines, type OrderMachines } from './machines/order/registry.ts';

/** The settings the runtime reads: connecting to PostgreSQL (connect.ts), and the rest. */
export type RuntimeConfig = PostgresConfig &
  Pick<
    Config,
    | 'ORDER_CACHE_SIZE'
    | 'GROUP_COMMIT_MAX'
    | 'GROUP_COMMIT_IN_FLIGHT'
    | 'GROUP_COMMIT_SPACING_MS'
    | 'REDIS_URL'
    | 'QUEUE_PREFIX'
    | 'WORKER_CONCURRENCY'
    | 'JOB_LOCK_MS'
    | 'SHUTDOWN_TIMEOUT_MS'
    | 'ROLE'
    | 'PAYMENT_TIMEOUT_MS'
    | 'PAYMENT_RETRIES'
    | 'PAYMENT_BREAKER_FAILURES'
    | 'PAYMENT_BREAKER_HALF_OPEN_MS'
    | 'PAYMENT_RECONCILE_AFTER_MS'
    | 'PAYMENT_SETTLE_MS'
    | 'REPLICA_LEASE_MS'
    | 'REFUND_RETRY_MAX_MS'
    | 'NOTIFY_WEBHOOK_URL'
    | 'NOTIFY_WEBHOOK_SECRET'
    | 'NOTIFY_TIMEOUT_MS'
    | 'NOTIFY_RETRY_MAX_MS'
    | 'NOTIFY_CONCURRENCY'
    | 'NOTIFY_BATCH'
    | 'NOTIFY_BATCH_MAX'
    | 'STORE_ACCEPT_TIMEOUT_MS'
    | 'UNPAID_ORDER_TIMEOUT_MS'
    | 'EVENT_PARTITIONS'
    | 'EVENTS_LEASE_MS'
    | 'EVENTS_POLL_MS'
    | 'MAX_UNPAID_ORDERS_PER_CUSTOMER'
    | 'SWEEP_INTERVAL_MS'
    | 'WORK_LEASE_MS'
    | 'EVENTS_LINGER_MS'
    | 'EVENTS_REMOTE_WAKE_MS'
    | 'EVENTS_LAG_BUDGET_MS'
    | 'EVENTS_LAG_HOLD_MS'
    | 'NOTIFICATION_RETENTION_DAYS'
    | 'IDEMPOTENCY_KEY_TTL_HOURS'
  >;

export interface Runtime {
  /** TypeORM's DataSource (migrations, ad-hoc queries). */
  db: DataSource;
  /** The `pg` pool under it, for the hot paths. */
  pg: Database;
  /** For health checks and rate limits; BullMQ keeps connections of its own. */
  redis: Redis;
  payments: ResilientGateway;
  actors: OrderActors;
  bus: EventBus;
  work: WorkQueue;
  consumers: readonly AnyConsumer[];
  kinds: readonly WorkKind[];
  sweeper: Sweeper;
  metrics: RuntimeMetrics;
  /** The order machine versions this runtime runs. */
  machines: OrderMachines;
  /** How orders are priced (a cache of the menus' lines; see cachedMenuLookup). */
  menus: MenuLookup;
  /**
   * Stops taking work, lets in-flight jobs finish within `graceMs` (default SHUTDOWN_TIMEOUT_MS;
   * a job still running then is handed back to BullMQ), and closes every connection. Idempotent.
   */
  close(graceMs?: number): Promise<void>;
}

export interface RuntimeDeps {
  config: RuntimeConfig;
  log: Logger;
  /** The payment gateway as it is; the runtime wraps it in the circuit breaker. */
  payments: PaymentGateway;
  clock?: () => Date;
  /** Replaces the transport NOTIFY_WEBHOOK_URL selects (tests). */
  transport?: NotificationTransport;
  /** The order machine versions to run (the process's, `orderMachines()`, when absent). */
  machines?: OrderMachines;
}

/** Connects to PostgreSQL and Redis, migrates, and starts (unless ROLE=api) the workers and the sweeper. */
export async function startRuntime({ config, log, payments: gateway, clock, transport, machines = orderMachines() }: RuntimeDeps): Promise<Runtime> {
  const { db, pg, whileStarting } = await connectPostgres(config, log);
  const metrics = createRuntimeMetrics();

  const breakerLog = log.child({ part: 'payment-breaker' });
  const payments = createResilientGateway(gateway, {
    timeoutMs: config.PAYMENT_TIMEOUT_MS,
    retries: config.PAYMENT_RETRIES,
    breakerFailures: config.PAYMENT_BREAKER_FAILURES,
    halfOpenAfterMs: config.PAYMENT_BREAKER_HALF_OPEN_MS,
    onStateChange: (state) => breakerLog.warn({ state }, `payment circuit breaker is ${state}`),
    onCall: (operation, outcome, seconds) => metrics.paymentDuration.observe({ operation, outcome }, seconds),
  });

  const { redis, clusterId } = await connectRedis(config, log, { db, pg, whileStarting });

  const work = new WorkQueue({ redisUrl: config.REDIS_URL, prefix: config.QUEUE_PREFIX, log, cluster: clusterId });
  const { notify, own: ownTransport } = notificationTransport(config, log, {
    transport,
    onRequest: (outcome, seconds) => metrics.notificationDelivery.observe({ outcome }, seconds),
  });
  const delivered = new DeliveredMarks(pg, notify.name);
  const notifications = notificationDelivery(pg, notify, config.NOTIFY_RETRY_MAX_MS, delivered);
  const sendNow = sendAfterCommit(notifications, { prompt: work, log, maxSending: config.WORKER_CONCURRENCY * 4 });
  // One queue and, per batch, one transaction for every consumer (each falls back to its own on failure).
  const group: ConsumerGroup = { name: EVENTS_GROUP, consumers: [notifierConsumer(sendNow, config.WORK_LEASE_MS), ...viewConsumers(pg)] };
  const consumers: AnyConsumer[] = [...group.consumers];
  await whileStarting(() => ensurePartitions(pg, config.EVENT_PARTITIONS, [group.name]));
  // New commands wait while this replica's event batches run late (src/actors/admission.ts).
  const admission = new AdmissionGate(config.EVENTS_LAG_BUDGET_MS, config.EVENTS_LAG_HOLD_MS, (s) => metrics.commandsHeld.observe(s));
  const bus = new EventBus({
    db: pg,
    cluster: clusterId,
    redisUrl: config.REDIS_URL,
    prefix: config.QUEUE_PREFIX,
    group,
    partitions: config.EVENT_PARTITIONS,
    lingerMs: config.EVENTS_LINGER_MS,
    remoteWakeMs: config.EVENTS_REMOTE_WAKE_MS,
    leaseMs: config.EVENTS_LEASE_MS,
    renewMs: Math.max(200, Math.floor(config.EVENTS_LEASE_MS / 5)),
    pollMs: config.EVENTS_POLL_MS,
    consumes: config.ROLE !== 'api',
    log: log.child({ part: 'events' }),
    onApplied: (part, events) => {
      metrics.eventsApplied.inc({ partition: String(part) }, events);
      metrics.eventsDelivered.inc({ group: group.name }, events);
    },
    // Notifications this replica delivered are marked so in its next event batch's statement.
    carry: () => delivered.take(),
    onIdle: () => delivered.flush(),
    onLate: (ms) => admission.note(ms),
    onEventsApplied: (decidedAt, writtenAt) => {
      for (const at of decidedAt) metrics.eventLag.observe(Math.max(0, writtenAt - at) / 1000);
    },
    // Lateness against the clock the events' times are taken from.
    ...(clock && { now: () => clock().getTime() }),
  });
  delivered.carrierBusy = () => !bus.idle;

  // Menus are read through a cache: a placement is written only if the lines it was priced from still hold.
  const menus = cachedMenuLookup(batchedMenuLookup(pg, { maxBatch: config.GROUP_COMMIT_MAX, maxInFlight: config.GROUP_COMMIT_IN_FLIGHT }));
  const store = new OrderStore(pg, {
    cacheSize: config.ORDER_CACHE_SIZE,
    partitions: config.EVENT_PARTITIONS,
    maxBatch: config.GROUP_COMMIT_MAX,
    maxInFlight: config.GROUP_COMMIT_IN_FLIGHT,
    spacingMs: config.GROUP_COMMIT_SPACING_MS,
    maxUnpaidOrders: config.MAX_UNPAID_ORDERS_PER_CUSTOMER,
    onStaleWrite: () => metrics.staleWrites.inc(),
    // A pay's charge is written only together with its attempt (src/payment/charge-guard.ts).
    guard: chargeGuard,
  }, machines);
  const steps = createOrderSteps({
    db: pg,
    store,
    menus,
    clock,
    delays: { STORE_ACCEPT_TIMEOUT_MS: config.STORE_ACCEPT_TIMEOUT_MS, UNPAID_ORDER_TIMEOUT_MS: config.UNPAID_ORDER_TIMEOUT_MS },
    publish: (ref) => bus.publish(ref),
    prompt: work,
  });
  // This replica's lease: payment attempts name it, and each renewal hands the attempts of replicas
  // whose lease lapsed to reconciliation.
  const replica = new ReplicaLease({
    db: pg,
    leaseMs: config.REPLICA_LEASE_MS,
    log: log.child({ part: 'replica' }),
    onRenewed: async () => {
      const keys = await handOverAbandoned(pg, work);
      if (keys.length > 0) log.warn({ attempts: keys }, 'payments of a replica that is gone handed to reconciliation');
    },
  });
  await whileStarting(() => replica.start());
  const pay = createPay({
    steps,
    payments,
    prompt: work,
    batch: { maxBatch: config.GROUP_COMMIT_MAX, maxInFlight: config.GROUP_COMMIT_IN_FLIGHT },
    reconcileAfterMs: config.PAYMENT_RECONCILE_AFTER_MS,
    replica: replica.id,
    // A reconciliation holds an attempt for one gateway lookup at most.
    waitForReconciliationMs: config.PAYMENT_TIMEOUT_MS + 1000,
    onOutcome: (outcome) => metrics.payments.inc({ outcome }),
  });
  const actors = createOrderActors(steps, pay, () => admission.admit());

  const kinds: WorkKind[] = [
    refundWork(pg, payments, config.REFUND_RETRY_MAX_MS, (row) => metrics.refunds.inc({ reason: row.reason })),
    paymentReconciliation(pg, payments, work, steps, { settleMs: config.PAYMENT_SETTLE_MS, retryMaxMs: config.REFUND_RETRY_MAX_MS }),
    notifications,
    timerWork(pg, async (timer) => {
      const outcome = await actors.fireTimer(timer);
      metrics.commands.inc({ command: timer.event, outcome: outcome === 'fired' ? 'ok' : 'moved-on' });
      return outcome;
    }),
  ];
  const sweeper = new Sweeper({
    db: pg,
    kinds,
    prompt: work,
    log: log.child({ part: 'sweeper' }),
    intervalMs: config.SWEEP_INTERVAL_MS,
    workGraceMs: Math.min(5000, config.WORK_LEASE_MS / 2),
    leaseMs: config.WORK_LEASE_MS,
    retention: { notificationDays: config.NOTIFICATION_RETENTION_DAYS, idempotencyKeyHours: config.IDEMPOTENCY_KEY_TTL_HOURS, closedTimerHours: 24 },
  });
  observe(metrics, {
    db: pg,
    breakerState: () => payments.breakerState(),
    kinds,
    backlog: async () => ({ ...(await bus.backlog()), work: await work.backlog() }),
    oldestJobAge: async () => ({ work: await oldestWaiting(work.queue) }),
    partitionsOwned: () => bus.owned().length,
    group: group.name,
  });

  await bus.start();
  if (config.ROLE !== 'api') {
    work.startWorker(kinds, { concurrency: config.WORKER_CONCURRENCY, lockMs: config.JOB_LOCK_MS, leaseMs: config.WORK_LEASE_MS });
    sweeper.start();
  }

  let closing: Promise<void> | undefined;
  const close = (graceMs = config.SHUTDOWN_TIMEOUT_MS) =>
    (closing ??= (async () => {
      const steps: [string, () => Promise<unknown>][] = [
        // Payments still waiting for the gateway (their requests were cut) are reconciled at once,
        // by another replica, and the lease goes: nothing of this replica is left in flight.
        [
          'payments',
          async () => {
            const keys = await pay.handOver();
            if (keys.length > 0) log.warn({ attempts: keys }, 'payments in flight at shutdown handed to reconciliation');
            await replica.end();
          },
        ],
        ['sweeper', () => sweeper.stop()],
        // Commands held for the event batches go on (the bus below stops reading).
        ['admission', async () => admission.close()],
        // Both drain at once, so the grace period is spent once.
        ['workers', () => Promise.all([bus.close(graceMs), work.close(graceMs)])],
        // Webhook requests on their way finish (each within NOTIFY_TIMEOUT_MS); what is not sent stays owed.
        ['notifications', async () => {
          await (ownTransport?.close?.() ?? Promise.resolve());
          await delivered.close();
        }],
        ['redis', () => redis.quit().catch(() => redis.disconnect())],
        ['database', () => db.destroy()],
      ];
      await runShutdownSteps(steps, graceMs, log);
    })());

  return { db, pg, redis, payments, actors, bus, work, consumers, kinds, sweeper, metrics, machines, menus, close };
}
