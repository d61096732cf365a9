import { Worker } from 'node:worker_threads';

export interface FloodOptions {
  /** The service's base URL (loopback). */
  baseUrl: string;
  method?: string;
  path: string;
  headers?: Record<string, string>;
  /** The loopback address the flood comes from (any of 127.0.0.0/8): one client. */
  localAddress: string;
  /** Keep-alive connections, each with one request in flight at a time. */
  connections: number;
  /** Requests per second over all connections while flooding (a connection that falls behind sends at once). */
  ratePerSecond: number;
  /**
   * When to flood (`Date.now()` values): windows of `windowMs` from `startAt`, quiet and flooded in
   * turn (the first is quiet), `windows` of each. A request is sent only within a flooded window.
   */
  startAt: number;
  windowMs: number;
  windows: number;
}

export interface FloodResult {
  sent: number;
  /** Answers by status; `error` counts requests that got no answer. */
  statuses: Record<string, number>;
}

/**
 * Runs in a worker thread, so the flood's own work never delays the test's event loop (which
 * measures the latency of other requests meanwhile). Plain node:http with a keep-alive agent.
 */
const WORKER = `
const { workerData, parentPort } = require('node:worker_threads');
const http = require('node:http');
// A lower CPU priority for this thread (on Linux, nice is per thread): an attacker's client runs
// on its own machine; here it must not take the CPU from the process measuring or the service.
try { require('node:os').setPriority(0, 10); } catch {}
const o = workerData;
const agent = new http.Agent({ keepAlive: true, maxSockets: o.connections, localAddress: o.localAddress });
const url = new URL(o.path, o.baseUrl);
const statuses = {};
let sent = 0;
const interval = (1000 * o.connections) / o.ratePerSecond;
const end = o.startAt + 2 * o.windows * o.windowMs;
const flooding = (t) => t >= o.startAt && t < end && Math.floor((t - o.startAt) / o.windowMs) % 2 === 1;
/** The start of the next flooded window after t (or end). */
const nextWindow = (t) => {
  const k = Math.floor((t - o.startAt) / o.windowMs);
  return Math.min(end, o.startAt + (k % 2 === 1 ? k + 2 : k + 1) * o.windowMs);
};
const count = (key) => { statuses[key] = (statuses[key] || 0) + 1; };
const one = () => new Promise((resolve) => {
  const req = http.request(url, { method: o.method, headers: o.headers, agent }, (res) => {
    res.resume();
    res.on('end', () => { count(res.statusCode); resolve(); });
    res.on('error', () => { count('error'); resolve(); });
  });
  req.on('error', () => { count('error'); resolve(); });
  req.end();
});
const sleep = (ms) => new Promise((r) => setTimeout(r, Math.max(0, ms)));
const loop = async (i) => {
  // Connections start spread over one interval, so the rate is even.
  let next = o.startAt + (interval * i) / o.connections;
  for (;;) {
    await sleep(next - Date.now());
    const now = Date.now();
    if (now >= end) return;
    if (!flooding(now)) {
      next = nextWindow(now) + (interval * i) / o.connections;
      continue;
    }
    sent += 1;
    await one();
    next = Math.max(next + interval, Date.now() - interval);
  }
};
Promise.all(Array.from({ length: o.connections }, (_, i) => loop(i))).then(() => {
  agent.destroy();
  parentPort.postMessage({ sent, statuses });
});
`;

/** Floods one route from one loopback address in the windows given (bounded in time); resolves with what it got. */
export function flood(opts: FloodOptions): { done: Promise<FloodResult> } {
  const worker = new Worker(WORKER, { eval: true, workerData: { method: 'GET', headers: {}, ...opts } });
  const done = new Promise<FloodResult>((resolve, reject) => {
    worker.once('message', (result: FloodResult) => {
      resolve(result);
      void worker.terminate();
    });
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`the flood worker exited with ${code} before it reported`)));
  });
  return { done };
}
