import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import pg from 'pg';
import { ensureBuilt } from '../../scripts/build.ts';
import { signToken } from '../../src/http/auth.ts';
import { createFakeGateway, type FakeGateway } from '../../dev/fake-gateway.ts';
import { contract } from '../support/contract.ts';
import { ROOT } from '../support/manifests.ts';
import { KIND, startOtlpReceiver, type ReceivedSpan } from '../support/otlp.ts';
import { freePort } from '../support/service-process.ts';
import { AUTH_SECRET, MENU, TEST_ENV, eventually, removeQueueKeys, request, resetDatabase, testDatabaseUrl } from '../support/system.ts';
import { startWebhookReceiver } from '../support/webhook.ts';

interface Service {
  baseUrl: string;
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

/** The environment of the compiled service: the tests' settings, nothing inherited from OTEL_* or a tsx loader. */
function serviceEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('OTEL_') && key !== 'NODE_OPTIONS') env[key] = value;
  return { ...env, ...TEST_ENV, LOG_LEVEL: 'info', ...extra };
}

/** `node dist/main.js`, as the image runs it, ready on a port of its own. */
async function startService(extra: Record<string, string>): Promise<Service> {
  const port = await freePort();
  const child = spawn(process.execPath, ['dist/main.js'], { cwd: ROOT, env: serviceEnv({ PORT: String(port), ...extra }), stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const baseUrl = `http://127.0.0.1:${port}`;
  await eventually(async () => {
    if (child.exitCode !== null) throw new Error(`service exited early:\n${output}`);
    return (await fetch(`${baseUrl}/readyz`)).status === 200;
  }, 'the service to be ready', 30_000);
  // Once it has exited, whatever takes its port next is not this service.
  void exited.then(contract.registerServed(baseUrl));
  return { baseUrl, child, output: () => output, exited };
}

/** SIGTERM, and the exit status (a traced service exports its last spans before it exits). */
async function stop(service: Service): Promise<number | null> {
  if (service.child.exitCode !== null) return service.child.exitCode;
  service.child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      service.child.kill('SIGKILL');
      reject(new Error(`the service did not exit within 15 s of SIGTERM:\n${service.output()}`));
    }, 15_000);
  });
  try {
    return await Promise.race([service.exited, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

interface Parties {
  storeId: string;
  customerId: string;
  customer: string;
  store: string;
}

async function parties(baseUrl: string): Promise<Parties> {
  const suffix = randomUUID().slice(0, 8);
  const storeId = `store-${suffix}`;
  const customerId = `customer-${suffix}`;
  const p = {
    storeId,
    customerId,
    customer: await signToken(AUTH_SECRET, { role: 'customer', sub: customerId }),
    store: await signToken(AUTH_SECRET, { role: 'store', sub: storeId }),
  };
  expect((await request(baseUrl, 'PUT', `/stores/${storeId}/menu`, { token: p.store, body: MENU })).status).to.equal(200);
  return p;
}

async function place(baseUrl: string, p: Parties): Promise<string> {
  const res = await request<{ id: string }>(baseUrl, 'POST', '/orders', {
    token: p.customer,
    body: { storeId: p.storeId, items: [{ foodId: 'bibimbap', qty: 2 }], address: { area: 'gangnam', line: '1 Teheran-ro' } },
  });
  expect(res.status, JSON.stringify(res.body)).to.equal(201);
  return res.body.id;
}

const STATUS_ERROR = 2;

/** The parts of a W3C traceparent. */
function parts(traceparent: string | null | undefined): { traceId: string; spanId: string } | undefined {
  const m = /^00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]$/.exec(traceparent ?? '');
  return m ? { traceId: m[1]!, spanId: m[2]! } : undefined;
}

describe('OpenTelemetry traces (a real OTLP receiver; the compiled service, two replicas)', function () {
  this.timeout(180_000);
  const databaseUrl = testDatabaseUrl('tracing');
  const prefixes: string[] = [];
  const services: Service[] = [];
  let gateway: FakeGateway;
  let otlp: Awaited<ReturnType<typeof startOtlpReceiver>>;
  let hook: Awaited<ReturnType<typeof startWebhookReceiver>>;
  let db: pg.Client;

  before(async () => {
    ensureBuilt('test/ops/tracing.test.ts');
    await resetDatabase(databaseUrl);
    gateway = await createFakeGateway({ port: 0 });
    otlp = await startOtlpReceiver();
    hook = await startWebhookReceiver();
  });

  after(async () => {
    for (const s of services) await stop(s).catch(() => undefined);
    await db?.end().catch(() => undefined);
    await Promise.all([gateway?.close(), otlp?.close(), hook?.close()]);
    for (const prefix of prefixes) await removeQueueKeys(prefix);
    await resetDatabase(databaseUrl);
  });

  /** Service settings on this test's database and gateway, with a queue prefix of its own per cluster. */
  function settings(prefix: string, extra: Record<string, string>): Record<string, string> {
    return { DATABASE_URL: databaseUrl, PAYMENT_URL: gateway.url, QUEUE_PREFIX: prefix, ...extra };
  }

  async function query<T>(text: string, params: unknown[]): Promise<T[]> {
    if (!db) {
      db = new pg.Client({ connectionString: databaseUrl });
      await db.connect();
    }
    return (await db.query(text, params)).rows as T[];
  }

  /** The trace context each table recorded for the order. */
  async function recorded(orderId: string) {
    return {
      journal: await query<{ seq: number; type: string; traceparent: string | null }>('SELECT seq, type, traceparent FROM order_journal WHERE order_id = $1 ORDER BY seq', [orderId]),
      attempts: await query<{ traceparent: string | null }>('SELECT traceparent FROM payment_attempts WHERE order_id = $1', [orderId]),
      timers: await query<{ event: string; traceparent: string | null }>('SELECT event, traceparent FROM timers WHERE order_id = $1 ORDER BY version', [orderId]),
      refunds: await query<{ traceparent: string | null }>('SELECT traceparent FROM refunds WHERE order_id = $1', [orderId]),
      notifications: await query<{ status: string; to_role: string; traceparent: string | null }>('SELECT status, to_role, traceparent FROM notifications WHERE order_id = $1', [orderId]),
    };
  }

  it("follows one order from POST /orders through the views, the payment, the store's timer, the refund and the webhook, across replicas", async () => {
    const prefix = `{baedal-tracing-${randomUUID()}}`;
    prefixes.push(prefix);
    const traced = settings(prefix, {
      NOTIFY_WEBHOOK_URL: hook.url,
      // The store never answers: its timer rejects the paid order and refunds it.
      STORE_ACCEPT_TIMEOUT_MS: '1500',
      OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      OTEL_BSP_SCHEDULE_DELAY: '100',
    });
    const [a, b] = await Promise.all([startService(traced), startService(traced)]);
    services.push(a!, b!);
    expect(a!.output()).to.include('tracing on');

    const p = await parties(a!.baseUrl);
    const orderId = await place(a!.baseUrl, p);
    const paid = await request(b!.baseUrl, 'POST', `/orders/${orderId}/pay`, { token: p.customer });
    expect(paid.status, JSON.stringify(paid.body)).to.equal(200);
    await eventually(async () => {
      const order = await request<{ status: string; refund: { status: string } | null }>(a!.baseUrl, 'GET', `/orders/${orderId}`, { token: p.customer });
      return order.body.status === 'rejected' && order.body.refund?.status === 'refunded';
    }, 'the store timer to reject the order and its refund to be made', 20_000);
    const placedMessage = await eventually(
      async () => hook.accepted.find((m) => m.orderId === orderId && m.status === 'awaitingPayment' && m.to.role === 'customer'),
      'the webhook to receive the placement notification',
    );

    const ofOrder = (s: ReceivedSpan, name: string) => s.name === name && s.attributes['baedal.order_id'] === orderId;
    // A batch that lost a race to another replica is read again: its spans end failed, and the next attempt's count.
    const consumed = (consumer: string, type: string) => (s: ReceivedSpan) =>
      ofOrder(s, `consume ${consumer}`) && s.attributes['baedal.event.type'] === type && s.status !== STATUS_ERROR;
    const childOf = (parent: ReceivedSpan | undefined, pred: (s: ReceivedSpan) => boolean = () => true) =>
      parent ? otlp.spans.find((s) => s.parentSpanId === parent.spanId && s.traceId === parent.traceId && pred(s)) : undefined;
    const find = (pred: (s: ReceivedSpan) => boolean) => otlp.spans.find(pred);
    const urlOf = (s: ReceivedSpan) => String(s.attributes['url.full'] ?? s.attributes['http.url'] ?? '');
    const isHttpCall = (s: ReceivedSpan) => s.kind === KIND.client && urlOf(s) !== '';
    const parentOf = (s: ReceivedSpan) => otlp.spans.find((p) => p.spanId === s.parentSpanId && p.traceId === s.traceId);
    /** A span's parent, its parent's, … up to the trace's root. */
    const ancestors = (s: ReceivedSpan): ReceivedSpan[] => {
      const parent = parentOf(s);
      return parent ? [parent, ...ancestors(parent)] : [];
    };

    // Everything the trace must show, once the receiver has it all.
    const seen = await eventually(async () => {
      const placeSpan = find((s) => ofOrder(s, 'order.place'));
      const paySpan = find((s) => ofOrder(s, 'order.pay'));
      const placedFood = find(consumed('view.store-food-counts', 'OrderPlaced'));
      const placedNotifier = find(consumed('notifier', 'OrderPlaced'));
      const notification = childOf(placedNotifier, (s) => s.name === 'work.notification');
      const delivery = childOf(notification, (s) => s.name === 'webhook.deliver' && s.attributes['baedal.notification_id'] === placedMessage.notificationId);
      const webhookRequest = childOf(delivery, isHttpCall);
      const charge = childOf(paySpan, (s) => s.name === 'payment.charge');
      const gatewayCharge = childOf(charge, isHttpCall);
      const paidFood = find(consumed('view.store-food-counts', 'OrderPaid'));
      const timer = childOf(paySpan, (s) => s.name === 'work.timer');
      const timerCommand = childOf(timer, (s) => s.name === 'order.timer');
      const timedOutFood = find(consumed('view.store-food-counts', 'StoreAcceptTimedOut'));
      const refund = childOf(timerCommand, (s) => s.name === 'work.refund');
      const gatewayRefund = childOf(refund, isHttpCall);
      const all = { placeSpan, paySpan, placedFood, placedNotifier, notification, delivery, webhookRequest, charge, gatewayCharge, paidFood, timer, timerCommand, timedOutFood, refund, gatewayRefund };
      const missing = Object.entries(all).filter(([, s]) => s === undefined).map(([name]) => name);
      if (missing.length > 0) throw new Error(`spans not received yet: ${missing.join(', ')}`);
      return all as { [K in keyof typeof all]: ReceivedSpan };
    }, 'the order to be traced from POST /orders to the webhook', 30_000);

    // The placement: the HTTP server span, the command, its journal write, and what the consumers did with its event.
    const T = seen.placeSpan.traceId;
    // Above the command: Koa's spans of the route's middleware (authentication, body, handler), then the request's.
    const above = ancestors(seen.placeSpan);
    const server = above.at(-1)!;
    expect(above.slice(0, -1).map((s) => `${s.name} ${s.kind}`)).to.include(`router - /orders ${KIND.internal}`).and.satisfy((names: string[]) => names.every((n) => n === `router - /orders ${KIND.internal}`));
    expect({ name: server.name, kind: server.kind, trace: server.traceId }).to.deep.equal({ name: 'POST /orders', kind: KIND.server, trace: T });
    expect(server.parentSpanId, 'the request starts the trace').to.equal(undefined);
    expect(seen.placeSpan.attributes['baedal.command']).to.equal('place');
    expect(seen.placeSpan.resource['service.name']).to.equal('baedal');
    const inPlace = otlp.spans.filter((s) => s.traceId === T);
    const statement = (s: ReceivedSpan) => String(s.attributes['db.statement'] ?? s.attributes['db.query.text'] ?? '');
    const isPg = (s: ReceivedSpan) => (s.attributes['db.system'] ?? s.attributes['db.system.name']) === 'postgresql';
    const journalWrite = inPlace.find((s) => isPg(s) && statement(s).includes('INSERT INTO order_journal'));
    expect(journalWrite, 'the statement that journals the order is a pg span of its trace').to.not.equal(undefined);
    // Statements without their parameters: the customer's id (and address, items) stay out of the traces.
    expect(JSON.stringify(otlp.spans.filter(isPg).map((s) => s.attributes))).to.not.include(p.customerId);
    for (const consumer of [seen.placedFood, seen.placedNotifier]) {
      expect({ trace: consumer.traceId, parent: consumer.parentSpanId, kind: consumer.kind }).to.deep.equal({ trace: T, parent: seen.placeSpan.spanId, kind: KIND.consumer });
    }
    expect(seen.placedFood.attributes['baedal.event.seq']).to.equal(1);
    expect(seen.delivery.traceId).to.equal(T);
    expect(urlOf(seen.webhookRequest)).to.equal(hook.url);
    // The receiver got the context of that request's span, to join the trace if it traces too.
    const posted = hook.requests.find((r) => !Array.isArray(r.body) && r.body.notificationId === placedMessage.notificationId && r.answered === 204);
    expect(parts(posted?.traceparent)).to.deep.equal({ traceId: T, spanId: seen.webhookRequest.spanId });

    // The payment, on the other replica: its own request's trace, linked to the placement's.
    const P = seen.paySpan.traceId;
    expect(P).to.not.equal(T);
    const payServer = ancestors(seen.paySpan).at(-1)!;
    expect({ name: payServer.name, kind: payServer.kind }).to.deep.equal({ name: 'POST /orders/:id/pay', kind: KIND.server });
    expect(new Set([server.resource['process.pid'], payServer.resource['process.pid']]).size, 'placed and paid on different replicas').to.equal(2);
    expect(seen.paySpan.attributes['baedal.command']).to.equal('pay');
    expect(seen.charge.attributes['baedal.payment.idempotency_key']).to.equal(`order-${orderId}-charge-1`);
    expect(urlOf(seen.gatewayCharge)).to.equal(`${gateway.url}/charges`);
    expect(urlOf(seen.gatewayRefund)).to.equal(`${gateway.url}/refunds`);
    expect(seen.paidFood.traceId).to.equal(P);
    expect(seen.paidFood.parentSpanId).to.equal(seen.paySpan.spanId);
    expect(seen.paidFood.links, 'linked to the trace of the placement').to.deep.include({ traceId: T, spanId: seen.placeSpan.spanId });
    // The timer the payment started fires in its trace, and the refund it owes follows.
    expect(seen.timer.attributes['baedal.work.kind']).to.equal('timer');
    expect(seen.timerCommand.attributes['baedal.command']).to.equal('store-accept-timeout');
    expect({ trace: seen.timedOutFood.traceId, parent: seen.timedOutFood.parentSpanId }).to.deep.equal({ trace: P, parent: seen.timerCommand.spanId });
    expect(seen.refund.attributes['baedal.work.key']).to.match(new RegExp(`^order-${orderId}-refund-`));

    // What the tables recorded: the context of the span that wrote each row.
    const rows = await recorded(orderId);
    expect(rows.journal.map((j) => [j.type, parts(j.traceparent)])).to.deep.equal([
      ['OrderPlaced', { traceId: T, spanId: seen.placeSpan.spanId }],
      ['OrderPaid', { traceId: P, spanId: seen.paySpan.spanId }],
      ['StoreAcceptTimedOut', { traceId: P, spanId: seen.timerCommand.spanId }],
    ]);
    expect(rows.attempts.map((r) => parts(r.traceparent))).to.deep.equal([{ traceId: P, spanId: seen.paySpan.spanId }]);
    expect(rows.timers.map((r) => [r.event, parts(r.traceparent)])).to.deep.equal([
      ['payment-timeout', { traceId: T, spanId: seen.placeSpan.spanId }],
      ['store-accept-timeout', { traceId: P, spanId: seen.paySpan.spanId }],
    ]);
    expect(rows.refunds.map((r) => parts(r.traceparent))).to.deep.equal([{ traceId: P, spanId: seen.timerCommand.spanId }]);
    expect(rows.notifications.length).to.be.greaterThan(3);
    for (const n of rows.notifications) expect([T, P], `${n.to_role} ${n.status}`).to.include(parts(n.traceparent)?.traceId);

    // Probes are not traced; a stopped replica exports what it still held and exits 0.
    expect(otlp.spans.filter((s) => /healthz|readyz|metrics/.test(String(s.attributes['url.path'] ?? s.attributes['http.target'] ?? s.name)))).to.deep.equal([]);
    expect(await stop(a!), a!.output()).to.equal(0);
    expect(await stop(b!), b!.output()).to.equal(0);
  });

  it('without an OTLP endpoint, or with OTEL_SDK_DISABLED=true, starts no SDK, exports nothing and writes no trace context', async () => {
    // The traced replicas, stopped, have exported all they will.
    for (const s of services) await stop(s);
    const received = otlp.requests.length;
    const prefix = `{baedal-tracing-${randomUUID()}}`;
    prefixes.push(prefix);
    const plain = await startService(settings(prefix, {}));
    const disabled = await startService(settings(prefix, { OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url, OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', OTEL_BSP_SCHEDULE_DELAY: '100', OTEL_SDK_DISABLED: 'true' }));
    services.push(plain, disabled);
    const orders: string[] = [];
    for (const service of [plain, disabled]) {
      const p = await parties(service.baseUrl);
      const orderId = await place(service.baseUrl, p);
      expect((await request(service.baseUrl, 'POST', `/orders/${orderId}/pay`, { token: p.customer })).status).to.equal(200);
      orders.push(orderId);
    }
    // Both events of each order journaled, consumed and notified (to the log), the timer and attempt recorded.
    for (const orderId of orders) {
      await eventually(async () => (await recorded(orderId)).notifications.length >= 3, `the notifications of order ${orderId}`, 15_000);
    }
    // A stopped service has exported whatever it held: nothing may have arrived.
    for (const service of [plain, disabled]) {
      expect(await stop(service), service.output()).to.equal(0);
      expect(service.output()).to.not.include('tracing on');
    }
    expect(otlp.requests.length, 'requests to the OTLP receiver').to.equal(received);
    for (const orderId of orders) {
      const rows = await recorded(orderId);
      expect(rows.journal).to.have.length(2);
      const contexts = [...rows.journal, ...rows.attempts, ...rows.timers, ...rows.refunds, ...rows.notifications].map((r) => r.traceparent);
      expect(contexts.length).to.be.greaterThan(6);
      expect(contexts.filter((c) => c !== null)).to.deep.equal([]);
    }
  });
});
