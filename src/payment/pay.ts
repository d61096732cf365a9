import type { CommandContext, OrderSteps, OrderView, PayCommand } from '../actors/order-actor.ts';
import { refundKey, restoreSnapshot, type OrderRow } from '../actors/order-repository.ts';
import { refundViewOf } from '../actors/order-view.ts';
import { viewOf } from '../actors/order-view.ts';
import { requireRole, type Principal } from '../actors/principal.ts';
import type { WorkPrompt } from '../actors/work.ts';
import { sqlState, UNIQUE_VIOLATION } from '../db/pg.ts';
import {
  DomainError,
  InvalidTransitionError,
  PaymentDeclinedError,
  PaymentInProgressError,
  PaymentUnavailableError,
  StaleVersionError,
} from '../errors.ts';
import { accepts, allowedCommands, statusOf } from '../machines/order.machine.ts';
import type { ResilientGateway } from './resilient-gateway.ts';

export interface PayDeps {
  steps: OrderSteps;
  payments: ResilientGateway;
  prompt: WorkPrompt;
  /** When an attempt still pending is deemed abandoned and handed to reconciliation. */
  reconcileAfterMs: number;
  /** Counts outcomes for /metrics. */
  onOutcome?: (outcome: 'charged' | 'declined' | 'failed' | 'unknown' | 'orphaned' | 'breaker-open') => void;
}

export const chargeKey = (orderId: string, n: number) => `order-${orderId}-charge-${n}`;

interface Attempt {
  key: string;
  n: number;
}

/**
 * Pays an order without holding anything while the gateway works:
 * 1. judge (may this customer pay now?) and record a payment attempt with its own idempotency
 *    key, in one statement checked against the order's version; a second attempt while one is in
 *    flight is refused (409 payment_in_progress) by a unique index, never charged;
 * 2. call the gateway with no transaction and no row lock open (behind the circuit breaker);
 * 3. record the outcome in a short transaction: the order becomes paid if the machine still
 *    accepts it; if a concurrent command moved it on (cancel), the charge is refunded instead.
 * An attempt whose outcome is unknown (timeout, lost answer, crash) is left to reconciliation,
 * which asks the gateway by idempotency key and refunds a charge the order did not take.
 */
