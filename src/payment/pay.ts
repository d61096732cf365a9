import type { CommandContext, OrderView, PayCommand } from '../actors/order-actor.ts';
import { ConstantBackoff, handleType, retry } from 'cockatiel';
import { NO_CAUSE, requireAccepts, requireCommand, requireVisible, type OrderSteps } from '../actors/order-step.ts';
import type { Cause } from '../actors/order-repository.ts';
import { refundKey as orderRefundKey } from '../actors/order-intents.ts';
import { judgeable, type JudgeableOrder, type LoadedOrder } from '../actors/order-store.ts';
import { refundViewOf, viewOf } from '../actors/order-view.ts';
import type { Principal } from '../actors/principal.ts';
import type { WorkPrompt } from '../actors/work.ts';
import {
  InvalidTransitionError,
  PaymentDeclinedError,
  PaymentInProgressError,
  PaymentUnavailableError,
} from '../errors.ts';
import { chargeOutcome, recordingCharge } from './charge-guard.ts';
import { createAttempts, type Attempt } from './attempts.ts';
import type { ResilientGateway } from './resilient-gateway.ts';
import { activeTraceparent, ATTR, inSpan } from '../tracing.ts';

/** A reconciliation holds the order's earlier attempt (`key`): its answer decides whether to charge at all. */
class HeldByReconciliation extends Error {
  constructor(readonly key: string) {
    super(`a reconciliation holds payment attempt ${key}`);
  }
}

export interface PayDeps {
  steps: OrderSteps;
  payments: ResilientGateway;
  prompt: WorkPrompt;
  /** Attempts recorded together: most per statement, most statements on their way at once. */
  batch: { maxBatch: number; maxInFlight: number };
  /** When an attempt still pending is deemed abandoned and handed to reconciliation. */
  reconcileAfterMs: number;
  /** This replica, as its lease names it: the attempts it calls the gateway for carry it. */
  replica: string;
  /** The longest a pay waits for a reconciliation of the order's earlier attempt to finish. */
  waitForReconciliationMs: number;
  /** Counts outcomes for /metrics. */
  onOutcome?: (outcome: 'charged' | 'declined' | 'failed' | 'unknown' | 'orphaned' | 'breaker-open') => void;
}

/** Pay, and what the runtime does with this replica's payments at shutdown. */
export type Pay = PayCommand & { handOver(): Promise<string[]> };

/**
 * Pays an order without holding anything while the gateway works:
 * 1. judge (may this customer pay now?) and record a payment attempt with its own idempotency
 *    key, in one statement checked against the order's version (shared with the payments of the
 *    moment); a second attempt while one is in flight on a live replica is refused (409
 *    payment_in_progress), never charged;
 * 2. call the gateway with no transaction and no row lock open (behind the circuit breaker);
 * 3. record the outcome in one statement: the order becomes paid if it is still where it was
 *    judged; if a concurrent command moved it on (cancel), the charge is refunded instead.
 * An attempt whose outcome is unknown (timeout, lost answer, its replica gone) is left to
 * reconciliation, which asks the gateway by idempotency key: a charge the order can still take
 * pays it, any other is refunded. A retried pay meanwhile does not start a second charge: it waits
 * (bounded) while a reconciliation holds the attempt, and otherwise takes the attempt over with its
 * key, so the gateway returns the charge it made or makes it once.
 */
