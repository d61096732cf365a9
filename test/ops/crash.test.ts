import { expect } from 'chai';
import { commandRequest, eventually, request, type Parties, type TestSystem, withSharedSystem } from '../support/system.ts';
import { startServiceProcess } from '../support/service-process.ts';


/** Real service processes: SIGTERM drains, kill -9 loses nothing accepted and duplicates nothing. */
describe('crash safety and graceful shutdown of a service process', function () {
  this.timeout(90_000);
  let sys: TestSystem;
  let p: Parties;
  withSharedSystem({ system: (s) => (sys = s), parties: (x) => (p = x) });

  it('SIGTERM lets in-flight requests finish, then exits 0', async () => {
    const service = await startServiceProcess({ gatewayUrl: sys.gateway.url, queuePrefix: sys.queuePrefix });
    const order = await sys.placeOrder(p);
    await sys.setGatewayBehaviour({ latencyMs: 800 });
    const paying = request(service.baseUrl, 'POST', `/orders/${order.id}/pay`, { token: p.customer });
    // The signal must arrive while the command is in flight: the gateway has the charge request.
    await eventually(async () => (await request(sys.gateway.url, 'GET', '/_admin/stats')).body.charges >= 1, 'the charge to reach the gateway');
    // While the gateway works, the service holds no row lock and no open transaction (no I/O inside one).
    const held = await sys.runtime.db.query(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'`,
    );
    expect(held[0].n).to.equal(0);
    const locks = await sys.runtime.db.query(
      `SELECT count(*)::int AS n FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 'orders' AND l.mode = 'RowShareLock'`,
    );
    expect(locks[0].n).to.equal(0);
    service.child.kill('SIGTERM');
    const res = await paying;
    expect(res.status).to.equal(200);
    expect(res.body.status).to.equal('paid');
    const exit = await service.exited;
    expect(exit).to.deep.equal({ code: 0, signal: null });
    expect(service.output()).to.include('"msg":"stopped"');
  });

  it('kill -9 in the middle of a burst loses no accepted command and duplicates no charge, refund or notification', async () => {
    const first = await startServiceProcess({ gatewayUrl: sys.gateway.url, queuePrefix: sys.queuePrefix });
    const orders = await Promise.all(Array.from({ length: 12 }, () => sys.placeOrder(p)));
    await sys.setGatewayBehaviour({ latencyMs: 5 });

    const accepted: { orderId: string; command: string; version: number }[] = [];
    const script = ['pay', 'accept', 'cancel'];
    const drive = async (orderId: string) => {
      for (const command of script) {
        const res = await request(first.baseUrl, 'POST', `/orders/${orderId}/${command}`, commandRequest(p, command)).catch(() => undefined);
        if (!res || res.status !== 200) return;
        accepted.push({ orderId, command, version: res.body.version });
      }
    };
    const burst = Promise.all(orders.map((o) => drive(o.id)));
    await eventually(async () => accepted.length >= 8, 'some commands to be accepted');
    first.child.kill('SIGKILL');
    await burst;
    expect((await first.exited).signal).to.equal('SIGKILL');

    // Everything the killed process acknowledged is in PostgreSQL.
    for (const a of accepted) {
      const [row] = await sys.runtime.db.query('SELECT version FROM orders WHERE id = $1', [a.orderId]);
      expect(row.version, `${a.command} on ${a.orderId}`).to.be.at.least(a.version);
    }

    // A fresh process finishes what the dead one left: payments in flight at the kill are reconciled
    // (a charge the order never took is refunded), jobs the dead one held come back once their BullMQ
    // lock expires (JOB_LOCK_MS), and events it committed but never published are re-sent by the sweeper.
    const second = await startServiceProcess({ gatewayUrl: sys.gateway.url, queuePrefix: sys.queuePrefix });
    try {
      for (const o of orders) {
        for (const command of script) {
          const res = await request(second.baseUrl, 'POST', `/orders/${o.id}/${command}`, commandRequest(p, command));
          // 409: not allowed now, or a payment the dead process left in flight (reconciled shortly).
          expect([200, 409], JSON.stringify(res.body)).to.include(res.status);
        }
        const cancelled = await eventually(async () => {
          const res = await request(second.baseUrl, 'POST', `/orders/${o.id}/cancel`, commandRequest(p, 'cancel'));
          const now = await sys.request('GET', `/orders/${o.id}`, { token: p.customer });
          return now.body.status === 'cancelled' && now.body;
        }, `order ${o.id} to be cancelled`);
        expect(cancelled.status).to.equal('cancelled');
      }
      // Every order ended cancelled, so every charge the gateway made must be refunded, once.
      const ids = new Set(orders.map((o) => o.id));
      const ledger = await eventually(async () => {
        const l = await sys.ledger();
        const charges = l.charges.filter((c) => ids.has(c.orderId));
        const refunded = new Set(l.refunds.map((r) => r.chargeId));
        return charges.length > 0 && charges.every((c) => refunded.has(c.chargeId)) && l;
      }, 'every charge to be refunded', 20_000);
      const charges = ledger.charges.filter((c) => ids.has(c.orderId));
      const refunds = ledger.refunds.filter((r) => charges.some((c) => c.chargeId === r.chargeId));
      expect(refunds).to.have.length(charges.length);
      expect(new Set(refunds.map((r) => r.chargeId)).size).to.equal(charges.length);
      // One customer notification per journaled event, none twice.
      const journaled = (await sys.runtime.db.query('SELECT count(*)::int AS n FROM order_journal WHERE order_id = ANY($1::uuid[])', [[...ids]]))[0].n;
      const feed = await eventually(async () => {
        const f = (await sys.request('GET', '/notifications?limit=200', { token: p.customer })).body as { orderId: string; seq: number }[];
        return f.length === journaled && f;
      }, 'one notification per status change', 20_000);
      expect(new Set(feed.map((n) => `${n.orderId}/${n.seq}`)).size).to.equal(feed.length);
    } finally {
      second.child.kill('SIGTERM');
      await second.exited;
    }
  });
});
