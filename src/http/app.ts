import Router from '@koa/router';
import Koa from 'koa';
import type { Runtime } from '../actors/runtime.ts';
import type { Logger } from '../log.ts';
import { errorMiddleware } from './error-middleware.ts';
import { createHttpMetrics } from './metrics.ts';
import { adminRoutes } from './admin.routes.ts';
import { deliveryRoutes } from './deliveries.routes.ts';
import { orderRoutes } from './orders.routes.ts';
import { mountRoutes, type Route } from './route.ts';
import { createStatechartAssetsRouter, statechartRoutes } from './statechart.routes.ts';
import { storeRoutes } from './stores.routes.ts';
import { systemRoutes } from './system.routes.ts';

export const API_VERSION = '0.1.0';

export type AppDeps = Pick<Runtime, 'actors' | 'db' | 'pg' | 'redis' | 'payments' | 'bus' | 'work' | 'kinds' | 'consumers'> & {
  /** The runtime's registry; the app adds its HTTP metrics to it. */
  metrics?: Runtime['metrics'];
  log: Logger;
  authSecret: string;
  bodyLimit: string;
};

export interface App {
  koa: Koa;
  routes: readonly Route[];
}

/** The HTTP edge: one error middleware, metrics, and the route table (also the OpenAPI source). */
export function createApp(deps: AppDeps): App {
  const metrics = createHttpMetrics(deps.metrics?.registry);
  const routes: Route[] = [];
  routes.push(
    ...systemRoutes({
      db: deps.db,
      redis: deps.redis,
      metrics: metrics.registry,
      routes: () => routes,
      version: API_VERSION,
      breakerState: () => deps.payments.breakerState(),
    }),
    ...storeRoutes({ db: deps.db }),
    ...orderRoutes({ actors: deps.actors, pg: deps.pg }),
    ...deliveryRoutes({ pg: deps.pg }),
    ...adminRoutes({ pg: deps.pg, bus: deps.bus, kinds: deps.kinds, consumers: deps.consumers, prompt: deps.work }),
    ...statechartRoutes(),
  );
  const router = new Router();
  mountRoutes(router, routes, { authSecret: deps.authSecret, bodyLimit: deps.bodyLimit });

  const koa = new Koa({ proxy: true });
  koa.on('error', (err: unknown) => deps.log.debug({ err }, 'koa error event'));
  koa.use(errorMiddleware(deps.log));
  koa.use(metrics.middleware);
  koa.use(router.routes());
  koa.use(router.allowedMethods());
  koa.use(createStatechartAssetsRouter().routes());
  return { koa, routes };
}
