import { exponentialBackoff, WorkTable, type WorkColumns, type WorkKind } from '../actors/work.ts';
import type { Database } from '../db/pg.ts';
import type { PaymentGateway } from './payment-gateway.ts';

export interface RefundRow extends WorkColumns {
  idempotency_key: string;
  order_id: string;
  charge_id: string;
  amount: number;
  reason: 'cancelled' | 'rejected' | 'orphaned';
  status: 'pending' | 'refunded';
  refund_id: string | null;
}

/**
 * Compensation: refunds what a transition (cancel, reject, the store timer) or reconciliation
 * recorded as owed. The idempotency key is the refund's own, so a retry after a crash or a lost
 * answer returns the same refund; a refund that keeps failing stays pending and is retried with
 * capped backoff, visible in /metrics and GET /admin/failed-events.
 */
export function refundWork(db: Database, payments: PaymentGateway, retryMaxMs: number, onRefunded?: (row: RefundRow) => void): WorkKind<RefundRow> {
  return {
    name: 'refund',
    table: new WorkTable<RefundRow>(db, 'refunds', 'idempotency_key', 'text', (r) => r.idempotency_key),
    backoffMs: exponentialBackoff(500, retryMaxMs),
    async perform(row) {
      if (row.status === 'pending') {
        const { refundId } = await payments.refund({ chargeId: row.charge_id, amount: row.amount, idempotencyKey: row.idempotency_key });
        await db.query(
          `UPDATE refunds SET status = 'refunded', refund_id = $2, refunded_at = now(), due_at = NULL, lease_until = NULL, last_error = NULL
           WHERE idempotency_key = $1`,
          [row.idempotency_key, refundId],
        );
        onRefunded?.(row);
        return;
      }
      await db.query(`UPDATE refunds SET due_at = NULL, lease_until = NULL WHERE idempotency_key = $1`, [row.idempotency_key]);
    },
  };
}
