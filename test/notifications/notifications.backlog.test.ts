import { expect } from 'chai';
import type { NotificationMessage, NotificationTransport } from '../../src/notifications/transports.ts';
import { eventually, startSystem, type TestSystem } from '../support/system.ts';

/**
 * Regression: at the top rate, notifications beyond the sends running at once were left to their
 * lease and the sweeper (100 overdue a pass), and fell further behind for as long as the load
 * lasted. Now they wait in the replica (bounded) and go with the next free send.
 */
describe('notifications beyond the sends running at once', function () {
  this.timeout(60_000);
  let sys: TestSystem;
  const received = new Set<string>();
  // A slow receiver: every send holds its slot for a while.
  const slow: NotificationTransport = {
    name: 'webhook',
    async send(message: NotificationMessage) {
      await new Promise((resolve) => setTimeout(resolve, 400));
      received.add(message.notificationId);
    },
  };

  before(async () => {
    // Four sends at once at most, and leases far longer than the test: only the replica's own queue can deliver in time.
    sys = await startSystem({ name: 'notify_backlog', env: { WORKER_CONCURRENCY: '1', WORK_LEASE_MS: '120000' }, transport: slow });
  });
  after(async () => {
    await sys?.close();
  });

  it('are all delivered by the replica that created them, long before their lease runs out', async () => {
    const p = await sys.newParties();
    // Orders placed apart (longer than EVENTS_LINGER_MS), so each is its own batch and its own send.
    const orders = [];
    for (let i = 0; i < 12; i += 1) {
      orders.push(await sys.placeOrder(p));
      await new Promise((resolve) => setTimeout(resolve, 60));
    }
    const ids = orders.map((o) => o.id);
    await eventually(
      async () => {
        const [{ n }] = await sys.runtime.db.query('SELECT count(*)::int AS n FROM notifications WHERE order_id = ANY($1::uuid[]) AND delivered_at IS NULL', [ids]);
        const [{ all }] = await sys.runtime.db.query('SELECT count(*)::int AS all FROM notifications WHERE order_id = ANY($1::uuid[])', [ids]);
        return all === 12 && n === 0;
      },
      'every notification delivered',
      20_000,
    );
    const rows = await sys.runtime.db.query('SELECT id FROM notifications WHERE order_id = ANY($1::uuid[])', [ids]);
    for (const r of rows as { id: string }[]) expect(received.has(r.id), r.id).to.equal(true);
  });
});
