import type { CommandContext, OrderView, PayCommand } from '../actors/order-actor.ts';
import { NO_CAUSE, requireVisible, type OrderSteps } from '../actors/order-step.ts';
import type { Cause, OrderRow } from '../actors/order-repository.ts';
import { refundKey as orderRefundKey } from '../actors/order-intents.ts';
import { judgeable, type JudgeableOrder } from '../actors/order-store.ts';
import { Batcher } from '../db/batcher.ts';
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
import { ORDER_MACHINE_ID } from '../machines/order/contract.ts';
import type { ResilientGateway } from './resilient-gateway.ts';
import { activeTraceparent, ATTR, inSpan } from '../tracing.ts';
import { variant } from '../db/statement-variant.ts';

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

export const chargeKey = (orderId: string, n: number) => `order-${orderId}-charge-${n}`;

interface Attempt {
  key: string;
  n: number;
}

/** What recording an attempt found: the attempt to call for, or why there is none. */
type Started =
  | Attempt
  /** Another attempt of the order is in flight on a live replica. */
  | 'in-progress'
  /** The order's earlier attempt was abandoned and is being reconciled (or was just taken over): judge again shortly. */
  | { wait: string }
  /** The order moved on since it was judged. */
  | undefined;

interface AttemptRequest {
  orderId: string;
  /** The version the payment was judged on. */
  version: number;
  /** The machine version the order was stored with when it was judged. */
  machineVersion: number;
  amount: number;
  /** The pay's trace context (tracing on): a reconciliation of the attempt joins its trace. */
  traceparent?: string;
}

/*
 * Records a payment attempt for each order still at its judged version and machine version (input
 * arrays: order ids, versions, amounts, machine versions), as the attempt of this replica ($7). The orders' row locks last this one
 * statement: they order the attempts after a payment being recorded. An order whose earlier
 * attempt is undecided (pending or unknown) gets no new one: while that attempt's replica holds its
 * lease, it is in flight (a null key); once its replica is gone or its caller gave up, this pay
 * takes it over with its idempotency key, so the gateway charges at most once for both, unless a
 * reconciliation holds it now (then `wait` names it).
 */
const START_ATTEMPTS = `
  WITH input AS (
    SELECT * FROM unnest($1::uuid[], $2::int[], $3::int[], $6::int[]) AS i(id, version, amount, machine_version)
  ), judged AS (
    SELECT o.id FROM orders o JOIN input i ON i.id = o.id AND o.version = i.version AND o.machine_version = i.machine_version
    WHERE o.id = ANY ($1::uuid[]) AND o.machine_id = $5::text
    ORDER BY o.id FOR UPDATE OF o
  ), open AS (
    SELECT DISTINCT ON (a.order_id) a.order_id, a.idempotency_key, a.status, a.replica, a.due_at,
      (a.status = 'unknown' OR NOT EXISTS (SELECT 1 FROM replica_leases r WHERE r.replica = a.replica AND r.until > now())) AS abandoned
    FROM payment_attempts a
    WHERE a.order_id = ANY (ARRAY(SELECT id FROM judged)) AND a.status IN ('pending', 'unknown')
    ORDER BY a.order_id, a.n DESC
  ), taken AS (
    -- Conditions on what was read: if another pay took it over first, or a reconciliation claimed
    -- it, since this statement's snapshot, the row re-read under its lock no longer matches.
    UPDATE payment_attempts a SET status = 'pending', replica = $7, due_at = now() + make_interval(secs => $4::float8 / 1000),
      decided_at = NULL, last_error = NULL
    FROM open o
    WHERE a.idempotency_key = o.idempotency_key AND o.abandoned
      AND a.status = o.status AND a.replica IS NOT DISTINCT FROM o.replica AND a.due_at IS NOT DISTINCT FROM o.due_at
      AND (a.lease_until IS NULL OR a.lease_until < now())
    RETURNING a.order_id, a.idempotency_key, a.n
  ), numbered AS (
    SELECT j.id, coalesce((SELECT max(a.n) FROM payment_attempts a WHERE a.order_id = j.id), 0) + 1 AS n
    FROM judged j WHERE j.id NOT IN (SELECT order_id FROM open)
  ), started AS (
    INSERT INTO payment_attempts (idempotency_key, order_id, n, amount, status, started_at, due_at, replica)
    SELECT 'order-' || x.id::text || '-charge-' || x.n, x.id, x.n, i.amount, 'pending', now(),
           now() + make_interval(secs => $4::float8 / 1000), $7
    FROM numbered x JOIN input i ON i.id = x.id
    ON CONFLICT DO NOTHING
    RETURNING order_id, idempotency_key, n
  )
  SELECT j.id, coalesce(s.idempotency_key, t.idempotency_key) AS key, coalesce(s.n, t.n) AS n,
    CASE WHEN o.abandoned THEN o.idempotency_key END AS wait
  FROM judged j
  LEFT JOIN started s ON s.order_id = j.id
  LEFT JOIN taken t ON t.order_id = j.id
  LEFT JOIN open o ON o.order_id = j.id`;

