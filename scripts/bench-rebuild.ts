// How long `npm run views:rebuild` takes as the orders grow: npm run bench:rebuild [-- --orders 3000,30000]
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { ensurePartitions, EVENTS_GROUP } from '../src/actors/partitions.ts';
import { commandLine, usageError } from '../src/cli.ts';
import { ensureDatabase, migrate } from '../src/db/data-source.ts';
import { Database } from '../src/db/pg.ts';
import { createLogger } from '../src/log.ts';
import { rebuildViews } from '../src/views/rebuild.ts';
import { VIEWS } from '../src/views/registry.ts';
import { LIVES, seedOrders, type ScriptedOrder } from './cluster/seed-orders.ts';
import { onServer } from './cluster/infra.ts';

const USAGE = `usage: npm run bench:rebuild -- [--orders N,N,...] [--batch N]

Times the rebuild of every view (the code of npm run views:rebuild) on databases of growing size:
for each count, a fresh database (BENCH_DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/baedal_bench_rebuild; dropped and re-created, and dropped at the
end) gets that many orders of every life (their journal as the service writes it, about 20 events
per order, every event already applied by the consumers), a VACUUM (ANALYZE) as autovacuum would
give it, and then the rebuild, with no service running. Prints, per count: the time to empty the
views and owe them every order (with its ANALYZE), the whole rebuild, milliseconds per order, and
the events applied. A rebuild whose time grows with the square of the orders shows as ms per order
growing with the count.
  --orders  order counts, comma-separated (default 3000,30000,150000)
  --batch   orders per rebuild batch, as views:rebuild --batch (default 500)
  --help    this text`;

const values = commandLine('bench:rebuild', USAGE, {
  orders: { type: 'string', default: '3000,30000,150000' },
  batch: { type: 'string', default: '500' },
});
const counts = (values.orders ?? '').split(',').map((s) => (/^[0-9]{1,7}$/.test(s.trim()) ? Number(s.trim()) : Number.NaN));
if (counts.length === 0 || counts.some((n) => !(n >= 1 && n <= 5_000_000))) usageError('bench:rebuild', USAGE, `--orders must be whole numbers from 1 to 5000000, comma-separated, not ${values.orders}`);
const batch = /^[0-9]{1,4}$/.test(values.batch ?? '') ? Number(values.batch) : Number.NaN;
if (!(batch >= 1 && batch <= 5000)) usageError('bench:rebuild', USAGE, `--batch must be a whole number from 1 to 5000, not ${values.batch}`);

const DATABASE_URL = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/baedal_bench_rebuild';
const DATABASE_NAME = new URL(DATABASE_URL).pathname.slice(1);
if (!/^[a-z0-9_]+$/.test(DATABASE_NAME) || !DATABASE_NAME.includes('bench')) {
  usageError('bench:rebuild', USAGE, `BENCH_DATABASE_URL must name a database with "bench" in its name (it is dropped), not "${DATABASE_NAME}"`);
}
const dropDatabase = () => onServer(DATABASE_URL, `DROP DATABASE IF EXISTS "${DATABASE_NAME}" WITH (FORCE)`);
const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/** `n` orders of every life, their stores, riders and customers spread over a few hundred. */
function scripted(n: number): ScriptedOrder[] {
  return Array.from({ length: n }, (_, i) => ({
    orderId: randomUUID(),
    customerId: `c${i % 400}`,
    storeId: `s${i % 50}`,
    area: ['gangnam', 'mapo', 'jongno'][i % 3]!,
    items: [{ foodId: ['bibimbap', 'japchae'][i % 2]!, qty: 1 + (i % 3), unitPrice: 9000 }],
    steps: LIVES[i % LIVES.length]!,
    riderId: `r${i % 40}`,
  }));
}

console.log(`bench:rebuild — ${new Date().toISOString()}; ${VIEWS.length} views, ${batch} orders per batch, database ${DATABASE_NAME}`);
const rows: string[] = [];
try {
  for (const n of counts) {
    await dropDatabase();
    await ensureDatabase(DATABASE_URL);
    await migrate(DATABASE_URL);
    const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 4 });
    try {
      const db = new Database(pool);
      await ensurePartitions(db, 32, [EVENTS_GROUP]);
      const seeding = performance.now();
      let events = 0;
      for (let start = 0; start < n; start += 5000) {
        const chunk = scripted(Math.min(5000, n - start));
        events += (await db.transaction((tx) => seedOrders(tx, chunk))).events;
      }
      // Every event applied already, as by a service that kept up.
      await db.query(`UPDATE consumer_positions SET tx = (SELECT max(tx) FROM order_journal), pos = (SELECT max(pos) FROM order_journal), version = version + 1`);
      await db.query('VACUUM (ANALYZE)');
      console.log(`  ${n} orders, ${events} events seeded in ${s(performance.now() - seeding)}`);
      const started = performance.now();
      let resetMs: number | undefined;
      const r = await rebuildViews(db, VIEWS, {
        batchOrders: batch,
        log: createLogger('error'),
        onProgress: () => (resetMs ??= performance.now() - started),
      });
      const line = `${String(n).padStart(10)}  ${s(resetMs ?? 0).padStart(17)}  ${s(r.elapsedMs).padStart(9)}  ${(r.elapsedMs / n).toFixed(2).padStart(9)}  ${String(r.eventsApplied).padStart(14)}`;
      console.log(`  rebuilt: ${line.trim().replace(/\s+/g, ' ')} (orders, emptying and owing, rebuild, ms/order, events)`);
      rows.push(line);
    } finally {
      await pool.end();
    }
  }
  console.log(`\n    orders  emptied and owed    rebuild  ms/order  events applied\n${rows.join('\n')}`);
} finally {
  await dropDatabase();
}
