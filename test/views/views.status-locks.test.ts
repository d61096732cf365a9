import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import pg from 'pg';
import { ensureDatabase, migrate } from '../../src/db/data-source.ts';
import { Database } from '../../src/db/pg.ts';
import { noteRebuildFinished, noteRebuildProgress, resetViews } from '../../src/views/rebuild.ts';
import { VIEWS } from '../../src/views/registry.ts';
import { noteApplied } from '../../src/views/status.ts';
import { eventually, resetDatabase, testDatabaseUrl } from '../support/system.ts';

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
describe('views: every writer of view_status locks its rows in name order', function () {
  this.timeout(30_000);
  const url = testDatabaseUrl('status_locks');
  let pool: pg.Pool;
  let db: Database;

  before(async () => {
    await resetDatabase(url);
    await ensureDatabase(url);
    await migrate(url);
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
    const holder = await pool.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT 1 FROM view_status WHERE view = $1 FOR UPDATE', [HELD]);
      const writing = write([...SORTED].reverse());
      await eventually(
        async () => (await db.query(`SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`)).length === 1,
        'the writer to wait for the held row',
      );
      // The rows nobody holds; the writer holds the others but HELD.
      const free = (await db.query<{ view: string }>('SELECT view FROM view_status FOR UPDATE SKIP LOCKED')).map((r) => r.view);
      await holder.query('COMMIT');
      await writing;
      return SORTED.filter((v) => v !== HELD && !free.includes(v));
    } finally {
      holder.release();
    }
  }

  const earlier = SORTED.slice(0, SORTED.indexOf(HELD));

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
});
