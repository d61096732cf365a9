import { expect } from 'chai';
import { MIGRATIONS, runMigrations } from '../../src/db/data-source.ts';
import { startSystem, type TestSystem } from '../support/system.ts';

/** The migration that makes owed events work items keeps the schedule of the rows already owed, both ways. */
describe('events: owed orders migrated to work items', function () {
  this.timeout(60_000);
  let sys: TestSystem;

  before(async () => {
    // Nobody consumes: the rows below stay as the migration leaves them.
    sys = await startSystem({ name: 'owed_migration', env: { ROLE: 'api' } });
  });
  after(async () => {
    await sys?.close();
  });

  it('is due when the old formula would have retried it, keeps its error as last_error, and goes back', async () => {
    // This migration and the ones after it, undone and run again in order.
    const fromOwed = MIGRATIONS.map((m) => m.name).slice(MIGRATIONS.findIndex((m) => m.name === 'OwedEventsAsWork1769300000000'));
    const db = sys.runtime.db;
    const p = await sys.newParties();
    const [a, b] = [await sys.placeOrder(p), await sys.placeOrder(p)];
    for (let i = 0; i < fromOwed.length; i += 1) await db.undoLastMigration({ transaction: 'each' });
    await db.query(
      `INSERT INTO consumer_failures (consumer, order_id, part, seq, upto, attempts, error, first_failed_at, last_failed_at, origin)
       VALUES ('notifier', $1, 0, 1, 1, 3, 'boom', now() - interval '1 minute', now() - interval '1 second', 'failure'),
              ('notifier', $2, 0, 1, 1, 0, 'owed to a rebuild', now(), '-infinity', 'rebuild')`,
      [a.id, b.id],
    );
    expect(await runMigrations(db)).to.deep.equal(fromOwed);
    const rows = await db.query(
      `SELECT order_id, last_error, lease_until, work_key, CASE WHEN isfinite(last_failed_at) THEN extract(epoch FROM due_at - last_failed_at)::float8 END AS wait, due_at <= now() AS due
       FROM consumer_failures WHERE order_id = ANY($1::uuid[])`,
      [[a.id, b.id]],
    );
    const byOrder = new Map(rows.map((r: { order_id: string }) => [r.order_id, r]));
    // Three failures: 2^3 s after the last, as before; never failed: due now.
    expect(byOrder.get(a.id)).to.deep.include({ last_error: 'boom', lease_until: null, work_key: `notifier ${a.id}`, wait: 8, due: false });
    expect(byOrder.get(b.id)).to.deep.include({ last_error: 'owed to a rebuild', due: true });
    for (let i = 0; i < fromOwed.length; i += 1) await db.undoLastMigration({ transaction: 'each' });
    const back = await db.query('SELECT error, attempts FROM consumer_failures WHERE order_id = $1', [a.id]);
    expect(back).to.deep.equal([{ error: 'boom', attempts: 3 }]);
    await db.query('DELETE FROM consumer_failures WHERE order_id = ANY($1::uuid[])', [[a.id, b.id]]);
    expect(await runMigrations(db)).to.deep.equal(fromOwed);
  });
});
