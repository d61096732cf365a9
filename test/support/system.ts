import type { AddressInfo } from 'node:net';
import { createServer, type Server } from 'node:http';
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import type { Principal, Role } from '../../src/actors/principal.ts';
import { startRuntime, type Runtime } from '../../src/app.ts';
import { loadConfig } from '../../src/config.ts';
import { ensureDatabase, migrate } from '../../src/db/data-source.ts';
import { signToken } from '../../src/http/auth.ts';
import { appSettings, createApp, type AppSettings } from '../../src/http/app.ts';
import type Koa from 'koa';
import type { Logger } from '../../src/log.ts';
import type { Route } from '../../src/http/route.ts';
import { createLogger } from '../../src/log.ts';
import { createFakeGateway, type FakeGateway, type GatewayStats } from '../../dev/fake-gateway.ts';
import { createHttpPaymentGateway } from '../../src/payment/payment-gateway.ts';
import type { NotificationTransport } from '../../src/notifications/transports.ts';
import { COMMAND_ROLE, type OrderView } from '../../src/actors/order-actor.ts';
import type { OrderCommand } from '../../src/machines/order/contract.ts';
import type { OrderMachines } from '../../src/machines/order/registry.ts';
import { deleteKeys } from '../../scripts/cluster/infra.ts';
import { contract } from './contract.ts';

/** A database of this run's own, so concurrent runs on one machine cannot disturb each other. */
export const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL ?? `postgres://postgres@127.0.0.1:5432/baedal_test_${process.pid}`;
/** The Redis (and its database number) of this run; each system keeps its keys under a queue prefix of its own. */
export const TEST_REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

/**
 * Another database of the run, on the same server as TEST_DATABASE_URL and named after it
 * (`<its name>_<suffix>`): the only databases a test may create, and it drops them.
 */
export function testDatabaseUrl(suffix: string): string {
  const url = new URL(TEST_DATABASE_URL);
  url.pathname = `${url.pathname}_${suffix}`;
  return url.toString();
}

/** Removes every key of a queue prefix from the run's Redis: what a test created there, it removes. */
export function removeQueueKeys(prefix: string, redisUrl = TEST_REDIS_URL): Promise<number> {
  return deleteKeys(redisUrl, prefix);
}
export const AUTH_SECRET = 'test-secret-at-least-16-chars';
/** What every system of the tests signs its webhook requests with; the test receiver verifies with it. */
export const WEBHOOK_SECRET = 'test-webhook-secret-of-the-tests';

export interface ApiResponse<T = any> {
  status: number;
  body: T;
  headers: Headers;
}

export interface RequestOptions {
  token?: string;
  body?: unknown;
  rawBody?: string;
  headers?: Record<string, string>;
}

/** One running instance of the service: a real runtime and a real HTTP server on an ephemeral port. */
export interface AppInstance {
  baseUrl: string;
  runtime: Runtime;
  /** The app's route table, as `createApp` returned it. */
  routes: readonly Route[];
  request<T = any>(method: string, path: string, opts?: RequestOptions): Promise<ApiResponse<T>>;
  close(): Promise<void>;
}

export interface GatewayBehaviour {
  latencyMs?: number;
  failRate?: number;
  decline?: boolean;
  answerDelayMs?: number;
  failNextRefunds?: number;
}

export interface Ledger {
  charges: { chargeId: string; orderId: string; amount: number; idempotencyKey: string }[];
  refunds: { refundId: string; chargeId: string; amount: number; idempotencyKey: string }[];
}

export interface TestSystem extends AppInstance {
  gateway: FakeGateway;
  queuePrefix: string;
  /** The database this system runs on (its own, for a named system). */
  databaseUrl: string;
  /** The environment its instances run with (TEST_ENV plus the system's overrides). */
  env: Record<string, string>;
  /** Requests that reached the gateway, by kind. */
  gatewayStats(): Promise<GatewayStats>;
  token(role: Role, sub: string): Promise<string>;
  /** Another replica sharing the database, the queue and the gateway (running other machines when given). */
  startReplica(opts?: { machines?: OrderMachines }): Promise<AppInstance>;
  /** Resets the gateway's ledger and behaviour. */
  resetGateway(): Promise<void>;
  setGatewayBehaviour(b: GatewayBehaviour): Promise<void>;
  ledger(): Promise<Ledger>;
  /** A fresh store with a menu, a customer, a rider, and their tokens. */
  newParties(): Promise<Parties>;
  placeOrder(p: Parties, items?: { foodId: string; qty: number }[]): Promise<OrderView>;
  /** Drives an order with the given commands, each by the right party; fails on the first non-200. */
  drive(p: Parties, orderId: string, commands: string[]): Promise<OrderView>;
}

