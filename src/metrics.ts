import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Database } from './db/pg.ts';
import type { WorkKind } from './actors/work.ts';
import { groupBacklog } from './actors/partitions.ts';
import type { BreakerState } from './payment/resilient-gateway.ts';
import { measuredAtMostEvery } from './measured.ts';

/** Gauges that query PostgreSQL or Redis measure at most this often, however often /metrics is read. */
export const GAUGE_MAX_AGE_MS = 1000;

/** The runtime's metrics; the HTTP app adds its own to the same registry. */
export interface RuntimeMetrics {
  registry: Registry;
  payments: Counter<'outcome'>;
  refunds: Counter<'reason'>;
  /** Commands by type and outcome (`ok`, or the error code that refused them). */
  commands: Counter<'command' | 'outcome'>;
  /** Writes refused by the version check: another writer (replica) moved the order first. */
  staleWrites: Counter;
  /** Events this replica's workers took from the queues and delivered to a consumer group. */
  eventsDelivered: Counter<'group'>;
  /** Events this replica applied, per partition (its share of the partitions' events). */
  eventsApplied: Counter<'partition'>;
  /** Payment gateway calls (charge, refund, lookup) as the service waits for them: retries included, breaker in front. */
  paymentDuration: Histogram<'operation' | 'outcome'>;
  /** Webhook requests carrying notifications (one message each, or an array with NOTIFY_BATCH=1). */
  notificationDelivery: Histogram<'outcome'>;
  /** Each event's time from its command's decision to the commit of the batch that applied it. */
  eventLag: Histogram;
  /** How long new commands waited for this replica's event batches to come within their lag budget. */
  commandsHeld: Histogram;
}

/** Seconds, from a millisecond to ten seconds: partner calls on a kept-alive connection up to a deadline. */
const PARTNER_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * Seconds, finer around the views' freshness target (250 ms) so that a p99 read from the buckets
 * (histogram_quantile) is within 25–50 ms of it there; up to a minute for a replica that fell behind.
 */
export const EVENT_LAG_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 10, 30, 60];

