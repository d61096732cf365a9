import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { applyPartitions } from '../../src/actors/consumers/apply.ts';
import type { Carried, ConsumerGroup } from '../../src/actors/consumers/types.ts';
import { PartitionReader } from '../../src/actors/partition-reader.ts';
import { ensurePartitions, partitionCount, partitionOf, type PartitionLeases } from '../../src/actors/partitions.ts';
import type { Database } from '../../src/db/pg.ts';
import { createLogger } from '../../src/log.ts';
import { DeliveredMarks } from '../../src/notifications/delivered-marks.ts';
import { eventually, withSharedSystem, type Parties, type TestSystem } from '../support/system.ts';

/**
 * "Delivered" marks travel in the next event batch's statement when one is coming, and in a
 * statement of their own otherwise: when no batch is coming, when none came within the hold, and
 * when the batch's statement failed. Whatever way, every mark is recorded, and recorded once.
 */
describe('notification delivery: the "delivered" marks ride in the event batch statement', function () {
  this.timeout(30_000);
  let sys: TestSystem;
  let p: Parties;
  withSharedSystem({ system: (s) => (sys = s), parties: (x) => (p = x) });

  /** `n` notifications of an order of their own, written leased (as the notifier writes them). */
  const owed = async (db: Database, n: number): Promise<string[]> => {
    const rows = await db.query<{ id: string }>(
      `INSERT INTO notifications (id, event_id, order_id, seq, to_role, to_id, status, text, created_at, due_at, lease_until, attempts)
       SELECT gen_random_uuid(), gen_random_uuid(), $1::uuid, i, 'customer', 'customer-marks', 'paid', 'marks ' || i, now(), now(),
              now() + interval '1 minute', 1
       FROM generate_series(1, $2::int) AS i RETURNING id`,
      [randomUUID(), n],
    );
    return rows.map((r) => r.id);
  };
  const delivered = async (db: Database, ids: string[]) => {
    const [row] = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM notifications WHERE id = ANY($1::uuid[]) AND delivered_at IS NOT NULL AND due_at IS NULL
         AND lease_until IS NULL AND transport = 'test'`,
      [ids],
    );
    return row!.n;
  };
  /** The statements sent while `fn` runs that name any of `ids` in their first parameter. */
  const statementsNaming = async (db: Database, ids: () => string[], fn: () => Promise<void>) => {
    const seen: { text: string; params: readonly unknown[] }[] = [];
    const previous = db.onStatement;
    db.onStatement = (text, params) => {
      seen.push({ text, params });
      previous?.(text, params);
    };
    try {
      await fn();
    } finally {
      db.onStatement = previous;
    }
    const ours = new Set(ids());
    return seen.filter((s) => s.params.some((v) => Array.isArray(v) && v.some((x) => ours.has(x as string))));
  };
  const alone = (s: { text: string }) => /^\s*UPDATE notifications SET delivered_at/.test(s.text);

  it('wait for a batch that is coming and are written by its statement, not by one of their own', async () => {
    const db = sys.runtime.pg;
    const group = `marks-${Date.now()}`;
    await ensurePartitions(db, await partitionCount(db), [group]);
    const parts = Array.from({ length: await partitionCount(db) }, (_, i) => i);
    const consumers: ConsumerGroup = { name: group, consumers: [{ name: `${group}.noop`, plan: (batch) => ({ states: batch.map(() => null), effects: [] }) }] };
    const leases = { holds: () => true, owned: () => new Set(parts) } as unknown as PartitionLeases;
    const marks = new DeliveredMarks(db, 'test', { holdMs: 20_000 });
    let carried = 0;
    const reader = new PartitionReader({
      db,
      group: consumers,
      leases,
      owned: () => parts,
      log: createLogger('silent'),
      lingerMs: 300,
      carry: () => {
        const c = marks.take();
        if ((c.effect.params[0] as string[]).length > 0) carried += 1;
        return c;
      },
      onIdle: () => marks.flush(),
    });
    marks.carrierBusy = () => !reader.idle;
    let ids: string[] = [];
    try {
      const statements = await statementsNaming(db, () => ids, async () => {
        ids = await owed(db, 3);
        const order = await sys.placeOrder(p);
        // The reader lingers before its read: a batch is coming, so the marks wait for it.
        reader.wake([partitionOf(order.id, parts.length)]);
        expect(reader.idle, 'a read is coming').to.equal(false);
        await marks.mark(ids);
      });
      expect(carried, 'batches that carried marks').to.equal(1);
      expect(statements.filter(alone), 'statements of their own').to.have.length(0);
      expect(statements.filter((s) => /^WITH /.test(s.text) && s.text.includes('UPDATE notifications SET delivered_at')), 'the batch statement').to.have.length(1);
      expect(await delivered(db, ids)).to.equal(3);
    } finally {
      reader.stop();
      await reader.reading;
      await db.query('DELETE FROM consumer_positions WHERE grp = $1', [group]);
    }
  });

  it('are written at once by a statement of their own when no batch is coming', async () => {
    const db = sys.runtime.pg;
    const marks = new DeliveredMarks(db, 'test', { holdMs: 20_000 });
    marks.carrierBusy = () => false;
    let ids: string[] = [];
    const statements = await statementsNaming(db, () => ids, async () => {
      ids = await owed(db, 4);
      await marks.mark(ids);
    });
    expect(statements.filter(alone)).to.have.length(1);
    expect(await delivered(db, ids)).to.equal(4);
  });

  it('are written on their own after the hold when no batch took them, and when the reader goes idle', async () => {
    const db = sys.runtime.pg;
    const marks = new DeliveredMarks(db, 'test', { holdMs: 200 });
    marks.carrierBusy = () => true;
    const ids = await owed(db, 2);
    let recorded = false;
    const marking = marks.mark(ids).then(() => (recorded = true));
    expect(await delivered(db, ids), 'held, not yet written').to.equal(0);
    await marking;
    expect(recorded).to.equal(true);
    expect(await delivered(db, ids), 'written after the hold').to.equal(2);

    const more = await owed(db, 2);
    const waiting = new DeliveredMarks(db, 'test', { holdMs: 20_000 });
    waiting.carrierBusy = () => true;
    const held = waiting.mark(more);
    // What the reader does when it finds nothing more to read.
    waiting.flush();
    await held;
    expect(await delivered(db, more)).to.equal(2);
  });

  it('are written on their own when the batch statement that carried them failed, and nothing of that statement stays', async () => {
    const db = sys.runtime.pg;
    const group = `marks-fail-${Date.now()}`;
    await ensurePartitions(db, await partitionCount(db), [group]);
    const order = await sys.placeOrder(p);
    const part = partitionOf(order.id, await partitionCount(db));
    // A consumer whose effect PostgreSQL refuses: the batch's statement fails, the order is owed by
    // that consumer on its own, and the rest of the batch is written by a second statement.
    const consumers: ConsumerGroup = {
      name: group,
      consumers: [{ name: `${group}.refused`, plan: (batch) => ({ states: batch.map(() => null), effects: [{ text: 'INSERT INTO event_partitions (part) VALUES (NULL)', params: [] }] }) }],
    };
    const marks = new DeliveredMarks(db, 'test', { holdMs: 20_000 });
    marks.carrierBusy = () => true;
    const ids = await owed(db, 3);
    const settled: boolean[] = [];
    const marking = marks.mark(ids);
    const carry = (): Carried => {
      const c = marks.take();
      return { effect: c.effect, settle: (ok) => (settled.push(ok), c.settle(ok)) };
    };
    try {
      const statements = await statementsNaming(db, () => ids, async () => {
        const applied = await applyPartitions(db, consumers, [part], { limitPerPart: 50, log: createLogger('silent'), carry });
        expect(applied.byPart.get(part), 'the batch read the order').to.be.at.least(1);
        await marking;
      });
      expect(settled[0], 'the statement that carried them did not commit').to.equal(false);
      const [owedRow] = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM consumer_failures WHERE consumer = $1 AND order_id = $2', [`${group}.refused`, order.id]);
      expect(owedRow!.n, 'the refused order is owed').to.equal(1);
      expect(statements.filter(alone), 'then a statement of their own').to.have.length(1);
      expect(await delivered(db, ids)).to.equal(3);
    } finally {
      await db.query('DELETE FROM consumer_failures WHERE consumer = $1', [`${group}.refused`]);
      await db.query('DELETE FROM consumer_positions WHERE grp = $1', [group]);
    }
  });
});
