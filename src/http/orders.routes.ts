import type { Context } from 'koa';
import type { CommandRequest, OrderActors, OrderView } from '../actors/order-actor.ts';
import type { Cause } from '../actors/order-repository.ts';
import type { Counter } from 'prom-client';
import type { Database } from '../db/pg.ts';
import { DomainError } from '../errors.ts';
import { ORDER_COMMANDS, type OrderCommand } from '../machines/order/contract.ts';
import { listNotifications } from '../notifications/feed.ts';
import { defineRoute, type Route } from './route.ts';
import { CancelSchema, EmptyBodySchema, LimitQuery, ListOrdersQuery, OrderParams, PlaceOrderSchema, RejectSchema } from './schemas.ts';
import { JournalSchema, NotificationsSchema, OrderSchema } from './answer-schemas.ts';

const ETAG = { ETag: 'the order version, quoted; send it back as If-Match to guard a command' };

function sendOrder(ctx: Context, order: OrderView, status = 200): void {
  ctx.status = status;
  ctx.set('ETag', `"${order.version}"`);
  ctx.body = order;
}

/** Reads `If-Match` as an order version; absent or `*` means "whatever the current version is". */
export function expectedVersion(header: string): number | undefined {
  const value = header.trim();
  if (value === '' || value === '*') return undefined;
  const match = /^(?:W\/)?"?(\d{1,9})"?$/.exec(value);
  if (!match) {
    throw new DomainError('invalid_body', 'If-Match must be an ETag of this API, like "3"', {
      issues: [{ field: 'header.if-match', message: 'not an order version' }],
    });
  }
  return Number(match[1]);
}

const COMMAND_SUMMARY: Record<OrderCommand, string> = {
  pay: "The order's customer pays: a synchronous charge at the payment gateway, behind a circuit breaker; 409 payment_in_progress while another attempt is in flight, 503 with Retry-After when the gateway is down or slow (the order is unchanged).",
  accept: "The order's store accepts a paid order.",
  reject: "The order's store rejects a paid order; the payment is refunded.",
  'start-cooking': "The order's store starts cooking.",
  'finish-cooking': "The order's store finishes cooking; riders can now see the order.",
  cancel: "The order's customer cancels before cooking starts; a paid order is refunded.",
  pick: 'A rider picks a cooked order for delivery; when several riders try at once, one wins and the others get 409 already_picked.',
  'confirm-delivery': "The order's customer confirms delivery.",
};

/** Counts a command by its outcome: `ok`, or the code of the error that refused it. */
async function counted<T>(commands: CommandCounter | undefined, command: string, run: () => Promise<T>): Promise<T> {
  try {
    const result = await run();
    commands?.inc({ command, outcome: 'ok' });
    return result;
  } catch (err) {
    commands?.inc({ command, outcome: err instanceof DomainError ? err.code : 'internal' });
    throw err;
  }
}

type CommandCounter = Pick<Counter<'command' | 'outcome'>, 'inc'>;

function commandRoute(actors: OrderActors, type: OrderCommand, commands?: CommandCounter): Route {
  const body = type === 'reject' ? RejectSchema : type === 'cancel' ? CancelSchema : EmptyBodySchema;
  // 503: machine_version_ahead during a rolling deploy (and payment_unavailable for pay).
  const errors = [400, 401, 403, 404, 409, 412, 413, 415, 503];
  if (type === 'pay') errors.push(402);
  return defineRoute({
    method: 'post',
    path: `/orders/:id/${type}`,
    summary: COMMAND_SUMMARY[type],
    tag: 'commands',
    auth: true,
    params: OrderParams,
    body,
    bodyRequired: type === 'reject',
    requestHeaders: { 'If-Match': 'optional order version (ETag); a stale one is refused with 412' },
    responses: { 200: { description: 'the order after the transition', schema: OrderSchema, headers: ETAG } },
    errors,
    async handle(ctx, { params, body: input, principal }) {
      const request = toCommand(type, input as Record<string, unknown>);
      const order = await counted(commands, type, () =>
        actors.command(principal, params.id, request, {
          expectedVersion: expectedVersion(ctx.get('if-match')),
          cause: causeOf(ctx),
        }),
      );
      sendOrder(ctx, order);
    },
  });
}

