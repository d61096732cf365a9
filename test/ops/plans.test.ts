import { createRequire } from 'node:module';
import { expect } from 'chai';
import pg from 'pg';
import { partitionSql } from '../../src/actors/partitions.ts';
import { commandRequest, eventually, startSystem, type Parties, type TestSystem } from '../support/system.ts';

// pg's own conversion of a JS value to the text PostgreSQL parses (arrays, dates, JSON).
const { prepareValue } = createRequire(import.meta.url)('pg/lib/utils.js') as { prepareValue(v: unknown): string | null };

/** Tables that grow with the traffic: no statement of the service may read them whole. */
const BIG = ['orders', 'order_journal', 'notifications', 'timers', 'payment_attempts', 'refunds', 'view_customer_orders', 'view_store_orders', 'view_deliveries', 'customer_unpaid_orders'];
const ORDERS = 20_000;

/**
 * Every statement the service sends keeps an index plan when the tables are large. The service
 * prepares its statements and plans them once per connection (plan_cache_mode=force_generic_plan),
 * and batches arrive as JSON record sets whose size the planner cannot know: a plan chosen on small
 * tables must not turn into a full scan of a large one. The statements are recorded from real
 * traffic against tables filled with ORDERS orders, then explained with their own parameters.
 */
describe('statement plans on large tables', function () {
  this.timeout(120_000);
  let sys: TestSystem;
  let p: Parties;
  let explain: pg.Client;

  before(async () => {
    sys = await startSystem({ name: 'plans' });
    p = await sys.newParties();
    const db = sys.runtime.db;
    await db.query(`
      INSERT INTO orders (id, machine_id, machine_version, version, status, snapshot, customer_id, store_id, rider_id, area, created_at, updated_at)
      SELECT gen_random_uuid(), 'order', 1, 5, 'pickedUp', '{}', 'c' || (i % 1000), 's' || (i % 50), 'r' || (i % 100), 'a' || (i % 20),
             now() - make_interval(secs => i), now() - make_interval(secs => i)
      FROM generate_series(1, ${ORDERS}) AS i`);
    // Old events, already applied: the consumers' positions pass them in the transaction that writes them.
    await sys.runtime.pg.transaction(async (tx) => {
      await tx.query(`
        INSERT INTO order_journal (order_id, seq, event_id, type, data, actor, causation_id, at, part)
        SELECT o.id, s, gen_random_uuid(), 'OrderPlaced', '{}', '{}', NULL, o.created_at, ${partitionSql('o.id', '32')}
        FROM orders o CROSS JOIN generate_series(1, 5) AS s WHERE o.status = 'pickedUp' AND o.snapshot = '{}'`);
      await tx.query(`UPDATE consumer_positions SET tx = pg_current_xact_id(), pos = (SELECT max(pos) FROM order_journal), version = version + 1`);
    });
    await db.query(`
      INSERT INTO notifications (id, event_id, order_id, seq, to_role, to_id, status, text, created_at, delivered_at, transport)
      SELECT gen_random_uuid(), j.event_id, j.order_id, j.seq, 'customer', 'c', 'pickedUp', 'x', j.at, j.at, 'log'
      FROM order_journal j WHERE j.type = 'OrderPlaced' AND j.data = '{}' AND j.seq <= 2`);
    await db.query(`
      INSERT INTO timers (id, order_id, version, event, fire_at, fired_at, outcome)
      SELECT o.id || ':2:store-accept-timeout', o.id, 2, 'store-accept-timeout', o.created_at, o.created_at, 'moved-on' FROM orders o WHERE o.snapshot = '{}'`);
    await db.query(`
      INSERT INTO payment_attempts (idempotency_key, order_id, n, amount, status, charge_id, started_at, decided_at)
      SELECT 'order-' || o.id || '-charge-1', o.id, 1, 1000, 'charged', 'ch_' || o.id, o.created_at, o.created_at FROM orders o WHERE o.snapshot = '{}'`);
    await db.query(`
      INSERT INTO refunds (idempotency_key, order_id, charge_id, amount, reason, status, refund_id, requested_at, refunded_at)
      SELECT 'order-' || o.id || '-refund', o.id, 'ch_' || o.id, 1000, 'cancelled', 'refunded', 're_' || o.id, o.created_at, o.created_at
      FROM orders o WHERE o.snapshot = '{}' AND o.created_at < now() - interval '15000 seconds'`);
    await db.query(`
      INSERT INTO view_customer_orders (order_id, customer_id, store_id, status, total, rider_id, placed_at, updated_at, seq)
      SELECT id, customer_id, store_id, status, 1000, rider_id, created_at, updated_at, 5 FROM orders WHERE snapshot = '{}'`);
    await db.query(`
      INSERT INTO view_store_orders (order_id, store_id, status, total, items, rider_id, paid_at, updated_at, seq)
      SELECT id, store_id, status, 1000, '[]', rider_id, created_at, updated_at, 5 FROM orders WHERE snapshot = '{}'`);
    await db.query(`
      INSERT INTO view_deliveries (order_id, store_id, area, items_count, cooked_at, withdrawn_at, seq)
      SELECT id, store_id, area, 1, created_at, created_at, 5 FROM orders WHERE snapshot = '{}'`);
    await db.query(`INSERT INTO customer_unpaid_orders (customer_id, unpaid) SELECT 'c' || i, i % 3 FROM generate_series(1, ${ORDERS}) AS i`);
    await db.query('ANALYZE');
    explain = new pg.Client({ connectionString: sys.databaseUrl, options: '-c plan_cache_mode=force_generic_plan' });
    await explain.connect();
  });
  after(async () => {
    await explain?.end();
    await sys?.close();
  });

  it(`keeps every statement of a lifecycle, its events, work and reads on indexes with ${ORDERS} orders, and no write finds orders by status`, async () => {
    const seen = new Map<string, readonly unknown[]>();
    sys.runtime.pg.onStatement = (text, params) => {
      if (!seen.has(text)) seen.set(text, params);
    };
    try {
      // Real traffic: each kind of lifecycle, its consumers and work (a refund failing, so a retry
      // is recorded), a sweep, and the reads. The first 6 refund requests fail: of the two refund
      // calls (cancel, reject; 3 tries each with PAYMENT_RETRIES), one fails whole however they interleave.
      await sys.setGatewayBehaviour({ failNextRefunds: 6 });
      for (const script of [['pay', 'accept', 'start-cooking', 'finish-cooking', 'pick', 'confirm-delivery'], ['pay', 'cancel'], ['pay', 'reject']]) {
        const order = await sys.placeOrder(p);
        for (const command of script) expect((await sys.request('POST', `/orders/${order.id}/${command}`, commandRequest(p, command))).status).to.equal(200);
        await sys.request('GET', `/orders/${order.id}`, { token: p.customer });
        await sys.request('GET', `/orders/${order.id}/events`, { token: p.customer });
      }
      await eventually(async () => (await sys.runtime.db.query(`SELECT count(*)::int AS n FROM refunds WHERE status = 'pending'`))[0].n === 0, 'the refunds');
      expect([...seen.keys()].some((t) => /SET lease_until = NULL, last_error = r\.error/.test(t)), 'a retry recorded').to.equal(true);
      for (const path of ['/orders', '/notifications', `/views/customers/${p.customerId}/orders`, `/views/stores/${p.storeId}/orders`, `/deliveries?area=${p.area}`]) {
        const token = path.startsWith('/deliveries') ? p.rider : path.includes('/stores/') ? p.store : p.customer;
        expect((await sys.request('GET', path, { token })).status, path).to.equal(200);
      }
      // A rider's listings: the orders it picked and every cooked one, in an area or anywhere.
      for (const path of ['/orders', `/orders?status=cooked&area=${p.area}`, '/orders?status=cooked']) {
        expect((await sys.request('GET', path, { token: p.rider })).status, `${path} (rider)`).to.equal(200);
      }
      expect((await sys.request('GET', '/views/_status', { token: p.admin })).status).to.equal(200);
      await sys.runtime.sweeper.sweep();
      await sys.runtime.sweeper.retain();
    } finally {
      sys.runtime.pg.onStatement = undefined;
    }

    const scans: string[] = [];
    const byStatus: string[] = [];
    let n = 0;
    for (const [text, params] of seen) {
      if (!/^\s*(WITH|SELECT|INSERT|UPDATE|DELETE)/i.test(text)) continue;
      // Retention runs once an hour on one replica and deletes the oldest rows first, which sit at
      // the start of the table: a scan there stops after one batch, and an index for it would cost
      // every insert on the hot path.
      if (/^\s*WITH gone AS \(DELETE FROM (notifications|timers|order_requests)/.test(text)) continue;
      n += 1;
      const name = `plan_${n}`;
      await explain.query(`PREPARE ${name} AS ${text}`);
      const literals = params.map((v) => {
        const value = prepareValue(v);
        return value === null ? 'NULL' : explain.escapeLiteral(value);
      });
      const plan = (await explain.query(`EXPLAIN EXECUTE ${name}${literals.length > 0 ? `(${literals.join(', ')})` : ''}`)).rows.map((r) => r['QUERY PLAN'] as string);
      await explain.query(`DEALLOCATE ${name}`);
      for (const line of plan) {
        const scan = /Seq Scan on (\w+)/.exec(line);
        if (scan && BIG.includes(scan[1]!)) scans.push(`${scan[1]} in: ${text.replace(/\s+/g, ' ').trim().slice(0, 140)}`);
        // Every order passes through each status, and an index keeps the entries of its old row
        // versions until a vacuum: a write that finds orders by status reads all of those.
        if (/orders_cooked_idx/.test(line) && /\b(INSERT|UPDATE|DELETE)\b/.test(text)) byStatus.push(text.replace(/\s+/g, ' ').trim().slice(0, 140));
      }
    }
    expect(n, 'statements recorded').to.be.greaterThan(20);
    expect(scans, 'full scans of large tables').to.deep.equal([]);
    expect(byStatus, 'writes that look orders up by status').to.deep.equal([]);
  });

  it("updates orders in place (heap-only): no index of orders names the status, which every command changes", async () => {
    const indexes = (await explain.query(`SELECT indexrelid::regclass::text AS name, pg_get_indexdef(indexrelid) AS def FROM pg_index WHERE indrelid = 'orders'::regclass`)).rows as { name: string; def: string }[];
    expect(indexes.filter((i) => /\bstatus\b/.test(i.def)).map((i) => i.name), 'indexes of orders on the status').to.deep.equal([]);
    const hot = async () => Number((await explain.query(`SELECT pg_stat_get_tuples_hot_updated('orders'::regclass) AS n`)).rows[0].n);
    const before = await hot();
    const order = await sys.placeOrder(p);
    for (const command of ['pay', 'accept', 'start-cooking']) expect((await sys.request('POST', `/orders/${order.id}/${command}`, commandRequest(p, command))).status).to.equal(200);
    // Three updates that change the status and nothing indexed, each on the order's page. A backend's
    // counts reach the shared statistics when it goes idle, about a second later.
    await eventually(async () => (await hot()) - before >= 3, 'three heap-only updates of orders', 15_000);
  });
});
