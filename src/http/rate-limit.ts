import type { Redis } from 'ioredis';
import type { Context, Middleware } from 'koa';
import { RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import type { Principal } from '../actors/principal.ts';
import { DomainError, RateLimitedError } from '../errors.ts';
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
 * budget the answer is 429 `rate_limited` with `Retry-After`. It runs after authentication;
 * refused tokens are counted by the address limit instead.
 */
export function rateLimit(opts: RateLimitOptions): Middleware {
  const take = budget(opts, 'baedal:rate');
  return async (ctx, next) => {
    const who = ctx.state.principal as Principal | undefined;
    if (!who) return next();
    const kind = kindOf(ctx.method);
    await take(`${kind}:${who.role}:${who.sub}`, { limit: opts.perMinute, windowSeconds: WINDOW_SECONDS, kind });
    await next();
  };
}

/**
 * A budget of `perMinute` points per key and window, kept in Redis under the key prefix (by default
 * `defaultPrefix`). Taking one point of `key`'s budget throws 429 `rate_limited`, with the seconds
 * until the window ends, once it is spent. When Redis cannot answer (down, reconnecting, or slower
 * than `timeoutMs`) the request is let through and the failure logged at most every 10 s: the
 * limiter guards capacity and must not itself take the API down.
 */
function budget(opts: RateLimitOptions, defaultPrefix: string) {
  const limiter = new RateLimiterRedis({
    storeClient: opts.redis,
    keyPrefix: opts.keyPrefix ?? defaultPrefix,
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
  return async (key: string, details: Record<string, unknown>): Promise<void> => {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        limiter.consume(key),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`rate limiter took over ${timeoutMs} ms`)), timeoutMs);
        }),
      ]);
    } catch (outcome) {
      if (outcome instanceof RateLimiterRes) throw new RateLimitedError(Math.max(1, Math.ceil(outcome.msBeforeNext / 1000)), details);
      warn(outcome);
    } finally {
      clearTimeout(timer);
    }
  };
}

/**
 * Paths the kubelet probes. They are never limited per address: the kubelet probes every pod of
 * a node from that node's address, so one budget would be shared by all of them, and both answer
 * from memory (readiness is measured at most once a second), so a flood of them costs no more
 * than the 429 that would refuse it.
 */
export const PROBE_PATHS: readonly string[] = ['/healthz', '/readyz'];

export interface AddressRateLimitOptions {
  redis: Redis;
  log: Logger;
  /** Unauthenticated or refused requests per minute per client address. */
  perMinute: number;
  keyPrefix?: string;
  timeoutMs?: number;
}

/** The per-address budget of requests that carry no credential the service accepts. */
export interface AddressRateLimit {
  /**
   * Runs inside the error middleware, before the routes: a request from an address over its budget
   * that carries no Authorization header is refused at once, from memory; requests that end without
   * an accepted credential (public routes, unknown routes, refused tokens) take a point, and the
   * one over the budget becomes 429.
   */
  middleware: Middleware;
}

/**
 * A per-client-address limit on what anyone can send without a token: the public routes (but the
 * probes), unknown routes, and requests whose token is refused. Counted in Redis (the budget holds
 * across replicas); once an address is over it, the replica that saw it refuses it from memory
 * until its window ends, so a flood costs neither Redis nor the handlers. Requests with an
 * accepted token are never counted here: they have the per-token budget.
 */
export function addressRateLimit(opts: AddressRateLimitOptions): AddressRateLimit {
  const take = budget(opts, 'baedal:rate-address');
  const details = { limit: opts.perMinute, windowSeconds: WINDOW_SECONDS, kind: 'address' };
  // Addresses over their budget, until their window ends: refused without asking Redis.
  const blocked = new Map<string, number>();
  const refuseIfBlocked = (ctx: Context) => {
    const key = addressKey(ctx.ip);
    const until = blocked.get(key);
    if (until === undefined) return;
    const ms = until - Date.now();
    if (ms <= 0) {
      blocked.delete(key);
      return;
    }
    throw new RateLimitedError(Math.max(1, Math.ceil(ms / 1000)), details);
  };
  const charge = async (ctx: Context) => {
    refuseIfBlocked(ctx);
    const key = addressKey(ctx.ip);
    try {
      await take(key, details);
    } catch (err) {
      if (err instanceof RateLimitedError) {
        blocked.set(key, Date.now() + err.retryAfterSeconds * 1000);
        // Bounded: the oldest entries go first (a Map iterates in insertion order).
        if (blocked.size > MAX_BLOCKED_ADDRESSES) blocked.delete(blocked.keys().next().value!);
      }
      throw err;
    }
  };
  const middleware: Middleware = async (ctx, next) => {
    if (PROBE_PATHS.includes(ctx.path)) return next();
    if (!ctx.get('authorization')) refuseIfBlocked(ctx);
    try {
      await next();
    } catch (err) {
      if (err instanceof DomainError && err.code === 'unauthenticated') await charge(ctx);
      throw err;
    }
    if (!ctx.state.authenticated) await charge(ctx);
  };
  return { middleware };
}

/**
 * The budget's key for a client address: an IPv4 address whole (also when IPv4-mapped), an IPv6
 * address by its /64, the block one subscriber is usually given (its 2^64 addresses are one client).
 */
export function addressKey(ip: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped) return mapped[1]!;
  if (!ip.includes(':')) return ip;
  const [head = '', tail = ''] = ip.toLowerCase().split('%')[0]!.split('::');
  const left = head ? head.split(':') : [];
  const right = ip.includes('::') && tail ? tail.split(':') : [];
  const groups = ip.includes('::') ? [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right] : left;
  return `${groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, '')).join(':')}::/64`;
}

/** How many blocked addresses each replica remembers; beyond it the oldest are asked of Redis again. */
const MAX_BLOCKED_ADDRESSES = 100_000;
