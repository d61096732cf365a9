import { expect } from 'chai';
import type { OrderRow } from '../../src/actors/order-repository.ts';
import { ORDER_MACHINE_VERSION } from '../../src/machines/order/v1.ts';
import { ORDER_MACHINE_ID } from '../../src/machines/order/contract.ts';
import { SHIPPED_ORDER_MACHINES } from '../../src/machines/order/registry.ts';
import { sharedSystem, type Parties, type TestSystem } from '../support/system.ts';

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
  /** Orders a test stored with a machine version the service does not run, put back afterwards. */
  const strayed: string[] = [];
  afterEach(async () => {
    if (strayed.length > 0) await sys.runtime.db.query('UPDATE orders SET machine_version = $2 WHERE id = ANY($1::uuid[])', [strayed.splice(0), ORDER_MACHINE_VERSION]);
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
      const { machine, snapshot: restored } = SHIPPED_ORDER_MACHINES.restore({ ...row, snapshot: JSON.parse(JSON.stringify(row.snapshot)) });
      expect(machine.version).to.equal(ORDER_MACHINE_VERSION);
      expect(machine.statusOf(restored)).to.equal(status);
      expect(machine.allowedCommands(restored)).to.deep.equal(view.allowed);
      expect(restored.context.total).to.equal(order.total);
    });
  }

  it('answers 503 machine_version_ahead (Retry-After: 1) for an order a newer machine version stored, and changes nothing', async () => {
    const order = await sys.placeOrder(p);
    await sys.runtime.db.query('UPDATE orders SET machine_version = $2 WHERE id = $1', [order.id, ORDER_MACHINE_VERSION + 1]);
    // The shared database goes back to orders every replica runs: other tests list every order.
    strayed.push(order.id);
    for (const [method, path] of [['POST', `/orders/${order.id}/pay`], ['POST', `/orders/${order.id}/cancel`], ['GET', `/orders/${order.id}`]] as const) {
      const res = await sys.request(method, path, { token: p.customer });
      expect(res.status, `${method} ${path}`).to.equal(503);
      expect(res.headers.get('retry-after')).to.equal('1');
      expect(res.body.error).to.deep.include({ code: 'machine_version_ahead' });
      expect(res.body.error.details).to.deep.equal({ orderId: order.id, machineVersion: ORDER_MACHINE_VERSION + 1, newestKnown: ORDER_MACHINE_VERSION });
    }
    // Who may see the order is judged first: to anyone else it stays not found.
    const stranger = await sys.token('customer', `stranger-${order.id}`);
    expect((await sys.request('POST', `/orders/${order.id}/cancel`, { token: stranger })).status).to.equal(404);
    expect((await sys.ledger()).charges.filter((c) => c.orderId === order.id)).to.have.length(0);
    const [row] = await sys.runtime.db.query('SELECT version, status, machine_version FROM orders WHERE id = $1', [order.id]);
    expect(row).to.deep.equal({ version: 1, status: 'awaitingPayment', machine_version: ORDER_MACHINE_VERSION + 1 });
  });

  it('refuses, with a clear error, an order stored by a machine version this build no longer has', async () => {
    const order = await sys.placeOrder(p);
    await sys.runtime.db.query('UPDATE orders SET machine_version = 0 WHERE id = $1', [order.id]);
    strayed.push(order.id);
    const res = await sys.request('POST', `/orders/${order.id}/pay`, { token: p.customer });
    expect(res.status).to.equal(500);
    expect(res.body.error.code).to.equal('internal');
    expect(() => SHIPPED_ORDER_MACHINES.restore({ id: order.id, machine_id: 'order', machine_version: 0, snapshot: {} })).to.throw(/order@0, which this build no longer has/);
    expect((await sys.ledger()).charges.filter((c) => c.orderId === order.id)).to.have.length(0);
    const [row] = await sys.runtime.db.query('SELECT version, status FROM orders WHERE id = $1', [order.id]);
    expect(row).to.deep.equal({ version: 1, status: 'awaitingPayment' });
  });

  it('migrations are recorded and running them again does nothing', async () => {
    const { runMigrations } = await import('../../src/db/data-source.ts');
    expect(await runMigrations(sys.runtime.db)).to.deep.equal([]);
    const ran = await sys.runtime.db.query('SELECT name FROM schema_migrations');
    expect(ran.map((r: { name: string }) => r.name)).to.include('InitialSchema1764000000000');
  });
});
