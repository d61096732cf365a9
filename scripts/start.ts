// `npm start`: the service as production runs it (`node --max-semi-space-size=32 --heap-growing-percent=300 dist/main.js`, src/node-flags.ts), built first when dist/ is
// missing or older than the sources. This launcher only builds and relays signals; the service
// itself runs with plain node, no TypeScript loader.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { commandLine } from '../src/cli.ts';
import { SERVICE_NODE_FLAGS } from '../src/node-flags.ts';
import { ensureBuilt } from './build.ts';

const USAGE = `usage: npm start        (the image and Kubernetes run: node ${SERVICE_NODE_FLAGS.join(' ')} dist/main.js)

Runs the Baedal service in the foreground from the compiled JavaScript in dist/: the HTTP API
and, unless ROLE=api, the event workers, durable work and the sweeper. When dist/ is missing or a
source under src/ changed after the last build, it runs \`npm run build\` first. SIGTERM or Ctrl-C
drains the service and stops it (exit 0 within SHUTDOWN_TIMEOUT_MS). It expects PostgreSQL, Redis
and a payment gateway (\`npm run up\` starts the fake one with it). Configuration comes from the
environment, validated at start-up (exit 2 naming a bad value); the main variables:
  PORT, HOST              where it listens (default 127.0.0.1:3000)
  DATABASE_URL            PostgreSQL (the database is created and migrated at start-up)
  REDIS_URL               Redis for BullMQ
  PAYMENT_URL             the payment gateway
  AUTH_SECRET             the token secret (required when NODE_ENV=production)
  NOTIFY_WEBHOOK_URL      where notifications are POSTed (unset: the log)
  NOTIFY_WEBHOOK_SECRET   signs each webhook request (Baedal-Signature; set it in production)
  ROLE                    all | api | worker
  LOG_LEVEL               pino level
Every variable is in README.md, Configuration.`;

commandLine('start', USAGE, {});
ensureBuilt('start');

const root = fileURLToPath(new URL('../', import.meta.url));
const service = spawn(process.execPath, [...SERVICE_NODE_FLAGS, 'dist/main.js'], { cwd: root, stdio: 'inherit' });
// The service drains on SIGTERM and SIGINT; pass them on and leave when it does.
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, () => service.kill(signal));
service.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
