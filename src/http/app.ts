import Router from '@koa/router';
import Koa from 'koa';
import type { Redis } from 'ioredis';
import type { Counter, Registry } from 'prom-client';
import type { DataSource } from 'typeorm';
import type { AnyConsumer } from '../actors/consumers/types.ts';
import type { EventBus } from '../actors/event-bus.ts';
import type { OrderActors } from '../actors/order-actor.ts';
import type { WorkQueue } from '../actors/work-queue.ts';
import type { WorkKind } from '../actors/work.ts';
import type { Database } from '../db/pg.ts';
import type { OrderMachines } from '../machines/order/registry.ts';
import type { ResilientGateway } from '../payment/resilient-gateway.ts';
import type { Config } from '../config.ts';
import type { Logger } from '../log.ts';
import { viewsAmong } from '../views/registry.ts';
import { registerViewMetrics, viewStatusReader } from '../views/status.ts';
import { errorMiddleware, requestContext } from './error-middleware.ts';
import { createHttpMetrics } from './metrics.ts';
import { adminRoutes } from './admin.routes.ts';
import { deliveryRoutes } from './deliveries.routes.ts';
import { orderRoutes } from './orders.routes.ts';
import { addressRateLimit, rateLimit } from './rate-limit.ts';
import { mountRoutes, ROUTER_OPTIONS, type Route } from './route.ts';
import { statechartRoutes } from './statechart.routes.ts';
import { storeRoutes } from './stores.routes.ts';
import type { MenuLookup } from '../catalog/pricing.ts';
import { systemRoutes } from './system.routes.ts';
import { viewRoutes } from './views.routes.ts';

export const API_VERSION = '0.1.0';

/** The settings of the HTTP edge, as read from the configuration. */
export interface AppSettings {
  authSecret: string;
  bodyLimit: string;
  /** When set, tokens must carry this `iss`. */
  authIssuer?: string;
  /** When set, tokens must carry this `aud`. */
  authAudience?: string;
  /** A token's `exp` may be at most this far ahead; 24 h when absent. */
  authMaxTtlSeconds?: number;
  /** Requests per minute per token, for reads and for writes; absent or 0: no limit. */
  rateLimitPerMin?: number;
  /** When set, GET /metrics needs `Authorization: Bearer <metricsToken>`. */
  metricsToken?: string;
  /** Requests per minute per client address without an accepted credential; absent or 0: no limit. */
  publicRateLimitPerMin?: number;
  /** Proxies whose X-Forwarded-For entries are trusted for the client address; absent or 0: the socket's peer. */
  trustedProxyHops?: number;
}

/**
 * What the HTTP edge needs of the running service. The composition root (src/app.ts) builds it;
 * the edge names only the parts, so it never imports the module that wires them.
 */
export interface AppParts {
  actors: OrderActors;
  db: DataSource;
  pg: Database;
  redis: Redis;
  payments: Pick<ResilientGateway, 'breakerState'>;
  bus: EventBus;
  work: WorkQueue;
  kinds: readonly WorkKind[];
  consumers: readonly AnyConsumer[];
  machines?: OrderMachines;
  /** The menu lookup orders are priced with: a menu replaced here is forgotten by its cache. */
  menus?: Pick<MenuLookup, 'forget'>;
  /** The runtime's registry (the app adds its HTTP metrics to it) and its command counter. */
  metrics?: { registry: Registry; commands?: Pick<Counter<'command' | 'outcome'>, 'inc'> };
}

export type AppDeps = AppSettings &
  AppParts & {
    log: Logger;
    /** True once the process is shutting down (readiness turns false first). */
    stopping?: () => boolean;
  };

