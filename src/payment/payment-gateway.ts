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

/** The seam the order runtime pays through; decorators (circuit breaker, metrics) wrap it. */
export interface PaymentGateway {
  charge(req: ChargeRequest): Promise<{ chargeId: string }>;
  refund(req: RefundRequest): Promise<{ refundId: string }>;
}

const chargeAnswer = z.object({ chargeId: z.string().min(1) });
const refundAnswer = z.object({ refundId: z.string().min(1) });
const errorAnswer = z.object({ error: z.object({ code: z.string() }) });

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function transportFailure(err: unknown, timeoutMs: number): PaymentUnavailableError {
  const name = (err as { name?: unknown } | null)?.name;
  if (name === 'TimeoutError') return new PaymentUnavailableError(`timed out after ${timeoutMs} ms`);
  // undici reports "fetch failed" and keeps the useful part (ECONNREFUSED, ...) in the cause
  const cause = (err as { cause?: { code?: unknown } } | null)?.cause?.code;
  return new PaymentUnavailableError(`network error${typeof cause === 'string' ? ` (${cause})` : ''}`);
}

function retryAfterSeconds(res: Response): number | undefined {
  const value = Number(res.headers.get('retry-after') ?? Number.NaN);
  return Number.isInteger(value) && value >= 0 ? value : undefined;
}

export function createHttpPaymentGateway(opts: { baseUrl: string; timeoutMs: number }): PaymentGateway {
  const base = opts.baseUrl.endsWith('/') ? opts.baseUrl : `${opts.baseUrl}/`;

  async function post<T>(path: string, body: object, answer: z.ZodType<T>, declined: () => Error): Promise<T> {
    let res: Response;
    let text: string;
    try {
      // One deadline covers connecting, waiting and reading the body.
      res = await fetch(new URL(path, base), {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(opts.timeoutMs),
      });
      text = await res.text();
    } catch (err) {
      throw transportFailure(err, opts.timeoutMs);
    }

    if (res.status === 402) throw declined();
    if (res.status >= 500) {
      throw new PaymentUnavailableError(`gateway answered ${res.status}`, retryAfterSeconds(res));
    }
    const json = parseJson(text);
    if (!res.ok) {
      const code = errorAnswer.safeParse(json);
      const suffix = code.success ? ` (${code.data.error.code})` : '';
      throw new PaymentUnavailableError(`unexpected status ${res.status}${suffix}`);
    }
    const parsed = answer.safeParse(json);
    if (!parsed.success) throw new PaymentUnavailableError(`malformed ${res.status} answer`);
    return parsed.data;
  }

  // Fields are picked, not spread: callers may pass richer objects and the gateway rejects unknown keys.
  return {
    charge: ({ orderId, amount, idempotencyKey }) =>
      post('charges', { orderId, amount, idempotencyKey }, chargeAnswer, () => new PaymentDeclinedError({ orderId })),
    refund: ({ chargeId, amount, idempotencyKey }) =>
      post('refunds', { chargeId, amount, idempotencyKey }, refundAnswer, () => new PaymentDeclinedError({ chargeId })),
  };
}
