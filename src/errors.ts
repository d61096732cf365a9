/**
 * Domain errors. The HTTP layer maps each `code` to one status (src/http/error-middleware.ts);
 * nothing below the HTTP layer knows about status codes.
 */
export type ErrorCode =
  | 'invalid_body'
  | 'unauthenticated'
  | 'forbidden'
  | 'not_found'
  | 'invalid_transition'
  | 'stale_version'
  | 'payload_too_large'
  | 'unsupported_media_type'
  | 'unprocessable'
  | 'payment_declined'
  | 'payment_unavailable'
  | 'internal';

export class DomainError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = new.target.name;
  }
}

export class NotFoundError extends DomainError {
  constructor(what: string, id: string) {
    super('not_found', `${what} ${id} not found`, { [what]: id });
  }
}

export class ForbiddenError extends DomainError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('forbidden', message, details);
  }
}

export class InvalidTransitionError extends DomainError {
  constructor(command: string, status: string, allowed: readonly string[]) {
    super('invalid_transition', `cannot ${command} an order that is ${status}`, {
      command,
      status,
      allowed,
    });
  }
}

export class StaleVersionError extends DomainError {
  constructor(expected: number, current: number) {
    super('stale_version', `order is at version ${current}, not ${expected}`, {
      expected,
      current,
    });
  }
}

export class UnprocessableError extends DomainError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('unprocessable', message, details);
  }
}

/** The payment gateway refused the charge (card declined); the order is left as it was. */
export class PaymentDeclinedError extends DomainError {
  constructor(details: Record<string, unknown> = {}) {
    super('payment_declined', 'the payment was declined', details);
  }
}

/** The payment gateway could not be reached, failed or timed out; retrying later is safe. */
export class PaymentUnavailableError extends DomainError {
  constructor(reason: string, readonly retryAfterSeconds = 5) {
    super('payment_unavailable', `the payment gateway is unavailable: ${reason}`, { reason });
  }
}
