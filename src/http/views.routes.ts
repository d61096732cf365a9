import type { Context } from 'koa';
import { z } from 'zod';
import type { Principal, Role } from '../actors/principal.ts';
import type { Database } from '../db/pg.ts';
import { ForbiddenError } from '../errors.ts';
import { customerOrders } from '../views/customer-orders.view.ts';
import { riderDeliveryCount } from '../views/rider-delivery-counts.view.ts';
import type { ViewStatusReader } from '../views/status.ts';
import { storeFoodCounts } from '../views/store-food-counts.view.ts';
import { STORE_ORDER_STATUSES, storeOrders } from '../views/store-orders.view.ts';
import { defineRoute, type Route } from './route.ts';
import { idString, LimitQuery, ORDER_STATUSES } from './schemas.ts';

const Timestamp = z.string().describe('ISO 8601 timestamp');
const Version = z.number().int().describe("the seq of the last event the view applied to the order: equal to the order's version (ETag) once the view has caught up");

export const CustomerOrdersSchema = z.array(
  z.object({
    orderId: z.uuid(),
    status: z.enum(ORDER_STATUSES),
    storeId: z.string(),
    total: z.number().int(),
    riderId: z.string().nullable(),
    placedAt: Timestamp,
    updatedAt: Timestamp,
    version: Version,
  }),
);

export const StoreOrdersSchema = z.array(
  z.object({
    orderId: z.uuid(),
    status: z.enum(STORE_ORDER_STATUSES),
    total: z.number().int(),
    items: z.array(z.object({ foodId: z.string(), name: z.string(), qty: z.number().int() })),
    riderId: z.string().nullable(),
    paidAt: Timestamp.describe('when the store received the order'),
    updatedAt: Timestamp,
    version: Version,
  }),
);

export const FoodCountsSchema = z.array(z.object({ foodId: z.string(), count: z.number().int().describe('quantity in received orders, less those cancelled or rejected') }));
export const DeliveryCountSchema = z.object({ riderId: z.string(), count: z.number().int().describe('orders the rider picked') });

export const ViewsStatusSchema = z.object({
  measuredAt: Timestamp,
  complete: z.boolean().describe('false when more events were unsettled than the measure scans: eventsBehind and lagSeconds are then lower bounds'),
  views: z.array(
    z.object({
      view: z.string(),
      consumer: z.string(),
      eventsBehind: z.number().int(),
      lagSeconds: z.number().describe('age of the oldest event the view has not applied; 0 when caught up'),
      oldestUnappliedAt: Timestamp.nullable(),
      lastAppliedAt: Timestamp.nullable().describe('when the view last applied events, to within a second'),
      rebuildNeeded: z.boolean().describe('the view lacks orders older than itself: run npm run views:rebuild'),
      lastRebuild: z
        .object({ startedAt: Timestamp, updatedAt: Timestamp, finishedAt: Timestamp.nullable(), ordersDone: z.number().int(), ordersTotal: z.number().int() })
        .nullable(),
    }),
  ),
});

export const CustomerParams = z.object({ customerId: idString('customer id: the sub of a customer token') }).strict();
export const StoreParams = z.object({ storeId: idString('store id') }).strict();
export const RiderParams = z.object({ riderId: idString('rider id: the sub of a rider token') }).strict();
export const StoreOrdersQuery = LimitQuery.extend({ status: z.enum(STORE_ORDER_STATUSES).optional().describe('only orders in this status') }).strict();

/** Headers every view answer carries: where the view stood when it answered. */
export const VIEW_HEADERS = {
  'X-View-Lag-Ms': 'how far the view trailed the journal (age of the oldest event it had not applied), measured at most a second before the answer; 0 when caught up',
  'X-View-Events-Behind': 'how many journaled events the view had not applied yet, in the same measure',
};

/** Sets the view's position headers and the body. */
export async function answerFromView(ctx: Context, status: ViewStatusReader, view: string, body: unknown): Promise<void> {
  const position = await status.of(view);
  ctx.set('X-View-Lag-Ms', String(Math.round(position.lagSeconds * 1000)));
  ctx.set('X-View-Events-Behind', String(position.eventsBehind));
  ctx.body = body;
}

/**
 * A view named by a party's id is that party's own: callers of another role, and callers of the
 * role with another id, get 403 whether or not the id exists (so ids cannot be probed); an admin
 * may read any.
 */
function requireOwn(who: Principal, role: Role, id: string, what: string): void {
  if (who.role === 'admin' || (who.role === role && who.sub === id)) return;
  throw new ForbiddenError(`only the ${role} itself (or an admin) may read ${what}`, { role: who.role });
}

