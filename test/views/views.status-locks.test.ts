import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import pg from 'pg';
import { Database } from '../../src/db/pg.ts';
import { ensurePartitions, EVENTS_GROUP } from '../../src/actors/partitions.ts';
import { noteRebuildFinished, noteRebuildProgress, resetViews } from '../../src/views/rebuild.ts';
import { VIEWS } from '../../src/views/registry.ts';
import { noteApplied } from '../../src/views/status.ts';
import { rowsLockedWhileHeld } from '../support/locks.ts';
import { eventually, freshMigratedDatabase, resetDatabase, testDatabaseUrl } from '../support/system.ts';

/** The views' names, and the order every writer of several view_status rows locks them in. */
const NAMES = VIEWS.map((v) => v.name);
const SORTED = [...NAMES].sort();
/** The row another transaction holds while a writer runs: one in the middle of the order. */
const HELD = SORTED[2]!;

/**
 * A process notes once a second when its views applied events, in one statement over several
 * view_status rows; a rebuild notes its progress in one statement over the same rows. Taken in
 * different orders, their row locks deadlocked, and the rebuild stopped ("deadlock detected; the
 * views are incomplete"). Each writer is held up at one row, and the rows it holds by then are
 * exactly those before it in name order, whatever order it was given the views in and whatever
 * order the rows lie in on disk.
 */
