import { ForbiddenError } from '../errors.ts';
import type { Database } from '../db/pg.ts';
import { availableDeliveries } from '../views/deliveries.view.ts';
import type { ViewStatusReader } from '../views/status.ts';
import { defineRoute, type Route } from './route.ts';
import { DeliveriesQuery } from './schemas.ts';
import { DeliveriesSchema } from './answer-schemas.ts';
import { answerFromView, VIEW_HEADERS } from './views.routes.ts';

export function deliveryRoutes(deps: { pg: Database; status: ViewStatusReader }): Route[] {
  return [
    defineRoute({
      method: 'get',
      path: '/deliveries',
      summary:
        'Cooked orders waiting for a rider in an area, oldest first: order id, store, area, items count, cooked at (no customer data). Riders (and admins) only. A read model: it may trail a pick by the lag in X-View-Lag-Ms; the pick itself is decided by the order.',
      tag: 'views',
      auth: true,
      query: DeliveriesQuery,
      responses: { 200: { description: 'deliveries available', schema: DeliveriesSchema, headers: VIEW_HEADERS } },
      errors: [400, 401, 403],
      async handle(ctx, { query, principal }) {
        if (principal.role !== 'rider' && principal.role !== 'admin') {
          throw new ForbiddenError('only riders see the deliveries available', { role: principal.role });
        }
        await answerFromView(ctx, deps.status, 'deliveries', await availableDeliveries(deps.pg, query.area, query.limit));
      },
    }),
  ];
}
