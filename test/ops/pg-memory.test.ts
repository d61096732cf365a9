import { constants, PerformanceObserver } from 'node:perf_hooks';
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { expect } from 'chai';
import pg from 'pg';
import { Database } from '../../src/db/pg.ts';
import { TEST_DATABASE_URL } from '../support/system.ts';

/** V8's collector, reachable without starting node with --expose-gc: a scavenge with `{ type: 'minor' }`. */
function collector(): (opts?: { type: 'minor' | 'major' }) => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as (opts?: { type: 'minor' | 'major' }) => void;
}

const oldSpaceUsed = () => getHeapSpaceStatistics().find((s) => s.space_name === 'old_space')!.space_used_size;

/**
 * What the statements' answers leave in V8's old generation once they are done with. An answer
 * that a scavenge keeps is moved to the old generation, where only a major collection frees it:
 * at a replica's pace that filled the old generation at about 2 MB a scavenge, and each major
 * collection then spent a quarter core's quota in one place (docs/benchmarks.md, 2026-12-07).
 */
describe('database statements: memory', function () {
  this.timeout(30_000);
  let pool: pg.Pool;
  let db: Database;
  before(() => {
    // Any database of the server will do: the statements read no table.
    const url = new URL(TEST_DATABASE_URL);
    url.pathname = '/postgres';
    pool = new pg.Pool({ connectionString: url.toString(), max: 2 });
    db = new Database(pool);
  });
  after(async () => {
    await pool?.end();
  });

  it('an answer is not kept through scavenges, on its own or in a transaction (pg’s own promise kept every one into the old generation)', async () => {
    const gc = collector();
    const text = `SELECT g, repeat('x', 100) AS b FROM generate_series(1, $1::int) g`;
    let answered = 0;
    const statements = async (n: number) => {
      for (let i = 0; i < n; i++) {
        const rows = i % 2 === 0 ? await db.query<{ g: number }>(text, [50]) : await db.transaction((tx) => tx.query<{ g: number }>(text, [50]));
        // Counted, not asserted on one by one: an assertion keeps its subject around for a while.
        answered += rows.length;
        if (i % 50 === 49) {
          await new Promise((resolve) => setImmediate(resolve));
          gc({ type: 'minor' });
        }
      }
    };
    let majors = 0;
    const observer = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) if (((e as { detail?: { kind?: number } }).detail)?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) majors += 1;
    });
    // Warmed up first: prepared statements, the pool's connections and compiled code are long-lived.
    await statements(100);
    observer.observe({ entryTypes: ['gc'] });
    /** One window of 1,000 statements (answers of 50 rows, some 8 MB in all): how much the old generation grew. */
    const window = async () => {
      gc();
      await new Promise((resolve) => setTimeout(resolve, 10));
      majors = 0;
      const before = oldSpaceUsed();
      await statements(1000);
      await new Promise((resolve) => setTimeout(resolve, 10));
      return oldSpaceUsed() - before;
    };
    // A major collection would free what was promoted and hide it: a window with one says nothing
    // and is measured again (V8 may start one of its own at any time), three times at most.
    let grown = await window();
    for (let again = 0; again < 2 && majors > 0; again++) grown = await window();
    observer.disconnect();
    expect(majors, 'major collections in each of three windows').to.equal(0);
    expect(answered).to.be.oneOf([1100, 2100, 3100].map((n) => n * 50));
    // Kept through scavenges, the answers grew the old generation by 10.9 MB; now by under 0.1 MB.
    expect(grown, `the old generation grew by ${(grown / 1e6).toFixed(2)} MB`).to.be.below(1_000_000);
  });
});
