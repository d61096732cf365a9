import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import type { Database } from './db/pg.ts';
import type { WorkKind } from './actors/work.ts';
import type { BreakerState } from './payment/resilient-gateway.ts';

/** The runtime's metrics; the HTTP app adds its own to the same registry. */
export interface RuntimeMetrics {
  registry: Registry;
  payments: Counter<'outcome'>;
  refunds: Counter<'reason'>;
}

export function createRuntimeMetrics(): RuntimeMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return {
    registry,
    payments: new Counter({
      name: 'baedal_payment_attempts_total',
      help: 'Payment attempts by outcome (charged, declined, failed, unknown, orphaned, breaker-open)',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
    refunds: new Counter({
      name: 'baedal_refunds_total',
      help: 'Refunds completed at the gateway, by reason',
      labelNames: ['reason'] as const,
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
}

/** Gauges read at scrape time. A source that does not answer leaves its gauge out of that scrape. */
export function observe(metrics: RuntimeMetrics, sources: ObservedSources): void {
  const { registry } = metrics;
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
          const counts = await kind.table.countOwed().catch(() => undefined);
          if (counts) this.set({ kind: kind.name }, counts[field]);
        }
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
      const rows = await sources.db
        .query<{ consumer: string; n: number }>('SELECT consumer, count(*)::int AS n FROM consumer_failures GROUP BY consumer')
        .catch(() => undefined);
      if (!rows) return;
      this.reset();
      for (const r of rows) this.set({ consumer: r.consumer }, r.n);
    },
  });
  new Gauge({
    name: 'baedal_events_unsettled',
    help: 'Journaled events not yet applied by every consumer (or not yet confirmed so by the sweeper)',
    registers: [registry],
    async collect() {
      const [row] = await sources.db.query<{ n: number }>('SELECT count(*)::int AS n FROM order_journal WHERE settled_at IS NULL').catch(() => []);
      if (row) this.set(row.n);
    },
  });
  new Gauge({
    name: 'baedal_queue_backlog',
    help: 'Waiting and active BullMQ jobs per queue (the backlog an autoscaler can follow)',
    labelNames: ['queue'] as const,
    registers: [registry],
    async collect() {
      const backlog = await sources.backlog().catch(() => undefined);
      if (!backlog) return;
      for (const [queue, n] of Object.entries(backlog)) this.set({ queue }, n);
    },
  });
}