export function createRuntimeMetrics(): RuntimeMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const counter = <L extends string = never>(name: string, help: string, labelNames: readonly L[] = []) =>
    new Counter<L>({ name, help, labelNames, registers: [registry] });
  const partnerCalls = <L extends string>(name: string, help: string, labelNames: readonly L[]) =>
    new Histogram<L>({ name, help, labelNames, buckets: PARTNER_BUCKETS, registers: [registry] });
  return {
    registry,
    payments: counter('baedal_payment_attempts_total', 'Payment attempts by outcome (charged, declined, failed, unknown, orphaned, breaker-open)', ['outcome']),
    refunds: counter('baedal_refunds_total', 'Refunds completed at the gateway, by reason', ['reason']),
    commands: counter(
      'baedal_commands_total',
      'Order commands by type (place, pay, accept, …, and timer events) and outcome (ok, or the error code)',
      ['command', 'outcome'],
    ),
    staleWrites: counter(
      'baedal_stale_writes_total',
      'Order writes refused by the version check because another writer moved the order first (the step judged again)',
    ),
    eventsDelivered: counter(
      'baedal_events_delivered_total',
      "Journaled events this replica read from the partitions it owns and applied for a consumer group (each replica's share of the consuming)",
      ['group'],
    ),
    eventsApplied: counter(
      'baedal_events_applied_total',
      'Journaled events this replica applied, per event partition (it applies only the partitions it holds a lease on)',
      ['partition'],
    ),
    paymentDuration: partnerCalls(
      'baedal_payment_duration_seconds',
      'Payment gateway calls by operation (charge, refund, lookup) and outcome (ok, declined, rejected, unavailable, timeout, breaker-open), retries included',
      ['operation', 'outcome'],
    ),
    notificationDelivery: partnerCalls(
      'baedal_notification_delivery_duration_seconds',
      'Webhook requests carrying notifications, by outcome (delivered: 2xx, refused: another status, timeout, unreachable)',
      ['outcome'],
    ),
    eventLag: new Histogram({
      name: 'baedal_event_lag_seconds',
      help: "How long each journaled event took from its command's decision (its journal time) to the commit of the event batch that applied it for the consumers (the views and the notifier), on the replica that owns its partition",
      buckets: EVENT_LAG_BUCKETS,
      registers: [registry],
    }),
    commandsHeld: new Histogram({
      name: 'baedal_commands_held_seconds',
      help: "How long new commands (placements and API commands) waited because this replica's event batches ran later than EVENTS_LAG_BUDGET_MS (at most EVENTS_LAG_HOLD_MS); commands that did not wait are not counted",
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
  };
}

export interface ObservedSources {
  db: Database;
  breakerState(): BreakerState;
  kinds: readonly WorkKind[];
  /** Waiting + active jobs per queue. */
  backlog(): Promise<Record<string, number>>;
  /** Age in seconds of the oldest waiting job per queue (0 when none waits). */
  oldestJobAge(): Promise<Record<string, number>>;
  /** Event partitions this replica holds. */
  partitionsOwned(): number;
  /** The consumer group whose backlog the journal gauges show. */
  group: string;
}

/**
 * Gauges read at scrape time. A source that does not answer leaves its gauge out of that scrape.
 * Those that query PostgreSQL or Redis measure at most once per GAUGE_MAX_AGE_MS (concurrent
 * scrapes share one measure), so a flood of /metrics costs the databases nothing more.
 */
export function observe(metrics: RuntimeMetrics, sources: ObservedSources): void {
  const { registry } = metrics;
  // Each source that queries PostgreSQL or Redis, measured at most once per GAUGE_MAX_AGE_MS.
  const shared = <T>(measure: () => Promise<T>) => measuredAtMostEvery(GAUGE_MAX_AGE_MS, measure);
  const owedCounts = new Map(sources.kinds.map((kind) => [kind.name, shared(() => kind.table.countOwed())]));
  const failedEvents = shared(() =>
    sources.db.query<{ consumer: string; n: number }>('SELECT consumer, count(*)::int AS n FROM consumer_failures WHERE attempts > 0 GROUP BY consumer'),
  );
  const backlogOfGroup = shared(() => groupBacklog(sources.db, sources.group));
  const oldestJobAge = shared(() => sources.oldestJobAge());
  const queueBacklog = shared(() => sources.backlog());
  new Gauge({
    name: 'baedal_payment_breaker_state',
    help: 'Payment gateway circuit breaker: 1 for the state it is in (closed, open, half-open)',
    labelNames: ['state'] as const,
    registers: [registry],
    collect() {
      const now = sources.breakerState();
      for (const state of ['closed', 'open', 'half-open'] as const) this.set({ state }, state === now ? 1 : 0);
    },
  });
  const workGauge = (name: string, help: string, field: 'owed' | 'failing') =>
    new Gauge({
      name,
      help,
      labelNames: ['kind'] as const,
      registers: [registry],
      async collect() {
        for (const kind of sources.kinds) {
          const counts = await owedCounts.get(kind.name)!().catch(() => undefined);
          if (counts) this.set({ kind: kind.name }, counts[field]);
        }
      },
    });
  const queueGauge = (name: string, help: string, measure: () => Promise<Record<string, number>>) =>
    new Gauge({
      name,
      help,
      labelNames: ['queue'] as const,
      registers: [registry],
      async collect() {
        const byQueue = await measure().catch(() => undefined);
        if (!byQueue) return;
        for (const [queue, n] of Object.entries(byQueue)) this.set({ queue }, n);
      },
    });
  workGauge('baedal_work_owed', 'Durable work items owed (refunds, notifications, timers, payment reconciliations)', 'owed');
  workGauge('baedal_work_failing', 'Durable work items still owed after 3 or more attempts', 'failing');
  new Gauge({
    name: 'baedal_failed_events',
    help: 'Orders on which a consumer failed and whose events it still owes (GET /admin/failed-events)',
    labelNames: ['consumer'] as const,
    registers: [registry],
    async collect() {
      const rows = await failedEvents().catch(() => undefined);
      if (!rows) return;
      this.reset();
      for (const r of rows) this.set({ consumer: r.consumer }, r.n);
    },
  });
  new Gauge({
    name: 'baedal_events_unsettled',
    help: "Journaled events the consumers have not applied yet: past their partitions' positions (at most 10,000 counted per partition)",
    registers: [registry],
    async collect() {
      const backlog = await backlogOfGroup().catch(() => undefined);
      if (backlog) this.set(backlog.behind);
    },
  });
  new Gauge({
    name: 'baedal_event_partitions_owned',
    help: 'Event partitions this replica holds a lease on (and applies the events of)',
    registers: [registry],
    collect() {
      this.set(sources.partitionsOwned());
    },
  });
  queueGauge('baedal_queue_oldest_job_age_seconds', 'Age of the oldest job waiting in each BullMQ queue (how long work waits to be picked up)', oldestJobAge);
  new Gauge({
    name: 'baedal_journal_oldest_unsettled_seconds',
    help: 'Age of the oldest journaled event some consumer has not applied yet (0 when all are settled)',
    registers: [registry],
    async collect() {
      const backlog = await backlogOfGroup().catch(() => undefined);
      if (backlog) this.set(backlog.oldest ? Math.max(0, (Date.now() - backlog.oldest.getTime()) / 1000) : 0);
    },
  });
  queueGauge('baedal_queue_backlog', 'Waiting and active BullMQ jobs per queue (the backlog an autoscaler can follow)', queueBacklog);
}
