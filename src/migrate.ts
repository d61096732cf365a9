// Creates the database if it is missing, applies pending migrations, and exits: the Kubernetes
// init step (`node dist/migrate.js`) and a manual one (`node --import tsx src/migrate.ts`).
// Any number of these may run at once: runMigrations holds a PostgreSQL advisory lock, so one
// applies the migrations and the others then find nothing left to do.
import { loadConfigOrExit } from './config.ts';
import { createLogger } from './log.ts';
import { commandLine } from './cli.ts';

const USAGE = `usage: node dist/migrate.js   (from a checkout: node --import tsx src/migrate.ts)

Creates the database named in DATABASE_URL when it does not exist, applies the pending schema
migrations under an advisory lock (safe to run from several pods at once), prints what it
applied, and exits 0; exits 1 when PostgreSQL cannot be reached or a migration fails, 2 on an
invalid configuration. Reads the same environment as the service (DATABASE_URL, LOG_LEVEL).`;

async function main(): Promise<void> {
  commandLine('migrate', USAGE, {});
  const config = loadConfigOrExit();
  const log = createLogger(config.LOG_LEVEL);
  const started = Date.now();
  // Loaded only now: TypeORM takes a while to load, and --help or a bad setting needs none of it.
  const { ensureDatabase, migrate } = await import('./db/data-source.ts');
  await ensureDatabase(config.DATABASE_URL);
  const applied = await migrate(config.DATABASE_URL);
  log.info({ applied, ms: Date.now() - started }, applied.length > 0 ? `applied ${applied.length} migration(s)` : 'schema is up to date');
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
