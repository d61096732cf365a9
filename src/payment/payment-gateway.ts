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
  // undici reports "fetch failed" and keeps the useful part (ECONNREFUSED, ...) in the cause
  const cause = (err as { cause?: { code?: unknown } } | null)?.cause?.code;
  const refused = cause === 'ECONNREFUSED';
  return new PaymentUnavailableError(`network error${typeof cause === 'string' ? ` (${cause})` : ''}`, 5, true, refused);
}

function retryAfterSeconds(res: Response): number | undefined {
  const value = Number(res.headers.get('retry-after') ?? Number.NaN);
  return Number.isInteger(value) && value >= 0 ? value : undefined;
}

/** The gateway's HTTP API: POST /charges, POST /refunds, GET /charges/:idempotencyKey. */
export function createHttpPaymentGateway(opts: { baseUrl: string; timeoutMs: number }): PaymentGateway {
  const base = opts.baseUrl.endsWith('/') ? opts.baseUrl : `${opts.baseUrl}/`;

  async function call(method: 'GET' | 'POST', path: string, body: object | undefined, signal?: AbortSignal): Promise<{ res: Response; json: unknown }> {
    let res: Response;
    let text: string;
    try {
      // One deadline covers connecting, waiting and reading the body.
      const deadline = AbortSignal.timeout(opts.timeoutMs);
      res = await fetch(new URL(path, base), {
        method,
        headers: body ? { 'content-type': 'application/json', accept: 'application/json' } : { accept: 'application/json' },
        body: body ? JSON.stringify(body) : undefined,
        signal: signal ? AbortSignal.any([signal, deadline]) : deadline,
      });
      text = await res.text();
    } catch (err) {
      throw transportFailure(err, opts.timeoutMs, signal);
    }
    return { res, json: parseJson(text) };
  }

  function failure(res: Response, json: unknown): PaymentUnavailableError {
    if (res.status >= 500 || res.status === 429) {
      return new PaymentUnavailableError(`gateway answered ${res.status}`, retryAfterSeconds(res));
    }
    const code = errorAnswer.safeParse(json);
    const suffix = code.success ? ` (${code.data.error.code})` : '';
    // A 4xx other than a decline is our request's fault: retrying it would not help.
    return new PaymentUnavailableError(`unexpected status ${res.status}${suffix}`, 5, false);
  }

  async function post<T>(path: string, body: object, answer: z.ZodType<T>, declined: () => Error, signal?: AbortSignal): Promise<T> {
    const { res, json } = await call('POST', path, body, signal);
    if (res.status === 402) throw declined();
    if (!res.ok) throw failure(res, json);
    const parsed = answer.safeParse(json);
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
      const { res, json } = await call('GET', `charges/${encodeURIComponent(idempotencyKey)}`, undefined, signal);
      if (res.status === 404) return null;
      if (!res.ok) throw failure(res, json);
      const parsed = lookupAnswer.safeParse(json);
      if (!parsed.success) throw new PaymentUnavailableError(`malformed ${res.status} answer`);
      return { chargeId: parsed.data.chargeId, orderId: parsed.data.orderId, amount: parsed.data.amount };
    },
  };
}
