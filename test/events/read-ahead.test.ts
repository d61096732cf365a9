import { expect } from 'chai';
import { applyPartitions } from '../../src/actors/consumers/apply.ts';
import type { ConsumerGroup, OrderEvent } from '../../src/actors/consumers/types.ts';
import { ensurePartitions, partitionCount, partitionOf } from '../../src/actors/partitions.ts';
import { createLogger } from '../../src/log.ts';
import { eventually, withSharedSystem, type Parties, type TestSystem } from '../support/system.ts';

const READ = /^\s*WITH b AS \(/;
const WRITE = /UPDATE consumer_positions c SET/;

/**
 * The statement that writes a batch also reads the next one (READ_AHEAD), so a busy owner sends
 * one statement per batch rather than a read and a write. The rows read ahead stand for a read
 * once; a position another delivery moved meanwhile makes that batch read again, and no event is
 * applied twice or skipped.
 */
describe('event partitions: the next batch read by the statement that writes this one', function () {
  this.timeout(30_000);
  let sys: TestSystem;
  let p: Parties;
  withSharedSystem({ system: (s) => (sys = s), parties: (x) => (p = x) });

  async function setup() {
    const db = sys.runtime.pg;
    const name = `ahead-${Date.now()}-${Math.random().toString(36).slice(2, 6)}`;
    const count = await partitionCount(db);
    await ensurePartitions(db, count, [name]);
    const seen: OrderEvent[] = [];
    const group: ConsumerGroup = {
      name,
      consumers: [{ name: `${name}.recorder`, plan: (batch) => ({ states: batch.map(() => null), effects: [], afterCommit: () => seen.push(...batch.flatMap((o) => o.events)) }) }],
    };
    // Two orders in different partitions.
    const a = await sys.placeOrder(p);
    let b = await sys.placeOrder(p);
    while (partitionOf(b.id, count) === partitionOf(a.id, count)) b = await sys.placeOrder(p);
    const statements: string[] = [];
    const previous = db.onStatement;
    db.onStatement = (text, params) => {
      if (text.includes(name) || params.includes(name)) statements.push(text);
      previous?.(text, params);
    };
    const cleanup = async () => {
      db.onStatement = previous;
      await db.query('DELETE FROM consumer_positions WHERE grp = $1', [name]);
    };
    return { db, group, seen, a, b, pa: partitionOf(a.id, count), pb: partitionOf(b.id, count), statements, cleanup };
  }
  const log = createLogger('silent');
  const ofOrder = (seen: OrderEvent[], id: string) => seen.filter((e) => e.orderId === id).map((e) => `${e.seq}:${e.type}`);

  it('applies the next batch from the rows the previous statement read, with no read of its own', async () => {
    const s = await setup();
    try {
      // The first batch takes A's partition; its statement reads ahead both partitions.
      const first = await applyPartitions(s.db, s.group, [s.pa], { limitPerPart: 50, log, readAhead: () => ({ parts: [s.pa, s.pb], limitPerPart: 50 }) });
      expect(ofOrder(s.seen, s.a.id)).to.deep.equal(['1:OrderPlaced']);
      expect(first.ahead?.parts).to.deep.equal([s.pa, s.pb]);
      expect(first.ahead!.rows.filter((r) => r.order_id === s.b.id).map((r) => r.seq), "B's event, read ahead").to.deep.equal([1]);
      expect(s.statements.filter((t) => READ.test(t)), 'one read so far').to.have.length(1);

      const second = await applyPartitions(s.db, s.group, first.ahead!.parts, { limitPerPart: 50, log, ahead: first.ahead, readAhead: () => ({ parts: [s.pa, s.pb], limitPerPart: 50 }) });
      expect(second.byPart.get(s.pb)).to.equal(1);
      expect(ofOrder(s.seen, s.b.id)).to.deep.equal(['1:OrderPlaced']);
      expect(s.statements.filter((t) => READ.test(t)), 'still one read: the second batch used the rows read ahead').to.have.length(1);
      expect(s.statements.filter((t) => WRITE.test(t)), 'a write per batch').to.have.length(2);
      expect(second.ahead?.rows, 'nothing more to read').to.deep.equal([]);

      // Events committed after that statement are read by the next one.
      // (A read stops at the oldest transaction still running, so the payment may take a batch more.)
      await sys.drive(p, s.a.id, ['pay']);
      let applied = 0;
      await eventually(async () => {
        const next = await applyPartitions(s.db, s.group, [s.pa, s.pb], { limitPerPart: 50, log, readAhead: () => ({ parts: [s.pa, s.pb], limitPerPart: 50 }) });
        applied += next.byPart.get(s.pa) ?? 0;
        return applied > 0;
      }, "A's payment applied");
      expect(applied).to.equal(1);
      expect(ofOrder(s.seen, s.a.id)).to.deep.equal(['1:OrderPlaced', '2:OrderPaid']);
    } finally {
      await s.cleanup();
    }
  });

  it('reads again when another delivery moved a position after the rows were read ahead: nothing twice, nothing skipped', async () => {
    const s = await setup();
    try {
      const first = await applyPartitions(s.db, s.group, [s.pa], { limitPerPart: 50, log, readAhead: () => ({ parts: [s.pa, s.pb], limitPerPart: 50 }) });
      expect(first.ahead!.rows.some((r) => r.order_id === s.b.id)).to.equal(true);
      // Another delivery (a new owner, say) applies B's partition first.
      await applyPartitions(s.db, s.group, [s.pb], { limitPerPart: 50, log });
      expect(ofOrder(s.seen, s.b.id)).to.deep.equal(['1:OrderPlaced']);
      await sys.drive(p, s.b.id, ['pay']);

      const stale = await applyPartitions(s.db, s.group, first.ahead!.parts, { limitPerPart: 50, log, ahead: first.ahead });
      expect(s.statements.filter((t) => READ.test(t)).length, 'the stale batch read again').to.equal(3);
      // A read stops at the oldest transaction still running (the shared system's own work may hold
      // one open for a moment), so the payment may come with that read or with a later batch.
      let applied = stale.byPart.get(s.pb) ?? 0;
      await eventually(async () => {
        if (!ofOrder(s.seen, s.b.id).includes('2:OrderPaid')) applied += (await applyPartitions(s.db, s.group, [s.pb], { limitPerPart: 50, log })).byPart.get(s.pb) ?? 0;
        return ofOrder(s.seen, s.b.id).includes('2:OrderPaid');
      }, "B's payment applied");
      expect(ofOrder(s.seen, s.b.id), 'B placed once, then paid').to.deep.equal(['1:OrderPlaced', '2:OrderPaid']);
      expect(applied, "B's partition: one event applied after the first delivery").to.equal(1);
    } finally {
      await s.cleanup();
    }
  });
});
