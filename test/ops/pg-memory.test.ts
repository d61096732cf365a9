import { expect } from 'chai';
import pg from 'pg';
import { Database } from '../../src/db/pg.ts';
import { collector, oldGenerationGrowth } from '../support/heap.ts';
import { TEST_DATABASE_URL } from '../support/system.ts';

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
    // Warmed up first: prepared statements, the pool's connections and compiled code are long-lived.
    await statements(100);
    // Windows of 1,000 statements (answers of 50 rows, some 8 MB in all).
    const { grown, majors } = await oldGenerationGrowth(() => statements(1000));
    expect(majors, 'major collections in each of three windows').to.equal(0);
    expect(answered).to.be.oneOf([1100, 2100, 3100].map((n) => n * 50));
    // Kept through scavenges, the answers grew the old generation by 10.9 MB; now by under 0.1 MB.
    expect(grown, `the old generation grew by ${(grown / 1e6).toFixed(2)} MB`).to.be.below(1_000_000);
  });
});