describe("views: a rebuild's locks (view_status rows in name order, the views' tables only once the owed rows are written)", function () {
  this.timeout(30_000);
  const url = testDatabaseUrl('status_locks');
  let pool: pg.Pool;
  let db: Database;

  before(async () => {
    await freshMigratedDatabase(url);
    pool = new pg.Pool({ connectionString: url, max: 4 });
    db = new Database(pool);
  });
  after(async () => {
    await pool?.end();
    await resetDatabase(url);
  });

  /**
   * Runs `write` while another transaction holds HELD's row, and returns the rows `write` had
   * locked by the time it waited for it. The rows lie on disk in reverse name order, and `write`
   * is given the views in reverse name order too, so no order but its own sort can pass.
   */
  async function rowsLockedBeforeHeld(write: (views: string[]) => Promise<unknown>): Promise<string[]> {
    await db.query('DELETE FROM view_status');
    await db.query('INSERT INTO view_status (view) SELECT v FROM unnest($1::text[]) AS v', [[...SORTED].reverse()]);
    return rowsLockedWhileHeld(pool, db, { table: 'view_status', keyColumn: 'view', keys: SORTED, held: HELD }, () => write([...SORTED].reverse()));
  }

  const earlier = SORTED.slice(0, SORTED.indexOf(HELD));

  /** Orders at their third event, with no journal (the reset reads only the orders). */
  const placeOrders = (n: number) =>
    db.query(
      `INSERT INTO orders (id, machine_id, machine_version, version, status, snapshot, customer_id, store_id, rider_id, area, created_at, updated_at)
       SELECT gen_random_uuid(), 'order', 1, 3, 'accepted', '{}', 'c', 's', NULL, 'a', now(), now() FROM generate_series(1, $1::int)`,
      [n],
    );

  it('a process noting when its views applied events', async () => {
    expect(await rowsLockedBeforeHeld((views) => noteApplied(db, views))).to.deep.equal(earlier);
    const rows = await db.query<{ view: string; applied: boolean }>('SELECT view, applied_at IS NOT NULL AS applied FROM view_status ORDER BY view');
    expect(rows).to.deep.equal(SORTED.map((view) => ({ view, applied: true })));
  });

  it("a rebuild's progress and its end", async () => {
    const holder = `rebuild-${randomUUID()}`;
    expect(await rowsLockedBeforeHeld((views) => noteRebuildProgress(db, views, 7, holder))).to.deep.equal(earlier);
    expect((await db.query<{ n: number }>('SELECT rebuild_orders_done AS n FROM view_status')).map((r) => r.n)).to.deep.equal(SORTED.map(() => 7));
    expect(await rowsLockedBeforeHeld((views) => noteRebuildFinished(db, views, 9, holder))).to.deep.equal(earlier);
    const rows = await db.query<{ n: number; finished: boolean }>('SELECT rebuild_orders_done AS n, rebuild_finished_at IS NOT NULL AS finished FROM view_status');
    expect(rows).to.deep.equal(SORTED.map(() => ({ n: 9, finished: true })));
  });

  it("a rebuild's reset", async () => {
    const reversed = [...VIEWS].reverse();
    const holder = `rebuild-${randomUUID()}`;
    expect(await rowsLockedBeforeHeld(() => resetViews(db, reversed, 0, holder))).to.deep.equal(earlier);
    const rows = await db.query<{ started: boolean }>('SELECT rebuild_started_at IS NOT NULL AS started FROM view_status');
    expect(rows).to.deep.equal(SORTED.map(() => ({ started: true })));
  });

  it("a rebuild's reset writes its owed rows before it waits for the views' locks, and owes the orders placed while it waited and those failed on from their start", async () => {
    await ensurePartitions(db, 32, [EVENTS_GROUP]);
    await placeOrders(2000);
    // One of them a view failed on (from its third event): the rebuild owes it from the first.
    await db.query(
      `INSERT INTO consumer_failures (consumer, order_id, part, seq, upto, attempts, last_error, first_failed_at, last_failed_at, origin)
       SELECT 'view.deliveries', id, 0, 3, 3, 2, 'boom', now(), now(), 'failure' FROM orders LIMIT 1`,
    );
    // A live delivery in the middle of writing a view: the reset must wait for it to take the locks.
    const delivery = await pool.connect();
    try {
      await delivery.query('BEGIN');
      await delivery.query('LOCK TABLE view_deliveries IN ROW EXCLUSIVE MODE');
      const resetting = resetViews(db, VIEWS, 2000, `rebuild-${randomUUID()}`);
      const [waiting] = await eventually(
        async () => {
          const rows = await db.query<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`);
          return rows.length === 1 ? rows : undefined;
        },
        'the reset to wait for the views',
      );
      // By then it has written the owed rows (its lock on consumer_failures), and holds none on the views.
      const held = await db.query<{ relation: string; mode: string; granted: boolean }>(
        `SELECT relation::regclass::text AS relation, mode, granted FROM pg_locks WHERE pid = $1 AND locktype = 'relation' AND relation::regclass::text IN ('consumer_failures', 'view_deliveries')`,
        [waiting!.pid],
      );
      expect(held).to.deep.include({ relation: 'consumer_failures', mode: 'RowExclusiveLock', granted: true });
      expect(held).to.deep.include({ relation: 'view_deliveries', mode: 'AccessExclusiveLock', granted: false });
      // An order placed while it waits is owed too.
      await placeOrders(1);
      await delivery.query('COMMIT');
      await resetting;
    } finally {
      delivery.release();
    }
    const [owed] = await db.query<{ orders: number; rows: number }>(
      `SELECT count(DISTINCT order_id)::int AS orders, count(*)::int AS rows FROM consumer_failures WHERE origin = 'rebuild' AND seq = 1`,
    );
    expect(owed).to.deep.equal({ orders: 2001, rows: 2001 * VIEWS.length });
  });

  it('a delivery that owes an order while the reset writes its owed rows holds that row up, and the order starts over', async () => {
    await ensurePartitions(db, 32, [EVENTS_GROUP]);
    await db.query('DELETE FROM consumer_failures');
    await db.query('DELETE FROM orders');
    await placeOrders(500);
    const [failedOn] = await db.query<{ id: string }>('SELECT id FROM orders LIMIT 1');
    // A live delivery that failed on an order, its owed row written and not yet committed.
    const delivery = await pool.connect();
    try {
      await delivery.query('BEGIN');
      await delivery.query(
        `INSERT INTO consumer_failures (consumer, order_id, part, seq, upto, attempts, last_error, first_failed_at, last_failed_at, origin)
         VALUES ('view.deliveries', $1, 0, 2, 3, 1, 'boom', now(), now(), 'failure')`,
        [failedOn!.id],
      );
      const resetting = resetViews(db, VIEWS, 500, `rebuild-${randomUUID()}`);
      // The reset's insert meets that row and waits for the delivery's transaction.
      await eventually(
        async () => (await db.query(`SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event = 'transactionid'`)).length === 1,
        "the reset's insert to wait for the delivery's owed row",
      );
      await delivery.query('COMMIT');
      await resetting;
    } finally {
      delivery.release();
    }
    const [owed] = await db.query<{ orders: number; rows: number }>(
      `SELECT count(DISTINCT order_id)::int AS orders, count(*)::int AS rows FROM consumer_failures WHERE origin = 'rebuild' AND seq = 1 AND attempts = 0`,
    );
    expect(owed).to.deep.equal({ orders: 500, rows: 500 * VIEWS.length });
    const [row] = await db.query<{ seq: number; upto: number; origin: string }>(
      `SELECT seq, upto, origin FROM consumer_failures WHERE consumer = 'view.deliveries' AND order_id = $1`,
      [failedOn!.id],
    );
    expect(row).to.deep.equal({ seq: 1, upto: 3, origin: 'rebuild' });
  });
});
