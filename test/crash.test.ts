import { expect } from 'chai';
import { commandRequest, eventually, request, sharedSystem, type Parties, type TestSystem } from './support/system.ts';
import { startServiceProcess } from './support/service-process.ts';


/** Real service processes: SIGTERM drains, kill -9 loses nothing accepted and duplicates nothing. */
describe('crash safety and graceful shutdown of a service process', function () {
  this.timeout(90_000);
  let sys: TestSystem;
  let p: Parties;

  before(async () => {
    sys = await sharedSystem();
  });
  beforeEach(async () => {
    await sys.resetGateway();
    p = await sys.newParties();
  });

  it('SIGTERM lets in-flight requests finish, then exits 0', async () => {
    const service = await startServiceProcess({ gatewayUrl: sys.gateway.url, queuePrefix: sys.queuePrefix });
    const order = await sys.placeOrder(p);
    await sys.setGatewayBehaviour({ latencyMs: 500 });
    const paying = request(service.baseUrl, 'POST', `/orders/${order.id}/pay`, { token: p.customer });
    // The signal must arrive while the command is in flight: it holds the order's row lock while the
    // (slow) gateway answers.
    await eventually(async () => (await sys.runtime.db.query(`SELECT count(*)::int AS n FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 'orders' AND l.mode = 'RowShareLock'`))[0].n > 0, 'the pay command to hold the order row');
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

    // A fresh process finishes what the dead one left: it re-pays (same idempotency key) where needed,
    // and jobs the dead one held come back once their BullMQ lock expires (JOB_LOCK_MS).
    const second = await startServiceProcess({ gatewayUrl: sys.gateway.url, queuePrefix: sys.queuePrefix });
    try {
      for (const o of orders) {
        for (const command of script) {
          const res = await request(second.baseUrl, 'POST', `/orders/${o.id}/${command}`, commandRequest(p, command));
          expect([200, 409], JSON.stringify(res.body)).to.include(res.status);
        }
      }
      await eventually(async () => {
        const [{ n }] = await sys.runtime.db.query(
          `SELECT count(*)::int AS n FROM outbox WHERE order_id = ANY($1::uuid[]) AND published_at IS NULL`,
          [orders.map((o) => o.id)],
        );
        return n === 0;
      }, 'every outbox row to be published');
      const ledger = await eventually(async () => {
        const l = await sys.ledger();
        return l.refunds.length === orders.length && l;
      }, 'one refund per cancelled order', 20_000);
      const ids = new Set(orders.map((o) => o.id));
      const charges = ledger.charges.filter((c) => ids.has(c.orderId));
      expect(charges).to.have.length(orders.length);
      expect(new Set(charges.map((c) => c.orderId)).size).to.equal(orders.length);
      expect(new Set(ledger.refunds.map((r) => r.chargeId)).size).to.equal(orders.length);
      const feed = await eventually(async () => {
        const f = (await sys.request('GET', '/notifications?limit=200', { token: p.customer })).body as { orderId: string; seq: number }[];
        return f.length === orders.length * 4 && f;
      }, 'four notifications per order');
      expect(new Set(feed.map((n) => `${n.orderId}/${n.seq}`)).size).to.equal(feed.length);
    } finally {
      second.child.kill('SIGTERM');
      await second.exited;
    }
  });
});
