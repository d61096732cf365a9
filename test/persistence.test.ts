import { expect } from 'chai';
import { restoreSnapshot, type OrderRow } from '../src/actors/order-repository.ts';
import { ORDER_MACHINE_ID, ORDER_MACHINE_VERSION, allowedCommands, statusOf } from '../src/machines/order.machine.ts';
import { sharedSystem, type Parties, type TestSystem } from './support/system.ts';

const ROW = `SELECT o.*, r.refund_id, r.amount AS refund_amount FROM orders o LEFT JOIN refunds r ON r.order_id = o.id WHERE o.id = $1`;

describe('persistence of order actors', () => {
  let sys: TestSystem;
  let p: Parties;
  before(async () => {
    sys = await sharedSystem();
    await sys.resetGateway();
  });
  beforeEach(async () => {
    p = await sys.newParties();
  });

  const rowOf = async (id: string) => ((await sys.runtime.db.query(ROW, [id])) as OrderRow[])[0]!;

  const paths: Record<string, string[]> = {
    awaitingPayment: [],
    accepted: ['pay', 'accept'],
    cooked: ['pay', 'accept', 'start-cooking', 'finish-cooking'],
    delivered: ['pay', 'accept', 'start-cooking', 'finish-cooking', 'pick', 'confirm-delivery'],
    rejected: ['pay', 'reject'],
  };
  for (const [status, commands] of Object.entries(paths)) {
    it(`round-trips a ${status} order: persisted row → JSON → restore gives the same status and allowed commands`, async () => {
      const order = await sys.placeOrder(p);
      const view = commands.length > 0 ? await sys.drive(p, order.id, commands) : order;
      const row = await rowOf(order.id);
      expect(row).to.include({ machine_id: ORDER_MACHINE_ID, machine_version: ORDER_MACHINE_VERSION, version: view.version, status });
      const restored = restoreSnapshot({ ...row, snapshot: JSON.parse(JSON.stringify(row.snapshot)) });
      expect(statusOf(restored)).to.equal(status);
      expect(allowedCommands(restored)).to.deep.equal(view.allowed);
      expect(restored.context.total).to.equal(order.total);
    });
  }

  it('refuses a snapshot stored by another machine version with a clear error, instead of misreading it', async () => {
    const order = await sys.placeOrder(p);
    await sys.runtime.db.query('UPDATE orders SET machine_version = $2 WHERE id = $1', [order.id, ORDER_MACHINE_VERSION + 1]);
    const res = await sys.request('POST', `/orders/${order.id}/pay`, { token: p.customer });
    expect(res.status).to.equal(500);
    expect(res.body.error.code).to.equal('internal');
    expect(() => restoreSnapshot({ ...order, machine_id: 'order', machine_version: 99, snapshot: {} } as unknown as OrderRow)).to.throw(/order@99/);
    expect((await sys.ledger()).charges.filter((c) => c.orderId === order.id)).to.have.length(0);
    const [row] = await sys.runtime.db.query('SELECT version, status FROM orders WHERE id = $1', [order.id]);
    expect(row).to.deep.equal({ version: 1, status: 'awaitingPayment' });
  });

  it('migrations are recorded and running them again does nothing', async () => {
    const { runMigrations } = await import('../src/db/data-source.ts');
    expect(await runMigrations(sys.runtime.db)).to.deep.equal([]);
    const ran = await sys.runtime.db.query('SELECT name FROM schema_migrations');
    expect(ran.map((r: { name: string }) => r.name)).to.include('InitialSchema1764000000000');
  });
});