/** START_ATTEMPTS that also records each new attempt's trace context ($8), for batches that carry one (tracing on). */
const START_ATTEMPTS_TRACED = variant(START_ATTEMPTS, [
  ['unnest($1::uuid[], $2::int[], $3::int[], $6::int[]) AS i(id, version, amount, machine_version)', 'unnest($1::uuid[], $2::int[], $3::int[], $6::int[], $8::text[]) AS i(id, version, amount, machine_version, traceparent)'],
  ['INSERT INTO payment_attempts (idempotency_key, order_id, n, amount, status, started_at, due_at, replica)', 'INSERT INTO payment_attempts (idempotency_key, order_id, n, amount, status, started_at, due_at, replica, traceparent)'],
  ['now() + make_interval(secs => $4::float8 / 1000), $7\n    FROM numbered x', 'now() + make_interval(secs => $4::float8 / 1000), $7, i.traceparent\n    FROM numbered x'],
]);

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

  /** May this customer pay now? Judged on this replica's cache; a refusal is confirmed on a fresh read. */
  async function judge(who: Principal, orderId: string, ctx: CommandContext, fresh: boolean): Promise<JudgeableOrder> {
    const loaded = await steps.store.load(orderId, fresh);
    try {
      const row = requireVisible(who, loaded?.row, orderId, 'pay');
      requireRole(who, 'customer', 'pay');
      if (ctx.expectedVersion !== undefined && ctx.expectedVersion !== row.version) throw new StaleVersionError(ctx.expectedVersion, row.version);
      const order = judgeable(loaded!);
      const { machine, snapshot } = order;
      if (!machine.accepts(snapshot, 'pay')) throw new InvalidTransitionError('pay', machine.statusOf(snapshot), machine.allowedCommands(snapshot));
      return order;
    } catch (err) {
      if (loaded?.cached) return judge(who, orderId, ctx, true);
      throw err;
    }
  }

  /**
   * Records attempts if their orders are still at the judged versions, those of the moment in one
   * statement (one commit instead of one per payment). Per order, see `Started`.
   */
  const attempts = new Batcher<AttemptRequest, Started>(startAttempts, { ...deps.batch, key: (r) => r.orderId, alone: true });

  async function startAttempts(requests: readonly AttemptRequest[]): Promise<Started[]> {
    const params: unknown[] = [
      requests.map((r) => r.orderId),
      requests.map((r) => r.version),
      requests.map((r) => r.amount),
      deps.reconcileAfterMs,
      ORDER_MACHINE_ID,
      requests.map((r) => r.machineVersion),
      deps.replica,
    ];
    const traced = requests.some((r) => r.traceparent);
    if (traced) params.push(requests.map((r) => r.traceparent ?? null));
    const rows = await db.query<{ id: string; key: string | null; n: number | null; wait: string | null }>(traced ? START_ATTEMPTS_TRACED : START_ATTEMPTS, params);
    const byId = new Map(rows.map((r) => [r.id, r]));
    return requests.map((r): Started => {
      const row = byId.get(r.orderId);
      if (!row) return undefined;
      if (row.key !== null) return { key: row.key, n: row.n! };
      return row.wait !== null ? { wait: row.wait } : 'in-progress';
    });
  }

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
  async function recordCharge(who: Principal, loaded: JudgeableOrder, attempt: Attempt, chargeId: string, amount: number, cause: Cause): Promise<OrderView> {
    const orderId = loaded.row.id;
    const decided = steps.decide(loaded, { type: 'pay', chargeId }, 'pay');
    const t = steps.transitionOf(loaded.row, decided, who, cause);
    const refundKey = orderRefundKey(orderId, chargeId);
    t.payment = { attemptKey: attempt.key, chargeId, amount, refundKey };
    const committed = await steps.store.commit(t);
    if (committed) {
      steps.afterCommit(orderId, committed.version, t);
      outcome('charged');
      return viewOf(decided.machine, decided.next, { ...loaded.row, version: committed.version, updated_at: t.at }, null);
    }
    if (t.payment.outcome === 'orphaned') {
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

  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  async function pay(who: Principal, orderId: string, ctx: CommandContext): Promise<OrderView> {
    const waitUntil = Date.now() + deps.waitForReconciliationMs;
    let waitedFor: string | undefined;
    for (let fresh = false; ; fresh = true) {
      let loaded: JudgeableOrder;
      try {
        loaded = await judge(who, orderId, ctx, fresh);
      } catch (err) {
        // The earlier attempt this pay waited for paid the order meanwhile: that is this pay's answer.
        const paid = err instanceof InvalidTransitionError && waitedFor ? await paidBy(who, orderId, waitedFor) : undefined;
        if (paid) return paid;
        throw err;
      }
      const row = loaded.row;
      // Fail fast while the breaker is open: no attempt is recorded, nothing is called.
      if (payments.breakerState() === 'open') {
        outcome('breaker-open');
        throw new PaymentUnavailableError('the circuit breaker is open', payments.retryAfterSeconds(), true, true);
      }
      const amount = loaded.snapshot.context.total;
      const started = await attempts.submit({ orderId: row.id, version: row.version, machineVersion: row.machine_version, amount, traceparent: activeTraceparent() });
      steps.store.noteOutcome(loaded.cached, started !== undefined);
      if (started === undefined) continue; // the order moved on between reading and recording: judge again
      if (started === 'in-progress') throw new PaymentInProgressError(row.id);
      if ('wait' in started) {
        // A reconciliation holds the earlier attempt: its answer decides whether to charge at all.
        if (Date.now() >= waitUntil) throw new PaymentInProgressError(row.id);
        waitedFor = started.wait;
        await sleep(100);
        continue;
      }
      return call(who, loaded, started, amount, ctx);
    }
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

  /**
   * At shutdown: the attempts of this replica still waiting for the gateway will not be recorded
   * by this process. They are handed to reconciliation now (and a retried pay may take them over)
   * instead of holding their orders until PAYMENT_RECONCILE_AFTER_MS. Answers their keys.
   */
  async function handOver(): Promise<string[]> {
    const rows = await db.query<{ key: string }>(
      `UPDATE payment_attempts SET status = 'unknown', due_at = now(), last_error = 'its replica stopped before the gateway answered'
       WHERE replica = $1 AND status = 'pending' RETURNING idempotency_key AS key`,
      [deps.replica],
    );
    const keys = rows.map((r) => r.key);
    if (keys.length > 0) deps.prompt.schedule('payment-reconcile', keys);
    return keys;
  }

  return Object.assign(pay, { handOver });
}
