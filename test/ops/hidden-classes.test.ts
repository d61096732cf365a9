import { randomUUID } from 'node:crypto';
import { setFlagsFromString } from 'node:v8';
import { expect } from 'chai';
import { historyOf, type HistoryRow } from '../../src/actors/consumers/history.ts';
import type { Consumer } from '../../src/actors/consumers/types.ts';
import { orderV1 } from '../../src/machines/order/v1.ts';
import { withFields } from '../../src/objects.ts';
import { AppliedRecorder } from '../../src/views/registry.ts';
import type { Database } from '../../src/db/pg.ts';
import { sampleOrderInput } from '../support/fixtures.ts';
import { collector, oldGenerationGrowth } from '../support/heap.ts';

/**
 * V8's own test of two objects' hidden classes (maps), reachable without starting node with
 * --allow-natives-syntax: the flag is read when a function's source is parsed.
 */
function sameMapTest(): (a: object, b: object) => boolean {
  setFlagsFromString('--allow-natives-syntax');
  return new Function('a', 'b', 'return %HaveSameMap(a, b)') as (a: object, b: object) => boolean;
}

const row = (orderId: string, seq: number): HistoryRow => ({
  event_id: randomUUID(),
  order_id: orderId,
  seq,
  type: seq === 1 ? 'OrderPlaced' : 'OrderPaid',
  data: { total: 1200 + seq },
  actor: { sub: 'c-1', role: 'customer' },
  causation_id: null,
  client_request_id: null,
  at: new Date(),
  machine_version: 1,
  status: seq === 1 ? 'placed' : 'paid',
  traceparent: null,
  passed: false,
  owed: null,
});

/**
 * Objects the hot paths make by the thousand share their hidden classes. Made as
 * `{ ...base, extra }`, each had a map of its own, allocated in the old generation: at a replica's
 * pace the event batches' histories alone were a quarter of what its old generation took in
 * (src/objects.ts, docs/benchmarks.md).
 */
describe('hidden classes of the objects the hot paths make', () => {
  const sameMap = sameMapTest();

  it('withFields gives copies of the same shape one map, whatever the base object was made by', () => {
    const spread = (n: number) => ({ ...{ a: n, b: String(n) } });
    // Warmed up: V8 changes how it copies objects once a site has run a few times.
    for (let i = 0; i < 20; i++) withFields(spread(i), { c: i });
    const [x, y] = [withFields(spread(1), { c: 1 }), withFields(spread(2), { c: 2 })];
    expect(x).to.deep.equal({ a: 1, b: '1', c: 1 });
    expect(sameMap(x, y)).to.equal(true);
  });

  it("a batch's history events share one map (each had its own)", () => {
    for (let i = 0; i < 20; i++) historyOf([row(randomUUID(), 1), row(randomUUID(), 1)]);
    const [a, b] = [randomUUID(), randomUUID()];
    const history = historyOf([row(a, 1), row(a, 2), row(b, 1)]);
    const events = [...history.events.values()].flat();
    expect(events.map((e) => [e.orderId, e.seq])).to.deep.equal([[a, 1], [a, 2], [b, 1]]);
    expect(events[0]).to.include({ type: 'OrderPlaced', traceparent: null, passed: false });
    expect(events.slice(1).map((e) => sameMap(events[0]!, e))).to.deep.equal([true, true]);
  });

  it("a view's planned batch, with the note of its applying added, shares one map", () => {
    const recorder = new AppliedRecorder({} as Database, 60_000);
    const consumer: Consumer<number> = { name: 'view.test', plan: (batch) => ({ states: batch.map(() => 1), effects: [] }) };
    const tracked = recorder.track('test', consumer);
    for (let i = 0; i < 20; i++) tracked.plan([]);
    const [x, y] = [tracked.plan([]), tracked.plan([])];
    expect(x).to.have.property('afterCommit').that.is.a('function');
    expect(sameMap(x, y)).to.equal(true);
  });

  it("an order's persisted snapshot, written by every command, shares one map", () => {
    const snapshots = ['c-1', 'c-2', 'c-3'].map((customerId) => orderV1.initial(sampleOrderInput({ customerId }))[0]);
    for (let i = 0; i < 20; i++) orderV1.persist(snapshots[i % 3]!);
    const [x, y] = [orderV1.persist(snapshots[1]!) as object, orderV1.persist(snapshots[2]!) as object];
    expect(x).to.have.nested.property('context.customerId', 'c-2');
    expect(sameMap(x, y)).to.equal(true);
  });

  it('building histories leaves nothing in the old generation through scavenges', async () => {
    const gc = collector();
    let events = 0;
    const build = (batches: number) => {
      for (let i = 0; i < batches; i++) {
        const rows: HistoryRow[] = [];
        for (let o = 0; o < 20; o++) {
          const id = randomUUID();
          for (let seq = 1; seq <= 5; seq++) rows.push(row(id, seq));
        }
        events += [...historyOf(rows).events.values()].reduce((n, list) => n + list.length, 0);
        if (i % 50 === 49) gc({ type: 'minor' });
      }
    };
    build(100);
    const { grown, majors } = await oldGenerationGrowth(() => {
      events = 0;
      build(1000);
    });
    expect(majors, 'major collections in each of three windows').to.equal(0);
    expect(events).to.equal(100_000);
    // 100,000 events: with a map each, the old generation grew by 121 MB.
    expect(grown, `the old generation grew by ${(grown / 1e6).toFixed(2)} MB`).to.be.below(1_000_000);
  });
});
