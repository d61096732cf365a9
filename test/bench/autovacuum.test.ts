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

  it("vacuums, every naptime, only the tables that meet autovacuum's vacuum rule, with the server's thresholds", async () => {
    if ((await vacuum.start()) === undefined) return expect(vacuum.enabled).to.equal(false);
    // The analyses of autovacuum's other rule run by themselves meanwhile; this test counts vacuums.
    const vacuums = () => vacuum.log.map((m) => m.what).filter((what) => what.startsWith('VACUUM'));
    const rules = Object.fromEntries(
      (await query<{ name: string; setting: string }>(`SELECT name, setting FROM pg_settings WHERE name LIKE 'autovacuum\\_%\\_threshold' OR name LIKE 'autovacuum\\_%\\_scale\\_factor'`)).map((r) => [r.name, Number(r.setting)]),
    );
    expect(vacuum.rules).to.deep.equal({
      vacuumThreshold: rules.autovacuum_vacuum_threshold,
      vacuumScale: rules.autovacuum_vacuum_scale_factor,
      insertThreshold: rules.autovacuum_vacuum_insert_threshold,
      insertScale: rules.autovacuum_vacuum_insert_scale_factor,
      analyzeThreshold: rules.autovacuum_analyze_threshold,
      analyzeScale: rules.autovacuum_analyze_scale_factor,
    });
    await query('CREATE TABLE filled (id int); CREATE TABLE churned (id int); CREATE TABLE quiet (id int)');
    await query('VACUUM filled, churned, quiet');
    const counts = async () =>
      Object.fromEntries(
        (await query<{ relname: string; vacuum_count: string; n_dead_tup: string; n_ins_since_vacuum: string }>(
          `SELECT relname, vacuum_count, n_dead_tup, n_ins_since_vacuum FROM pg_stat_user_tables WHERE relname IN ('filled', 'churned', 'quiet')`,
        )).map((r) => [r.relname, { vacuums: Number(r.vacuum_count), dead: Number(r.n_dead_tup), inserted: Number(r.n_ins_since_vacuum) }]),
      );
    const before = await counts();
    // `filled`: more rows inserted since its vacuum than the insert rule allows of an empty table.
    const filled = vacuum.rules.insertThreshold + 100;
    await query(`INSERT INTO filled SELECT g FROM generate_series(1, ${filled}) g`);
    // `churned`: 100 rows, then all deleted: more dead rows than the rule allows, few inserts.
    await query('INSERT INTO churned SELECT g FROM generate_series(1, 100) g');
    await query('DELETE FROM churned');
    // `quiet`: 10 rows inserted, far below either rule.
    await query('INSERT INTO quiet SELECT g FROM generate_series(1, 10) g');
    await waitUntil(async () => {
      const c = await counts();
      return c.filled!.inserted >= filled && c.churned!.dead >= 100 && c.quiet!.inserted >= 10;
    }, 'the statistics to count the rows', 15_000);

    await vacuum.vacuumDue();
    const after = await counts();
    expect(after.filled!.vacuums, 'filled').to.equal(before.filled!.vacuums + 1);
    expect(after.churned!.vacuums, 'churned').to.equal(before.churned!.vacuums + 1);
    expect(after.quiet!.vacuums, 'quiet').to.equal(before.quiet!.vacuums);
    expect(after.quiet!.inserted).to.equal(10);
    expect(vacuum.vacuums).to.equal(2);
    expect(vacuum.passes).to.equal(0);
    expect(vacuums()).to.deep.equal(['VACUUM of churned, filled']);

    // Vacuumed, neither meets the rule any more.
    await vacuum.vacuumDue();
    expect((await counts()).filled!.vacuums).to.equal(after.filled!.vacuums);
    expect(vacuums()).to.have.length(1);

    // A full pass asked for while a vacuum by the rule runs follows it, rather than being taken for it.
    await query('DELETE FROM filled');
    await waitUntil(async () => (await counts()).filled!.dead >= filled, 'the statistics to count the deleted rows', 15_000);
    await Promise.all([vacuum.vacuumDue(), vacuum.now()]);
    expect(vacuum.passes).to.equal(1);
    expect(vacuums()).to.deep.equal(['VACUUM of churned, filled', 'VACUUM of filled', 'VACUUM (ANALYZE)']);
    expect(said).to.deep.equal([]);
  });

  it('says what it does in the caller\'s words, which of its work overlapped a window, and keeps the latest of it', async () => {
    const kept = new AutovacuumStandIn({ query, say: (line) => said.push(line), vacuumEveryS: 30, analyzeCheckS: 5, logKept: 2 });
    try {
      const setting = await kept.start();
      if (setting === undefined) return expect(kept.enabled).to.equal(false);
      expect(kept.describe(setting, 'before each step')).to.equal(
        `PostgreSQL runs with autovacuum=${setting}: VACUUM (ANALYZE) runs before each step, VACUUM on a table by autovacuum's rule every 30 s, and ANALYZE on a table by autovacuum's rule ` +
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