export interface Parties {
  storeId: string;
  customerId: string;
  riderId: string;
  area: string;
  store: string;
  customer: string;
  rider: string;
  admin: string;
}

export const MENU = [
  { foodId: 'bibimbap', name: 'Bibimbap', price: 9000, available: true },
  { foodId: 'tteokbokki', name: 'Tteokbokki', price: 6500, available: true },
  { foodId: 'naengmyeon', name: 'Naengmyeon', price: 11000, available: false },
];

export async function resetDatabase(url = TEST_DATABASE_URL): Promise<void> {
  const target = new URL(url);
  const name = target.pathname.slice(1);
  target.pathname = '/postgres';
  const client = new pg.Client({ connectionString: target.toString() });
  await client.connect();
  try {
    // A pool's end() resolves before its connections have closed: wait (a few seconds at most) for
    // them to go, so that FORCE does not terminate one its client still reads from (an uncaught
    // "terminating connection due to administrator command" in whichever test runs then).
    const deadline = Date.now() + 5_000;
    const connected = async () =>
      (await client.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [name])).rows[0]!.n;
    while ((await connected()) > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    await client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  } finally {
    await client.end();
  }
}

/**
 * Makes the database at `url` (one of `testDatabaseUrl`'s) afresh and migrates it, with no service
 * on it: for tests of statements and migrations alone. The test drops it (`resetDatabase(url)`).
 */
