import { createHash, randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { NotificationUuids1768600000000 } from '../../src/db/migrations/1768600000000-notification-uuids.ts';
import { notificationId } from '../../src/notifications/notifier.consumer.ts';
import { eventually, sharedSystem, type TestSystem } from '../support/system.ts';

/** RFC 9562 § 4: the version nibble (8) and the variant bits (10), as strict clients check them. */
const UUID_V8 = /^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** The ids as they were made before: the MD5 of `<eventId>:<role>` in UUID shape, without version or variant. */
const md5Shaped = (eventId: string, role: string) => {
  const hex = createHash('md5').update(`${eventId}:${role}`).digest('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
};

describe('notification ids', () => {
  it('are RFC 9562 UUIDs of version 8, the same for the same event and recipient, made of the MD5 they always came from', () => {
    for (let i = 0; i < 500; i += 1) {
      const eventId = randomUUID();
      const ids = (['customer', 'store', 'rider'] as const).map((role) => notificationId(eventId, role));
      for (const [k, id] of ids.entries()) {
        expect(id, `${eventId} ${k}`).to.match(UUID_V8);
        const old = md5Shaped(eventId, ['customer', 'store', 'rider'][k]!);
        // Only the version nibble and the two variant bits differ from the MD5.
        const differing = [...id.replaceAll('-', '')].filter((c, n) => c !== old.replaceAll('-', '')[n]).length;
        expect(differing).to.be.at.most(2);
        expect(id.slice(0, 14) + id.slice(15, 19) + id.slice(20)).to.equal(old.slice(0, 14) + old.slice(15, 19) + old.slice(20));
      }
      expect(new Set(ids).size).to.equal(3);
      expect(notificationId(eventId, 'store')).to.equal(ids[1]);
    }
  });

  describe('in the service', () => {
    let sys: TestSystem;
    before(async () => {
      sys = await sharedSystem();
    });

    it('are what GET /notifications answers, and the migration gives ids stored before the same bits', async () => {
      const p = await sys.newParties();
      const order = await sys.placeOrder(p);
      await sys.drive(p, order.id, ['pay']);
      const feed = await eventually(async () => {
        const res = await sys.request('GET', '/notifications', { token: p.customer });
        return res.body.length === 2 && (res.body as { notificationId: string; eventId: string }[]);
      }, "the customer's two notifications");
      for (const n of feed) {
        expect(n.notificationId).to.match(UUID_V8);
        expect(n.notificationId).to.equal(notificationId(n.eventId, 'customer'));
      }

      // Rows written by the previous version: their ids without version and variant bits.
      const rows: { id: string; event_id: string; to_role: string }[] = await sys.runtime.db.query('SELECT id, event_id, to_role FROM notifications WHERE order_id = $1', [order.id]);
      expect(rows).to.have.length(3); // the customer twice, the store once (paid)
      for (const r of rows) await sys.runtime.db.query('UPDATE notifications SET id = $2 WHERE id = $1', [r.id, md5Shaped(r.event_id, r.to_role)]);
      const old: { id: string }[] = await sys.runtime.db.query('SELECT id FROM notifications WHERE order_id = $1', [order.id]);
      // (An MD5 has the version and variant bits of one by chance, 1 time in 64: compare the ids, not their shape.)
      expect(old.map((r) => r.id).sort(), 'ids in the old shape').to.deep.equal(rows.map((r) => md5Shaped(r.event_id, r.to_role)).sort());

      const runner = sys.runtime.db.createQueryRunner();
      try {
        await new NotificationUuids1768600000000().up(runner);
      } finally {
        await runner.release();
      }
      const migrated: { id: string; event_id: string; to_role: 'customer' | 'store' }[] = await sys.runtime.db.query(
        'SELECT id, event_id, to_role FROM notifications WHERE order_id = $1',
        [order.id],
      );
      for (const r of migrated) expect(r.id).to.equal(notificationId(r.event_id, r.to_role));
      // Every stored id is one now; running it again changes nothing.
      const [{ n }] = await sys.runtime.db.query(`SELECT count(*)::int AS n FROM notifications WHERE id::text !~ '^.{14}8.{4}[89ab]'`);
      expect(n).to.equal(0);
    });
  });
});
