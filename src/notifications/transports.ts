import { createHash } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { Pool } from 'undici';
import type { Logger } from '../log.ts';
import { sign } from './signature.ts';
import { activeTraceparent, annotate, ATTR, inSpan, tracingEnabled } from '../tracing.ts';

/** The message a transport carries, as the webhook's JSON body. */
export interface NotificationMessage {
  notificationId: string;
  eventId: string;
  orderId: string;
  status: string;
  to: { role: string; id: string };
  text: string;
}

/** Delivers one message or throws; the caller retries with the same notificationId. */
export interface NotificationTransport {
  name: 'webhook' | 'log';
  send(message: NotificationMessage): Promise<void>;
  /** Closes what the transport holds open (connections); idempotent. */
  close?(): Promise<void>;
}

/** How one webhook request ended: a 2xx, another status, no answer in time, or no connection. */
export type WebhookOutcome = 'delivered' | 'refused' | 'timeout' | 'unreachable';

export interface WebhookOptions {
  /** Deadline of one request (connecting, sending, the answer): NOTIFY_TIMEOUT_MS. */
  timeoutMs: number;
  /** Requests on their way to the endpoint at once, and so its most open connections: NOTIFY_CONCURRENCY. */
  concurrency: number;
  /** When set, one POST carries a JSON array of up to this many messages (NOTIFY_BATCH, NOTIFY_BATCH_MAX). */
  batchMax?: number;
  /**
   * When set, every request carries `Baedal-Signature` (see signature.ts), one `v1` per secret,
   * the current one first (NOTIFY_WEBHOOK_SECRET).
   */
  secrets?: readonly string[];
  /** Called once per request with its outcome, its duration and how many messages it carried. */
  onRequest?: (outcome: WebhookOutcome, seconds: number, messages: number) => void;
}

interface Waiting {
  message: NotificationMessage;
  traceparent: string | undefined;
  resolve: () => void;
  reject: (err: Error) => void;
}

class WebhookError extends Error {
  constructor(
    message: string,
    readonly outcome: Exclude<WebhookOutcome, 'delivered'>,
  ) {
    super(message);
  }
}

/**
 * POSTs messages as JSON to a webhook (the exercise's KakaoTalk). Any 2xx is a delivery; anything
 * else, a timeout or a refused connection is a failure to retry. The notificationId is also sent as
 * `Idempotency-Key`, so a receiver can drop a repeat.
 *
 * Sends queue per endpoint and leave through a pool of kept-alive connections, at most
 * `concurrency` requests at once; messages queued in the same moment wait for a free slot rather
 * than opening more connections. With `batchMax`, a request carries every message waiting (up
 * to `batchMax`) as one JSON array, and its answer decides for all of them; the
 * `Idempotency-Key` of such a request is a digest of the ids it carries, and a receiver drops
 * repeats by each element's notificationId.
 *
 * With `secrets`, each request is signed over the exact bytes it sends, at the moment it is sent:
 * a retry carries a fresh timestamp and signature.
 */
