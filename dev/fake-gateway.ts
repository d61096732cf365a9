import { randomUUID } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import Router, { type RouterMiddleware } from '@koa/router';
import Koa from 'koa';
import { z } from 'zod';

/**
 * A stand-alone fake of the payment provider: real HTTP, in-memory ledger, and admin knobs
 * (latency, outages, declines) so the order service can be tested against a gateway that misbehaves.
 */

/** Real gateway requests are a few hundred bytes; anything near this is a client bug. */
const MAX_BODY_BYTES = 64 * 1024;
/** What a simulated outage tells clients to wait before retrying. */
const RETRY_AFTER_SECONDS = 1;

export interface Behaviour {
  /** Delay before a request is handled. */
  latencyMs: number;
  /** Share of requests answered 503 without being handled. */
  failRate: number;
  decline: boolean;
  /** Delay after a charge or refund is recorded and before it is answered: a lost or late answer. */
  answerDelayMs: number;
  /**
   * The next this-many refund requests for a charge in the ledger are answered 503 without being
   * handled. A refund of a charge the ledger does not hold (one owed since before a reset, say) is
   * answered 404 and uses none of them.
   */
  failNextRefunds: number;
}

/** How many requests of each kind reached the gateway (handled or not), for tests that count calls. */
export interface GatewayStats {
  charges: number;
  refunds: number;
  lookups: number;
  /** Refund requests past the simulated network (`failRate`) with a well-formed body, by the charge they refund: one order's calls, whatever else is owed. */
  refundsByCharge: Record<string, number>;
}

export interface LedgerCharge {
  chargeId: string;
  orderId: string;
  amount: number;
  idempotencyKey: string;
  at: string;
}

export interface LedgerRefund {
  refundId: string;
  chargeId: string;
  amount: number;
  idempotencyKey: string;
  at: string;
}

export interface FakeGateway {
  url: string;
  port: number;
  close(): Promise<void>;
}

const NORMAL_BEHAVIOUR: Readonly<Behaviour> = { latencyMs: 0, failRate: 0, decline: false, answerDelayMs: 0, failNextRefunds: 0 };

const id = z.string().min(1);
const chargeBody = z.strictObject({ orderId: id, amount: z.int().positive(), idempotencyKey: id });
const refundBody = z.strictObject({ chargeId: id, amount: z.int().positive(), idempotencyKey: id });
const behaviourBody = z.strictObject({
  latencyMs: z.int().min(0).optional(),
  failRate: z.number().min(0).max(1).optional(),
  decline: z.boolean().optional(),
  answerDelayMs: z.int().min(0).optional(),
  failNextRefunds: z.int().min(0).optional(),
});

class GatewayError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

const errorBody = (code: string, message: string, details: Record<string, unknown> = {}) => ({
  error: { code, message, details },
});

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) {
      throw new GatewayError(413, 'payload_too_large', `body exceeds ${MAX_BODY_BYTES} bytes`);
    }
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new GatewayError(400, 'invalid_body', 'body is not valid JSON');
  }
}

async function parseBody<T>(req: IncomingMessage, schema: z.ZodType<T>): Promise<T> {
  const result = schema.safeParse(await readJson(req));
  if (result.success) return result.data;
  const issues = result.error.issues.map((i) => ({
    path: i.path.map(String).join('.') || '(body)',
    message: i.message,
  }));
  const message = issues.map((i) => `${i.path}: ${i.message}`).join('; ');
  throw new GatewayError(400, 'invalid_body', message, { issues });
}

const keyReused = (idempotencyKey: string) =>
  new GatewayError(409, 'idempotency_key_reused', 'idempotency key was used for a different request', {
    idempotencyKey,
  });

