import type { Consumer } from '../actors/consumers.ts';
import { refundKey } from '../actors/order-actor.ts';
import { sql } from '../db/data-source.ts';
import type { PaymentGateway } from './payment-gateway.ts';

/**
 * Refunds a paid order that was cancelled or rejected. The gateway call happens inside the inbox
 * transaction: if the commit fails after the gateway refunded, the retry sends the same
 * idempotency key and gets the same refund back.
 */
export function refundConsumer(payments: PaymentGateway): Consumer {
  return {
    name: 'payment.refund',
    handles: (m) => (m.type === 'OrderCancelled' || m.type === 'OrderRejected') && m.refund !== null,
    async apply(tx, m) {
      const refund = m.refund!;
      const { refundId } = await payments.refund({
        chargeId: refund.chargeId,
        amount: refund.amount,
        idempotencyKey: refundKey(m.orderId),
      });
      await sql(
        tx,
        `INSERT INTO refunds (order_id, charge_id, refund_id, amount) VALUES ($1, $2, $3, $4)
         ON CONFLICT (order_id) DO NOTHING`,
        [m.orderId, refund.chargeId, refundId, refund.amount],
      );
    },
  };
}
