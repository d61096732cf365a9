// Baedal's order lifecycle on Restate, for the comparison benchmark (`npm run bench:restate`).
//
// One virtual object per order (keyed by the order id) holds the order and refuses what its state
// does not allow (409), with the same rules, roles and gateway calls as the Baedal API:
//   - pay charges the fake payment gateway over HTTP inside ctx.run (idempotency key per order);
//   - reject and cancel after pay send a one-way refund, as Baedal's refund consumer does;
//   - with NOTIFICATIONS=on, every status change also sends a one-way notification to the
//     customer's notifications object, as Baedal's notifications view records one. Off by default,
//     so the comparison is against the leaner (faster) Restate.
// Callers sign in as with Baedal: `Authorization: Bearer <HS256 JWT>` with `sub` and `role`,
// which the Restate ingress forwards to the handler.
//
//   PORT=9080 PAYMENT_URL=http://127.0.0.1:4010 AUTH_SECRET=... [NOTIFICATIONS=on] node --import tsx bench/restate/service.ts
// First: the SDK needs Promise.withResolvers, which Node 20 lacks.
import './node20.ts';
import * as restate from '@restatedev/restate-sdk';
import { jwtVerify } from 'jose';

const PORT = Number(process.env.PORT ?? 9080);
const PAYMENT_URL = process.env.PAYMENT_URL ?? 'http://127.0.0.1:4010';
const AUTH_SECRET = process.env.AUTH_SECRET;
if (!AUTH_SECRET || AUTH_SECRET.length < 16) {
  console.error('AUTH_SECRET (at least 16 characters) is required');
  process.exit(2);
}
const SECRET = new TextEncoder().encode(AUTH_SECRET);
const NOTIFY = process.env.NOTIFICATIONS === 'on';
/** Kept per customer; older notifications are dropped (a retention rule, as any view needs). */
const NOTIFICATIONS_KEPT = 50;

type Role = 'customer' | 'store' | 'rider' | 'admin';
interface Principal {
  sub: string;
  role: Role;
}

type Status = 'awaitingPayment' | 'paid' | 'accepted' | 'rejected' | 'cooking' | 'cooked' | 'cancelled' | 'pickedUp' | 'delivered';
type Command = 'pay' | 'accept' | 'reject' | 'start-cooking' | 'finish-cooking' | 'cancel' | 'pick' | 'confirm-delivery';

/** The machine, as data: from which states each command moves the order, to which state, sent by whom. */
const TRANSITIONS: Record<Command, { from: readonly Status[]; to: Status; role: Role }> = {
  pay: { from: ['awaitingPayment'], to: 'paid', role: 'customer' },
  accept: { from: ['paid'], to: 'accepted', role: 'store' },
  reject: { from: ['paid'], to: 'rejected', role: 'store' },
  'start-cooking': { from: ['accepted'], to: 'cooking', role: 'store' },
  'finish-cooking': { from: ['cooking'], to: 'cooked', role: 'store' },
  cancel: { from: ['awaitingPayment', 'paid', 'accepted'], to: 'cancelled', role: 'customer' },
  pick: { from: ['cooked'], to: 'pickedUp', role: 'rider' },
  'confirm-delivery': { from: ['pickedUp'], to: 'delivered', role: 'customer' },
};
const COMMANDS = Object.keys(TRANSITIONS) as Command[];

interface MenuItem {
  foodId: string;
  name: string;
  price: number;
  available: boolean;
}

interface Order {
  id: string;
  status: Status;
  version: number;
  customerId: string;
  storeId: string;
  riderId: string | null;
  items: { foodId: string; name: string; qty: number; price: number }[];
  total: number;
  address: { area: string; line: string };
  chargeId: string | null;
  refund: { amount: number } | null;
  reason: string | null;
  createdAt: string;
  updatedAt: string;
}

/** Errors answer with the HTTP status as Restate's error code, and `<code>: <message>` as message. */
const fail = (status: number, code: string, message: string): never => {
  throw new restate.TerminalError(`${code}: ${message}`, { errorCode: status });
};

