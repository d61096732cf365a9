import {
  BrokenCircuitError,
  CircuitState,
  ConsecutiveBreaker,
  ExponentialBackoff,
  TaskCancelledError,
  TimeoutStrategy,
  circuitBreaker,
  handleWhen,
  retry,
  timeout,
  wrap,
} from 'cockatiel';
import { PaymentDeclinedError, PaymentUnavailableError } from '../errors.ts';
import type { PaymentGateway } from './payment-gateway.ts';

export type BreakerState = 'closed' | 'open' | 'half-open';

export type PaymentOperation = 'charge' | 'refund' | 'lookup';

/**
 * How a gateway call ended for the caller: `ok` (an answer, a lookup that found nothing included),
 * `declined` (402), `rejected` (another 4xx: the request's fault, not retried), `unavailable`
 * (network errors, 5xx or 429 until the retries ran out), `timeout` (PAYMENT_TIMEOUT_MS passed),
 * `breaker-open` (refused at once, no call made).
 */
export type PaymentCallOutcome = 'ok' | 'declined' | 'rejected' | 'unavailable' | 'timeout' | 'breaker-open';

export interface ResilienceOptions {
  /** Deadline of one whole call, retries included (PAYMENT_TIMEOUT_MS). */
  timeoutMs: number;
  /** Extra attempts after a transient failure, within the deadline. */
  retries: number;
  /** Consecutive failed calls that open the breaker. */
  breakerFailures: number;
  /** How long the breaker stays open before it lets one probe call through. */
  halfOpenAfterMs: number;
  onStateChange?: (state: BreakerState) => void;
  /** Called after every call with its operation, outcome and duration (retries and waits included). */
  onCall?: (operation: PaymentOperation, outcome: PaymentCallOutcome, seconds: number) => void;
  now?: () => number;
}

export interface ResilientGateway extends PaymentGateway {
  breakerState(): BreakerState;
  /** Seconds until the breaker lets a probe through (at least 1), for Retry-After. */
  retryAfterSeconds(): number;
}

const STATE_NAMES: Record<CircuitState, BreakerState> = {
  [CircuitState.Closed]: 'closed',
  [CircuitState.Open]: 'open',
  [CircuitState.HalfOpen]: 'half-open',
  [CircuitState.Isolated]: 'open',
};

const isTransient = (err: Error) => err instanceof PaymentUnavailableError && err.transient;

/**
 * Wraps a gateway in cockatiel policies shared by charge, refund and lookup: a circuit breaker
 * (outermost, so an open circuit answers at once without a call), a deadline for the whole call,
 * and retries with exponential backoff for transient failures only (a decline, a 404 or a 4xx is
 * an answer, not a failure). Errors come out as the domain's PaymentUnavailableError.
 */
export function createResilientGateway(inner: PaymentGateway, opts: ResilienceOptions): ResilientGateway {
  const now = opts.now ?? Date.now;
  const breaker = circuitBreaker(handleWhen((err) => isTransient(err) || err instanceof TaskCancelledError), {
    halfOpenAfter: opts.halfOpenAfterMs,
    breaker: new ConsecutiveBreaker(opts.breakerFailures),
  });
  let openedAt = 0;
  breaker.onBreak(() => {
    openedAt = now();
  });
  breaker.onStateChange((state) => opts.onStateChange?.(STATE_NAMES[state]));
  const policy = wrap(
    breaker,
    // Its signal is aborted when the deadline passes, not also when the call returns (cockatiel's
    // default): nothing listens once a call has returned, and each abort makes a DOMException.
    timeout(opts.timeoutMs, { strategy: TimeoutStrategy.Aggressive, abortOnReturn: false }),
    retry(handleWhen(isTransient), {
      maxAttempts: opts.retries,
      backoff: new ExponentialBackoff({ initialDelay: 50, maxDelay: Math.max(50, Math.floor(opts.timeoutMs / 4)) }),
    }),
  );

  /**
   * The breaker's state as callers should act on it. cockatiel moves an open breaker to half-open
   * only inside a call made after `halfOpenAfter`; a caller that fails fast on "open" without
   * calling would keep it open for ever once nothing else calls the gateway. So an open breaker
   * whose wait is over reads as half-open: the next call is the probe.
   */
  function breakerState(): BreakerState {
    const state = breaker.state;
    if (state === CircuitState.Open && now() - openedAt >= opts.halfOpenAfterMs) return 'half-open';
    return STATE_NAMES[state];
  }

  const retryAfterSeconds = () => {
    if (breaker.state !== CircuitState.Open) return 1;
    return Math.max(1, Math.ceil((openedAt + opts.halfOpenAfterMs - now()) / 1000));
  };

  async function run<T>(operation: PaymentOperation, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const started = performance.now();
    let outcome: PaymentCallOutcome = 'ok';
    try {
      // A signal per call: cockatiel's default is one shared signal, which many concurrent calls
      // would each add a listener to.
      return await policy.execute(({ signal }) => fn(signal), new AbortController().signal);
    } catch (err) {
      if (err instanceof BrokenCircuitError) {
        outcome = 'breaker-open';
        throw new PaymentUnavailableError('the circuit breaker is open', retryAfterSeconds(), true, true);
      }
      if (err instanceof TaskCancelledError) {
        outcome = 'timeout';
        throw new PaymentUnavailableError(`timed out after ${opts.timeoutMs} ms`, retryAfterSeconds());
      }
      outcome = outcomeOf(err);
      throw err;
    } finally {
      opts.onCall?.(operation, outcome, (performance.now() - started) / 1000);
    }
  }

  return {
    charge: (req) => run('charge', (signal) => inner.charge(req, signal)),
    refund: (req) => run('refund', (signal) => inner.refund(req, signal)),
    lookup: (key) => run('lookup', (signal) => inner.lookup(key, signal)),
    breakerState,
    retryAfterSeconds,
  };
}

function outcomeOf(err: unknown): PaymentCallOutcome {
  if (err instanceof PaymentDeclinedError) return 'declined';
  if (err instanceof PaymentUnavailableError) {
    if (!err.transient) return 'rejected';
    return /timed out/.test(err.message) ? 'timeout' : 'unavailable';
  }
  return 'unavailable';
}
