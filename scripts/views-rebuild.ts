// Rebuilds the read models from the journal: npm run views:rebuild [-- --view NAME] [--batch 500]
import pg from 'pg';
import { commandLine, progressBar, usageError } from '../src/cli.ts';
import { ConfigError, loadConfig } from '../src/config.ts';
import { Database } from '../src/db/pg.ts';
import { createLogger } from '../src/log.ts';
import { rebuildViews, type RebuildProgress } from '../src/views/rebuild.ts';
import { findView, VIEWS } from '../src/views/registry.ts';
import type { ViewDefinition } from '../src/views/view.ts';

const USAGE = `usage: npm run views:rebuild [-- --view NAME ...] [--batch N]

Empties the views (every one, or those named) and replays every order's journal into them through
the views' own code, N orders per transaction, with a progress bar on stderr. The service may keep
running: what it applies meanwhile meets the replay at each order's checkpoint, and the result
equals what the live views would be. Connects to DATABASE_URL, the service's database.
  --view   a view to rebuild (repeat it for several); all of them when absent:
${VIEWS.map((v) => `             ${v.name.padEnd(22)} ${v.describe}`).join('\n')}
  --batch  orders per transaction, 1 to 5000 (default 500)
  --help   this text`;

function fail(message: string): never {
  return usageError('views:rebuild', USAGE, message);
}

const values = commandLine('views:rebuild', USAGE, {
  view: { type: 'string', multiple: true },
  batch: { type: 'string', default: '500' },
});
const views: ViewDefinition[] = [];
for (const name of values.view ?? VIEWS.map((v) => v.name)) {
  const view = findView(name);
  if (!view) fail(`there is no view named ${JSON.stringify(name)}`);
  if (!views.includes(view)) views.push(view);
}
const batch = /^[0-9]{1,4}$/.test(values.batch ?? '') ? Number(values.batch) : Number.NaN;
if (!(batch >= 1 && batch <= 5000)) fail(`--batch must be a whole number from 1 to 5000, not ${values.batch}`);

let config;
try {
  config = loadConfig();
} catch (err) {
  if (err instanceof ConfigError) fail(err.message);
  throw err;
}

const pool = new pg.Pool({ connectionString: config.DATABASE_URL, max: 4 });
const db = new Database(pool);
let exitCode = 0;
try {
  const [migrated] = await db.query<{ ok: boolean }>(
    `SELECT to_regclass('schema_migrations') IS NOT NULL AND EXISTS (SELECT 1 FROM schema_migrations WHERE name = 'Views1766000000000') AS ok`,
  ).catch(() => [{ ok: false }]);
  if (!migrated?.ok) {
    console.error('views:rebuild: the database has no view tables yet: start the service once (it migrates), or run `npx tsx src/migrate.ts`');
    exitCode = 1;
  } else {
    const bar = progressBar(`rebuilding ${views.map((v) => v.name).join(', ')}`);
    const draw = (p: RebuildProgress, final = false) =>
      bar(p.ordersDone, p.ordersTotal, `orders, ${p.eventsApplied} events, ${(p.elapsedMs / 1000).toFixed(1)} s`, final);
    const log = createLogger(config.LOG_LEVEL === 'silent' ? 'silent' : 'error');
    const result = await rebuildViews(db, views, { batchOrders: batch, log, onProgress: (p) => draw(p) });
    draw(result, true);
    console.log(
      `rebuilt ${result.views.join(', ')}: ${result.ordersDone} orders, ${result.eventsApplied} events applied in ${(result.elapsedMs / 1000).toFixed(1)} s`,
    );
    if (result.failedOrders > 0) {
      console.error(
        `views:rebuild: ${result.failedOrders} order(s) could not be applied; see GET /admin/failed-events and replay them with POST /admin/failed-events/replay once fixed`,
      );
      exitCode = 1;
    }
  }
} catch (err) {
  console.error(`views:rebuild: failed: ${err instanceof Error ? err.message : String(err)}; the views are incomplete, run it again`);
  exitCode = 1;
} finally {
  await pool.end();
}
process.exit(exitCode);
