import { expect } from 'chai';
import { eventually, sharedSystem, type Parties, type TestSystem } from '../support/system.ts';

/** Rows that grow with the traffic but are not records have a keep time; the records stay. */
describe('retention', () => {
  let sys: TestSystem;
  let p: Parties;
  before(async () => {
    sys = await sharedSystem();
    p = await sys.newParties();
  });

  const count = async (sql: string, params: unknown[]) => (await sys.runtime.db.query(sql, params))[0].n as number;

  it('deletes delivered notifications, old idempotency keys and closed timers past their keep time, and nothing owed or recent', async () => {
    const old = await sys.placeOrder(p);
    const recent = await sys.placeOrder(p);
    await sys.drive(p, old.id, ['pay', 'cancel']);
    const db = sys.runtime.db;
    // Placed, paid (customer, store), cancelled (customer, store): all written and sent first.
    await eventually(
      async () => (await count(`SELECT count(*)::int AS n FROM notifications WHERE order_id = $1 AND delivered_at IS NOT NULL`, [old.id])) === 5,
      "the old order's notifications",
    );
    // Age the old order's rows as if they were written long ago.
    await db.query(`UPDATE notifications SET created_at = now() - interval '40 days', delivered_at = coalesce(delivered_at, now()), due_at = NULL WHERE order_id = $1`, [old.id]);
    await db.query(`UPDATE timers SET fire_at = now() - interval '2 days' WHERE order_id = $1 AND due_at IS NULL`, [old.id]);
    await db.query(`INSERT INTO order_requests (customer_id, idempotency_key, request_hash, order_id, created_at) VALUES ($1, 'old-key', 'x', $2, now() - interval '2 days'), ($1, 'new-key', 'y', $3, now())`, [
      p.customerId,
      old.id,
      recent.id,
    ]);
    // An old notification still owed (the webhook never took it) must stay.
    await db.query(
      `INSERT INTO notifications (id, event_id, order_id, seq, to_role, to_id, status, text, created_at, due_at)
       SELECT gen_random_uuid(), event_id, order_id, seq, 'rider', 'owed', 'cancelled', 'still owed', now() - interval '40 days', now()
       FROM order_journal WHERE order_id = $1 AND seq = 1`,
      [old.id],
    );
    const deleted = await sys.runtime.sweeper.retain();
    expect(deleted.notifications).to.be.at.least(1);
    expect(deleted.order_requests).to.be.at.least(1);
    expect(deleted.timers).to.be.at.least(1);
    expect(await count(`SELECT count(*)::int AS n FROM notifications WHERE order_id = $1`, [old.id])).to.equal(1); // the owed one
    expect(await count(`SELECT count(*)::int AS n FROM notifications WHERE order_id = $1`, [recent.id])).to.be.greaterThan(0);
    expect(await count(`SELECT count(*)::int AS n FROM order_requests WHERE idempotency_key IN ('old-key', 'new-key') AND customer_id = $1`, [p.customerId])).to.equal(1);
    expect(await count(`SELECT count(*)::int AS n FROM timers WHERE order_id = $1`, [recent.id])).to.equal(1);
    // The records stay: the journal, the order, its payment and refund.
    expect(await count(`SELECT count(*)::int AS n FROM order_journal WHERE order_id = $1`, [old.id])).to.equal(3);
    expect(await count(`SELECT count(*)::int AS n FROM payment_attempts WHERE order_id = $1`, [old.id])).to.equal(1);
    expect(await count(`SELECT count(*)::int AS n FROM refunds WHERE order_id = $1`, [old.id])).to.equal(1);
  });

  it('runs at most once an hour across the replicas, the one that ran it included (each pass scans the tables)', async () => {
    const db = sys.runtime.db;
    // Some sweeper (this process runs one every few hundred ms) holds the hour's lease by now.
    await eventually(async () => (await count(`SELECT count(*)::int AS n FROM leases WHERE name = 'retention' AND until > now() + interval '1 minute'`, [])) === 1, 'the retention lease');
    const order = await sys.placeOrder(p);
    await eventually(async () => (await count(`SELECT count(*)::int AS n FROM notifications WHERE order_id = $1 AND delivered_at IS NOT NULL`, [order.id])) === 1, 'the notification');
    await db.query(`UPDATE notifications SET created_at = now() - interval '40 days' WHERE order_id = $1`, [order.id]);
    // Sweeps go on (here, and forced twice more), but none of them deletes within the hour.
    await sys.runtime.sweeper.sweep();
    await sys.runtime.sweeper.sweep();
    expect(await count(`SELECT count(*)::int AS n FROM notifications WHERE order_id = $1`, [order.id])).to.equal(1);
    // Once the hour is over, the next sweep of any replica runs it.
    await db.query(`UPDATE leases SET until = now() - interval '1 second' WHERE name = 'retention'`);
    await eventually(async () => (await count(`SELECT count(*)::int AS n FROM notifications WHERE order_id = $1`, [order.id])) === 0, 'the next pass to delete it');
  });
});
