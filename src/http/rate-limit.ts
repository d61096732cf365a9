import type { Redis } from 'ioredis';
import type { Middleware } from 'koa';
import { RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import type { Principal } from '../actors/principal.ts';
import { RateLimitedError } from '../errors.ts';
import type { Logger } from '../log.ts';

export interface RateLimitOptions {
  redis: Redis;
  log: Logger;
  /** Requests per minute per token, for reads and for writes separately. */
  perMinute: number;
  keyPrefix?: string;
  /** A limiter call slower than this lets the request through (Redis is struggling; see below). */
  timeoutMs?: number;
}

/** Reads and writes have budgets of their own, so a page that polls cannot lock its user out of commands. */
export type RequestKind = 'read' | 'write';

export const kindOf = (method: string): RequestKind => (method === 'GET' || method === 'HEAD' ? 'read' : 'write');

const WINDOW_SECONDS = 60;

/**
 * Per-token rate limiting in Redis, so the budget holds across replicas: `perMinute` requests per
 * fixed one-minute window for each token identity (role + sub) and kind (read / write). Over the
 * budget the answer is 429 `rate_limited` with `Retry-After`. It runs after authentication, so
 * refused tokens cost no Redis round trip.
 *
 * When Redis cannot answer (down, reconnecting, or slower than `timeoutMs`) the request is let
 * through and the failure logged: the limiter guards capacity and must not itself take the API down.
 */
export function rateLimit(opts: RateLimitOptions): Middleware {
  const limiter = new RateLimiterRedis({
    storeClient: opts.redis,
    keyPrefix: opts.keyPrefix ?? 'baedal:rate',
    points: opts.perMinute,
    duration: WINDOW_SECONDS,
    // With ioredis's `maxRetriesPerRequest: null` a command waits for a reconnect forever; ask only a ready client.
    rejectIfRedisNotReady: true,
  });
  const timeoutMs = opts.timeoutMs ?? 1000;
  let lastWarning = 0;
  const warn = (err: unknown) => {
    const now = Date.now();
    if (now - lastWarning < 10_000) return;
    lastWarning = now;
    opts.log.warn({ err }, 'rate limiter unavailable: letting requests through unlimited');
  };

  return async (ctx, next) => {
    const who = ctx.state.principal as Principal | undefined;
    if (!who) return next();
    const kind = kindOf(ctx.method);
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        limiter.consume(`${kind}:${who.role}:${who.sub}`),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`rate limiter took over ${timeoutMs} ms`)), timeoutMs);
        }),
      ]);
    } catch (outcome) {
      if (outcome instanceof RateLimiterRes) {
        const retryAfter = Math.max(1, Math.ceil(outcome.msBeforeNext / 1000));
        throw new RateLimitedError(retryAfter, { limit: opts.perMinute, windowSeconds: WINDOW_SECONDS, kind });
      }
      warn(outcome);
    } finally {
      clearTimeout(timer);
    }
    await next();
  };
}