export function createPay(deps: PayDeps): PayCommand {
  const { steps, payments } = deps;
  const db = steps.db;
  const outcome = (o: Parameters<NonNullable<PayDeps['onOutcome']>>[0]) => deps.onOutcome?.(o);

  async function judge(who: Principal, orderId: string, ctx: CommandContext): Promise<OrderRow> {
    const row = await steps.visibleRow(who, orderId, 'pay');
    requireRole(who, 'customer', 'pay');
    if (ctx.expectedVersion !== undefined && ctx.expectedVersion !== row.version) throw new StaleVersionError(ctx.expectedVersion, row.version);
    const snapshot = restoreSnapshot(row);
    if (!accepts(snapshot, 'pay')) throw new InvalidTransitionError('pay', statusOf(snapshot), allowedCommands(snapshot));
    return row;
  }

  /** Records the attempt if the order is still at the judged version; undefined when it moved on. */
  async function startAttempt(row: OrderRow, amount: number): Promise<Attempt | undefined> {
    try {
      const [attempt] = await db.query<Attempt>(
        // The row lock lasts this one statement: it orders the attempt after a payment being recorded.
        `WITH judged AS (SELECT id FROM orders WHERE id = $1 AND version = $2 FOR UPDATE),
              next AS (SELECT coalesce(max(n), 0) + 1 AS n FROM payment_attempts WHERE order_id = $1)
         INSERT INTO payment_attempts (idempotency_key, order_id, n, amount, status, started_at, due_at)
         SELECT 'order-' || $1::text || '-charge-' || next.n, $1, next.n, $3, 'pending', now(),
                now() + make_interval(secs => $4::float8 / 1000)
         FROM judged, next
         RETURNING idempotency_key AS key, n`,
        [row.id, row.version, amount, deps.reconcileAfterMs],
      );
      return attempt;
    } catch (err) {
      // The in-flight index, or a concurrent attempt that took the same number.
      if (sqlState(err) === UNIQUE_VIOLATION) throw new PaymentInProgressError(row.id);
      throw err;
    }
  }

  /** Closes an attempt that certainly charged nothing. */
  async function settle(key: string, status: 'declined' | 'failed', error: string | null): Promise<void> {
    await db.query(
      `UPDATE payment_attempts SET status = $2, decided_at = now(), due_at = NULL, lease_until = NULL, last_error = $3
       WHERE idempotency_key = $1 AND status = 'pending'`,
      [key, status, error],
    );
  }

  /** Hands an attempt whose outcome is unknown to reconciliation, due at once. */
  async function unknown(key: string, error: string): Promise<void> {
    const [row] = await db.query<{ due_at: Date }>(
      `UPDATE payment_attempts SET status = 'unknown', decided_at = now(), last_error = $2, due_at = now()
       WHERE idempotency_key = $1 AND status = 'pending' RETURNING due_at`,
      [key, error],
    );
    if (row) deps.prompt.schedule('payment-reconcile', [key], row.due_at);
  }

  /** Records a successful charge: the order becomes paid, or the charge is refunded if the order moved on. */
  async function recordCharge(who: Principal, orderId: string, attempt: Attempt, chargeId: string, amount: number, causationId: string | null): Promise<OrderView> {
    const deferred: (() => void)[] = [];
    const result = await db.transaction(async (tx): Promise<OrderView | DomainError> => {
      // Order row first, then the attempt: the same lock order as startAttempt, so no deadlock.
      const [row] = await tx.query<OrderRow>('SELECT * FROM orders WHERE id = $1 FOR UPDATE', [orderId]);
      if (!row) throw new DomainError('internal', `order ${orderId} vanished during payment`);
      const claimed = await tx.query(
        `UPDATE payment_attempts SET status = 'charged', charge_id = $2, decided_at = now(), due_at = NULL, lease_until = NULL
         WHERE idempotency_key = $1 AND status = 'pending' RETURNING 1`,
        [attempt.key, chargeId],
      );
      if (claimed.length === 0) {
        // Reconciliation judged the attempt abandoned and took over its charge: it refunds it.
        return new PaymentUnavailableError('the payment took too long and is being reversed', 5, false);
      }
      const snapshot = restoreSnapshot(row);
      const paying = { type: 'pay' as const, chargeId };
      if (accepts(snapshot, 'pay')) {
        const decided = steps.decide(snapshot, paying, 'pay');
        const saved = await steps.persistIn(tx, row, decided, who, causationId, deferred);
        if (!saved) throw new DomainError('internal', `order ${orderId} changed while locked`);
        return viewOf(decided.next, { ...row, version: saved.version, updated_at: saved.at }, null);
      }
      // A concurrent command (cancel, or the unpaid-order timer) won: the money goes back.
      const key = refundKey(orderId, chargeId);
      await tx.query(
        `WITH orphan AS (UPDATE payment_attempts SET status = 'orphaned' WHERE idempotency_key = $1)
         INSERT INTO refunds (idempotency_key, order_id, charge_id, amount, reason, status, requested_at, due_at)
         VALUES ($2, $3, $4, $5, 'orphaned', 'pending', now(), now()) ON CONFLICT DO NOTHING`,
        [attempt.key, key, orderId, chargeId, amount],
      );
      deferred.push(() => deps.prompt.schedule('refund', [key]));
      const refused = new InvalidTransitionError('pay', statusOf(snapshot), allowedCommands(snapshot));
      Object.assign(refused.details, { refund: refundViewOf({ refund_status: 'pending', refund_amount: amount, refund_id: null, refunded_at: null }) });
      return refused;
    });
    for (const run of deferred) run();
    if (result instanceof DomainError) {
      outcome(result instanceof InvalidTransitionError ? 'orphaned' : 'unknown');
      throw result;
    }
    outcome('charged');
    return result;
  }

  return async function pay(who, orderId, ctx) {
    for (;;) {
      const row = await judge(who, orderId, ctx);
      // Fail fast while the breaker is open: no attempt is recorded, nothing is called.
      if (payments.breakerState() === 'open') {
        outcome('breaker-open');
        throw new PaymentUnavailableError('the circuit breaker is open', payments.retryAfterSeconds(), true, true);
      }
      const amount = restoreSnapshot(row).context.total;
      const attempt = await startAttempt(row, amount);
      if (!attempt) continue; // the order moved on between reading and recording: judge again

      let chargeId: string;
      try {
        ({ chargeId } = await payments.charge({ orderId, amount, idempotencyKey: attempt.key }));
      } catch (err) {
        if (err instanceof PaymentDeclinedError) {
          await settle(attempt.key, 'declined', null);
          outcome('declined');
        } else if (err instanceof PaymentUnavailableError && err.notAttempted) {
          await settle(attempt.key, 'failed', err.message);
          outcome(payments.breakerState() === 'open' ? 'breaker-open' : 'failed');
        } else {
          await unknown(attempt.key, err instanceof Error ? err.message : String(err));
          outcome('unknown');
          if (!(err instanceof PaymentUnavailableError)) throw new PaymentUnavailableError('unexpected gateway failure');
        }
        throw err;
      }
      return recordCharge(who, orderId, attempt, chargeId, amount, ctx.causationId ?? null);
    }
  };
}