export function webhookTransport(url: string, opts: WebhookOptions): NotificationTransport {
  const target = new URL(url);
  const path = `${target.pathname}${target.search}`;
  const pool = new Pool(target.origin, {
    connections: opts.concurrency,
    connectTimeout: opts.timeoutMs,
    // Backstops: the deadline below ends a request first.
    headersTimeout: opts.timeoutMs + 1000,
    bodyTimeout: opts.timeoutMs + 1000,
  });
  const deadlines = new Deadlines(opts.timeoutMs);
  /**
   * Messages waiting for a connection, each with the trace context it was sent from (tracing on).
   * The slots before `head` are taken: emptied as they are taken, so a message sent is not held
   * (with its promise and its sender's state) until the array is next compacted.
   */
  let queue: (Waiting | undefined)[] = [];
  let head = 0;
  let active = 0;
  let scheduled = false;
  let closed = false;

  /** One request, as a span of the first message's trace (linked to the others' in a batch) when tracing is on. */
  function deliver(batch: readonly { message: NotificationMessage; traceparent: string | undefined }[]): Promise<void> {
    const messages = batch.map((b) => b.message);
    if (!tracingEnabled()) return post(messages);
    const first = batch[0]!.message;
    return inSpan(
      'webhook.deliver',
      {
        parent: batch[0]!.traceparent ?? null,
        links: batch.slice(1, 33).map((b) => b.traceparent),
        attributes: { [ATTR.messages]: batch.length, [ATTR.orderId]: first.orderId, [ATTR.notificationId]: first.notificationId, 'baedal.notification.status': first.status },
      },
      async (span) => {
        await post(messages, (status) => annotate(span, { 'http.response.status_code': status }));
      },
    );
  }

  async function post(messages: readonly NotificationMessage[], answered?: (status: number) => void): Promise<void> {
    const single = opts.batchMax === undefined;
    const key = single ? messages[0]!.notificationId : batchKey(messages);
    const started = performance.now();
    let outcome: WebhookOutcome = 'delivered';
    try {
      const signal = deadlines.signal();
      const body = Buffer.from(JSON.stringify(single ? messages[0] : messages));
      const headers: Record<string, string> = { 'content-type': 'application/json', 'idempotency-key': key };
      if (opts.secrets) headers['baedal-signature'] = sign(body, opts.secrets);
      let res: Awaited<ReturnType<typeof pool.request>>;
      try {
        res = await pool.request({ path, method: 'POST', headers, body, signal });
        await res.body.dump();
      } catch (err) {
        if (signal.aborted) throw new WebhookError(`webhook did not answer within ${opts.timeoutMs} ms`, 'timeout');
        const code = (err as { code?: unknown }).code;
        throw new WebhookError(`webhook unreachable${typeof code === 'string' ? ` (${code})` : `: ${(err as Error).message}`}`, 'unreachable');
      }
      answered?.(res.statusCode);
      if (res.statusCode < 200 || res.statusCode > 299) throw new WebhookError(`webhook answered ${res.statusCode}`, 'refused');
    } catch (err) {
      outcome = err instanceof WebhookError ? err.outcome : 'unreachable';
      throw err;
    } finally {
      opts.onRequest?.(outcome, (performance.now() - started) / 1000, messages.length);
    }
  }

  function pump(): void {
    while (active < opts.concurrency && queue.length > head) {
      // From the front, without shifting what waits behind (thousands, at the top rate).
      const batch = queue.slice(head, head + (opts.batchMax ?? 1)) as Waiting[];
      queue.fill(undefined, head, head + batch.length);
      head += batch.length;
      if (head >= 1024 && head * 2 >= queue.length) {
        queue = queue.slice(head);
        head = 0;
      }
      active += 1;
      deliver(batch)
        .then(
          () => batch.forEach((b) => b.resolve()),
          (err: Error) => batch.forEach((b) => b.reject(err)),
        )
        .finally(() => {
          active -= 1;
          pump();
        });
    }
  }

  return {
    name: 'webhook',
    send(message) {
      if (closed) return Promise.reject(new Error('webhook transport closed'));
      return new Promise<void>((resolve, reject) => {
        queue.push({ message, traceparent: activeTraceparent(), resolve, reject });
        // The messages of this moment leave together: in batch mode, in one request.
        if (scheduled) return;
        scheduled = true;
        setImmediate(() => {
          scheduled = false;
          pump();
        });
      });
    },
    async close() {
      if (closed) return;
      closed = true;
      const waiting = queue.slice(head);
      queue = [];
      head = 0;
      for (const w of waiting) w?.reject(new Error('webhook transport closed'));
      await pool.close().catch(() => pool.destroy());
    },
  };
}

/** The key of a batch request: the same messages in the same order give the same key. */
function batchKey(messages: readonly NotificationMessage[]): string {
  const hash = createHash('sha256');
  for (const m of messages) hash.update(m.notificationId);
  return `batch-${hash.digest('hex').slice(0, 32)}`;
}

/**
 * Request deadlines, one abort signal per tenth of a second of start times: the requests started
 * in the same 100 ms share a signal that aborts `timeoutMs` (+ up to 100 ms) later. A timer and a
 * controller per request cost more than the request itself on a kept-alive connection.
 */
class Deadlines {
  private current: { until: number; controller: AbortController } | undefined;

  constructor(private readonly timeoutMs: number) {}

  signal(): AbortSignal {
    const now = performance.now(); // monotonic: a clock set back must not stretch a bucket
    if (!this.current || now >= this.current.until) {
      const controller = new AbortController();
      setMaxListeners(0, controller.signal);
      setTimeout(() => controller.abort(), this.timeoutMs + BUCKET_MS).unref();
      this.current = { until: now + BUCKET_MS, controller };
    }
    return this.current.controller.signal;
  }
}

const BUCKET_MS = 100;

/** Writes each message to the log: the transport when no webhook is configured. */
export function logTransport(log: Logger): NotificationTransport {
  return {
    name: 'log',
    async send(message) {
      log.info({ notification: message }, `notify ${message.to.role} ${message.to.id}: ${message.text}`);
    },
  };
}