function toCommand(type: OrderCommand, body: Record<string, unknown>): CommandRequest {
  switch (type) {
    case 'reject':
      return { type, reason: String(body.reason) };
    case 'cancel':
      return { type, reason: typeof body.reason === 'string' ? body.reason : null };
    case 'pay':
    case 'accept':
    case 'start-cooking':
    case 'finish-cooking':
    case 'pick':
    case 'confirm-delivery':
      return { type };
    default: {
      const exhaustive: never = type;
      return exhaustive;
    }
  }
}

/**
 * What the journal records as the cause of what the request does: the id the service gave the
 * request (the causation id), and the client's own `X-Request-Id` beside it, never as an identity.
 */
export function causeOf(ctx: Context): Cause {
  const own = ctx.state.requestId;
  const client = ctx.state.clientRequestId;
  return { causationId: typeof own === 'string' ? own : null, clientRequestId: typeof client === 'string' ? client : null };
}

export function orderRoutes(deps: { actors: OrderActors; pg: Database; commands?: CommandCounter }): Route[] {
  const { actors, pg, commands } = deps;
  return [
    defineRoute({
      method: 'post',
      path: '/orders',
      summary: 'A customer places an order; the server prices it from the store menu.',
      tag: 'orders',
      auth: true,
      body: PlaceOrderSchema,
      bodyRequired: true,
      requestHeaders: { 'Idempotency-Key': 'optional; a retried request with the same key returns the same order' },
      responses: {
        201: { description: 'the new order (or, for a repeated Idempotency-Key, the order it created)', schema: OrderSchema, headers: { ...ETAG, Location: 'the order URL' } },
      },
      errors: [400, 401, 403, 404, 413, 415, 422, 429],
      async handle(ctx, { body, principal }) {
        const key = ctx.get('idempotency-key') || undefined;
        if (key !== undefined && key.length > 200) {
          throw new DomainError('invalid_body', 'Idempotency-Key is longer than 200 characters', {
            issues: [{ field: 'header.idempotency-key', message: 'too long' }],
          });
        }
        const { order, replayed } = await counted(commands, 'place', () => actors.place(principal, body, key, causeOf(ctx)));
        ctx.set('Location', `/orders/${order.id}`);
        if (replayed) ctx.set('Idempotent-Replayed', 'true');
        sendOrder(ctx, order, 201);
      },
    }),
    defineRoute({
      method: 'get',
      path: '/orders',
      summary: "The caller's orders, newest first: a customer's own, a store's, a rider's picked ones and every cooked one.",
      tag: 'orders',
      auth: true,
      query: ListOrdersQuery,
      responses: { 200: { description: 'orders', schema: OrderSchema.array() } },
      errors: [400, 401, 503],
      async handle(ctx, { query, principal }) {
        ctx.body = await actors.list(principal, query);
      },
    }),
    defineRoute({
      method: 'get',
      path: '/orders/:id',
      summary: 'One order with the commands it accepts now.',
      tag: 'orders',
      auth: true,
      params: OrderParams,
      responses: { 200: { description: 'the order', schema: OrderSchema, headers: ETAG } },
      errors: [401, 404, 503],
      async handle(ctx, { params, principal }) {
        sendOrder(ctx, await actors.get(principal, params.id));
      },
    }),
    defineRoute({
      method: 'get',
      path: '/orders/:id/events',
      summary: "The order's journal: one event per transition, in order.",
      tag: 'orders',
      auth: true,
      params: OrderParams,
      responses: { 200: { description: 'the journal', schema: JournalSchema } },
      errors: [401, 404],
      async handle(ctx, { params, principal }) {
        ctx.body = await actors.events(principal, params.id);
      },
    }),
    ...ORDER_COMMANDS.map((type) => commandRoute(actors, type, commands)),
    defineRoute({
      method: 'get',
      path: '/notifications',
      summary:
        'Messages addressed to the caller, newest first, with their delivery state: a customer hears of every status change, a store of paid and cancelled orders, a rider of deliveries confirmed.',
      tag: 'views',
      auth: true,
      query: LimitQuery,
      responses: { 200: { description: 'notifications', schema: NotificationsSchema } },
      errors: [400, 401],
      async handle(ctx, { query, principal }) {
        ctx.body = await listNotifications(pg, principal, query.limit);
      },
    }),
  ];
}
