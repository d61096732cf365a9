import { expect } from 'chai';
import pg from 'pg';
import { ensureDatabase } from '../src/db/data-source.ts';
import { Database } from '../src/db/pg.ts';
import { eventually, TEST_DATABASE_URL } from './support/system.ts';

/** Two "replicas": a pool each on the same database, as two service processes would have. */
describe('Database.exclusively: one holder at a time across processes', () => {
  let pools: pg.Pool[] = [];
  let a: Database;
  let b: Database;
  before(async () => {
    await ensureDatabase(TEST_DATABASE_URL);
    pools = [new pg.Pool({ connectionString: TEST_DATABASE_URL, max: 3 }), new pg.Pool({ connectionString: TEST_DATABASE_URL, max: 3 })];
    a = new Database(pools[0]!);
    b = new Database(pools[1]!);
  });
  after(async () => {
    await Promise.all(pools.map((p) => p.end()));
  });

  /** The backends holding (granted) or waiting for the advisory lock of this name right now. */
  const lockers = (name: string, granted: boolean) =>
    a.query<{ pid: number }>(
      `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted = $2 AND objsubid = 1
         AND classid = ((hashtextextended($1, 0) >> 32) & x'ffffffff'::bigint)::oid AND objid = (hashtextextended($1, 0) & x'ffffffff'::bigint)::oid`,
      [name, granted],
    );
  const waiters = async (name: string) => (await lockers(name, false)).length;

  function held() {
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    return { release, released };
  }

  it('a second caller with the same name waits until the first is done, and may use the pool meanwhile', async () => {
    const name = `test-lock-${Date.now()}`;
    const steps: string[] = [];
    const first = held();
    const one = a.exclusively(name, async () => {
      steps.push('a in');
      // The holder's own statements go through the pool while it holds the lock.
      expect((await a.query<{ one: number }>('SELECT 1 AS one'))[0]!.one).to.equal(1);
      await first.released;
      steps.push('a out');
      return 'a';
    });
    await eventually(async () => steps.includes('a in'), 'the first caller to hold the lock');
    const two = b.exclusively(name, async () => {
      steps.push('b in');
      return 'b';
    });
    await eventually(async () => (await waiters(name)) === 1, 'the second caller to wait for the lock');
    expect(steps).to.deep.equal(['a in']);
    first.release();
    expect(await Promise.all([one, two])).to.deep.equal(['a', 'b']);
    expect(steps).to.deep.equal(['a in', 'a out', 'b in']);
  });

  it('callers with different names do not wait for each other', async () => {
    const first = held();
    const one = a.exclusively(`test-lock-x-${Date.now()}`, () => first.released);
    expect(await b.exclusively(`test-lock-y-${Date.now()}`, async () => 'y')).to.equal('y');
    first.release();
    await one;
  });

  it('a failing holder releases the lock and its error reaches the caller', async () => {
    const name = `test-lock-fail-${Date.now()}`;
    let err: unknown;
    await a.exclusively(name, async () => {
      throw new Error('boom');
    }).catch((e: unknown) => (err = e));
    expect((err as Error).message).to.equal('boom');
    expect(await b.exclusively(name, async () => 'next')).to.equal('next');
  });

  it('a holder whose connection PostgreSQL ends (a replica that died) frees the lock for the others', async () => {
    const name = `test-lock-dead-${Date.now()}`;
    const first = held();
    const one = a.exclusively(name, () => first.released);
    const holder = await eventually(async () => (await lockers(name, true))[0]?.pid, 'the holder to hold the lock');
    let entered = false;
    const two = b.exclusively(name, async () => {
      entered = true;
    });
    await eventually(async () => (await waiters(name)) === 1, 'the second caller to wait for the lock');
    expect(entered).to.equal(false);
    await b.query('SELECT pg_terminate_backend($1)', [holder]);
    await two;
    expect(entered).to.equal(true);
    first.release();
    await one; // the unlock fails on the ended connection; that connection leaves the pool
    expect(await a.exclusively(name, async () => 'again')).to.equal('again');
  });
});
