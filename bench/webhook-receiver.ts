// The benchmark's notification webhook: a lean receiver in a process of its own, standing in for the
// messaging provider. Every POST is drained and answered 204; it counts what arrived (distinct
// `Idempotency-Key`s and repeats; the arrays of NOTIFY_BATCH=1 by their messages' ids) so the
// benchmark can check that every notification arrived, and, while the benchmark holds its measured
// window open, keeps a sample of arrival times by event id for the delivery lag. The benchmark
// drives it over /_bench/ (reset, window, stats, arrivals).
//   PORT=8090 node --import tsx bench/webhook-receiver.ts
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';

const PORT = Number(process.env.PORT ?? 0);
/** Arrivals kept for the lag (a uniform sample of the window's arrivals beyond this many). */
const MAX_SAMPLES = 20_000;

/** What arrived since the last reset. */
let keys = new Set<string>();
let received = 0;
/** Arrivals in the measured window: [eventId, arrival time in ms since the epoch]. */
let sample: [string, number][] = [];
let inWindow = 0;
let recording = false;

/** Reservoir sampling: every arrival of the window has the same chance to be kept. */
function keep(eventId: string, at: number): void {
  inWindow += 1;
  if (sample.length < MAX_SAMPLES) sample.push([eventId, at]);
  else {
    const j = Math.floor(Math.random() * inWindow);
    if (j < MAX_SAMPLES) sample[j] = [eventId, at];
  }
}

function answer(res: ServerResponse, status: number, body?: unknown): void {
  if (body === undefined) {
    res.writeHead(status).end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
}

function notification(req: IncomingMessage, res: ServerResponse): void {
  const arrivedAt = Date.now();
  const key = req.headers['idempotency-key'];
  if (typeof key !== 'string' || key === '') {
    req.resume();
    answer(res, 400, { error: { code: 'invalid_request', message: 'a notification carries an Idempotency-Key header', details: {} } });
    return;
  }
  if (key.startsWith('batch-')) {
    batch(req, res, arrivedAt);
    return;
  }
  received += 1;
  keys.add(key);
  if (!recording) {
    req.resume(); // drained, not read
    req.once('end', () => answer(res, 204));
    return;
  }
  readJson(req, (body) => {
    const eventId = (body as { eventId?: unknown } | undefined)?.eventId;
    if (typeof eventId === 'string') keep(eventId, arrivedAt); // not JSON: counted, not sampled
    answer(res, 204);
  });
}

/** Reads a request's whole body as JSON: undefined when it is not JSON. */
function readJson(req: IncomingMessage, then: (body: unknown) => void): void {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.once('end', () => {
    let body: unknown;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      body = undefined;
    }
    then(body);
  });
}

/**
 * A POST of the service's NOTIFY_BATCH=1: a JSON array of messages under one `batch-` key. Each
 * message is counted (and sampled) by its notificationId, the key its own POST would carry, so the
 * counts mean the same either way.
 */
function batch(req: IncomingMessage, res: ServerResponse, arrivedAt: number): void {
  readJson(req, (messages) => {
    if (!Array.isArray(messages) || !messages.every((m) => typeof (m as { notificationId?: unknown } | null)?.notificationId === 'string')) {
      answer(res, 400, { error: { code: 'invalid_request', message: 'a batch- Idempotency-Key carries a JSON array of notifications, each with a notificationId', details: {} } });
      return;
    }
    for (const m of messages as { notificationId: string; eventId?: unknown }[]) {
      received += 1;
      keys.add(m.notificationId);
      if (recording && typeof m.eventId === 'string') keep(m.eventId, arrivedAt);
    }
    answer(res, 204);
  });
}

function control(req: IncomingMessage, res: ServerResponse): void {
  req.resume();
  const route = `${req.method} ${req.url}`;
  switch (route) {
    case 'POST /_bench/reset':
      keys = new Set();
      received = 0;
      sample = [];
      inWindow = 0;
      recording = false;
      return answer(res, 204);
    case 'POST /_bench/window/open':
      recording = true;
      return answer(res, 204);
    case 'POST /_bench/window/close':
      recording = false;
      return answer(res, 204);
    case 'GET /_bench/stats':
      return answer(res, 200, { received, distinct: keys.size, inWindow, sampled: sample.length });
    case 'GET /_bench/arrivals':
      return answer(res, 200, sample);
    default:
      return answer(res, 404, { error: { code: 'not_found', message: `no ${route} here`, details: {} } });
  }
}

const server = createServer((req, res) => {
  if (req.url?.startsWith('/_bench/')) control(req, res);
  else if (req.method === 'POST') notification(req, res);
  else {
    req.resume();
    answer(res, 405, { error: { code: 'method_not_allowed', message: 'notifications are POSTed', details: {} } });
  }
});
server.keepAliveTimeout = 65_000;
server.listen(PORT, '127.0.0.1', () => {
  const address = server.address();
  console.log(`webhook receiver listening on http://127.0.0.1:${typeof address === 'object' && address ? address.port : PORT}`);
});
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => server.close(() => process.exit(0)).closeAllConnections());
