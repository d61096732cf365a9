import type pg from 'pg';
import type { Database } from '../../src/db/pg.ts';
import { eventually } from './system.ts';

/**
 * Runs `write` while another transaction holds the row of `table` whose `keyColumn` is `held`, and
 * returns the keys of the rows (among `keys`) that `write` had locked by the time it waited for
 * that row. A writer that locks in key order holds exactly the keys before `held`. The database
 * must have no other statement waiting for a lock meanwhile.
 */
export async function rowsLockedWhileHeld(
  pool: pg.Pool,
  db: Database,
  rows: { table: string; keyColumn: string; keys: readonly string[]; held: string },
  write: () => Promise<unknown>,
): Promise<string[]> {
  const { table, keyColumn, keys, held } = rows;
  const holder = await pool.connect();
  try {
    await holder.query('BEGIN');
    await holder.query(`SELECT 1 FROM ${table} WHERE ${keyColumn} = $1 FOR UPDATE`, [held]);
    const writing = write();
    await eventually(
      async () => (await db.query(`SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`)).length === 1,
      'the writer to wait for the held row',
    );
    // The rows nobody holds; the writer holds the others but `held`.
    const free = (await db.query<{ key: string }>(`SELECT ${keyColumn}::text AS key FROM ${table} FOR UPDATE SKIP LOCKED`)).map((r) => r.key);
    await holder.query('COMMIT');
    await writing;
    return keys.filter((k) => k !== held && !free.includes(k));
  } finally {
    // After a failure the holder's transaction is still open: end it, so the next test starts clean.
    await holder.query('ROLLBACK');
    holder.release();
  }
}