export async function createFakeGateway(
  options: { port?: number; host?: string } = {},
): Promise<FakeGateway> {
  const { port = 0, host = '127.0.0.1' } = options;

  let behaviour: Behaviour = { ...NORMAL_BEHAVIOUR };
  let stats: GatewayStats = { charges: 0, refunds: 0, lookups: 0, refundsByCharge: {} };
  const charges = new Map<string, LedgerCharge>(); // by idempotency key
  const refunds = new Map<string, LedgerRefund>(); // by idempotency key
  // Aborted on reset/close so a request still sleeping in `latencyMs` cannot record into the next test's ledger.
  // Every delayed request listens on this signal: many at once is normal, not a leak.
  const newWaits = () => {
    const controller = new AbortController();
    setMaxListeners(0, controller.signal);
    return controller;
  };
  let waits = newWaits();
  let closing: Promise<void> | undefined;

  const reset = () => {
    waits.abort();
    waits = newWaits();
    charges.clear();
    refunds.clear();
    behaviour = { ...NORMAL_BEHAVIOUR };
    stats = { charges: 0, refunds: 0, lookups: 0, refundsByCharge: {} };
  };

  const count = (kind: 'charges' | 'refunds' | 'lookups'): RouterMiddleware => async (_ctx, next) => {
    stats[kind] += 1;
    await next();
  };

  /** Holds the answer of a recorded charge or refund, as a slow or lost network would. */
  const answerLate = async () => {
    if (behaviour.answerDelayMs === 0) return;
    try {
      await delay(behaviour.answerDelayMs, undefined, { signal: waits.signal });
    } catch {
      throw new GatewayError(503, 'gateway_reset', 'the gateway was reset or closed during the request');
    }
  };

  const simulateNetwork: RouterMiddleware = async (_ctx, next) => {
    const { latencyMs, failRate } = behaviour;
    if (latencyMs > 0) {
      try {
        await delay(latencyMs, undefined, { signal: waits.signal });
      } catch {
        throw new GatewayError(503, 'gateway_reset', 'the gateway was reset or closed during the request');
      }
    }
    if (Math.random() < failRate) {
      throw new GatewayError(503, 'gateway_unavailable', 'simulated outage');
    }
    await next();
  };

  const router = new Router();

  router.post('/charges', count('charges'), simulateNetwork, async (ctx) => {
    const cmd = await parseBody(ctx.req, chargeBody);
    const previous = charges.get(cmd.idempotencyKey);
    if (previous) {
      if (previous.orderId !== cmd.orderId || previous.amount !== cmd.amount) {
        throw keyReused(cmd.idempotencyKey);
      }
    } else if (behaviour.decline) {
      throw new GatewayError(402, 'payment_declined', 'the card was declined', { orderId: cmd.orderId });
    }
    const charge = previous ?? { chargeId: `ch_${randomUUID()}`, ...cmd, at: new Date().toISOString() };
    charges.set(cmd.idempotencyKey, charge);
    await answerLate();
    ctx.status = 201;
    ctx.body = { chargeId: charge.chargeId };
  });

  // Lets a client that lost an answer find out whether the charge happened.
  router.get('/charges/:idempotencyKey', count('lookups'), simulateNetwork, (ctx) => {
    const charge = charges.get(ctx.params.idempotencyKey!);
    if (!charge) {
      throw new GatewayError(404, 'charge_not_found', 'no charge with this idempotency key', {
        idempotencyKey: ctx.params.idempotencyKey,
      });
    }
    ctx.body = charge;
  });

  router.post('/refunds', count('refunds'), simulateNetwork, async (ctx) => {
    const cmd = await parseBody(ctx.req, refundBody);
    stats.refundsByCharge[cmd.chargeId] = (stats.refundsByCharge[cmd.chargeId] ?? 0) + 1;
    const charge = [...charges.values()].find((c) => c.chargeId === cmd.chargeId);
    if (charge && behaviour.failNextRefunds > 0) {
      behaviour.failNextRefunds -= 1;
      throw new GatewayError(503, 'gateway_unavailable', 'simulated refund outage');
    }
    const previous = refunds.get(cmd.idempotencyKey);
    if (previous) {
      if (previous.chargeId !== cmd.chargeId || previous.amount !== cmd.amount) {
        throw keyReused(cmd.idempotencyKey);
      }
      ctx.status = 201;
      ctx.body = { refundId: previous.refundId };
      return;
    }
    if (!charge) {
      throw new GatewayError(404, 'charge_not_found', `charge ${cmd.chargeId} not found`, {
        chargeId: cmd.chargeId,
      });
    }
    let refundable = charge.amount;
    for (const r of refunds.values()) if (r.chargeId === charge.chargeId) refundable -= r.amount;
    if (cmd.amount > refundable) {
      throw new GatewayError(422, 'refund_exceeds_charge', `only ${refundable} can still be refunded`, {
        chargeId: charge.chargeId,
        refundable,
      });
    }
    const refund = { refundId: `re_${randomUUID()}`, ...cmd, at: new Date().toISOString() };
    refunds.set(cmd.idempotencyKey, refund);
    await answerLate();
    ctx.status = 201;
    ctx.body = { refundId: refund.refundId };
  });

  router.get('/_admin/ledger', (ctx) => {
    ctx.body = { charges: [...charges.values()], refunds: [...refunds.values()] };
  });

  router.get('/_admin/stats', (ctx) => {
    ctx.body = stats;
  });

  router.put('/_admin/behaviour', async (ctx) => {
    const patch = await parseBody(ctx.req, behaviourBody);
    behaviour = { ...behaviour, ...patch }; // JSON has no undefined, so absent keys keep their value
    ctx.body = behaviour;
  });

  router.delete('/_admin/ledger', (ctx) => {
    reset();
    ctx.status = 204;
  });
  router.post('/_admin/reset', (ctx) => {
    reset();
    ctx.status = 204;
  });

  const app = new Koa();
  // A caller that gave up (timeout) aborts its request mid-way: an expected event, not an error to print.
  app.silent = true;
  app.use(async (ctx, next) => {
    try {
      await next();
      // Router 404/405 leave no body; answer them in the same JSON shape as every other error.
      if (ctx.status >= 400 && ctx.body == null) {
        const status = ctx.status;
        ctx.status = status;
        ctx.body = errorBody(status === 404 ? 'not_found' : 'method_not_allowed', ctx.message);
      }
    } catch (err) {
      if (!(err instanceof GatewayError)) throw err;
      ctx.status = err.status;
      ctx.body = errorBody(err.code, err.message, err.details);
      if (err.status === 503) ctx.set('Retry-After', String(RETRY_AFTER_SECONDS));
    }
    // Keep-alive sockets would otherwise hold close() open after the last answer.
    if (closing) ctx.set('Connection', 'close');
  });
  app.use(router.routes());
  app.use(router.allowedMethods());

  const server = createServer(app.callback());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });

  const actualPort = (server.address() as AddressInfo).port;
  const urlHost = host.includes(':') ? `[${host}]` : host;

  return {
    url: `http://${urlHost}:${actualPort}`,
    port: actualPort,
    close() {
      closing ??= new Promise<void>((resolve, reject) => {
        waits.abort();
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeIdleConnections();
      });
      return closing;
    },
  };
}
