import type { Redis } from 'ioredis';
import type { Registry } from 'prom-client';
import type { DataSource } from 'typeorm';
import { requireStaticToken } from './auth.ts';
import { buildOpenApi } from './openapi.ts';
import { defineRoute, type Route } from './route.ts';
import { HealthSchema, ReadySchema } from './schemas.ts';

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

export function systemRoutes(deps: SystemRoutesDeps): Route[] {
  const metricsGuard = deps.metricsToken ? requireStaticToken(deps.metricsToken, '/metrics') : undefined;
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
      summary: 'Readiness: PostgreSQL and Redis are reachable; details show the payment breaker without affecting readiness.',
      tag: 'system',
      auth: false,
      responses: {
        200: { description: 'ready', schema: ReadySchema },
        503: { description: 'a dependency is unreachable (checks say which), or the process is shutting down', schema: ReadySchema },
      },
      errors: [],
      async handle(ctx) {
        const [postgres, redis] = await Promise.all([reachable(() => deps.db.query('SELECT 1')), reachable(() => deps.redis.ping())]);
        const stopping = deps.stopping?.() ?? false;
        const ok = postgres && redis && !stopping;
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
      responses: { 200: { description: 'the OpenAPI document' } },
      errors: [],
      async handle(ctx) {
        ctx.body = buildOpenApi(deps.routes(), { title: 'Baedal API', version: deps.version });
      },
    }),
  ];
}
