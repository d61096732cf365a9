import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { MIGRATIONS, runMigrations } from '../../src/db/data-source.ts';
import { PAYLOAD_COLUMNS } from '../../src/db/migrations/1769600000000-payload-statistics.ts';
import { notificationId } from '../../src/notifications/notifier.consumer.ts';
import { eventually, startSystem, type TestSystem } from '../support/system.ts';

const uniqueIndexes = async (sys: TestSystem, table: string): Promise<string[]> =>
  (
    await sys.runtime.db.query<{ name: string }[]>(
      `SELECT c.relname AS name FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
       WHERE i.indrelid = $1::regclass AND i.indisunique ORDER BY 1`,
      [table],
    )
  ).map((r) => r.name);

/** Undoes migration `name` and every one after it, newest first; returns their names, oldest first. */
async function undoFrom(sys: TestSystem, name: string): Promise<string[]> {
  const fromThis = MIGRATIONS.map((m) => m.name).slice(MIGRATIONS.findIndex((m) => m.name === name));
  expect(fromThis[0]).to.equal(name);
  for (let i = 0; i < fromThis.length; i += 1) await sys.runtime.db.undoLastMigration({ transaction: 'each' });
  return fromThis;
}

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

/** Migrations that change the schema under data: each checked forward, back, and forward again. */
describe('schema migrations', function () {
  this.timeout(60_000);
  let sys: TestSystem;

  before(async () => {
    sys = await startSystem({ name: 'schema_migrations' });
  });
  after(async () => {
    await sys?.close();
  });

  /**
   * RedundantUniques1769400000000 drops the unique indexes on notifications (event_id, to_role) and
   * on the journal's event_id: what they kept is kept by a key that stays.
   */
  describe('the redundant unique indexes dropped', () => {
    it('leaves each table one unique key for what it kept, goes back, and comes again', async () => {
      expect(await uniqueIndexes(sys, 'notifications')).to.deep.equal(['notifications_pkey']);
      expect(await uniqueIndexes(sys, 'order_journal')).to.deep.equal(['order_journal_order_id_seq_key']);
      // This migration and any after it, undone and run again in order.
      const fromThis = await undoFrom(sys, 'RedundantUniques1769400000000');
      expect(await uniqueIndexes(sys, 'notifications')).to.deep.equal(['notifications_event_id_to_role_key', 'notifications_pkey']);
      expect(await uniqueIndexes(sys, 'order_journal')).to.deep.equal(['order_journal_event_id_key', 'order_journal_order_id_seq_key']);
      expect(await runMigrations(sys.runtime.db)).to.deep.equal(fromThis);
      expect(await uniqueIndexes(sys, 'notifications')).to.deep.equal(['notifications_pkey']);
    });

    it('still keeps one notification per event and recipient: the same again is refused by the primary key', async () => {
      const p = await sys.newParties();
      const order = await sys.placeOrder(p);
      await sys.drive(p, order.id, ['pay']);
      const db = sys.runtime.db;
      const rows = await eventually(async () => {
        const found = await db.query<{ id: string; event_id: string; to_role: 'customer' | 'store' }[]>(
          'SELECT id, event_id, to_role FROM notifications WHERE order_id = $1 ORDER BY seq, to_role',
          [order.id],
        );
        return found.length === 3 && found;
      }, 'the placement\'s and the payment\'s notifications');
      for (const r of rows) expect(r.id).to.equal(notificationId(r.event_id, r.to_role));

      // The notifier's insert for an event applied a second time (a redelivery): nothing new.
      const again = await db.query(
        `INSERT INTO notifications (id, event_id, order_id, seq, to_role, to_id, status, text, created_at, due_at)
         SELECT id, event_id, order_id, seq, to_role, to_id, status, 'again', created_at, now() FROM notifications WHERE order_id = $1
         ON CONFLICT DO NOTHING RETURNING id`,
        [order.id],
      );
      expect(again).to.deep.equal([]);
      const count = await db.query<{ n: number }[]>('SELECT count(*)::int AS n FROM notifications WHERE order_id = $1', [order.id]);
      expect(count[0]!.n).to.equal(3);

      // The journal's key is the order and its sequence number; an event id is drawn at random per row.
      const journal = await db.query<{ event_id: string }[]>('SELECT event_id FROM order_journal WHERE order_id = $1', [order.id]);
      expect(new Set(journal.map((j) => j.event_id)).size).to.equal(journal.length);
      const refused = await db.query(
        `INSERT INTO order_journal (order_id, seq, event_id, type, data, actor, at, part)
         SELECT order_id, seq, $2, type, data, actor, at, part FROM order_journal WHERE order_id = $1 AND seq = 1`,
        [order.id, randomUUID()],
      ).then(() => undefined, (err: Error) => err);
      expect(refused?.message).to.match(/order_journal_order_id_seq_key/);
    });
  });

  /** PayloadStatistics1769600000000: ANALYZE builds no statistics for columns no statement plans on. */
  describe('no planner statistics for payload columns', () => {
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
      const fromThis = await undoFrom(sys, 'PayloadStatistics1769600000000');
      for (const [col, target] of await targets(sys)) expect(target, col).to.equal(-1);
      expect(await runMigrations(sys.runtime.db)).to.deep.equal(fromThis);
      for (const [col, target] of await targets(sys)) expect(target, col).to.equal(isPayload(col) ? 0 : -1);
    });
  });
});
