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
  | 'payment_in_progress'
  | 'already_picked'
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

/**
 * The payment gateway could not be reached, failed or timed out; retrying later is safe.
 * `transient` errors are worth retrying and count against the circuit breaker; `notAttempted`
 * means the request certainly never reached the gateway (the breaker was open, the connection
 * was refused), so nothing can have been charged.
 */
export class PaymentUnavailableError extends DomainError {
  constructor(
    reason: string,
    readonly retryAfterSeconds = 5,
    readonly transient = true,
    readonly notAttempted = false,
  ) {
    super('payment_unavailable', `the payment gateway is unavailable: ${reason}`, { reason });
  }
}

/** Another payment attempt of the order is in flight; its outcome decides the order. */
export class PaymentInProgressError extends DomainError {
  constructor(orderId: string) {
    super('payment_in_progress', 'a payment of this order is in progress; try again when it has finished', { orderId });
  }
}

/** A rider tried to pick an order another rider picked first. */
export class AlreadyPickedError extends DomainError {
  constructor(orderId: string) {
    super('already_picked', 'another rider picked this order first', { orderId });
  }
}
