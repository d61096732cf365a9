import { expect } from 'chai';
import type { ConsumerGroup, OrderEvent } from '../../src/actors/consumers/types.ts';
import { PartitionReader } from '../../src/actors/partition-reader.ts';
import { ensurePartitions, partitionCount, type PartitionLeases } from '../../src/actors/partitions.ts';
import { createLogger } from '../../src/log.ts';
import { eventually, withSharedSystem, type Parties, type TestSystem } from '../support/system.ts';

/**
 * The owner's side on its own: a reader of a group of its own, on the real database, that nothing
 * wakes but the test. A partition whose read found events is read again one linger later by
 * itself, so events committed meanwhile (by any replica) are applied with no wake-up for them.
 */
describe('event partitions: an owner reads a busy partition again by itself', function () {
  this.timeout(30_000);
  let sys: TestSystem;
  let p: Parties;
  withSharedSystem({ system: (s) => (sys = s), parties: (x) => (p = x) });

  /**
   * A reader of a consumer group of its own that records what it applies, holding every partition;
   * nothing wakes it but the test.
   */
  async function recordingReader(name: string, lingerMs: number, onLate?: (ms: number) => void) {
    const db = sys.runtime.pg;
    const group = `${name}-${Date.now()}`;
    await ensurePartitions(db, await partitionCount(db), [group]);
    const parts = Array.from({ length: await partitionCount(db) }, (_, i) => i);
    const seen: OrderEvent[] = [];
    const consumers: ConsumerGroup = {
      name: group,
      consumers: [{
        name: `${group}.recorder`,
        plan: (batch) => ({ states: batch.map(() => null), effects: [], afterCommit: () => seen.push(...batch.flatMap((o) => o.events)) }),
      }],
    };
    const leases = { holds: () => true, owned: () => new Set(parts) } as unknown as PartitionLeases;
    const reader = new PartitionReader({ db, group: consumers, leases, owned: () => parts, log: createLogger('silent'), lingerMs, onLate });
    return { db, group, parts, seen, reader };
  }

  it('applies the events committed after its last wake-up, one linger later, while the partition has events', async () => {
    const { db, group, parts, seen, reader } = await recordingReader('hot-reader', 3000);
    try {
      const order = await sys.placeOrder(p);
      const of = (type: string) => seen.some((e) => e.orderId === order.id && e.type === type);
      reader.wake(parts);
      await eventually(async () => of('OrderPlaced'), 'the woken read to apply OrderPlaced', 5000);
      // No wake-up from here on: the partition had events, so it is read again a linger later.
      await sys.drive(p, order.id, ['pay']);
      await eventually(async () => of('OrderPaid'), 'OrderPaid, with no wake-up for it', 10_000);
      expect(seen.filter((e) => e.orderId === order.id).map((e) => e.seq)).to.deep.equal([1, 2]);
    } finally {
      reader.stop();
      await reader.reading;
      await db.query('DELETE FROM consumer_positions WHERE grp = $1', [group]);
    }
  });

  it('applies events nobody woke it for while it has promised to read on its own, and stops once a read sent after the promise found nothing', async () => {
    const { db, group, seen, reader } = await recordingReader('promised-reader', 20);
    try {
      expect(reader.idle, 'nothing to read before the promise').to.equal(true);
      const promisedAt = performance.now();
      reader.readOnItsOwn(promisedAt + 4000);
      expect(reader.idle, 'a promise to keep').to.equal(false);
      // Never woken: only the promise reads these.
      const order = await sys.placeOrder(p);
      await sys.drive(p, order.id, ['pay']);
      await eventually(async () => seen.filter((e) => e.orderId === order.id).length === 2, 'OrderPlaced and OrderPaid, with no wake-up for them', 4000);
      expect(seen.filter((e) => e.orderId === order.id).map((e) => e.seq)).to.deep.equal([1, 2]);
      const { found } = reader.activity();
      expect(found, 'batches that applied events').to.be.at.least(1);
      await eventually(async () => reader.idle, 'the reader to stop once the promise has run out', 10_000);
      expect(performance.now() - promisedAt, 'it read until the promise ended').to.be.at.least(4000);
    } finally {
      reader.stop();
      await reader.reading;
      await db.query('DELETE FROM consumer_positions WHERE grp = $1', [group]);
    }
  });

  it('reports how late each batch ran (the age of its oldest event when written), and 0 once it has nothing left to read', async () => {
    const reports: { ms: number; at: number }[] = [];
    const { db, group, parts, seen, reader } = await recordingReader('late-reader', 20, (ms) => reports.push({ ms, at: Date.now() }));
    const since = Date.now();
    try {
      const order = await sys.placeOrder(p);
      const [{ at }] = (await db.query<{ at: Date }>('SELECT at FROM order_journal WHERE order_id = $1 AND seq = 1', [order.id])) as [{ at: Date }];
      // Woken only once its event is at least 50 ms old, so the batch that applies it ran that late.
      await eventually(async () => Date.now() - at.getTime() >= 50, 'the event to be 50 ms old');
      reader.wake(parts);
      await eventually(async () => seen.some((e) => e.orderId === order.id), 'the batch to apply OrderPlaced', 5000);
      const first = reports.find((r) => r.ms > 0);
      expect(first, 'a report for the batch').to.not.equal(undefined);
      // Its oldest event is this order's, or an older one of the group's (committed after it began).
      expect(first!.ms).to.be.at.least(first!.at - at.getTime() - 2);
      expect(first!.ms).to.be.at.least(50);
      expect(first!.ms).to.be.at.most(first!.at - since + 2);
      await eventually(async () => reader.idle, 'the reader to have nothing left to read', 5000);
      expect(reports.at(-1)!.ms, 'the last report, once idle').to.equal(0);
    } finally {
      reader.stop();
      await reader.reading;
      await db.query('DELETE FROM consumer_positions WHERE grp = $1', [group]);
    }
  });
});