export async function freshMigratedDatabase(url: string): Promise<void> {
  await resetDatabase(url);
  await ensureDatabase(url);
  await migrate(url);
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** Short delays and bounds, so tests of retries, sweeps and timers finish in seconds. */
export const TEST_ENV: Record<string, string> = {
  NODE_ENV: 'test',
  DATABASE_URL: TEST_DATABASE_URL,
  REDIS_URL: TEST_REDIS_URL,
  AUTH_SECRET,
  // Every webhook request of the tests is signed, and the receiver (webhook.ts) refuses one that does not verify.
  NOTIFY_WEBHOOK_SECRET: WEBHOOK_SECRET,
  JOB_LOCK_MS: '3000',
  SHUTDOWN_TIMEOUT_MS: '5000',
  PAYMENT_TIMEOUT_MS: '2000',
  PAYMENT_BREAKER_HALF_OPEN_MS: '1500',
  PAYMENT_RECONCILE_AFTER_MS: '3000',
  PAYMENT_SETTLE_MS: '4000',
  REFUND_RETRY_MAX_MS: '1000',
  NOTIFY_TIMEOUT_MS: '2000',
  NOTIFY_RETRY_MAX_MS: '1000',
  EVENTS_POLL_MS: '300',
  EVENTS_LEASE_MS: '2000',
  SWEEP_INTERVAL_MS: '300',
  WORK_LEASE_MS: '4000',
  BODY_LIMIT: '16kb',
  // Off, so tests are not throttled; the rate-limit tests turn them on.
  RATE_LIMIT_PER_MIN: '0',
  PUBLIC_RATE_LIMIT_PER_MIN: '0',
  // Tests leave many orders of one customer unpaid; the unpaid-order tests set their own limit.
  MAX_UNPAID_ORDERS_PER_CUSTOMER: '1000',
};

export interface InstanceOptions {
  gatewayUrl: string;
  queuePrefix: string;
  /** Overrides of TEST_ENV. */
  env?: Record<string, string>;
  transport?: NotificationTransport;
  clock?: () => Date;
  /** The order machine versions it runs (the shipped ones when absent). */
  machines?: OrderMachines;
}

export async function startInstance(opts: InstanceOptions): Promise<AppInstance> {
  const config = loadConfig({ ...TEST_ENV, QUEUE_PREFIX: opts.queuePrefix, ...opts.env });
  const log = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');
  const payments = createHttpPaymentGateway({ baseUrl: opts.gatewayUrl, timeoutMs: config.PAYMENT_TIMEOUT_MS });
  const runtime = await startRuntime({ config, log, payments, transport: opts.transport, clock: opts.clock, machines: opts.machines });
  const { koa, routes } = createApp({ ...runtime, log, ...appSettings(config) });
  const http = createServer(koa.callback());
  const baseUrl = await listen(http);
  const unregister = contract.registerRoutes(baseUrl, routes);
  let closed: Promise<void> | undefined;
  return {
    baseUrl,
    runtime,
    routes,
    request: (method, path, o) => request(baseUrl, method, path, o),
    close: () =>
      (closed ??= (async () => {
        await new Promise<void>((resolve) => http.close(() => resolve()));
        unregister();
        await runtime.close();
      })()),
  };
}

export interface ServedApp {
  baseUrl: string;
  koa: Koa;
  routes: readonly Route[];
  request<T = any>(method: string, path: string, opts?: RequestOptions): Promise<ApiResponse<T>>;
  close(): Promise<void>;
}

/**
 * Another HTTP edge over a running runtime, with its own settings and logger: for tests of the edge's
 * configuration (token rules, rate limit, /metrics token) and of what it logs. `prepare` may add
 * middleware (a test-only route) before the server starts.
 */
export async function serveApp(
  runtime: Runtime,
  settings: Partial<AppSettings> & { stopping?: () => boolean } = {},
  opts: { log?: Logger; prepare?: (koa: Koa) => void } = {},
): Promise<ServedApp> {
  const log = opts.log ?? createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');
  const { koa, routes } = createApp({ ...runtime, metrics: undefined, log, authSecret: AUTH_SECRET, bodyLimit: '16kb', ...settings });
  opts.prepare?.(koa);
  const http = createServer(koa.callback());
  const baseUrl = await listen(http);
  // Routes a test adds (prepare) are not the API's: such an app's answers are not held to the document
  // (nor to that of a service that had the port before).
  const unregister = opts.prepare ? (contract.forget(baseUrl), () => undefined) : contract.registerRoutes(baseUrl, routes);
  return {
    baseUrl,
    koa,
    routes,
    request: (method, path, o) => request(baseUrl, method, path, o),
    close: () =>
      new Promise<void>((resolve) => http.close(() => resolve())).then(unregister),
  };
}

export async function request<T = any>(baseUrl: string, method: string, path: string, opts: RequestOptions = {}): Promise<ApiResponse<T>> {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  let body: string | undefined = opts.rawBody;
  if (opts.body !== undefined) {
    body = JSON.stringify(opts.body);
    headers['content-type'] ??= 'application/json';
  }
  const res = await fetch(`${baseUrl}${path}`, { method, headers, body });
  const text = await res.text();
  let parsed: unknown = text;
  const contentType = res.headers.get('content-type') ?? '';
  if (contentType.includes('json')) parsed = text ? JSON.parse(text) : undefined;
  // Every answer of a service of this run is held to its OpenAPI document (see contract.ts).
  await contract.check(baseUrl, { method, path, status: res.status, contentType, body: parsed });
  return { status: res.status, body: parsed as T, headers: res.headers };
}

export function commandBody(command: string): unknown {
  return command === 'reject' ? { reason: 'out of rice' } : undefined;
}

/** The token of the party that sends this command (the API's rule), and the body it needs. */
export function commandRequest(p: Parties, command: string): RequestOptions {
  return { token: p[COMMAND_ROLE[command as OrderCommand]], body: commandBody(command) };
}

export interface SystemOptions {
  /** Gives the system a database of its own (`<test database>_<name>`, dropped on close), so its
   * sweepers and workers never take work that belongs to another system's test. */
  name?: string;
  env?: Record<string, string>;
  transport?: NotificationTransport;
  /** The order machine versions its first instance runs (the shipped ones when absent). */
  machines?: OrderMachines;
  /** The clock its first instance decides by (the system's own when absent). */
  clock?: () => Date;
}

export async function startSystem(opts: SystemOptions = {}): Promise<TestSystem> {
  const gateway = await createFakeGateway({ port: 0 });
  // The gateway is not the API: a service that had its port before does not judge its answers.
  contract.forget(gateway.url);
  const queuePrefix = `{baedal-test-${randomUUID()}}`;
  let databaseUrl = TEST_DATABASE_URL;
  if (opts.name) {
    databaseUrl = testDatabaseUrl(opts.name);
    await resetDatabase(databaseUrl);
  }
  const env: Record<string, string> = { ...TEST_ENV, DATABASE_URL: databaseUrl, ...opts.env };
  const main = await startInstance({ gatewayUrl: gateway.url, queuePrefix, env, transport: opts.transport, machines: opts.machines, clock: opts.clock });
  const replicas: AppInstance[] = [];

  const token = (role: Role, sub: string) => signToken(AUTH_SECRET, { role, sub } satisfies Principal);
  const gatewayCall = async (method: string, path: string, body?: unknown) => {
    const res = await request(gateway.url, method, path, { body });
    if (res.status >= 300) throw new Error(`gateway ${method} ${path} answered ${res.status}`);
    return res.body;
  };

  const system: TestSystem = {
    ...main,
    gateway,
    queuePrefix,
    databaseUrl,
    env,
    token,
    gatewayStats: () => gatewayCall('GET', '/_admin/stats'),
    async startReplica(replicaOpts = {}) {
      const replica = await startInstance({ gatewayUrl: gateway.url, queuePrefix, env, transport: opts.transport, machines: replicaOpts.machines ?? opts.machines });
      replicas.push(replica);
      return replica;
    },
    resetGateway: async () => {
      await gatewayCall('POST', '/_admin/reset');
    },
    setGatewayBehaviour: async (b) => {
      await gatewayCall('PUT', '/_admin/behaviour', b);
    },
    ledger: () => gatewayCall('GET', '/_admin/ledger'),
    async newParties() {
      const suffix = randomUUID().slice(0, 8);
      const p: Parties = {
        storeId: `store-${suffix}`,
        customerId: `customer-${suffix}`,
        riderId: `rider-${suffix}`,
        area: `area-${suffix}`,
        store: '',
        customer: '',
        rider: '',
        admin: await token('admin', `admin-${suffix}`),
      };
      p.store = await token('store', p.storeId);
      p.customer = await token('customer', p.customerId);
      p.rider = await token('rider', p.riderId);
      const menu = await main.request('PUT', `/stores/${p.storeId}/menu`, { token: p.store, body: MENU });
      if (menu.status !== 200) throw new Error(`menu answered ${menu.status}`);
      return p;
    },
    async placeOrder(p, items = [{ foodId: 'bibimbap', qty: 2 }]) {
      const res = await main.request<OrderView>('POST', '/orders', {
        token: p.customer,
        body: { storeId: p.storeId, items, address: { area: p.area, line: '1 Teheran-ro' } },
      });
      if (res.status !== 201) throw new Error(`place answered ${res.status}: ${JSON.stringify(res.body)}`);
      return res.body;
    },
    async drive(p, orderId, commands) {
      let order: OrderView | undefined;
      for (const command of commands) {
        const res = await main.request<OrderView>('POST', `/orders/${orderId}/${command}`, commandRequest(p, command));
        if (res.status !== 200) throw new Error(`${command} answered ${res.status}: ${JSON.stringify(res.body)}`);
        order = res.body;
      }
      if (!order) throw new Error('drive() needs at least one command');
      return order;
    },
    async close() {
      for (const replica of replicas) await replica.close();
      await main.close();
      await gateway.close();
      // Its queues, jobs and locks: nothing of the system stays in Redis.
      await removeQueueKeys(queuePrefix, env.REDIS_URL ?? TEST_REDIS_URL);
      if (opts.name) await resetDatabase(databaseUrl);
    },
  };
  return system;
}

/** Waits until `check` returns a value other than undefined/false, polling, or fails at the deadline. */
export async function eventually<T>(check: () => Promise<T | undefined | false>, what: string, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

let shared: Promise<TestSystem> | undefined;

/** The system shared by the whole test run; the root hook in hooks.ts closes it. */
export function sharedSystem(): Promise<TestSystem> {
  shared ??= (async () => {
    await resetDatabase();
    return startSystem();
  })();
  return shared;
}

/**
 * The set-up most test files share: the run's shared system for the describe block, and fresh
 * parties (and, unless `resetGateway: false`, a fake gateway without failures or ledger) before
 * each test. The callbacks hand them to the block's own variables.
 */
export function withSharedSystem(to: { system(sys: TestSystem): void; parties(p: Parties): void; resetGateway?: boolean }): void {
  let sys: TestSystem;
  before(async () => {
    sys = await sharedSystem();
    to.system(sys);
  });
  beforeEach(async () => {
    if (to.resetGateway !== false) await sys.resetGateway();
    to.parties(await sys.newParties());
  });
}

export async function closeSharedSystem(): Promise<void> {
  if (!shared) return;
  await (await shared).close();
  shared = undefined;
  await resetDatabase();
}
