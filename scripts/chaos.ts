// The chaos test: replicas under load while they are killed, Redis's queues flushed and PostgreSQL
// refusing connections; then the invariants. `npm run test:chaos -- --help` says how.
import { commandLine, usageError as refuse } from '../src/cli.ts';
import { formatChaos, runChaos } from './cluster/chaos.ts';

const USAGE = `usage: npm run test:chaos -- [options]

Starts the fake payment gateway, a webhook receiver and --replicas service processes (src/main.ts,
production settings) on a fresh database (baedal_chaos, dropped and re-created) and queue prefix,
behind a round-robin proxy, and drives the mixed order lifecycle load through the proxy. Every
--every seconds a fault strikes, in turn: kill -9 of a random replica (started again --down seconds
later), PostgreSQL refusing connections for --refuse seconds with the service's backends
terminated, kill -9 again, a flush of the queues' Redis keys. After each fault it measures how
long the side effects owed at that moment (events, refunds, notifications, due timers) took to be done.

After the load it waits until nothing is owed, stops the replicas with SIGTERM and checks: every
command answered 2xx is in the journal exactly once; journals have consecutive seqs; every order is
in a state its history allows; exactly one charge kept per paid order and one refund per other
charge (the gateway's ledger); every view equals a replay of the journal; every notification
delivered; nothing owed. It prints progress while it runs and the figures at the end.

  --seconds <s>      seconds of load with faults                      (default 90)
  --replicas <n>     replicas                                         (default 3)
  --every <s>        seconds between faults                           (default 5)
  --down <s>         seconds a killed replica stays down              (default 2)
  --refuse <s>       seconds PostgreSQL refuses connections           (default 3)
  --concurrency <n>  virtual users of the load                        (default 8)
  --settle <s>       how long the cluster may take to owe nothing after the load (default 90)
  --seed <n>         seed of the lifecycle mix and of the victims     (default 1)
  --json             print the report as JSON too
  --help             this text

Environment: CHAOS_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/baedal_chaos),
CHAOS_REDIS_URL (default redis://127.0.0.1:6379). Exit status: 0 when every check passed, 1 when
one failed, 2 on bad usage.`;

const v = commandLine('chaos', USAGE, {
  seconds: { type: 'string', default: '90' },
  replicas: { type: 'string', default: '3' },
  every: { type: 'string', default: '5' },
  down: { type: 'string', default: '2' },
  refuse: { type: 'string', default: '3' },
  concurrency: { type: 'string', default: '8' },
  settle: { type: 'string', default: '90' },
  seed: { type: 'string', default: '1' },
  json: { type: 'boolean', default: false },
});
const whole = (name: keyof typeof v, min: number): number => {
  const raw = String(v[name]);
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n < min) refuse('chaos', USAGE, `--${name} must be a whole number ≥ ${min}, not "${raw}"`);
  return n;
};

const options = {
  seconds: whole('seconds', 5),
  replicas: whole('replicas', 2),
  everyS: whole('every', 1),
  downS: whole('down', 0),
  refuseS: whole('refuse', 1),
  concurrency: whole('concurrency', 1),
  settleS: whole('settle', 10),
  seed: whole('seed', 0),
};

const report = await runChaos({
  ...options,
  databaseUrl: process.env.CHAOS_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/baedal_chaos',
  redisUrl: process.env.CHAOS_REDIS_URL ?? 'redis://127.0.0.1:6379',
  log: (line) => process.stderr.write(`${line}\n`),
});
console.log(formatChaos(report));
if (v.json) console.log(JSON.stringify({ ...report, load: undefined }));
process.exit(report.ok ? 0 : 1);
