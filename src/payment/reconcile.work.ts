import type { OrderSteps } from '../actors/order-step.ts';
import { refundKey } from '../actors/order-intents.ts';
import { exponentialBackoff, WorkTable, type WorkColumns, type WorkKind, type WorkPrompt } from '../actors/work.ts';
import type { Database } from '../db/pg.ts';
import { MachineVersionAheadError } from '../errors.ts';
import { judgeable } from '../actors/order-store.ts';
import { chargeOutcome, recordingCharge } from './charge-guard.ts';
import type { FoundCharge, PaymentGateway } from './payment-gateway.ts';
import { activeTraceparent } from '../tracing.ts';

export interface AttemptRow extends WorkColumns {
  idempotency_key: string;
  order_id: string;
  n: number;
  amount: number;
  status: 'pending' | 'charged' | 'declined' | 'failed' | 'unknown' | 'orphaned';
  charge_id: string | null;
  started_at: Date;
  /** The replica that called the gateway for it (null for attempts older than replica leases). */
  replica: string | null;
}

export interface ReconcileOptions {
  /** How long after an attempt started a missing charge still counts as "may yet land" at the gateway. */
  settleMs: number;
  retryMaxMs: number;
  now?: () => number;
}

/**
 * Settles payment attempts whose outcome nobody recorded (the caller timed out, lost the answer,
 * or its replica stopped or died): asks the gateway by the attempt's idempotency key. No charge
 * after the settle window: the attempt failed. A charge: if the order still waits for payment it
 * takes the charge (it becomes paid, as the pay would have made it, and nobody is charged twice),
 * otherwise the charge is refunded. The attempt's status is checked in the statement that records
 * either, so this and a late pay outcome (or a retry that took the attempt over) exclude each
 * other: whichever records first wins.
 */
export function paymentReconciliation(db: Database, payments: PaymentGateway, prompt: WorkPrompt, steps: OrderSteps, opts: ReconcileOptions): WorkKind<AttemptRow> {
  /** How soon to look again for a charge the gateway has not recorded yet. */
  const lookAgainMs = exponentialBackoff(1000, opts.retryMaxMs);
  const now = opts.now ?? Date.now;

  /** Pays the order with the charge found, if it still can take it. False when it cannot. */
  async function payWith(row: AttemptRow, found: FoundCharge): Promise<boolean> {
    const loaded = await steps.store.load(row.order_id, true);
    if (!loaded) return false;
    // An order moved to a newer machine version than this replica runs: left to a replica that runs it.
    const order = judgeable(loaded);
    if (!order.machine.accepts(order.snapshot, 'pay')) return false;
    const decided = steps.decide(order, { type: 'pay', chargeId: found.chargeId }, 'pay');
    // The customer's pay, completed: its cause is the attempt that charged.
    const customer = { sub: order.snapshot.context.customerId, role: 'customer' as const };
    const key = refundKey(row.order_id, found.chargeId);
    const charge = { attemptKey: row.idempotency_key, chargeId: found.chargeId, amount: found.amount, refundKey: key };
    const cause = { causationId: row.idempotency_key, clientRequestId: null };
    const { t, view } = await steps.commitDecided(order.row, decided, customer, cause, (t) => recordingCharge(t, charge));
    // The order moved on meanwhile: the same statement recorded the refund.
    if (!view && chargeOutcome(t) === 'orphaned') prompt.schedule('refund', [key]);
    return true;
  }

  return {
    name: 'payment-reconcile',
    table: new WorkTable<AttemptRow>(db, 'payment_attempts', 'idempotency_key', 'text', (r) => r.idempotency_key),
    backoffMs: exponentialBackoff(500, opts.retryMaxMs),
    async perform(row) {
      if (row.status !== 'pending' && row.status !== 'unknown') {
        await db.query(`UPDATE payment_attempts SET due_at = NULL, lease_until = NULL WHERE idempotency_key = $1`, [row.idempotency_key]);
        return;
      }
      const found = await payments.lookup(row.idempotency_key);
      if (!found) {
        const age = now() - row.started_at.getTime();
        if (age < opts.settleMs) {
          // A slow gateway may still record the request; look again once it cannot any more. A
          // retried pay meanwhile takes the attempt over with its key, so it cannot charge twice.
          return { retryInMs: Math.min(opts.settleMs - age + 100, lookAgainMs(row.attempts)), error: 'no charge at the gateway yet' };
        }
        await db.query(
          `UPDATE payment_attempts SET status = 'failed', decided_at = now(), due_at = NULL, lease_until = NULL, last_error = NULL
           WHERE idempotency_key = $1 AND status IN ('pending', 'unknown')`,
          [row.idempotency_key],
        );
        return;
      }
      try {
        if (await payWith(row, found)) return;
      } catch (err) {
        // Refunding instead would take away a payment the order can still take: a replica of the newer version decides, a second later.
        if (err instanceof MachineVersionAheadError) return { retryInMs: 1000, error: err.message };
        throw err;
      }
      const key = refundKey(row.order_id, found.chargeId);
      const [orphaned] = await db.query<{ n: number }>(
        `WITH orphan AS (
           UPDATE payment_attempts SET status = 'orphaned', charge_id = $2, decided_at = now(), due_at = NULL, lease_until = NULL, last_error = NULL
           WHERE idempotency_key = $1 AND status IN ('pending', 'unknown') RETURNING order_id
         ), refund AS (
           INSERT INTO refunds (idempotency_key, order_id, charge_id, amount, reason, status, requested_at, due_at, traceparent)
           SELECT $3, order_id, $2, $4, 'orphaned', 'pending', now(), now(), $5::text FROM orphan
           ON CONFLICT DO NOTHING RETURNING 1
         )
         SELECT count(*)::int AS n FROM refund`,
        // The refund joins this reconciliation's trace (null with tracing off).
        [row.idempotency_key, found.chargeId, key, found.amount, activeTraceparent() ?? null],
      );
      if (orphaned && orphaned.n > 0) prompt.schedule('refund', [key]);
    },
  };
}

/**
 * Hands the attempts of replicas whose lease lapsed (they died calling the gateway) to
 * reconciliation at once: undecided, due now. Run after each renewal of this replica's lease.
 */
export async function handOverAbandoned(db: Database, prompt: WorkPrompt): Promise<string[]> {
  const rows = await db.query<{ key: string }>(
    `UPDATE payment_attempts a SET status = 'unknown', due_at = now(), last_error = 'its replica is gone'
     WHERE a.status = 'pending' AND a.replica IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM replica_leases r WHERE r.replica = a.replica AND r.until > now())
     RETURNING a.idempotency_key AS key`,
  );
  const keys = rows.map((r) => r.key);
  if (keys.length > 0) prompt.schedule('payment-reconcile', keys);
  return keys;
}