async function principalOf(ctx: restate.Context): Promise<Principal> {
  const header = ctx.request().headers.get('authorization') ?? '';
  const match = /^Bearer\s+(\S+)$/i.exec(header);
  if (!match?.[1]) return fail(401, 'unauthenticated', 'a Bearer token is required');
  try {
    const { payload } = await jwtVerify(match[1], SECRET, { algorithms: ['HS256'] });
    const role = payload.role as Role;
    if (typeof payload.sub !== 'string' || !['customer', 'store', 'rider', 'admin'].includes(role)) {
      return fail(401, 'unauthenticated', 'token lacks a valid sub or role claim');
    }
    return { sub: payload.sub, role };
  } catch (err) {
    if (err instanceof restate.TerminalError) throw err;
    return fail(401, 'unauthenticated', `invalid token: ${(err as Error).message}`);
  }
}

function maySee(who: Principal, order: Order): boolean {
  switch (who.role) {
    case 'admin':
      return true;
    case 'customer':
      return order.customerId === who.sub;
    case 'store':
      return order.storeId === who.sub;
    case 'rider':
      return order.status === 'cooked' || order.riderId === who.sub;
  }
}

const allowed = (status: Status): Command[] => COMMANDS.filter((c) => TRANSITIONS[c].from.includes(status));
const view = (order: Order) => ({ ...order, allowed: allowed(order.status) });

const store = restate.object({
  name: 'Store',
  handlers: {
    putMenu: async (ctx: restate.ObjectContext, menu: MenuItem[]) => {
      const who = await principalOf(ctx);
      if (!(who.role === 'admin' || (who.role === 'store' && who.sub === ctx.key))) fail(403, 'forbidden', 'only this store may publish its menu');
      if (!Array.isArray(menu) || menu.some((m) => typeof m?.foodId !== 'string' || !Number.isInteger(m.price) || m.price <= 0)) {
        fail(400, 'invalid_body', 'the menu is a list of { foodId, name, price, available }');
      }
      ctx.set('menu', menu);
      return menu;
    },
    getMenu: restate.handlers.object.shared(async (ctx: restate.ObjectSharedContext) => (await ctx.get<MenuItem[]>('menu')) ?? []),
  },
});

const notifications = restate.object({
  name: 'Notifications',
  handlers: {
    add: async (ctx: restate.ObjectContext, n: { orderId: string; status: Status; at: string }) => {
      const list = (await ctx.get<{ orderId: string; status: Status; at: string }[]>('list')) ?? [];
      list.push(n);
      ctx.set('list', list.slice(-NOTIFICATIONS_KEPT));
    },
  },
});

