import type { Middleware } from 'koa';
import { DomainError, PaymentUnavailableError, type ErrorCode } from '../errors.ts';
import type { Logger } from '../log.ts';

/** The one table from error code to HTTP status. */
export const STATUS_OF: Record<ErrorCode, number> = {
  invalid_body: 400,
  unauthenticated: 401,
  payment_declined: 402,
  forbidden: 403,
  not_found: 404,
  invalid_transition: 409,
  stale_version: 412,
  payload_too_large: 413,
  unsupported_media_type: 415,
  unprocessable: 422,
  payment_in_progress: 409,
  already_picked: 409,
  internal: 500,
  payment_unavailable: 503,
};

export interface ErrorBody {
  error: { code: ErrorCode; message: string; details: Record<string, unknown> };
}

/** Errors thrown by the body parser (raw-body / co-body) carry an HTTP status and a type. */
function fromParserError(err: { status?: number; type?: string; message?: string }): DomainError | undefined {
  if (err.status === 413) return new DomainError('payload_too_large', 'request body is too large', { type: err.type });
  if (err.status === 415) return new DomainError('unsupported_media_type', err.message ?? 'unsupported media type');
  if (err.status === 400) {
    return new DomainError('invalid_body', `request body is not valid JSON: ${err.message ?? 'parse error'}`, {
      issues: [{ field: 'body', message: 'not valid JSON' }],
    });
  }
  return undefined;
}

export function errorMiddleware(log: Logger): Middleware {
  return async (ctx, next) => {
    try {
      await next();
      if (ctx.status === 404 && ctx.body === undefined) {
        throw new DomainError('not_found', `no route for ${ctx.method} ${ctx.path}`, { method: ctx.method, path: ctx.path });
      }
    } catch (caught) {
      const err =
        caught instanceof DomainError
          ? caught
          : (fromParserError(caught as object) ?? new DomainError('internal', 'internal server error'));
      if (err.code === 'internal') log.error({ err: caught, path: ctx.path }, 'request failed');
      ctx.status = STATUS_OF[err.code];
      if (err instanceof PaymentUnavailableError) ctx.set('Retry-After', String(err.retryAfterSeconds));
      const body: ErrorBody = { error: { code: err.code, message: err.message, details: err.details } };
      ctx.body = body;
    }
  };
}
