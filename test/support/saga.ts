import { expect } from 'chai';
import type { OrderView } from '../../src/actors/order-actor.ts';
import { commandRequest, eventually, type Ledger, type Parties, type TestSystem } from './system.ts';

/** What the gateway's ledger holds for one order: its charges and the refunds of those charges. */
export function moneyOf(ledger: Ledger, orderId: string) {
  const charges = ledger.charges.filter((c) => c.orderId === orderId);
  const ids = new Set(charges.map((c) => c.chargeId));
  const refunds = ledger.refunds.filter((r) => ids.has(r.chargeId));
  const refunded = new Set(refunds.map((r) => r.chargeId));
  return { charges, refunds, kept: charges.filter((c) => !refunded.has(c.chargeId)) };
}

export interface Then {
  status: OrderView['status'];
  /** Charges the gateway made for the order, and how many of them were refunded. */
  charges: number;
  refunds: number;
  /** The order's own refund as GET /orders/:id shows it once everything settled. */
  refund?: 'refunded' | null;
  /** The customer's last notification is about this status. */
  notified?: OrderView['status'];
}

/**
 * Given / when / then for the saga: given an order driven through some commands, when something
 * happens (a command over HTTP, or any action), then the order, the gateway's ledger (counted,
 * not assumed) and the customer's notifications end up as stated.
 */
export function sagaSpec(sys: () => TestSystem) {
  let p: Parties;
  let order: OrderView;
  return {
    async given(commands: string[]): Promise<{ p: Parties; order: OrderView }> {
      p = await sys().newParties();
      order = await sys().placeOrder(p);
      if (commands.length > 0) order = await sys().drive(p, order.id, commands);
      return { p, order };
    },
    async when(action: string | ((ctx: { p: Parties; order: OrderView }) => Promise<unknown>)): Promise<unknown> {
      if (typeof action !== 'string') return action({ p, order });
      const res = await sys().request('POST', `/orders/${order.id}/${action}`, commandRequest(p, action));
      expect(res.status, `${action}: ${JSON.stringify(res.body)}`).to.equal(200);
      return res.body;
    },
    async then(expected: Then): Promise<{ order: OrderView; ledger: Ledger }> {
      const settled = await eventually(
        async () => {
          const now = (await sys().request<OrderView>('GET', `/orders/${order.id}`, { token: p.customer })).body;
          const money = moneyOf(await sys().ledger(), order.id);
          const refundDone = expected.refund === undefined || (expected.refund === null ? now.refund === null : now.refund?.status === expected.refund);
          // The service must know it too (the gateway may record a refund before it answers).
          const [recorded] = await sys().runtime.db.query("SELECT count(*)::int AS n FROM refunds WHERE order_id = $1 AND status = 'refunded'", [order.id]);
          return (
            now.status === expected.status &&
            money.charges.length === expected.charges &&
            money.refunds.length === expected.refunds &&
            recorded.n === expected.refunds &&
            refundDone && { now, money }
          );
        },
        `order ${order.id} to be ${expected.status} with ${expected.charges} charge(s) and ${expected.refunds} refund(s)`,
        15_000,
      );
      // Settled means settled: no second refund (or charge) arrives a moment later.
      const again = moneyOf(await sys().ledger(), order.id);
      expect(again.charges).to.have.length(expected.charges);
      expect(again.refunds).to.have.length(expected.refunds);
      expect(new Set(again.refunds.map((r) => r.chargeId)).size, 'one refund per charge').to.equal(again.refunds.length);
      if (expected.notified) {
        await eventually(async () => {
          const feed = (await sys().request('GET', '/notifications?limit=200', { token: p.customer })).body as { orderId: string; status: string }[];
          return feed.find((n) => n.orderId === order.id)?.status === expected.notified;
        }, `the customer to hear that order ${order.id} is ${expected.notified}`);
      }
      return { order: settled.now, ledger: await sys().ledger() };
    },
  };
}