const CONSISTENCY = 'A read model: it trails the commands by the lag in X-View-Lag-Ms (GET /orders/:id is the strongly consistent source).';

/** The parties whose views are named by their id, with the path parameters that hold it. */
const OWNER_PARAMS = { customer: CustomerParams, store: StoreParams, rider: RiderParams } as const;
type Owner = keyof typeof OWNER_PARAMS;

interface OwnViewSpec<Q extends z.ZodType | undefined> {
  /** Names the party whose view it is by `:<party>Id`; only they (or an admin) may read it. */
  path: string;
  /** What the view holds; the summary goes on to say who may read it and how consistent it is. */
  summary: string;
  query?: Q;
  answer: { description: string; schema: z.ZodType };
  read(id: string, query: Q extends z.ZodType ? z.output<Q> : undefined): Promise<unknown>;
}

/**
 * A GET of the view of one party, named by its id in the path: the party's own (`requireOwn`, the
 * refusal naming `what`), answered with the view's position. `view` is the view as its status names it.
 */
function ownViewRoute<Q extends z.ZodType | undefined = undefined>(status: ViewStatusReader, view: string, what: string, spec: OwnViewSpec<Q>): Route {
  const owner = /\/:(customer|store|rider)Id\//.exec(spec.path)?.[1] as Owner | undefined;
  if (!owner) throw new Error(`${spec.path} names no party by its id`);
  return defineRoute({
    method: 'get',
    path: spec.path,
    summary: `${spec.summary} The ${owner} (or an admin) only. ${CONSISTENCY}`,
    tag: 'views',
    auth: true,
    params: OWNER_PARAMS[owner] as z.ZodType<Record<string, string>>,
    ...(spec.query && { query: spec.query }),
    responses: { 200: { ...spec.answer, headers: VIEW_HEADERS } },
    // 400 for a bad query, 403 for another party, 404 for an id that cannot be one.
    errors: spec.query ? [400, 401, 403, 404] : [401, 403, 404],
    async handle(ctx, { params, query, principal }) {
      const id = params[`${owner}Id`]!;
      requireOwn(principal, owner, id, what);
      await answerFromView(ctx, status, view, await spec.read(id, query as Q extends z.ZodType ? z.output<Q> : undefined));
    },
  });
}

export function viewRoutes(deps: { pg: Database; status: ViewStatusReader }): Route[] {
  const { pg, status } = deps;
  return [
    ownViewRoute(status, 'customer-orders', "a customer's orders", {
      path: '/views/customers/:customerId/orders',
      summary: "The customer's orders with their status, newest first.",
      query: LimitQuery,
      answer: { description: "the customer's orders", schema: CustomerOrdersSchema },
      read: (id, query) => customerOrders(pg, id, query.limit),
    }),
    ownViewRoute(status, 'store-orders', "a store's orders", {
      path: '/views/stores/:storeId/orders',
      summary: 'The orders the store received (from payment on), newest payment first, optionally in one status: what the owner accepts, rejects and cooks.',
      query: StoreOrdersQuery,
      answer: { description: "the store's received orders", schema: StoreOrdersSchema },
      read: (id, query) => storeOrders(pg, id, query),
    }),
    ownViewRoute(status, 'store-food-counts', "a store's food counts", {
      path: '/views/stores/:storeId/food-counts',
      summary: 'Per food, the quantity in the orders the store received (paid), less those later cancelled or rejected; foods at 0 are left out.',
      answer: { description: 'counts by food id', schema: FoodCountsSchema },
      read: (id) => storeFoodCounts(pg, id),
    }),
    ownViewRoute(status, 'rider-delivery-counts', "a rider's delivery count", {
      path: '/views/riders/:riderId/delivery-count',
      summary: 'How many orders the rider has picked (0 for a rider who has picked none).',
      answer: { description: "the rider's count", schema: DeliveryCountSchema },
      read: (id) => riderDeliveryCount(pg, id),
    }),
    defineRoute({
      method: 'get',
      path: '/views/_status',
      summary:
        'For each view: events it has not applied yet, its lag in seconds, when it last applied events, and its last rebuild; measured at most a second ago. Admins only (it shows the volume of orders).',
      tag: 'views',
      auth: true,
      responses: { 200: { description: 'the status of every view', schema: ViewsStatusSchema } },
      errors: [401, 403],
      async handle(ctx, { principal }) {
        if (principal.role !== 'admin') throw new ForbiddenError('only an admin may read the status of the views', { role: principal.role });
        ctx.body = await status.read();
      },
    }),
  ];
}