async function gateway(path: string, body: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  try {
    const res = await fetch(`${PAYMENT_URL}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal: AbortSignal.timeout(5000) });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  } catch (err) {
    return { status: 503, body: { error: { code: 'gateway_unreachable', message: (err as Error).message } } };
  }
}

const payments = restate.service({
  name: 'Payments',
  handlers: {
    refund: async (ctx: restate.Context, r: { orderId: string; chargeId: string; amount: number }) => {
      // Retried by Restate until the gateway answers; the idempotency key makes a retry harmless.
      await ctx.run('refund', async () => {
        const res = await gateway('/refunds', { chargeId: r.chargeId, amount: r.amount, idempotencyKey: `order-${r.orderId}-refund` });
        if (res.status !== 201) throw new Error(`gateway answered ${res.status} to a refund`);
        return res.body.refundId as string;
      });
    },
  },
});

async function command(ctx: restate.ObjectContext, type: Command, input: { reason?: unknown } | undefined): Promise<ReturnType<typeof view>> {
  const who = await principalOf(ctx);
  const order = await ctx.get<Order>('order');
  if (!order || !maySee(who, order)) return fail(404, 'not_found', `order ${ctx.key} not found`);
  const t = TRANSITIONS[type];
  if (who.role !== t.role) fail(403, 'forbidden', `only a ${t.role} may ${type}`);
  if (!t.from.includes(order.status)) {
    fail(409, 'invalid_transition', `${type} is not allowed in ${order.status}; allowed: ${allowed(order.status).join(', ') || 'none'}`);
  }
  if (type === 'reject' && (typeof input?.reason !== 'string' || input.reason.length === 0)) fail(400, 'invalid_body', 'reject needs a reason');

  const next: Order = { ...order, status: t.to, version: order.version + 1, updatedAt: new Date(await ctx.date.now()).toISOString() };
  if (type === 'pay') {
    const charge = await ctx.run('charge', () => gateway('/charges', { orderId: order.id, amount: order.total, idempotencyKey: `order-${order.id}-charge` }));
    if (charge.status === 402) fail(402, 'payment_declined', 'the card was declined');
    if (charge.status !== 201) fail(503, 'payment_unavailable', `the payment gateway answered ${charge.status}`);
    next.chargeId = charge.body.chargeId as string;
  }
  if (type === 'pick') next.riderId = who.sub;
  if (type === 'reject' || type === 'cancel') next.reason = typeof input?.reason === 'string' ? input.reason : null;
  if ((type === 'reject' || type === 'cancel') && order.chargeId) {
    next.refund = { amount: order.total };
    ctx.serviceSendClient(payments).refund({ orderId: order.id, chargeId: order.chargeId, amount: order.total });
  }
  ctx.set('order', next);
  if (NOTIFY) ctx.objectSendClient(notifications, order.customerId).add({ orderId: order.id, status: next.status, at: next.updatedAt });
  return view(next);
}

const handler = (type: Command) => async (ctx: restate.ObjectContext, input?: { reason?: unknown }) => command(ctx, type, input);

interface PlaceInput {
  storeId: string;
  items: { foodId: string; qty: number }[];
  address: { area: string; line: string };
}

const order = restate.object({
  name: 'Order',
  handlers: {
    place: async (ctx: restate.ObjectContext, input: PlaceInput) => {
      const who = await principalOf(ctx);
      if (who.role !== 'customer') fail(403, 'forbidden', 'only a customer may place an order');
      if (typeof input?.storeId !== 'string' || !Array.isArray(input.items) || input.items.length === 0 || typeof input.address?.area !== 'string') {
        fail(400, 'invalid_body', 'an order needs { storeId, items: [{ foodId, qty }], address: { area, line } }');
      }
      if (await ctx.get<Order>('order')) fail(409, 'invalid_transition', `order ${ctx.key} exists already`);
      const menu = await ctx.objectClient(store, input.storeId).getMenu();
      const items = input.items.map(({ foodId, qty }) => {
        const food = menu.find((m) => m.foodId === foodId && m.available);
        if (!food || !Number.isInteger(qty) || qty < 1) return fail(422, 'unprocessable', `${foodId} is not on the menu of ${input.storeId}`);
        return { foodId, name: food.name, qty, price: food.price };
      });
      const now = new Date(await ctx.date.now()).toISOString();
      const placed: Order = {
        id: ctx.key,
        status: 'awaitingPayment',
        version: 1,
        customerId: who.sub,
        storeId: input.storeId,
        riderId: null,
        items,
        total: items.reduce((sum, i) => sum + i.qty * i.price, 0),
        address: input.address,
        chargeId: null,
        refund: null,
        reason: null,
        createdAt: now,
        updatedAt: now,
      };
      ctx.set('order', placed);
      if (NOTIFY) ctx.objectSendClient(notifications, who.sub).add({ orderId: placed.id, status: placed.status, at: now });
      return view(placed);
    },
    pay: handler('pay'),
    accept: handler('accept'),
    reject: handler('reject'),
    startCooking: handler('start-cooking'),
    finishCooking: handler('finish-cooking'),
    cancel: handler('cancel'),
    pick: handler('pick'),
    confirmDelivery: handler('confirm-delivery'),
    get: restate.handlers.object.shared(async (ctx: restate.ObjectSharedContext) => {
      const who = await principalOf(ctx);
      const current = await ctx.get<Order>('order');
      if (!current || !maySee(who, current)) return fail(404, 'not_found', `order ${ctx.key} not found`);
      return view(current);
    }),
  },
});

const port = await restate.serve({ services: [order, store, notifications, payments], port: PORT });
console.log(`Restate order service endpoint listening on ${port}`);
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => process.exit(0));
