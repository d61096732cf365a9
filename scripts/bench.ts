// Throughput and latency of the whole order lifecycle over HTTP, on the real PostgreSQL and Redis.
//   npm run bench -- [--orders 300] [--concurrency 16]
// Uses its own database (baedal_bench, re-created) and queue prefix; prints figures, asserts nothing.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { startRuntime } from '../src/actors/runtime.ts';
import { loadConfig } from '../src/config.ts';
import { signToken } from '../src/http/auth.ts';
import { createApp } from '../src/http/app.ts';
import { createLogger } from '../src/log.ts';
import { createFakeGateway } from '../src/payment/fake-gateway.ts';
import { createHttpPaymentGateway } from '../src/payment/payment-gateway.ts';

const { values } = parseArgs({ options: { orders: { type: 'string', default: '300' }, concurrency: { type: 'string', default: '16' } } });
const ORDERS = Number(values.orders);
const CONCURRENCY = Number(values.concurrency);
const DATABASE_URL = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/baedal_bench';

async function recreateDatabase(url: string): Promise<void> {
  const admin = new URL(url);
  const name = admin.pathname.slice(1);
  admin.pathname = '/postgres';
  const client = new pg.Client({ connectionString: admin.toString() });
  await client.connect();
  await client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  await client.end();
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;

await recreateDatabase(DATABASE_URL);
const gateway = await createFakeGateway({ port: 0 });
const config = loadConfig({ ...process.env, DATABASE_URL, AUTH_SECRET: 'bench-secret-0123456789', QUEUE_PREFIX: `{baedal-bench-${randomUUID()}}`, LOG_LEVEL: 'warn' });
const log = createLogger(config.LOG_LEVEL);
const runtime = await startRuntime({ config, log, payments: createHttpPaymentGateway({ baseUrl: gateway.url, timeoutMs: 5000 }) });
const { koa } = createApp({ ...runtime, log, authSecret: config.AUTH_SECRET, bodyLimit: config.BODY_LIMIT });
const server = createServer(koa.callback());
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

const store = await signToken(config.AUTH_SECRET, { role: 'store', sub: 'bench-store' });
const customer = await signToken(config.AUTH_SECRET, { role: 'customer', sub: 'bench-customer' });
const rider = await signToken(config.AUTH_SECRET, { role: 'rider', sub: 'bench-rider' });
const call = async (method: string, path: string, token: string, body?: unknown) => {
  const res = await fetch(base + path, { method, headers: { authorization: `Bearer ${token}`, ...(body !== undefined && { 'content-type': 'application/json' }) }, body: body === undefined ? undefined : JSON.stringify(body) });
  const json = (await res.json()) as { id: string };
  if (!res.ok) throw new Error(`${method} ${path} → ${res.status} ${JSON.stringify(json)}`);
  return json;
};
await call('PUT', '/stores/bench-store/menu', store, [{ foodId: 'bibimbap', name: 'Bibimbap', price: 9000, available: true }]);

const steps: [string, string][] = [['pay', customer], ['accept', store], ['start-cooking', store], ['finish-cooking', store], ['pick', rider], ['confirm-delivery', customer]];
const latencies = new Map<string, number[]>();
const timed = async <T>(name: string, f: () => Promise<T>) => {
  const t0 = performance.now();
  const out = await f();
  (latencies.get(name) ?? latencies.set(name, []).get(name)!).push(performance.now() - t0);
  return out;
};

let next = 0;
const started = performance.now();
await Promise.all(
  Array.from({ length: CONCURRENCY }, async () => {
    while (next < ORDERS) {
      next += 1;
      const order = await timed('place', () => call('POST', '/orders', customer, { storeId: 'bench-store', items: [{ foodId: 'bibimbap', qty: 1 }], address: { area: 'gangnam', line: '1' } }));
      for (const [command, token] of steps) await timed(command, () => call('POST', `/orders/${order.id}/${command}`, token));
    }
  }),
);
const httpSeconds = (performance.now() - started) / 1000;
const expectedNotifications = ORDERS * (steps.length + 1);
for (;;) {
  const [{ n }] = await runtime.db.query('SELECT count(*)::int AS n FROM notifications');
  if (n >= expectedNotifications) break;
  await new Promise((resolve) => setTimeout(resolve, 20));
}
const projectedSeconds = (performance.now() - started) / 1000;

const requests = ORDERS * (steps.length + 1);
console.log(`orders: ${ORDERS}, concurrency: ${CONCURRENCY}, HTTP requests: ${requests}`);
console.log(`lifecycle over HTTP: ${httpSeconds.toFixed(2)} s → ${(requests / httpSeconds).toFixed(0)} commands/s, ${(ORDERS / httpSeconds).toFixed(1)} orders/s`);
console.log(`all ${expectedNotifications} events projected (outbox → BullMQ → notifications view) after ${projectedSeconds.toFixed(2)} s`);
console.log('latency per command (ms):   p50     p95     p99');
for (const [name, list] of latencies) {
  const sorted = [...list].sort((a, b) => a - b);
  console.log(`  ${name.padEnd(18)} ${[50, 95, 99].map((p) => percentile(sorted, p).toFixed(1).padStart(7)).join(' ')}`);
}

server.closeAllConnections();
await new Promise<void>((resolve) => server.close(() => resolve()));
await runtime.close();
await gateway.close();
await recreateDatabase(DATABASE_URL);

