import { NO_CAUSE, requireVisible, type CommandContext, type OrderSteps, type OrderView, type PayCommand } from '../actors/order-actor.ts';
import { refundKey as orderRefundKey, type Cause, type OrderRow } from '../actors/order-repository.ts';
import type { LoadedOrder } from '../actors/order-store.ts';
import { Batcher } from '../actors/batcher.ts';
import { refundViewOf, viewOf } from '../actors/order-view.ts';
import { requireRole, type Principal } from '../actors/principal.ts';
import type { WorkPrompt } from '../actors/work.ts';
import {
  InvalidTransitionError,
  PaymentDeclinedError,
  PaymentInProgressError,
  PaymentUnavailableError,
  StaleVersionError,
} from '../errors.ts';
import { ORDER_MACHINE_ID, ORDER_MACHINE_VERSION, accepts, allowedCommands, statusOf } from '../machines/order.machine.ts';
import type { ResilientGateway } from './resilient-gateway.ts';

export interface PayDeps {
  steps: OrderSteps;
  payments: ResilientGateway;
  prompt: WorkPrompt;
  /** Attempts recorded together: most per statement, most statements on their way at once. */
  batch: { maxBatch: number; maxInFlight: number };
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

interface AttemptRequest {
  orderId: string;
  /** The version the payment was judged on. */
  version: number;
  amount: number;
}

/*
 * Records a payment attempt for each order still at its judged version (input arrays: order ids,
 * versions, amounts). The orders' row locks last this one statement: they order the attempts after
 * a payment being recorded. Per judged order it returns the attempt, or a null key when an attempt
 * is already in flight (a conflict on the in-flight index or on the attempt's number).
 */
const START_ATTEMPTS = `
  WITH input AS (
    SELECT * FROM unnest($1::uuid[], $2::int[], $3::int[]) AS i(id, version, amount)
  ), judged AS (
    SELECT o.id FROM orders o JOIN input i ON i.id = o.id AND o.version = i.version
    WHERE o.id = ANY ($1::uuid[]) AND o.machine_id = $5::text AND o.machine_version = $6::int
    ORDER BY o.id FOR UPDATE OF o
  ), numbered AS (
    SELECT j.id, coalesce((SELECT max(a.n) FROM payment_attempts a WHERE a.order_id = j.id), 0) + 1 AS n FROM judged j
  ), started AS (
    INSERT INTO payment_attempts (idempotency_key, order_id, n, amount, status, started_at, due_at)
    SELECT 'order-' || x.id::text || '-charge-' || x.n, x.id, x.n, i.amount, 'pending', now(),
           now() + make_interval(secs => $4::float8 / 1000)
    FROM numbered x JOIN input i ON i.id = x.id
    ON CONFLICT DO NOTHING
    RETURNING order_id, idempotency_key, n
  )
  SELECT j.id, s.idempotency_key AS key, s.n FROM judged j LEFT JOIN started s ON s.order_id = j.id`;

/**
 * Pays an order without holding anything while the gateway works:
 * 1. judge (may this customer pay now?) and record a payment attempt with its own idempotency
 *    key, in one statement checked against the order's version (shared with the payments of the
 *    moment); a second attempt while one is in flight is refused (409 payment_in_progress) by a
 *    unique index, never charged;
 * 2. call the gateway with no transaction and no row lock open (behind the circuit breaker);
 * 3. record the outcome in one statement: the order becomes paid if it is still where it was
 *    judged; if a concurrent command moved it on (cancel), the charge is refunded instead.
 * An attempt whose outcome is unknown (timeout, lost answer, crash) is left to reconciliation,
 * which asks the gateway by idempotency key and refunds a charge the order did not take.
 */
export function createPay(deps: PayDeps): PayCommand {
  const { steps, payments } = deps;
  const db = steps.db;
  const outcome = (o: Parameters<NonNullable<PayDeps['onOutcome']>>[0]) => deps.onOutcome?.(o);

  /** May this customer pay now? Judged on this replica's cache; a refusal is confirmed on a fresh read. */
  async function judge(who: Principal, orderId: string, ctx: CommandContext, fresh: boolean): Promise<LoadedOrder> {
    const loaded = await steps.store.load(orderId, fresh);
    try {
      const row = requireVisible(who, loaded?.row, orderId, 'pay');
      requireRole(who, 'customer', 'pay');
      if (ctx.expectedVersion !== undefined && ctx.expectedVersion !== row.version) throw new StaleVersionError(ctx.expectedVersion, row.version);
      if (!accepts(loaded!.snapshot, 'pay')) throw new InvalidTransitionError('pay', statusOf(loaded!.snapshot), allowedCommands(loaded!.snapshot));
      return loaded!;
    } catch (err) {
      if (loaded?.cached) return judge(who, orderId, ctx, true);
      throw err;
    }
  }

  /**
   * Records attempts if their orders are still at the judged versions, those of the moment in one
   * statement (one commit instead of one per payment). Per order: the attempt; undefined when the
   * order moved on; 'in-progress' when an attempt is already in flight (the in-flight index, or a
   * concurrent attempt that took the same number).
   */
  const attempts = new Batcher<AttemptRequest, Attempt | 'in-progress' | undefined>(startAttempts, { ...deps.batch, key: (r) => r.orderId, alone: true });

  async function startAttempts(requests: readonly AttemptRequest[]): Promise<(Attempt | 'in-progress' | undefined)[]> {
    const rows = await db.query<{ id: string; key: string | null; n: number | null }>(START_ATTEMPTS, [
      requests.map((r) => r.orderId),
      requests.map((r) => r.version),
      requests.map((r) => r.amount),
      deps.reconcileAfterMs,
      ORDER_MACHINE_ID,
      ORDER_MACHINE_VERSION,
    ]);
    const byId = new Map(rows.map((r) => [r.id, r]));
    return requests.map((r) => {
      const row = byId.get(r.orderId);
      if (!row) return undefined;
      return row.key === null ? 'in-progress' : { key: row.key, n: row.n! };
    });
  }

  async function startAttempt(row: OrderRow, amount: number): Promise<Attempt | undefined> {
    const attempt = await attempts.submit({ orderId: row.id, version: row.version, amount });
    if (attempt === 'in-progress') throw new PaymentInProgressError(row.id);
    return attempt;
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

  /**
   * Records a successful charge in one statement, shared with the other commands of the moment:
   * the order becomes paid if it is still at the version the payment was judged on (and the attempt
   * still pending); if a concurrent command moved it on (cancel, the unpaid-order timer), the same
   * statement marks the attempt orphaned and records the refund of its charge instead.
   */
  async function recordCharge(who: Principal, loaded: LoadedOrder, attempt: Attempt, chargeId: string, amount: number, cause: Cause): Promise<OrderView> {
    const orderId = loaded.row.id;
    const decided = steps.decide(loaded.snapshot, { type: 'pay', chargeId }, 'pay');
    const t = steps.transitionOf(loaded.row, decided, who, cause);
    const refundKey = orderRefundKey(orderId, chargeId);
    t.payment = { attemptKey: attempt.key, chargeId, amount, refundKey };
    const committed = await steps.store.commit(t);
    if (committed) {
      steps.afterCommit(orderId, committed.version, t);
      outcome('charged');
      return viewOf(decided.next, { ...loaded.row, version: committed.version, updated_at: t.at }, null);
    }
    if (t.payment.outcome === 'orphaned') {
      // A concurrent command won: the money goes back.
      deps.prompt.schedule('refund', [refundKey]);
      outcome('orphaned');
      const now = await steps.store.load(orderId, true);
      const snapshot = now!.snapshot;
      const refused = new InvalidTransitionError('pay', statusOf(snapshot), allowedCommands(snapshot));
      Object.assign(refused.details, { refund: refundViewOf({ refund_status: 'pending', refund_amount: amount, refund_id: null, refunded_at: null }) });
      throw refused;
    }
    // Reconciliation judged the attempt abandoned and took over its charge: it refunds it.
    outcome('unknown');
    throw new PaymentUnavailableError('the payment took too long and is being reversed', 5, false);
  }

  return async function pay(who, orderId, ctx) {
    for (let fresh = false; ; fresh = true) {
      const loaded = await judge(who, orderId, ctx, fresh);
      const row = loaded.row;
      // Fail fast while the breaker is open: no attempt is recorded, nothing is called.
      if (payments.breakerState() === 'open') {
        outcome('breaker-open');
        throw new PaymentUnavailableError('the circuit breaker is open', payments.retryAfterSeconds(), true, true);
      }
      const amount = loaded.snapshot.context.total;
      const attempt = await startAttempt(row, amount);
      steps.store.noteOutcome(loaded.cached, attempt !== undefined);
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
      return recordCharge(who, loaded, attempt, chargeId, amount, ctx.cause ?? NO_CAUSE);
    }
  };
}
