import { expect } from 'chai';
import pg from 'pg';
import { Database } from '../../src/db/pg.ts';
import { eventually, startSystem, type Parties, type TestSystem } from '../support/system.ts';

/** Every wait on PostgreSQL is bounded: a locked row, a busy pool, a transaction left open. */
describe('bounded database waits', () => {
  let sys: TestSystem;
  let p: Parties;
  let pool: pg.Pool;
  before(async () => {
    sys = await startSystem({
      name: 'bounds',
      env: {
        DATABASE_POOL_SIZE: '3',
        DATABASE_CONNECT_TIMEOUT_MS: '400',
        DATABASE_STATEMENT_TIMEOUT_MS: '2000',
        DATABASE_LOCK_TIMEOUT_MS: '300',
        DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS: '1500',
      },
    });
    pool = Database.of(sys.runtime.db).pool;
    p = await sys.newParties();
  });
  after(async () => {
    await sys?.close();
  });

  it("gives the service's connections the configured statement, lock and idle-in-transaction timeouts", async () => {
    const rows = (await sys.runtime.db.query(
      `SELECT name, setting FROM pg_settings WHERE name IN ('statement_timeout', 'lock_timeout', 'idle_in_transaction_session_timeout')`,
    )) as { name: string; setting: string }[];
    expect(Object.fromEntries(rows.map((r) => [r.name, r.setting]))).to.deep.equal({
      statement_timeout: '2000',
      lock_timeout: '300',
      idle_in_transaction_session_timeout: '1500',
    });
  });

  it('a pay whose order row stays locked answers 503 database_unavailable (lock) after the lock timeout, charges nothing, and goes through once the lock is gone', async () => {
    const order = await sys.placeOrder(p);
    const blocker = new pg.Client({ connectionString: sys.databaseUrl });
    await blocker.connect();
    try {
      await blocker.query('BEGIN');
      await blocker.query('SELECT id FROM orders WHERE id = $1 FOR UPDATE', [order.id]);
      const started = Date.now();
      const refused = await sys.request('POST', `/orders/${order.id}/pay`, { token: p.customer });
      expect(refused.status, JSON.stringify(refused.body)).to.equal(503);
      expect(refused.body.error).to.deep.include({ code: 'database_unavailable', details: { timeout: 'lock' } });
      expect(refused.headers.get('retry-after')).to.equal('1');
      expect(Date.now() - started, 'waited for the lock timeout, not for the lock').to.be.at.least(300).and.below(5000);
      // Reads take no row lock: the order is readable meanwhile, unchanged.
      const read = await sys.request('GET', `/orders/${order.id}`, { token: p.customer });
      expect(read.status).to.equal(200);
      expect(read.body.status).to.equal('awaitingPayment');
    } finally {
      await blocker.query('ROLLBACK');
      await blocker.end();
    }
    expect((await sys.ledger()).charges.filter((c) => c.orderId === order.id), 'nothing charged by the refused pay').to.have.length(0);
    const paid = await sys.request('POST', `/orders/${order.id}/pay`, { token: p.customer });
    expect(paid.status, JSON.stringify(paid.body)).to.equal(200);
    expect((await sys.ledger()).charges.filter((c) => c.orderId === order.id)).to.have.length(1);
  });

  it('a request that finds every pooled connection busy answers 503 database_unavailable (connect) after the connect timeout, and is served once one is free', async () => {
    const order = await sys.placeOrder(p);
    const held = await Promise.all([1, 2, 3].map(() => pool.connect()));
    try {
      const started = Date.now();
      const refused = await sys.request('POST', `/orders/${order.id}/pay`, { token: p.customer });
      expect(refused.status, JSON.stringify(refused.body)).to.equal(503);
      expect(refused.body.error).to.deep.include({ code: 'database_unavailable', details: { timeout: 'connect' } });
      expect(Date.now() - started).to.be.at.least(400).and.below(5000);
    } finally {
      for (const client of held) client.release();
    }
    const read = await sys.request('GET', `/orders/${order.id}`, { token: p.customer });
    expect(read.status).to.equal(200);
    expect(read.body.status, 'the refused pay changed nothing').to.equal('awaitingPayment');
    expect((await sys.ledger()).charges.filter((c) => c.orderId === order.id)).to.have.length(0);
  });

  it('a transaction left open on a service connection is ended by PostgreSQL after the idle-in-transaction timeout', async () => {
    const client = await pool.connect();
    const pid = ((await client.query('SELECT pg_backend_pid() AS pid')).rows[0] as { pid: number }).pid;
    await client.query('BEGIN');
    const gone = await eventually(
      async () => {
        const rows = (await sys.runtime.db.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid])) as unknown[];
        return rows.length === 0;
      },
      'PostgreSQL to end the idle transaction',
      10_000,
    );
    expect(gone).to.equal(true);
    const err = await client.query('SELECT 1').then(
      () => undefined,
      (e: Error) => e,
    );
    expect(err, 'the ended connection refuses statements').to.be.instanceOf(Error);
    client.release(err);
  });
});
