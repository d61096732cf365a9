import { expect } from 'chai';
import { MIGRATIONS, runMigrations } from '../../src/db/data-source.ts';
import { PAYLOAD_COLUMNS } from '../../src/db/migrations/1769600000000-payload-statistics.ts';
import { eventually, startSystem, type TestSystem } from '../support/system.ts';

const TABLES = [...new Set(PAYLOAD_COLUMNS.map(([table]) => table))];

/** Each column of the payload columns' tables with its statistics target (-1: the server's default). */
async function targets(sys: TestSystem): Promise<Map<string, number>> {
  const rows = await sys.runtime.db.query<{ col: string; target: number }[]>(
    `SELECT c.relname || '.' || a.attname AS col, coalesce(a.attstattarget, -1)::int AS target
     FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
     WHERE c.relname = ANY ($1::text[]) AND c.relnamespace = 'public'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped`,
    [TABLES],
  );
  return new Map(rows.map((r) => [r.col, r.target]));
}

const isPayload = (col: string) => PAYLOAD_COLUMNS.some(([t, c]) => `${t}.${c}` === col);

/** PayloadStatistics1769600000000: ANALYZE builds no statistics for columns no statement plans on. */
describe('migrations: no planner statistics for payload columns', function () {
  this.timeout(60_000);
  let sys: TestSystem;

  before(async () => {
    sys = await startSystem({ name: 'payload_statistics' });
  });
  after(async () => {
    await sys?.close();
  });

  it('sets the payload columns to none and leaves every other column of their tables at the default', async () => {
    const all = await targets(sys);
    expect([...all.keys()].filter(isPayload)).to.have.members(PAYLOAD_COLUMNS.map(([t, c]) => `${t}.${c}`));
    for (const [col, target] of all) expect(target, col).to.equal(isPayload(col) ? 0 : -1);
  });

  it('ANALYZE then builds statistics for the keys and states statements filter on, none for the payloads', async () => {
    const p = await sys.newParties();
    const order = await sys.placeOrder(p);
    await sys.drive(p, order.id, ['pay', 'accept']);
    const db = sys.runtime.db;
    await eventually(async () => {
      const [{ n }] = (await db.query<{ n: number }[]>('SELECT count(*)::int AS n FROM notifications WHERE order_id = $1', [order.id])) as [{ n: number }];
      return n > 0;
    }, 'the order\'s notifications');
    await db.query(`ANALYZE ${TABLES.join(', ')}`);
    const stats = new Set(
      (
        await db.query<{ col: string }[]>(`SELECT tablename || '.' || attname AS col FROM pg_stats WHERE schemaname = 'public' AND tablename = ANY ($1::text[])`, [TABLES])
      ).map((r) => r.col),
    );
    for (const col of ['orders.status', 'orders.customer_id', 'order_journal.order_id', 'notifications.to_id']) expect(stats, col).to.include(col);
    for (const col of ['orders.snapshot', 'order_journal.data', 'order_journal.actor', 'notifications.text']) expect(stats, col).not.to.include(col);
  });

  it('goes back to the default, and comes again', async () => {
    const fromThis = MIGRATIONS.map((m) => m.name).slice(MIGRATIONS.findIndex((m) => m.name === 'PayloadStatistics1769600000000'));
    expect(fromThis[0]).to.equal('PayloadStatistics1769600000000');
    for (let i = 0; i < fromThis.length; i += 1) await sys.runtime.db.undoLastMigration({ transaction: 'each' });
    for (const [col, target] of await targets(sys)) expect(target, col).to.equal(-1);
    expect(await runMigrations(sys.runtime.db)).to.deep.equal(fromThis);
    for (const [col, target] of await targets(sys)) expect(target, col).to.equal(isPayload(col) ? 0 : -1);
  });
});
