import Router from '@koa/router';
import type { Redis } from 'ioredis';
import Koa from 'koa';
import type { DataSource } from 'typeorm';
import type { OrderActors } from '../actors/order-actor.ts';
import type { Logger } from '../log.ts';
import { errorMiddleware } from './error-middleware.ts';
import { createHttpMetrics } from './metrics.ts';
import { orderRoutes } from './orders.routes.ts';
import { mountRoutes, type Route } from './route.ts';
import { createStatechartAssetsRouter, statechartRoutes } from './statechart.routes.ts';
import { storeRoutes } from './stores.routes.ts';
import { systemRoutes } from './system.routes.ts';

export const API_VERSION = '0.1.0';

export interface AppDeps {
  actors: OrderActors;
  db: DataSource;
  redis: Redis;
  log: Logger;
  authSecret: string;
  bodyLimit: string;
}

export interface App {
  koa: Koa;
  routes: readonly Route[];
}

/** The HTTP edge: one error middleware, metrics, and the route table (also the OpenAPI source). */
export function createApp(deps: AppDeps): App {
  const metrics = createHttpMetrics();
  const routes: Route[] = [];
  routes.push(
    ...systemRoutes({ db: deps.db, redis: deps.redis, metrics: metrics.registry, routes: () => routes, version: API_VERSION }),
    ...storeRoutes({ db: deps.db }),
    ...orderRoutes({ actors: deps.actors, db: deps.db }),
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
