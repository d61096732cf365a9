import { expect } from 'chai';
import pg from 'pg';
import { Database } from '../../src/db/pg.ts';
import { WorkTable, type WorkColumns } from '../../src/actors/work.ts';
import { rowsLockedWhileHeld } from '../support/locks.ts';
import { freshMigratedDatabase, resetDatabase, testDatabaseUrl } from '../support/system.ts';

/** Five notification ids in ascending order; the rows are written in the reverse order, so they lie on disk that way. */
const IDS = [1, 2, 3, 4, 5].map((n) => `00000000-0000-4000-8000-00000000000${n}`);
/** The row another transaction holds while a writer runs: the middle one. */
const HELD = IDS[2]!;

/**
 * Durable work's rows are updated several at a time: a claim leases the due ones, a run records
 * its retries, an operator makes items due again. Statements that lock the same rows in different
 * orders can deadlock each other (one is then cancelled and tried again). Each of these takes its
 * locks in key order, whatever order it was given the keys in and whatever order the rows lie in
 * on disk; and a claim does not wait for a row another transaction holds at all.
 */
describe('work: row locks in key order, and claims that never wait', function () {
  this.timeout(30_000);
  const url = testDatabaseUrl('work_locks');
  let pool: pg.Pool;
  let db: Database;
  let table: WorkTable<WorkColumns & { id: string }>;

  before(async () => {
    await freshMigratedDatabase(url);
    pool = new pg.Pool({ connectionString: url, max: 4 });
    db = new Database(pool);
    table = new WorkTable(db, 'notifications', 'id', 'uuid', (r) => r.id);
  });
  after(async () => {
    await pool?.end();
    await resetDatabase(url);
  });

  /** The five notifications, owed and due now, written in reverse id order. */
  async function owedNotifications(): Promise<void> {
    await db.query('DELETE FROM notifications');
    for (const id of [...IDS].reverse()) {
      await db.query(
        `INSERT INTO notifications (id, event_id, order_id, seq, to_role, to_id, status, text, created_at, due_at)
         VALUES ($1, gen_random_uuid(), gen_random_uuid(), 1, 'customer', 'c-1', 'placed', 'placed', now(), now() - interval '1 second')`,
        [id],
      );
    }
  }

  /** Runs `write` while another transaction holds HELD's row; returns the rows `write` had locked by the time it waited for it. */
  async function rowsLockedBeforeHeld(write: (keys: string[]) => Promise<unknown>): Promise<string[]> {
    await owedNotifications();
    return rowsLockedWhileHeld(pool, db, { table: 'notifications', keyColumn: 'id', keys: IDS, held: HELD }, () => write([...IDS].reverse()));
  }

  const earlier = IDS.slice(0, IDS.indexOf(HELD));

  it('a claim leases the due rows it can lock at once, and skips one another transaction holds', async () => {
    await owedNotifications();
    const holder = await pool.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT 1 FROM notifications WHERE id = $1 FOR UPDATE', [HELD]);
      let timer: NodeJS.Timeout | undefined;
      const waited = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('the claim waited for the row another transaction holds')), 5000);
      });
      const claimed = await Promise.race([table.claim([...IDS].reverse(), 60_000), waited]).finally(() => clearTimeout(timer));
      expect(claimed.map((r) => r.id).sort()).to.deep.equal(IDS.filter((id) => id !== HELD));
      expect(claimed.every((r) => r.attempts === 1 && r.lease_until !== null)).to.equal(true);
      await holder.query('COMMIT');
    } finally {
      // After a failure the holder's transaction is still open: end it, so the next test starts clean.
      await holder.query('ROLLBACK');
      holder.release();
    }
    // Once it is free, the skipped row is claimed like any other; the leased ones are not claimed twice.
    expect((await table.claim(IDS, 60_000)).map((r) => r.id)).to.deep.equal([HELD]);
  });

  it('recording retries', async () => {
    const locked = await rowsLockedBeforeHeld((keys) => table.retryLater(keys.map((key) => ({ key, error: 'receiver down', delayMs: 60_000 }))));
    expect(locked).to.deep.equal(earlier);
    const rows = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM notifications WHERE last_error = 'receiver down' AND due_at > now() + interval '30 seconds'`);
    expect(rows[0]!.n).to.equal(IDS.length);
  });

  it('making items due again', async () => {
    expect(await rowsLockedBeforeHeld((keys) => table.dueNow(keys))).to.deep.equal(earlier);
  });
});
