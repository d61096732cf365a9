import { randomUUID } from 'node:crypto';
import type { Context, Middleware } from 'koa';
import { DomainError, MachineVersionAheadError, PaymentUnavailableError, RateLimitedError, type ErrorCode } from '../errors.ts';
import type { Logger } from '../log.ts';
import { sqlState } from '../db/pg.ts';

/** The one table from error code to HTTP status. */
export const STATUS_OF: Record<ErrorCode, number> = {
  invalid_body: 400,
  unauthenticated: 401,
  payment_declined: 402,
  forbidden: 403,
  not_found: 404,
  store_not_found: 404,
  method_not_allowed: 405,
  invalid_transition: 409,
  stale_version: 412,
  payload_too_large: 413,
  unsupported_media_type: 415,
  unprocessable: 422,
  payment_in_progress: 409,
  already_picked: 409,
  free_order: 422,
  total_too_large: 422,
  rate_limited: 429,
  too_many_unpaid_orders: 429,
  internal: 500,
  not_implemented: 501,
  payment_unavailable: 503,
  database_unavailable: 503,
  machine_version_ahead: 503,
};

export interface ErrorBody {
  error: { code: ErrorCode; message: string; details: Record<string, unknown> };
}

/** A client's request id is kept only when it is this tame. */
const REQUEST_ID = /^[A-Za-z0-9._:@-]{1,128}$/;

/**
 * Gives every request an id of the service's own (a UUID), answered in `X-Request-Id` and kept on
 * `ctx.state.requestId`: the causation id of what the request does, and the key to its log lines.
 * The client's `X-Request-Id` (a proxy's or an app's), when tame, is kept beside it as
 * `ctx.state.clientRequestId` for their own tracing; any client can send any id, so it is never
 * used as an identity. JSON answers get
 * `X-Content-Type-Options: nosniff` and, unless the route chose its own caching for public data,
 * `Cache-Control: no-store`: they may hold personal data that no cache should keep.
 */
export function requestContext(): Middleware {
  return async (ctx, next) => {
    const incoming = ctx.get('x-request-id');
    const requestId = randomUUID();
    ctx.state.requestId = requestId;
    if (REQUEST_ID.test(incoming)) ctx.state.clientRequestId = incoming;
    ctx.set('X-Request-Id', requestId);
    await next();
    if (/json/i.test(ctx.response.type)) {
      ctx.set('X-Content-Type-Options', 'nosniff');
      if (!ctx.response.get('Cache-Control')) ctx.set('Cache-Control', 'no-store');
    }
  };
}

/** Errors with an HTTP status from Koa, the router or the body parser (raw-body / co-body). */
function fromHttpError(err: { status?: unknown; type?: unknown; message?: unknown; expose?: unknown }): DomainError | undefined {
  const status = typeof err.status === 'number' ? err.status : undefined;
  if (status === 413) return new DomainError('payload_too_large', 'request body is too large', { type: err.type });
  if (status === 415) return new DomainError('unsupported_media_type', 'unsupported media type, charset or encoding', { type: err.type });
  if (status === 400) {
    const parse = err.type === 'entity.parse.failed' || (typeof err.message === 'string' && /JSON|Unexpected|token/i.test(err.message));
    return new DomainError('invalid_body', parse ? 'request body is not valid JSON' : 'bad request', {
      issues: [{ field: 'body', message: parse ? 'not valid JSON' : 'unreadable' }],
    });
  }
  if (status === 404) return new DomainError('not_found', 'not found');
  if (status === 405) return new DomainError('method_not_allowed', 'method not allowed');
  if (status === 501) return new DomainError('not_implemented', 'method not implemented');
  return undefined;
}

/**
 * PostgreSQL away for a moment (restarting, refusing connections, its backends terminated, the
 * pool unable to connect) or too slow (a statement or lock wait past its bound): nothing was
 * changed, and the same request may succeed shortly.
 */
function databaseUnavailable(err: unknown): DomainError | undefined {
  const code = sqlState(err);
  const message = err instanceof Error ? err.message : '';
  // A bound of DATABASE_*_TIMEOUT_MS: statement_timeout, lock_timeout, or the pool's wait for a connection.
  const timeout =
    code === '57014' ? 'statement' : code === '55P03' ? 'lock' : /timeout exceeded when trying to connect/.test(message) ? 'connect' : undefined;
  if (timeout) return new DomainError('database_unavailable', 'the database did not answer in time; retry shortly', { timeout });
  const away =
    (code !== undefined && (/^(08|57P0|53300)/.test(code) || code === '55000')) ||
    (code === 'ECONNREFUSED' || code === 'ECONNRESET') ||
    /^Connection terminated/.test(message);
  return away ? new DomainError('database_unavailable', 'the database is unavailable for a moment; retry shortly', {}) : undefined;
}

/** An answer left without a body: the router's 404, 405 (with Allow) and 501. */
function unanswered(ctx: Context): DomainError | undefined {
  if (ctx.body != null || ctx.status < 400) return undefined;
  switch (ctx.status) {
    case 404:
      return new DomainError('not_found', 'no such route', { method: ctx.method, path: ctx.path.slice(0, 300) });
    case 405:
      return new DomainError('method_not_allowed', `${ctx.method} is not allowed here`, { method: ctx.method, allowed: ctx.response.get('Allow') });
    case 501:
      return new DomainError('not_implemented', `${ctx.method.slice(0, 20)} is not a method this API implements`, { method: ctx.method.slice(0, 20) });
    default:
      return new DomainError('internal', 'internal error');
  }
}

/** Headers that survive an error: everything a handler set before it threw is dropped. */
const KEPT_ON_ERROR = new Set(['x-request-id', 'allow', 'vary']);

/**
 * The one error middleware: every error (and every answer left without a body) becomes
 * `{ error: { code, message, details } }` with its status. A 500 says only "internal error" and the
 * request id; what went wrong goes to the log, without SQL parameters (see log.ts).
 */
export function errorMiddleware(log: Logger): Middleware {
  return async (ctx, next) => {
    let err: DomainError | undefined;
    let caught: unknown;
    try {
      await next();
      err = unanswered(ctx);
    } catch (thrown) {
      caught = thrown;
      err = thrown instanceof DomainError ? thrown : (databaseUnavailable(thrown) ?? fromHttpError((thrown ?? {}) as object));
      for (const name of ctx.response.headerSent ? [] : ctx.res.getHeaderNames()) {
        if (!KEPT_ON_ERROR.has(name)) ctx.res.removeHeader(name);
      }
    }
    if (!err) {
      if (caught === undefined) return;
      err = new DomainError('internal', 'internal error');
    }
    const requestId = String(ctx.state.requestId ?? '');
    const clientRequestId = ctx.state.clientRequestId ?? null;
    let body: ErrorBody;
    if (err.code === 'internal') {
      log.error({ err: caught ?? err, requestId, clientRequestId, method: ctx.method, route: ctx.state.route ?? null }, 'request failed');
      body = { error: { code: 'internal', message: 'internal error', details: { requestId } } };
    } else {
      body = { error: { code: err.code, message: err.message, details: err.details } };
    }
    ctx.status = STATUS_OF[err.code];
    if (err instanceof PaymentUnavailableError || err instanceof RateLimitedError || err instanceof MachineVersionAheadError) ctx.set('Retry-After', String(err.retryAfterSeconds));
    if (err.code === 'database_unavailable') {
      ctx.set('Retry-After', '1');
      log.warn({ err: (caught as Error).message, requestId, clientRequestId, method: ctx.method, route: ctx.state.route ?? null }, 'database unavailable');
    }
    ctx.body = body;
  };
}
