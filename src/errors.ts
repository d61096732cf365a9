/**
 * Domain errors. The HTTP layer maps each `code` to one status (src/http/error-middleware.ts);
 * nothing below the HTTP layer knows about status codes.
 */
export type ErrorCode =
  | 'invalid_body'
  | 'unauthenticated'
  | 'forbidden'
  | 'not_found'
  | 'store_not_found'
  | 'method_not_allowed'
  | 'invalid_transition'
  | 'stale_version'
  | 'payload_too_large'
  | 'unsupported_media_type'
  | 'unprocessable'
  | 'free_order'
  | 'total_too_large'
  | 'rate_limited'
  | 'too_many_unpaid_orders'
  | 'payment_declined'
  | 'payment_unavailable'
  | 'payment_in_progress'
  | 'already_picked'
  | 'internal'
  | 'not_implemented'
  | 'database_unavailable'
  | 'machine_version_ahead';

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

/** An order names a store that has no menu at all, so no such store takes orders. */
export class StoreNotFoundError extends DomainError {
  constructor(storeId: string) {
    super('store_not_found', `store ${storeId} not found`, { storeId });
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

/** An order whose total is 0 has nothing to pay, and the gateway refuses a charge of 0. */
export class FreeOrderError extends DomainError {
  constructor(storeId: string) {
    super('free_order', 'an order must cost something: its total is 0', { storeId, total: 0 });
  }
}

/** A total so large that it would not fit the columns that hold amounts (charges, refunds). */
export class TotalTooLargeError extends DomainError {
  constructor(total: number, max: number) {
    super('total_too_large', `the order total ${total} is above the largest accepted total ${max}`, { total, max });
  }
}

/** Too many requests for one caller in the current window; `retryAfterSeconds` says when to try again. */
export class RateLimitedError extends DomainError {
  constructor(readonly retryAfterSeconds: number, details: Record<string, unknown> = {}) {
    super('rate_limited', `too many requests: try again in ${retryAfterSeconds} s`, details);
  }
}

/** The customer already has the most orders waiting for payment that one customer may have. */
export class TooManyUnpaidOrdersError extends DomainError {
  constructor(max: number) {
    super('too_many_unpaid_orders', `you already have ${max} orders waiting for payment: pay or cancel one first`, { max });
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

/**
 * The order was moved to a newer version of the order machine than this replica runs (a rolling
 * deploy is under way): this replica neither judges nor writes it. Nothing was changed; a replica
 * of the newer version takes the same request.
 */
export class MachineVersionAheadError extends DomainError {
  readonly retryAfterSeconds = 1;
  constructor(orderId: string, machineVersion: number, newestKnown: number) {
    super('machine_version_ahead', `order ${orderId} runs version ${machineVersion} of the order machine; this replica runs up to version ${newestKnown}`, {
      orderId,
      machineVersion,
      newestKnown,
    });
  }
}
