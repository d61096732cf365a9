import http from 'node:http';
import https from 'node:https';
import { z } from 'zod';
import { PaymentDeclinedError, PaymentUnavailableError } from '../errors.ts';

export interface ChargeRequest {
  orderId: string;
  amount: number;
  idempotencyKey: string;
}

export interface RefundRequest {
  chargeId: string;
  amount: number;
  idempotencyKey: string;
}

export interface FoundCharge {
  chargeId: string;
  orderId: string;
  amount: number;
}

/**
 * The seam the order runtime pays through; decorators (circuit breaker, metrics) wrap it. Each
 * call takes an optional AbortSignal, so an outer deadline also ends the HTTP request.
 */
export interface PaymentGateway {
  charge(req: ChargeRequest, signal?: AbortSignal): Promise<{ chargeId: string }>;
  refund(req: RefundRequest, signal?: AbortSignal): Promise<{ refundId: string }>;
  /** The charge made with this idempotency key, or null when the gateway has none. */
  lookup(idempotencyKey: string, signal?: AbortSignal): Promise<FoundCharge | null>;
}

const chargeAnswer = z.object({ chargeId: z.string().min(1) });
const refundAnswer = z.object({ refundId: z.string().min(1) });
const lookupAnswer = z.object({ chargeId: z.string().min(1), orderId: z.string(), amount: z.int().positive() });
const errorAnswer = z.object({ error: z.object({ code: z.string() }) });

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function transportFailure(err: unknown, timeoutMs: number, signal?: AbortSignal): PaymentUnavailableError {
  const name = (err as { name?: unknown } | null)?.name;
  if (name === 'TimeoutError') return new PaymentUnavailableError(`timed out after ${timeoutMs} ms`);
  if (name === 'AbortError' || signal?.aborted) return new PaymentUnavailableError('the call was abandoned');
  const code = (err as { code?: unknown } | null)?.code;
  // A refused connection certainly sent nothing: nothing can have been charged.
  return new PaymentUnavailableError(`network error${typeof code === 'string' ? ` (${code})` : ''}`, 5, true, code === 'ECONNREFUSED');
}

interface Answer {
  status: number;
  retryAfter: string | undefined;
  json: unknown;
}

function retryAfterSeconds(answer: Answer): number | undefined {
  const value = Number(answer.retryAfter ?? Number.NaN);
  return Number.isInteger(value) && value >= 0 ? value : undefined;
}

/** The gateway's HTTP API: POST /charges, POST /refunds, GET /charges/:idempotencyKey. */
export function createHttpPaymentGateway(opts: { baseUrl: string; timeoutMs: number }): PaymentGateway {
  const base = new URL(opts.baseUrl.endsWith('/') ? opts.baseUrl : `${opts.baseUrl}/`);
  const secure = base.protocol === 'https:';
  // Kept-alive connections: a payment is one request on an open socket, not a new connection.
  const agent = secure ? new https.Agent({ keepAlive: true, maxSockets: 64 }) : new http.Agent({ keepAlive: true, maxSockets: 64 });

  /** One request with one deadline covering connecting, waiting and reading the answer. */
  function call(method: 'GET' | 'POST', path: string, body: object | undefined, signal?: AbortSignal): Promise<Answer> {
    return new Promise<Answer>((resolve, reject) => {
      const payload = body ? JSON.stringify(body) : undefined;
      const url = new URL(path, base);
      const headers: Record<string, string | number> = { accept: 'application/json' };
      if (payload !== undefined) {
        headers['content-type'] = 'application/json';
        headers['content-length'] = Buffer.byteLength(payload);
      }
      const req = (secure ? https : http).request(url, { method, headers, agent });
      let settled = false;
      const fail = (err: unknown) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        req.destroy();
        reject(transportFailure(err, opts.timeoutMs, signal));
      };
      const timer = setTimeout(() => fail(Object.assign(new Error('timed out'), { name: 'TimeoutError' })), opts.timeoutMs);
      const onAbort = () => fail(Object.assign(new Error('aborted'), { name: 'AbortError' }));
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      req.on('error', fail);
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', fail);
        res.on('end', () => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
          const retryAfter = res.headers['retry-after'];
          resolve({ status: res.statusCode ?? 0, retryAfter: Array.isArray(retryAfter) ? retryAfter[0] : retryAfter, json: parseJson(Buffer.concat(chunks).toString('utf8')) });
        });
      });
      req.end(payload);
    });
  }

  function failure(answer: Answer): PaymentUnavailableError {
    if (answer.status >= 500 || answer.status === 429) {
      return new PaymentUnavailableError(`gateway answered ${answer.status}`, retryAfterSeconds(answer));
    }
    const code = errorAnswer.safeParse(answer.json);
    const suffix = code.success ? ` (${code.data.error.code})` : '';
    // A 4xx other than a decline is our request's fault: retrying it would not help.
    return new PaymentUnavailableError(`unexpected status ${answer.status}${suffix}`, 5, false);
  }

  const ok = (a: Answer) => a.status >= 200 && a.status < 300;

  async function post<T>(path: string, body: object, answer: z.ZodType<T>, declined: () => Error, signal?: AbortSignal): Promise<T> {
    const res = await call('POST', path, body, signal);
    if (res.status === 402) throw declined();
    if (!ok(res)) throw failure(res);
    const parsed = answer.safeParse(res.json);
    if (!parsed.success) throw new PaymentUnavailableError(`malformed ${res.status} answer`);
    return parsed.data;
  }

  // Fields are picked, not spread: callers may pass richer objects and the gateway rejects unknown keys.
  return {
    charge: ({ orderId, amount, idempotencyKey }, signal) =>
      post('charges', { orderId, amount, idempotencyKey }, chargeAnswer, () => new PaymentDeclinedError({ orderId }), signal),
    refund: ({ chargeId, amount, idempotencyKey }, signal) =>
      post('refunds', { chargeId, amount, idempotencyKey }, refundAnswer, () => new PaymentDeclinedError({ chargeId }), signal),
    async lookup(idempotencyKey, signal) {
      const res = await call('GET', `charges/${encodeURIComponent(idempotencyKey)}`, undefined, signal);
      if (res.status === 404) return null;
      if (!ok(res)) throw failure(res);
      const parsed = lookupAnswer.safeParse(res.json);
      if (!parsed.success) throw new PaymentUnavailableError(`malformed ${res.status} answer`);
      return { chargeId: parsed.data.chargeId, orderId: parsed.data.orderId, amount: parsed.data.amount };
    },
  };
}