export function createPay(deps: PayDeps): Pay {
  const { steps, payments } = deps;
  const db = steps.db;
  const outcome = (o: Parameters<NonNullable<PayDeps['onOutcome']>>[0]) => deps.onOutcome?.(o);
  const attempts = createAttempts(db, deps);

  /** May this customer pay now? The checks every command makes, then the machine's (a pure judge of the step). */
  const judge = (who: Principal, orderId: string, ctx: CommandContext) => (loaded: LoadedOrder | undefined): JudgeableOrder => {
    requireCommand(who, loaded?.row, orderId, 'pay', 'customer', ctx.expectedVersion);
    const order = judgeable(loaded!);
    requireAccepts(order, 'pay', 'pay');
    return order;
  };

  /** The order as it is now, if the attempt `key` is what paid it: a retry then answers as the pay would have. */
  async function paidBy(who: Principal, orderId: string, key: string): Promise<OrderView | undefined> {
    const [attempt] = await db.query<{ status: string }>('SELECT status FROM payment_attempts WHERE idempotency_key = $1', [key]);
    if (attempt?.status !== 'charged') return undefined;
    const now = await steps.store.load(orderId, true);
    if (!now) return undefined;
    requireVisible(who, now.row, orderId, 'pay');
    // Moved on to a newer machine version since: a replica that runs it answers the retry.
    const { machine, snapshot } = judgeable(now);
    if (machine.statusOf(snapshot) === 'awaitingPayment') return undefined;
    return viewOf(machine, snapshot, now.row, null);
  }

  /**
   * Records a successful charge in one statement, shared with the other commands of the moment:
   * the order becomes paid if it is still at the version the payment was judged on (and the attempt
   * still pending); if a concurrent command moved it on (cancel, the unpaid-order timer), the same
   * statement marks the attempt orphaned and records the refund of its charge instead.
   */
  async function recordCharge(who: Principal, loaded: JudgeableOrder, attempt: Attempt, chargeId: string, amount: number, cause: Cause): Promise<OrderView> {
    const orderId = loaded.row.id;
    const decided = steps.decide(loaded, { type: 'pay', chargeId }, 'pay');
    const refundKey = orderRefundKey(orderId, chargeId);
    const { t, view } = await steps.commitDecided(loaded.row, decided, who, cause, (t) => recordingCharge(t, { attemptKey: attempt.key, chargeId, amount, refundKey }));
    if (view) {
      outcome('charged');
      return view;
    }
    if (chargeOutcome(t) === 'orphaned') {
      // A concurrent command won: the money goes back.
      deps.prompt.schedule('refund', [refundKey]);
      outcome('orphaned');
      const refund = refundViewOf({ refund_status: 'pending', refund_amount: amount, refund_id: null, refunded_at: null });
      const now = (await steps.store.load(orderId, true))!;
      // Moved to a newer machine version than this replica runs: that replica answers the retry.
      if (now.ahead) {
        Object.assign(now.ahead.details, { refund });
        throw now.ahead;
      }
      const refused = new InvalidTransitionError('pay', now.machine.statusOf(now.snapshot), now.machine.allowedCommands(now.snapshot));
      Object.assign(refused.details, { refund });
      throw refused;
    }
    // Someone else decided the attempt first: reconciliation, or a retry that took it over (same
    // key, so the same charge). If it paid the order, so did this call.
    const paid = await paidBy(who, orderId, attempt.key);
    if (paid) return paid;
    outcome('unknown');
    throw new PaymentUnavailableError('the payment took too long and is being reversed', 5, false);
  }

  /**
   * Records an attempt for the order as judged (the step's write): undefined when the order moved
   * on meanwhile (the step judges again). Refused while the breaker is open (nothing is recorded,
   * nothing called) or while another attempt is in flight on a live replica; a reconciliation that
   * holds the earlier attempt is waited for.
   */
  async function startAttempt(order: JudgeableOrder): Promise<{ order: JudgeableOrder; attempt: Attempt } | undefined> {
    const row = order.row;
    if (payments.breakerState() === 'open') {
      outcome('breaker-open');
      throw new PaymentUnavailableError('the circuit breaker is open', payments.retryAfterSeconds(), true, true);
    }
    const amount = order.snapshot.context.total;
    const started = await attempts.start({ orderId: row.id, version: row.version, machineVersion: row.machine_version, amount, traceparent: activeTraceparent() });
    if (started === undefined) return undefined;
    if (started === 'in-progress') throw new PaymentInProgressError(row.id);
    if ('wait' in started) throw new HeldByReconciliation(started.wait);
    return { order, attempt: started };
  }

  /** While a reconciliation holds the earlier attempt, a pay judges again every 100 ms, for a bounded time. */
  const whileReconciled = retry(handleType(HeldByReconciliation), {
    maxAttempts: Math.max(1, Math.ceil(deps.waitForReconciliationMs / 100)),
    backoff: new ConstantBackoff(100),
  });

  async function pay(who: Principal, orderId: string, ctx: CommandContext): Promise<OrderView> {
    let waitedFor: string | undefined;
    let started: { order: JudgeableOrder; attempt: Attempt };
    try {
      started = await whileReconciled.execute(({ attempt }) =>
        steps.run(orderId, judge(who, orderId, ctx), startAttempt, { fresh: attempt > 0 }).catch((err: unknown) => {
          if (err instanceof HeldByReconciliation) waitedFor = err.key;
          throw err;
        }),
      );
    } catch (err) {
      if (err instanceof HeldByReconciliation) throw new PaymentInProgressError(orderId);
      // The earlier attempt this pay waited for paid the order meanwhile: that is this pay's answer.
      const paid = err instanceof InvalidTransitionError && waitedFor ? await paidBy(who, orderId, waitedFor) : undefined;
      if (paid) return paid;
      throw err;
    }
    return call(who, started.order, started.attempt, started.order.snapshot.context.total, ctx);
  }

  /** Charges for a recorded attempt (no transaction, no lock open) and records the outcome. */
  async function call(who: Principal, loaded: JudgeableOrder, attempt: Attempt, amount: number, ctx: CommandContext): Promise<OrderView> {
    const orderId = loaded.row.id;
    let chargeId: string;
    try {
      ({ chargeId } = await inSpan(
        'payment.charge',
        { attributes: { [ATTR.orderId]: orderId, [ATTR.paymentKey]: attempt.key, 'baedal.payment.amount': amount } },
        () => payments.charge({ orderId, amount, idempotencyKey: attempt.key }),
      ));
    } catch (err) {
      if (err instanceof PaymentDeclinedError) {
        await attempts.settle(attempt.key, 'declined', null);
        outcome('declined');
      } else if (err instanceof PaymentUnavailableError && err.notAttempted) {
        await attempts.settle(attempt.key, 'failed', err.message);
        outcome(payments.breakerState() === 'open' ? 'breaker-open' : 'failed');
      } else {
        await attempts.unknown(attempt.key, err instanceof Error ? err.message : String(err));
        outcome('unknown');
        if (!(err instanceof PaymentUnavailableError)) throw new PaymentUnavailableError('unexpected gateway failure');
      }
      throw err;
    }
    return recordCharge(who, loaded, attempt, chargeId, amount, ctx.cause ?? NO_CAUSE);
  }

  return Object.assign(pay, { handOver: attempts.handOver });
}
