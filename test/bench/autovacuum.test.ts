import { expect } from 'chai';
import pg from 'pg';
import { AutovacuumStandIn } from '../../bench/autovacuum.ts';
import { waitUntil } from '../../bench/processes.ts';
import { resetDatabase, testDatabaseUrl } from '../support/system.ts';

describe('bench and demo: the stand-in for autovacuum', function () {
  this.timeout(30_000);
  const url = testDatabaseUrl('autovacuum');
  let pool: pg.Pool;
  let said: string[];
  let vacuum: AutovacuumStandIn;
  const query = async <T>(sql: string) => (await pool.query(sql)).rows as T[];

  /** Rows changed in `t` since its last ANALYZE, as PostgreSQL's statistics count them. */
  const analyzedSince = async () => Number((await query<{ n: string }>(`SELECT n_mod_since_analyze AS n FROM pg_stat_user_tables WHERE relname = 't'`))[0]?.n ?? 0);
  /** The same, once the statistics show at least `atLeast` (they are sent a moment after a commit). */
  async function changedSinceAnalyze(atLeast: number): Promise<number> {
    let changed = 0;
    await waitUntil(async () => (changed = await analyzedSince()) >= atLeast, `the statistics to count ${atLeast} rows changed`, 15_000);
    return changed;
  }

  before(async () => {
    await resetDatabase(url);
    const server = new URL(url);
    const name = server.pathname.slice(1);
    server.pathname = '/postgres';
    const admin = new pg.Client({ connectionString: server.toString() });
    await admin.connect();
    await admin.query(`CREATE DATABASE "${name}"`).finally(() => admin.end());
    pool = new pg.Pool({ connectionString: url, max: 2 });
    await pool.query('CREATE TABLE t (id int)');
  });
  beforeEach(() => {
    said = [];
    vacuum = new AutovacuumStandIn({ query, say: (line) => said.push(line) });
  });
  afterEach(() => vacuum.stop());
  after(async () => {
    await pool?.end();
    await resetDatabase(url);
  });

  it("stands in only where the server's autovacuum is off, and analyzes a table by autovacuum's rule, at autovacuum's pace inside a measured window", async () => {
    const [server] = await query<{ autovacuum: string; naptime: number }>(
      `SELECT current_setting('autovacuum') AS autovacuum, (SELECT setting::int FROM pg_settings WHERE name = 'autovacuum_naptime') AS naptime`,
    );
    const setting = await vacuum.start();
    if (server!.autovacuum === 'on') {
      // The server does it itself: nothing is stood in for.
      expect(setting).to.equal(undefined);
      expect(vacuum.enabled).to.equal(false);
      return;
    }
    expect(setting).to.equal(server!.autovacuum);
    expect(vacuum.enabled).to.equal(true);
    expect(vacuum.naptimeS).to.equal(server!.naptime);

    // 200 rows changed, more than 50 + 10 % of none: the rule calls for an ANALYZE.
    await query('INSERT INTO t SELECT g FROM generate_series(1, 200) g');
    await changedSinceAnalyze(200);
    await vacuum.analyzeStale();
    expect(await analyzedSince()).to.equal(0);
    expect(vacuum.analyses).to.equal(1);
    expect(vacuum.log.map((m) => m.what)).to.deep.equal(['ANALYZE of t']);

    // Inside a measured window the rule waits for autovacuum's naptime since the last check.
    await query('INSERT INTO t SELECT g FROM generate_series(1, 200) g');
    await changedSinceAnalyze(200);
    vacuum.measuring = true;
    await vacuum.analyzeStale();
    expect(await analyzedSince(), 'analyzed within the naptime of a measured window').to.be.at.least(200);
    expect(vacuum.log).to.have.length(1);

    // Outside it, at once: 200 rows changed is more than 50 + 10 % of the 200 it counted.
    vacuum.measuring = false;
    await vacuum.analyzeStale();
    expect(await analyzedSince()).to.equal(0);
    expect(vacuum.log.map((m) => m.what)).to.deep.equal(['ANALYZE of t', 'ANALYZE of t']);

    // 10 rows changed of 400: below the rule, nothing to do.
    await query('INSERT INTO t SELECT g FROM generate_series(1, 10) g');
    await changedSinceAnalyze(10);
    await vacuum.analyzeStale();
    expect(await analyzedSince()).to.equal(10);
    expect(vacuum.log).to.have.length(2);
    expect(said).to.deep.equal([]);
  });

  it('runs a VACUUM (ANALYZE) pass when asked, and none once stopped', async () => {
    if ((await vacuum.start()) === undefined) return expect(vacuum.enabled).to.equal(false);
    await query('INSERT INTO t SELECT g FROM generate_series(1, 100) g');
    await changedSinceAnalyze(100);
    await vacuum.now();
    expect(vacuum.passes).to.equal(1);
    expect(await analyzedSince()).to.equal(0);
    const [pass] = vacuum.log;
    expect(pass?.what).to.equal('VACUUM (ANALYZE)');
    expect(pass!.end).to.be.at.least(pass!.start);

    vacuum.stop();
    await query('INSERT INTO t SELECT g FROM generate_series(1, 100) g');
    await changedSinceAnalyze(100);
    await vacuum.now();
    await vacuum.analyzeStale();
    expect(vacuum.passes).to.equal(1);
    expect(await analyzedSince()).to.be.at.least(100);
    expect(vacuum.log).to.have.length(1);
    expect(said).to.deep.equal([]);
  });

  it('says what it does in the caller\'s words, which of its work overlapped a window, and keeps the latest of it', async () => {
    const kept = new AutovacuumStandIn({ query, say: (line) => said.push(line), vacuumEveryS: 30, analyzeCheckS: 5, logKept: 2 });
    try {
      const setting = await kept.start();
      if (setting === undefined) return expect(kept.enabled).to.equal(false);
      expect(kept.describe(setting, 'before each step')).to.equal(
        `PostgreSQL runs with autovacuum=${setting}: VACUUM (ANALYZE) runs before each step and every 30 s, and ANALYZE on a table by autovacuum's rule ` +
          `(checked every 5 s, and inside a measured window every ${kept.naptimeS} s, autovacuum's naptime), in its stead`,
      );
      const from = performance.now();
      for (let i = 0; i < 3; i += 1) await kept.now();
      const to = performance.now();
      expect(kept.passes).to.equal(3);
      // The oldest of the three passes went; the two kept are the latest, in order.
      expect(kept.log).to.have.length(2);
      expect(kept.log[0]!.end).to.be.at.most(kept.log[1]!.start);
      expect(kept.inWindow(from, to)).to.match(/^VACUUM \(ANALYZE\) for \d+\.\d s, VACUUM \(ANALYZE\) for \d+\.\d s$/);
      expect(kept.inWindow(to + 1, to + 1000)).to.equal('');
      expect(said).to.deep.equal([]);
    } finally {
      kept.stop();
    }
  });
});
