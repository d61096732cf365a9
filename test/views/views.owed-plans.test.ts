import { expect } from 'chai';
import pg from 'pg';
import { PARTS_OWED, REBUILD_OWED } from '../../src/actors/consumers/owed.ts';
import { Database } from '../../src/db/pg.ts';
import { createLogger } from '../../src/log.ts';
import { rebuildViews } from '../../src/views/rebuild.ts';
import { VIEWS } from '../../src/views/registry.ts';
import { consumerNameOf } from '../../src/views/view.ts';
import { eventually, freshMigratedDatabase, resetDatabase, testDatabaseUrl } from '../support/system.ts';

const CONSUMERS = VIEWS.map((v) => consumerNameOf(v.name));
/** Orders a rebuild owes to each view: as many rows as a database of this many orders holds while one runs. */
const REBUILT_ORDERS = 40_000;
const FAILURES = 3_000;

/**
 * A rebuild owes every order to each view it rebuilds, so the owed rows number millions on a large
 * database while it runs. The statements that read them over and over, an owner's poll and each of
 * the rebuild's batches, must read a batch's worth through an index and stop, not read and sort
 * them all each time (which made a rebuild's time grow with the square of the orders). Explained
 * with the generic plans the service's connections use, and run (EXPLAIN ANALYZE) on such a table.
 */
describe('views: owed rows are read a batch at a time, however many a rebuild owes', function () {
  this.timeout(60_000);
  const url = testDatabaseUrl('owed_plans');
  let pool: pg.Pool;
  let db: Database;
  let explain: pg.Client;

  before(async () => {
    await freshMigratedDatabase(url);
    pool = new pg.Pool({ connectionString: url, max: 4 });
    db = new Database(pool);
    // Every order owed to every view (a rebuild's reset), and failures: a third due now, the rest later.
    await db.query(
      `INSERT INTO consumer_failures (consumer, order_id, part, seq, upto, attempts, last_error, first_failed_at, last_failed_at, origin)
       SELECT c, o.id, (random() * 31)::int, 1, 6, 0, 'owed to a rebuild', now(), now(), 'rebuild'
       FROM (SELECT gen_random_uuid() AS id FROM generate_series(1, ${REBUILT_ORDERS})) o CROSS JOIN unnest($1::text[]) AS c`,
      [CONSUMERS],
    );
    await db.query(
      `INSERT INTO consumer_failures (consumer, order_id, part, seq, upto, attempts, last_error, first_failed_at, last_failed_at, origin, due_at)
       SELECT ($1::text[])[1 + g % 5], gen_random_uuid(), g % 32, 2, 3, 1 + g % 4, 'boom', now(), now(), 'failure',
              CASE WHEN g % 3 = 0 THEN now() - interval '1 second' ELSE now() + interval '1 hour' END
       FROM generate_series(1, ${FAILURES}) AS g`,
      [CONSUMERS],
    );
    await db.query('ANALYZE consumer_failures');
    explain = new pg.Client({ connectionString: url, options: '-c plan_cache_mode=force_generic_plan' });
    await explain.connect();
  });
  after(async () => {
    await explain?.end();
    await pool?.end();
    await resetDatabase(url);
  });

  /** The statement's generic plan, run: EXPLAIN (ANALYZE) of it prepared, with its parameters. */
  async function plan(text: string, params: unknown[]): Promise<string> {
    await explain.query(`PREPARE owed AS ${text}`);
    try {
      const literals = params.map((p) => (Array.isArray(p) ? explain.escapeLiteral(`{${p.join(',')}}`) : explain.escapeLiteral(String(p))));
      const rows = (await explain.query(`EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) EXECUTE owed(${literals.join(', ')})`)).rows;
      return rows.map((r) => r['QUERY PLAN'] as string).join('\n');
    } finally {
      await explain.query('DEALLOCATE owed');
    }
  }
  const holdRebuildLease = () =>
    db.query(`INSERT INTO leases (name, holder, until) VALUES ('views-rebuild', 'a rebuild', now() + interval '1 minute')
              ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, until = EXCLUDED.until`);
  const parts = Array.from({ length: 16 }, (_, i) => i);

  it("an owner's poll reads its due failures through consumer_failures_part_idx, and none of a running rebuild's rows", async () => {
    await holdRebuildLease();
    // A limit above the due failures: the poll goes on to the rebuild's rows, and its lease stops it.
    const text = await plan(PARTS_OWED, [CONSUMERS, parts, FAILURES]);
    expect(text).to.not.match(/Seq Scan on consumer_failures/);
    expect(text).to.match(/(Bitmap Index Scan on|Index Scan using) consumer_failures_part_idx/);
    expect(text).to.match(/One-Time Filter: \(NOT \$0\)\n\s+->\s+Index Scan using consumer_failures_rebuild_idx on consumer_failures f_1 \(never executed\)/);

    const rows = await db.query<{ consumer: string; order_id: string; attempts: number }>(PARTS_OWED, [CONSUMERS, parts, FAILURES]);
    const [{ n: due }] = (await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM consumer_failures WHERE origin = 'failure' AND due_at <= now() AND part = ANY($1::smallint[])`,
      [parts],
    )) as [{ n: number }];
    expect(due).to.be.greaterThan(0);
    expect(rows).to.have.length(due);
    for (const r of rows) expect(r.attempts).to.be.greaterThan(0);
  });

  it("once no rebuild holds its lease, an owner takes the rebuild's rows of its partitions a batch at a time, in order", async () => {
    await db.query(`DELETE FROM leases WHERE name = 'views-rebuild'`);
    const text = await plan(PARTS_OWED, [CONSUMERS, parts, 200]);
    expect(text).to.not.match(/Seq Scan on consumer_failures|Sort/);
    expect(text).to.match(/Index Scan using consumer_failures_rebuild_idx on consumer_failures/);
    const rows = await db.query<{ order_id: string }>(PARTS_OWED, [CONSUMERS, parts, 200]);
    expect(rows).to.have.length(200);
  });

  it("a rebuild reads its next rows by order id through consumer_failures_rebuild_idx, and stops at the batch's end", async () => {
    const text = await plan(REBUILD_OWED, [CONSUMERS, 2500]);
    expect(text).to.not.match(/Seq Scan on consumer_failures|Sort/);
    expect(text).to.match(/Limit \(actual rows=2500 loops=1\)\n\s+->\s+Index Scan using consumer_failures_rebuild_idx on consumer_failures f \(actual rows=2500 loops=1\)/);
    const rows = await db.query<{ order_id: string }>(REBUILD_OWED, [CONSUMERS, 2500]);
    const ids = rows.map((r) => r.order_id);
    expect(ids).to.deep.equal([...ids].sort());
    expect(new Set(ids).size).to.equal(2500 / CONSUMERS.length);
  });

  it('a rebuild analyzes the owed rows its reset has just written, so that every plan reads them as the many they are', async () => {
    const analyzed = async () =>
      Number((await db.query<{ n: string }>(`SELECT analyze_count AS n FROM pg_stat_user_tables WHERE relname = 'consumer_failures'`))[0]?.n ?? 0);
    const earlier = await analyzed();
    const result = await rebuildViews(db, VIEWS, { log: createLogger('silent') });
    expect(result.ordersTotal).to.equal(0);
    await eventually(async () => (await analyzed()) > earlier, 'the statistics to count the ANALYZE of consumer_failures');
  });
});