export function appSettings(config: Config): AppSettings {
  return {
    authSecret: config.AUTH_SECRET,
    bodyLimit: config.BODY_LIMIT,
    authIssuer: config.AUTH_ISSUER,
    authAudience: config.AUTH_AUDIENCE,
    authMaxTtlSeconds: config.AUTH_MAX_TTL_SECONDS,
    rateLimitPerMin: config.RATE_LIMIT_PER_MIN,
    metricsToken: config.METRICS_TOKEN,
    publicRateLimitPerMin: config.PUBLIC_RATE_LIMIT_PER_MIN,
    trustedProxyHops: config.TRUSTED_PROXY_HOPS,
  };
}

/**
 * Once the process is shutting down, every answer says `Connection: close`, so Node closes its
 * connection after it: a client keeping a connection busy cannot hold the shutdown open, and it
 * learns to send its next request elsewhere. Outermost, so it applies to every answer, errors too.
 */
function closeWhenStopping(stopping: () => boolean): Koa.Middleware {
  return async (ctx, next) => {
    try {
      await next();
    } finally {
      if (stopping()) ctx.set('Connection', 'close');
    }
  };
}

export interface App {
  koa: Koa;
  routes: readonly Route[];
}

/** The HTTP edge: request ids, metrics, one error middleware, and the route table (also the OpenAPI source). */
export function createApp(deps: AppDeps): App {
  const metrics = createHttpMetrics(deps.metrics?.registry);
  const viewStatus = viewStatusReader(deps.pg, viewsAmong(deps.consumers).map((v) => v.name));
  registerViewMetrics(metrics.registry, viewStatus);
  const routes: Route[] = [];
  routes.push(
    ...systemRoutes({
      db: deps.db,
      redis: deps.redis,
      metrics: metrics.registry,
      metricsToken: deps.metricsToken,
      routes: () => routes,
      version: API_VERSION,
      breakerState: () => deps.payments.breakerState(),
      stopping: deps.stopping,
    }),
    ...storeRoutes({ db: deps.db, replaced: (storeId) => deps.menus?.forget?.(storeId) }),
    ...orderRoutes({ actors: deps.actors, pg: deps.pg, commands: deps.metrics?.commands }),
    ...deliveryRoutes({ pg: deps.pg, status: viewStatus }),
    ...viewRoutes({ pg: deps.pg, status: viewStatus }),
    ...adminRoutes({ pg: deps.pg, bus: deps.bus, kinds: deps.kinds, consumers: deps.consumers, prompt: deps.work }),
    ...statechartRoutes({ db: deps.pg, machines: deps.machines }),
  );
  const router = new Router(ROUTER_OPTIONS);
  const perMinute = deps.rateLimitPerMin ?? 0;
  const publicPerMinute = deps.publicRateLimitPerMin ?? 0;
  const limitLog = deps.log.child({ part: 'rate-limit' });
  const byAddress = publicPerMinute > 0 ? addressRateLimit({ redis: deps.redis, log: limitLog, perMinute: publicPerMinute }) : undefined;
  mountRoutes(router, routes, {
    authSecret: deps.authSecret,
    bodyLimit: deps.bodyLimit,
    tokens: { issuer: deps.authIssuer, audience: deps.authAudience, maxTtlSeconds: deps.authMaxTtlSeconds },
    afterAuth: perMinute > 0 ? rateLimit({ redis: deps.redis, log: limitLog, perMinute }) : undefined,
  });

  // The client address (ctx.ip): the X-Forwarded-For entry added by the outermost trusted proxy, or the socket's peer.
  const hops = deps.trustedProxyHops ?? 0;
  const koa = new Koa({ proxy: hops > 0, maxIpsCount: hops });
  koa.on('error', (err: unknown) => deps.log.debug({ err }, 'koa error event'));
  if (deps.stopping) koa.use(closeWhenStopping(deps.stopping));
  koa.use(requestContext());
  // Outside the error middleware, so it counts the status the client gets.
  koa.use(metrics.middleware);
  koa.use(errorMiddleware(deps.log));
  if (byAddress) koa.use(byAddress.middleware);
  koa.use(router.routes());
  koa.use(router.allowedMethods());
  return { koa, routes };
}
