import type { Redis } from 'ioredis';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { DataSource } from 'typeorm';
import { measuredAtMostEvery } from '../measured.ts';
import { requireStaticToken } from './auth.ts';
import { cacheable, sendCacheable, type Cacheable } from './cacheable.ts';
import { buildOpenApi } from './openapi.ts';
import { defineRoute, type Route } from './route.ts';
import { HealthSchema, OpenApiDocumentSchema, ReadySchema } from './answer-schemas.ts';

async function reachable(check: () => Promise<unknown>, timeoutMs = 2000): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), timeoutMs);
  });
  try {
    return await Promise.race([check().then(() => true), timeout]);
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}

export interface SystemRoutesDeps {
  db: DataSource;
  redis: Redis;
  metrics: Registry;
  /** When set, /metrics needs it as a Bearer token; when unset /metrics is open (cluster network only). */
  metricsToken?: string;
  routes: () => readonly Route[];
  version: string;
  /** Payment circuit breaker, shown in /readyz details (it does not decide readiness). */
  breakerState: () => 'closed' | 'open' | 'half-open';
  /** True once the process is shutting down: readiness turns false first, so traffic moves away. */
  stopping?: () => boolean;
}

/** Readiness measures PostgreSQL and Redis at most this often; callers in between share the measure. */
export const READINESS_MAX_AGE_MS = 1000;

interface Readiness {
  postgres: boolean;
  redis: boolean;
  stopping: boolean;
  ok: boolean;
}

/**
 * Readiness as metrics too: `baedal_ready` (1 or 0, measured at scrape time as /readyz measures
 * it) and `baedal_readiness_changes_total`, every change that a probe or a scrape saw. The counter
 * catches a pod that flaps between two scrapes, which the gauge alone would miss.
 */
function withReadinessMetrics(registry: Registry, measure: () => Promise<Readiness>): () => Promise<Readiness> {
  let last: boolean | undefined;
  const changes = new Counter({
    name: 'baedal_readiness_changes_total',
    help: 'Times readiness (GET /readyz) changed between ready and not ready, as probes and scrapes saw it',
    registers: [registry],
    // Measured before it is read, so a scrape that sees a change counts it in the same answer.
    async collect() {
      await readiness();
    },
  });
  // The first measure sets the state without counting a change.
  async function readiness(): Promise<Readiness> {
    const now = await measure();
    if (last !== undefined && last !== now.ok) changes.inc();
    last = now.ok;
    return now;
  }
  new Gauge({
    name: 'baedal_ready',
    help: 'Readiness as GET /readyz answers it: 1 when PostgreSQL and Redis are reachable and the process is not shutting down',
    registers: [registry],
    async collect() {
      this.set((await readiness()).ok ? 1 : 0);
    },
  });
  return readiness;
}

export function systemRoutes(deps: SystemRoutesDeps): Route[] {
  const metricsGuard = deps.metricsToken ? requireStaticToken(deps.metricsToken, '/metrics') : undefined;
  const dependencies = measuredAtMostEvery(READINESS_MAX_AGE_MS, async () => {
    const [postgres, redis] = await Promise.all([reachable(() => deps.db.query('SELECT 1')), reachable(() => deps.redis.ping())]);
    return { postgres, redis };
  });
  const readiness = withReadinessMetrics(deps.metrics, async () => {
    const { postgres, redis } = await dependencies();
    // Read live, not measured: shutting down must turn readiness off at once.
    const stopping = deps.stopping?.() ?? false;
    return { postgres, redis, stopping, ok: postgres && redis && !stopping };
  });
  // Built on the first request, once the route table is complete, and kept: it changes only with a deploy.
  let document: Cacheable | undefined;
  return [
    defineRoute({
      method: 'get',
      path: '/healthz',
      summary: 'Liveness: the process is up.',
      tag: 'system',
      auth: false,
      responses: { 200: { description: 'up', schema: HealthSchema } },
      errors: [],
      async handle(ctx) {
        ctx.body = { status: 'ok' };
      },
    }),
    defineRoute({
      method: 'get',
      path: '/readyz',
      summary:
        'Readiness: PostgreSQL and Redis are reachable (measured at most once a second, shared by concurrent callers); details show the payment breaker without affecting readiness.',
      tag: 'system',
      auth: false,
      responses: {
        200: { description: 'ready', schema: ReadySchema },
        503: { description: 'a dependency is unreachable (checks say which), or the process is shutting down', schema: ReadySchema },
      },
      errors: [],
      async handle(ctx) {
        const { postgres, redis, stopping, ok } = await readiness();
        ctx.status = ok ? 200 : 503;
        ctx.body = {
          status: stopping ? 'stopping' : ok ? 'ready' : 'unavailable',
          checks: { postgres, redis },
          details: { paymentBreaker: deps.breakerState() },
        };
      },
    }),
    defineRoute({
      method: 'get',
      path: '/metrics',
      summary: 'Prometheus metrics; when METRICS_TOKEN is set, only with `Authorization: Bearer <METRICS_TOKEN>`.',
      tag: 'system',
      auth: false,
      responses: { 200: { description: 'metrics in the Prometheus text format', contentType: 'text/plain' } },
      errors: deps.metricsToken ? [401] : [],
      async handle(ctx) {
        if (metricsGuard) await metricsGuard(ctx, async () => undefined);
        ctx.type = deps.metrics.contentType;
        ctx.body = await deps.metrics.metrics();
      },
    }),
    defineRoute({
      method: 'get',
      path: '/openapi.json',
      summary: 'This API described as OpenAPI 3.1, generated from the schemas that validate requests.',
      tag: 'system',
      auth: false,
      conditional: true,
      responses: { 200: { description: 'the OpenAPI document', schema: OpenApiDocumentSchema } },
      errors: [],
      async handle(ctx) {
        document ??= cacheable(JSON.stringify(buildOpenApi(deps.routes(), { title: 'Baedal API', version: deps.version })));
        sendCacheable(ctx, 'application/json; charset=utf-8', document);
      },
    }),
  ];
}
