import { expect } from 'chai';
import { ensurePartitions, EVENTS_GROUP } from '../../src/actors/partitions.ts';
import { MIGRATIONS, runMigrations } from '../../src/db/data-source.ts';
import { createLogger } from '../../src/log.ts';
import { rebuildViews } from '../../src/views/rebuild.ts';
import { VIEWS } from '../../src/views/registry.ts';
import { eventually, startSystem, type TestSystem } from '../support/system.ts';
import { viewTables } from '../support/views.ts';

/** A database that has orders when the views arrive: the migration flags the new views, a rebuild fills them. */
describe('views: migrating a database that already has orders', function () {
  this.timeout(60_000);
  let sys: TestSystem;

  before(async () => {
    sys = await startSystem({ name: 'views_migration' });
  });
  after(async () => {
    await sys?.close();
  });

  it('keeps the offered deliveries (with the seq that offered them), marks the new views for a rebuild, and the rebuild restores every view', async () => {
    const p = await sys.newParties();
    const lives = [[], ['pay'], ['pay', 'accept', 'cancel'], ['pay', 'accept', 'start-cooking', 'finish-cooking'], ['pay', 'accept', 'start-cooking', 'finish-cooking', 'pick', 'confirm-delivery']];
    for (const steps of lives) {
      const order = await sys.placeOrder(p);
      if (steps.length > 0) await sys.drive(p, order.id, steps);
    }
    await eventually(async () => {
      const [row] = await sys.runtime.db.query(
        `SELECT count(*)::int AS n FROM order_journal j JOIN consumer_positions p ON p.part = j.part WHERE (j.tx, j.pos) > (p.tx, p.pos)`,
      );
      return row.n === 0;
    }, 'the views to apply every event');
    const built = await viewTables(sys.runtime.pg);

    // Back to the schema before the views, then forward again, as a deployment of this version would.
    // Every migration from the views on is undone (those added after them first), then run again.
    const fromViews = MIGRATIONS.map((m) => m.name).slice(MIGRATIONS.findIndex((m) => m.name === 'Views1766000000000'));
    for (let i = 0; i < fromViews.length; i += 1) await sys.runtime.db.undoLastMigration({ transaction: 'each' });
    expect(await runMigrations(sys.runtime.db)).to.deep.equal(fromViews);
    // The running replica set its partitions up at its start; a database migrated anew has none yet.
    await ensurePartitions(sys.runtime.pg, 32, [EVENTS_GROUP]);

    const status = Object.fromEntries(
      (await sys.runtime.db.query('SELECT view, rebuild_needed FROM view_status')).map((r: { view: string; rebuild_needed: boolean }) => [r.view, r.rebuild_needed]),
    );
    expect(status).to.deep.equal({ 'customer-orders': true, 'store-orders': true, 'store-food-counts': true, 'rider-delivery-counts': true, deliveries: false });
    const migrated = await viewTables(sys.runtime.pg);
    expect(migrated.view_customer_orders).to.deep.equal([]);
    // The cooked order is still offered, with the seq of its CookingFinished.
    const offered = (built.view_deliveries as { withdrawn_at: Date | null }[]).filter((r) => r.withdrawn_at === null);
    expect(offered).to.have.length(1);
    expect(migrated.view_deliveries).to.deep.equal(offered);

    const result = await rebuildViews(sys.runtime.pg, VIEWS, { log: createLogger('silent') });
    expect(result).to.include({ ordersDone: lives.length, failedOrders: 0 });
    expect(await viewTables(sys.runtime.pg)).to.deep.equal(built);
    const after = await sys.runtime.db.query('SELECT bool_or(rebuild_needed) AS any FROM view_status');
    expect(after[0].any).to.equal(false);
  });
});
