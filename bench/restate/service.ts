// Baedal's order lifecycle on Restate, for the comparison benchmark (`npm run bench:restate`).
//
// One virtual object per order (keyed by the order id) holds the order and refuses what its state
// does not allow (409), with the same rules, roles and gateway calls as the Baedal API:
//   - pay charges the fake payment gateway over HTTP inside ctx.run (idempotency key per order);
//   - reject and cancel after pay send a one-way refund, as Baedal's refund consumer does;
//   - with NOTIFY_WEBHOOK_URL set, every status change sends a one-way call to the Notifier
//     service, which POSTs the same notifications as Baedal's (one per recipient, same body, same
//     `Idempotency-Key` derived from the event and recipient) to the webhook, each inside ctx.run:
//     durable and retried until the webhook answers 2xx, as Baedal's delivery is. Event ids are
//     UUIDv7 stamped with the status change's time, so a receiver can tell the delivery lag;
//   - with NOTIFICATIONS=on, every status change is also recorded in the customer's Notifications
//     object, as Baedal's notifications feed records it.
// Callers sign in as with Baedal: `Authorization: Bearer <HS256 JWT>` with `sub` and `role`,
// which the Restate ingress forwards to the handler.
//
//   PORT=9080 PAYMENT_URL=http://127.0.0.1:4010 AUTH_SECRET=... [NOTIFY_WEBHOOK_URL=http://...] [NOTIFICATIONS=on] \
//     node --import tsx bench/restate/service.ts
// First: the SDK needs Promise.withResolvers, which Node 20 lacks.
import './node20.ts';
import { createHash } from 'node:crypto';
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
const WEBHOOK_URL = process.env.NOTIFY_WEBHOOK_URL || undefined;
/** Deadline of one webhook call (Baedal's NOTIFY_TIMEOUT_MS default). */
const WEBHOOK_TIMEOUT_MS = 5000;
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

type RecipientRole = 'customer' | 'store' | 'rider';

/** The webhook's body, as Baedal sends it. */
interface NotificationMessage {
  notificationId: string;
  eventId: string;
  orderId: string;
  status: Status;
  to: { role: RecipientRole; id: string };
  text: string;
}

/** The same id for the same message every time (Baedal's rule): the receiver deduplicates on it. */
function notificationId(eventId: string, role: RecipientRole): string {
  const hex = createHash('md5').update(`${eventId}:${role}`).digest('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

/** A UUIDv7 for a status change at `ms`: the time in its first 48 bits, the rest from Restate's deterministic random. */
function eventIdAt(ctx: restate.ObjectContext, ms: number): string {
  const r = ctx.rand.uuidv4().replaceAll('-', '');
  const t = Math.floor(ms).toString(16).padStart(12, '0');
  const variant = ((Number.parseInt(r[16]!, 16) & 0x3) | 0x8).toString(16);
  return `${t.slice(0, 8)}-${t.slice(8, 12)}-7${r.slice(13, 16)}-${variant}${r.slice(17, 20)}-${r.slice(20, 32)}`;
}

const money = (amount: number) => amount.toLocaleString('en-US');
const refundText = (o: Order) => (o.refund ? ` Your payment of ${money(o.refund.amount)} will be refunded.` : '');
const CUSTOMER_TEXT: Record<Status, (o: Order) => string> = {
  awaitingPayment: () => 'Your order is placed and waiting for payment.',
  paid: () => 'Payment received; the store is looking at your order.',
  accepted: () => 'The store accepted your order.',
  rejected: (o) => `The store could not take your order.${refundText(o)}`,
  cooking: () => 'The store started cooking your order.',
  cooked: () => 'Your order is cooked and waiting for a rider.',
  cancelled: (o) => `Your order was cancelled.${refundText(o)}`,
  pickedUp: () => 'A rider picked up your order.',
  delivered: () => 'Your order was delivered. Enjoy!',
};

/**
 * Who hears of a status change, and what (Baedal's rule): the customer of every one; the store when
 * the order reaches it (paid) or leaves it (cancelled after payment); the rider when the delivery is
 * confirmed or an order they picked is cancelled. A store that rejects is not told of its own reject.
 */
function messagesOf(eventId: string, before: Order | null, after: Order): NotificationMessage[] {
  const short = after.id.slice(0, 8);
  const to: { role: RecipientRole; id: string; text: string }[] = [{ role: 'customer', id: after.customerId, text: CUSTOMER_TEXT[after.status](after) }];
  if (after.status === 'paid') {
    to.push({ role: 'store', id: after.storeId, text: `New paid order ${short} (${after.items.reduce((n, i) => n + i.qty, 0)} items): accept or reject it.` });
  }
  if (after.status === 'cancelled' && before) {
    if (before.status !== 'awaitingPayment') to.push({ role: 'store', id: after.storeId, text: `Order ${short} was cancelled by the customer.` });
    if (before.riderId) to.push({ role: 'rider', id: before.riderId, text: `Order ${short} was cancelled.` });
  }
  if (after.status === 'delivered' && after.riderId) to.push({ role: 'rider', id: after.riderId, text: `The customer confirmed delivery of order ${short}. Thank you!` });
  return to.map((r) => ({ notificationId: notificationId(eventId, r.role), eventId, orderId: after.id, status: after.status, to: { role: r.role, id: r.id }, text: r.text }));
}

async function post(m: NotificationMessage): Promise<void> {
  const res = await fetch(WEBHOOK_URL!, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'idempotency-key': m.notificationId },
    body: JSON.stringify(m),
    signal: AbortSignal.timeout(WEBHOOK_TIMEOUT_MS),
  });
  await res.arrayBuffer();
  if (!res.ok) throw new Error(`webhook answered ${res.status}`);
}

/** Delivers a status change's notifications, each POST journaled by ctx.run and retried by Restate until it answers 2xx. */
const notifier = restate.service({
  name: 'Notifier',
  handlers: {
    deliver: async (ctx: restate.Context, messages: NotificationMessage[]) => {
      for (const m of messages) await ctx.run(`notify ${m.to.role}`, () => post(m));
    },
  },
});

/** Records and sends what a status change owes the parties (each part only when it is switched on). */
function notify(ctx: restate.ObjectContext, before: Order | null, after: Order, ms: number): void {
  if (NOTIFY) ctx.objectSendClient(notifications, after.customerId).add({ orderId: after.id, status: after.status, at: after.updatedAt });
  if (WEBHOOK_URL) ctx.serviceSendClient(notifier).deliver(messagesOf(eventIdAt(ctx, ms), before, after));
}

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

  const now = await ctx.date.now();
  const next: Order = { ...order, status: t.to, version: order.version + 1, updatedAt: new Date(now).toISOString() };
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
  notify(ctx, order, next, now);
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
      const ms = await ctx.date.now();
      const now = new Date(ms).toISOString();
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
      notify(ctx, null, placed, ms);
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

const port = await restate.serve({ services: [order, store, notifications, payments, notifier], port: PORT });
console.log(`Restate order service endpoint listening on ${port}`);
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => process.exit(0));
