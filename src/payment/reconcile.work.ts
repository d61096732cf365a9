import { refundKey } from '../actors/order-repository.ts';
import { cappedBackoff, WorkTable, type WorkColumns, type WorkKind, type WorkPrompt } from '../actors/work.ts';
import type { Database } from '../db/pg.ts';
import type { PaymentGateway } from './payment-gateway.ts';

export interface AttemptRow extends WorkColumns {
  idempotency_key: string;
  order_id: string;
  n: number;
  amount: number;
  status: 'pending' | 'charged' | 'declined' | 'failed' | 'unknown' | 'orphaned';
  charge_id: string | null;
  started_at: Date;
}

export interface ReconcileOptions {
  /** How long after an attempt started a missing charge still counts as "may yet land" at the gateway. */
  settleMs: number;
  retryMaxMs: number;
  now?: () => number;
}

/**
 * Settles payment attempts whose outcome nobody recorded (the caller timed out, lost the answer,
 * or its process died): asks the gateway by the attempt's idempotency key. No charge after the
 * settle window: the attempt failed. A charge: the order never took it (it would have marked the
 * attempt charged in the same transaction), so it is refunded. The status check in each UPDATE
 * makes this and a late pay outcome exclude each other: whichever records first wins.
 */
export function paymentReconciliation(db: Database, payments: PaymentGateway, prompt: WorkPrompt, opts: ReconcileOptions): WorkKind<AttemptRow> {
  const now = opts.now ?? Date.now;
  return {
    name: 'payment-reconcile',
    table: new WorkTable<AttemptRow>(db, 'payment_attempts', 'idempotency_key', 'text', (r) => r.idempotency_key),
    backoffMs: (attempts) => cappedBackoff(attempts, 500, opts.retryMaxMs),
    async perform(row) {
      if (row.status !== 'pending' && row.status !== 'unknown') {
        await db.query(`UPDATE payment_attempts SET due_at = NULL, lease_until = NULL WHERE idempotency_key = $1`, [row.idempotency_key]);
        return;
      }
      const found = await payments.lookup(row.idempotency_key);
      if (!found) {
        const age = now() - row.started_at.getTime();
        if (age < opts.settleMs) {
          // A slow gateway may still record the request; look again once it cannot any more.
          return { retryInMs: Math.min(opts.settleMs - age + 100, cappedBackoff(row.attempts, 1000, opts.retryMaxMs)), error: 'no charge at the gateway yet' };
        }
        await db.query(
          `UPDATE payment_attempts SET status = 'failed', decided_at = now(), due_at = NULL, lease_until = NULL, last_error = NULL
           WHERE idempotency_key = $1 AND status IN ('pending', 'unknown')`,
          [row.idempotency_key],
        );
        return;
      }
      const key = refundKey(row.order_id, found.chargeId);
      const [orphaned] = await db.query<{ n: number }>(
        `WITH orphan AS (
           UPDATE payment_attempts SET status = 'orphaned', charge_id = $2, decided_at = now(), due_at = NULL, lease_until = NULL, last_error = NULL
           WHERE idempotency_key = $1 AND status IN ('pending', 'unknown') RETURNING order_id
         ), refund AS (
           INSERT INTO refunds (idempotency_key, order_id, charge_id, amount, reason, status, requested_at, due_at)
           SELECT $3, order_id, $2, $4, 'orphaned', 'pending', now(), now() FROM orphan
           ON CONFLICT DO NOTHING RETURNING 1
         )
         SELECT count(*)::int AS n FROM refund`,
        [row.idempotency_key, found.chargeId, key, found.amount],
      );
      if (orphaned && orphaned.n > 0) prompt.schedule('refund', [key]);
    },
  };
}
