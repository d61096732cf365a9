import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { MIGRATIONS, runMigrations } from '../../src/db/data-source.ts';
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

/**
 * RedundantUniques1769400000000 drops the unique indexes on notifications (event_id, to_role) and
 * on the journal's event_id: what they kept is kept by a key that stays.
 */
describe('migrations: the redundant unique indexes dropped', function () {
  this.timeout(60_000);
  let sys: TestSystem;

  before(async () => {
    sys = await startSystem({ name: 'redundant_uniques' });
  });
  after(async () => {
    await sys?.close();
  });

  it('leaves each table one unique key for what it kept, goes back, and comes again', async () => {
    // This migration and any after it, undone and run again in order.
    const fromThis = MIGRATIONS.map((m) => m.name).slice(MIGRATIONS.findIndex((m) => m.name === 'RedundantUniques1769400000000'));
    expect(fromThis[0]).to.equal('RedundantUniques1769400000000');
    expect(await uniqueIndexes(sys, 'notifications')).to.deep.equal(['notifications_pkey']);
    expect(await uniqueIndexes(sys, 'order_journal')).to.deep.equal(['order_journal_order_id_seq_key']);
    for (let i = 0; i < fromThis.length; i += 1) await sys.runtime.db.undoLastMigration({ transaction: 'each' });
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
