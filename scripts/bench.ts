// The benchmark: the service in processes of its own (1, then 2 behind the load generator's
// round-robin), the fake payment gateway, a webhook receiver for its notifications, and the load
// generator (scripts/load.ts), against a fresh database, at several concurrencies; plus, in the
// same run, the ceilings it sits under.
// `npm run bench -- --help` says how; docs/benchmarks.md has the figures.
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { Redis } from 'ioredis';
import pg from 'pg';
import { readAutoscaling } from '../bench/autoscaler.ts';
import { AutovacuumStandIn } from '../bench/autovacuum.ts';
import { bullmqCeiling, postgresCeiling } from '../bench/ceilings.ts';
import { buildService, extraNodeOptions, SERVICE_ARGS } from '../bench/compiled.ts';
import { CpuLimitError, CpuLimits, parseCores } from '../bench/cpu-limit.ts';
import { cpuSnapshot, cpuUse, rssSlopeMbPer10Min, RunSampler, viewLagFigure, type CpuSnapshot, type Watched } from '../bench/measure.ts';
import { machineCpu, stolenShare } from '../bench/proc.ts';
import { freePort, httpStatus, ProcessGroup, waitUntil, type Managed } from '../bench/processes.ts';
import { ceilingsText, errorsText, resultsTable, roundsText, rssText, runLine, systemLabel, targetsText, type Ceilings, type Round, type RunResult, type System } from '../bench/report.ts';
import { ensureRestateInstalled, restateVersions, startRestate } from '../bench/restate-stack.ts';
import { collectDeliveries, journalEventTimes, uuidV7EventTimes, WebhookReceiver, type EventTimes } from '../bench/webhooks.ts';
import { OtlpSink, withoutOtel } from '../bench/tracing.ts';
import { readTripCounters, tripsPerCommand, type TripCounters } from '../bench/round-trips.ts';
import { describeReplicas, ScalingSampler, scalingFigures, scalingTables } from '../bench/scaling.ts';
import { ROUTES, type Route } from './load/route.ts';
import type { LoadSummary } from './load/runner.ts';
import { signToken } from './load/tokens.ts';
import { commandLine, usageError as refuse } from '../src/cli.ts';
import { deleteKeys, onServer } from './cluster/infra.ts';

const USAGE = `usage: npm run bench -- [options]        (npm run bench:restate = --targets restate)

Builds the service (npm run build) and starts the fake payment gateway, a webhook receiver, the
compiled service (node dist/main.js, production settings; 1 process, then 2; its notifications
delivered to the receiver through NOTIFY_WEBHOOK_URL) and the load generator as separate processes
against a fresh database (baedal_bench, dropped and re-created) and a queue prefix of its own, runs
the mixed lifecycle load at each concurrency, and measures in the same run the ceilings it sits
under: PostgreSQL transactions/s of one command's shape (pg, pool 8), BullMQ jobs/s, and a bare
Node HTTP server under the same load generator. Prints commands/s, latency, CPU per command of the
service, PostgreSQL, Redis, the gateway, the receiver and the load generator, memory, view lag,
whether every notification arrived and their delivery lag, and ratios to the ceilings. Restate
(--targets restate) delivers the same notifications to the same receiver. With several process
counts, the scaling table (per process count: commands/s, p99, service and PostgreSQL CPU per
command, each with its ratio to the fewest processes, view lag, CPU % of the pod's request and the
HPA's decision) and each process's share of the commands and events, and of its CPU off the main
thread (V8's compiler and garbage collector; high while the process still warms up), with the p99
of each event's lag (baedal_event_lag_seconds: from its decision to its batch's commit).

  --targets <list>       baedal, restate, or both (back to back)                 (default baedal)
  --concurrency <list>   virtual users per run                                   (default 1,16,64)
  --rate <n>             commands started a second at most, over all users (per Baedal process
                         with --load per-replica; Restate as one process): a load at a set share of
                         the top rate, e.g. for the view lag below it; give enough users to reach
                         it                                                      (default: no limit)
  --processes <list>     Baedal service processes per run                        (default 1,2)
  --route <how>          how the load generator spreads requests over several processes:
                         round-robin (as a Kubernetes Service), or order (a request about an order
                         to the process its order id hashes to, as an ingress hashing on the order
                         id; see docs/scaling.md)                                 (default round-robin)
  --load <how>           fixed (each --concurrency is the total, however many processes), or
                         per-replica (each --concurrency is per process: n processes get n times
                         the virtual users, as an autoscaler adds replicas as users grow) (default fixed)
  --cpu-per-replica <cores> each Baedal service process in a CPU-quota cgroup of its own, as a
                         pod with limits.cpu: cores (0.25) or millicores (250m); cgroup v1 or v2,
                         whichever the host has; exit 2 when cgroups cannot be written (default: no limit)
  --duration <s>         measured seconds per run                                (default 20)
  --warmup <s>           unmeasured seconds before each run                      (default 3)
  --ceiling-duration <s> measured seconds of each ceiling                        (default 8)
  --no-ceilings          skip the ceilings
  --stores <n>           stores the orders are spread over                       (default 10)
  --restate-partitions <n> partitions of Restate's fresh cluster                 (default: one per core)
  --webhooks <list>      notification delivery: on (the service POSTs every notification to the
                         receiver), off (no NOTIFY_WEBHOOK_URL: recorded and logged only, the
                         figure before webhooks were measured), or on,off (each target run both
                         ways, back to back)                                     (default on)
  --no-webhooks          the same as --webhooks off
  --tracing <list>       OpenTelemetry traces of the Baedal service processes: off (no
                         OTEL_EXPORTER_OTLP_ENDPOINT), on (OTLP to a sink of the benchmark's own,
                         in a process of its own, whose CPU is reported; the benchmark's own
                         OTEL_* variables, e.g. a sampler, reach the traced services), or on,off
                         (each run both ways, back to back, with the cost of tracing) (default off)
  --restate-notifications  Restate also records each status change's notification in a
                         per-customer object, as Baedal's notifications feed does   (default off)
  --rounds <n>           the whole sequence (ceilings, Baedal, Restate) n times, then each
                         target's figure per round and the median, judged on the median; every
                         second round runs the --processes list in reverse order    (default 1)
  --quick                a ~1.5 minute smoke: 4 s runs, 1 s warm-up, 3 s ceilings
  --soak <s>             one long run instead (Baedal, 1 process, concurrency 16) printing memory
                         every 30 s, and table growth at the end
  --out <file>           also write every figure as JSON to <file>
  --cpu-prof <dir>       run the service processes (and Restate's service endpoint) with
                         node --cpu-prof, writing a .cpuprofile per process into <dir> when it stops
  --node-option <opt>    one more node or V8 option for those processes, before the service's own
                         (repeat it for more: --node-option=--trace-gc-nvp); the run says so in its
                         heading, and the processes' logs, where such a probe writes, are kept
  --help                 this text

Environment: BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/baedal_bench; the
database is dropped and re-created), BENCH_REDIS_URL (default redis://127.0.0.1:6379),
BENCH_LOG_LEVEL (the service processes' LOG_LEVEL; default warn). The service's own settings not
set by the benchmark pass through from this environment: NOTIFY_BATCH=1 (notifications POSTed in
arrays, which the receiver counts by their messages' ids) is named in each run's heading.`;

function usageError(message: string): never {
  return refuse('bench', USAGE, message);
}

const v = commandLine('bench', USAGE, {
  targets: { type: 'string', default: 'baedal' },
  concurrency: { type: 'string', default: '1,16,64' },
  rate: { type: 'string' },
  processes: { type: 'string', default: '1,2' },
  route: { type: 'string', default: 'round-robin' },
  load: { type: 'string', default: 'fixed' },
  'cpu-per-replica': { type: 'string' },
  duration: { type: 'string' },
  warmup: { type: 'string' },
  'ceiling-duration': { type: 'string' },
  'no-ceilings': { type: 'boolean', default: false },
  stores: { type: 'string', default: '10' },
  'restate-partitions': { type: 'string' },
  'restate-notifications': { type: 'boolean', default: false },
  webhooks: { type: 'string' },
  'no-webhooks': { type: 'boolean', default: false },
  tracing: { type: 'string', default: 'off' },
  quick: { type: 'boolean', default: false },
  rounds: { type: 'string', default: '1' },
  soak: { type: 'string' },
  out: { type: 'string' },
  'cpu-prof': { type: 'string' },
  'node-option': { type: 'string', multiple: true },
});
const wholeNumber = (name: string, raw: string, min: number): number => {
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n < min) usageError(`--${name} must be a whole number ≥ ${min}, not "${raw}"`);
  return n;
};
const list = (name: string, raw: string) => raw.split(',').map((s) => wholeNumber(name, s.trim(), 1));
const targets = v.targets!.split(',').map((s) => s.trim());
for (const t of targets) if (t !== 'baedal' && t !== 'restate') usageError(`--targets takes baedal and/or restate, not "${t}"`);
const soakS = v.soak === undefined ? undefined : wholeNumber('soak', v.soak, 10);
if (v['no-webhooks'] && v.webhooks !== undefined) usageError('give --webhooks or --no-webhooks, not both');
const webhookModes = (v['no-webhooks'] ? 'off' : (v.webhooks ?? 'on')).split(',').map((s) => {
  const mode = s.trim();
  if (mode !== 'on' && mode !== 'off') usageError(`--webhooks takes on and/or off, not "${mode}"`);
  return mode === 'on';
});
if (new Set(webhookModes).size !== webhookModes.length) usageError('--webhooks names each of on and off once at most');
const tracingModes = v.tracing!.split(',').map((s) => {
  const mode = s.trim();
  if (mode !== 'on' && mode !== 'off') usageError(`--tracing takes on and/or off, not "${mode}"`);
  return mode === 'on';
});
if (new Set(tracingModes).size !== tracingModes.length) usageError('--tracing names each of on and off once at most');
const opts = {
  targets,
  concurrency: list('concurrency', v.concurrency!),
  processes: list('processes', v.processes!),
  route: v.route as Route,
  /** Each concurrency is per service process (n processes get n times the virtual users). */
  perReplica: v.load === 'per-replica',
  /** Commands/s the runs are paced to (Baedal's per process with perReplica), or none. */
  rate: v.rate === undefined ? undefined : wholeNumber('rate', v.rate, 1),
  durationS: wholeNumber('duration', v.duration ?? (v.quick ? '4' : '20'), 1),
  warmupS: wholeNumber('warmup', v.warmup ?? (v.quick ? '1' : '3'), 0),
  ceilingS: wholeNumber('ceiling-duration', v['ceiling-duration'] ?? (v.quick ? '3' : '8'), 1),
  ceilings: !v['no-ceilings'] && soakS === undefined,
  stores: wholeNumber('stores', v.stores!, 1),
  restatePartitions: wholeNumber('restate-partitions', v['restate-partitions'] ?? String(availableParallelism()), 1),
  restateNotifications: v['restate-notifications']!,
  /** Delivery settings to measure, in order: true = webhooks on. */
  webhooks: webhookModes,
  /** Tracing settings of the Baedal runs, in order: true = spans exported to the OTLP sink. */
  tracing: tracingModes,
  rounds: wholeNumber('rounds', v.rounds!, 1),
};
if (soakS !== undefined && opts.rounds > 1) usageError('--soak is one long run; it takes no --rounds');
if (soakS !== undefined && opts.webhooks.length > 1) usageError('--soak is one long run; give --webhooks on or off');
if (soakS !== undefined && opts.tracing.length > 1) usageError('--soak is one long run; give --tracing on or off');
if (!ROUTES.includes(v.route as Route)) usageError(`--route takes ${ROUTES.join(' or ')}, not "${v.route}"`);
if (v.load !== 'fixed' && v.load !== 'per-replica') usageError(`--load takes fixed or per-replica, not "${v.load}"`);
const cpuPerReplica = v['cpu-per-replica'] === undefined ? undefined : parseCores(v['cpu-per-replica']);
if (v['cpu-per-replica'] !== undefined && cpuPerReplica === undefined) usageError(`--cpu-per-replica takes cores (0.25) or millicores (250m; at least 10m), not "${v['cpu-per-replica']}"`);

// The service runs with NODE_ENV=production, which refuses a weak or published secret.
const SECRET = randomBytes(48).toString('base64');
const WEBHOOK_SECRET = randomBytes(32).toString('base64');
const DATABASE_URL = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/baedal_bench';
const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const TAG = randomUUID().slice(0, 8);
const QUEUE_PREFIX = `{baedal-bench-${TAG}}`;
const CEILING_PREFIX = `{baedal-bench-ceiling-${TAG}}`;
const LOG_DIR = mkdtempSync(join(tmpdir(), 'baedal-bench-'));
const probed = extraNodeOptions(v['node-option'] ?? []);
/** The options of `--node-option`, if any (a probe's). */
const PROBES: string[] = 'refused' in probed ? usageError(probed.refused) : probed.options;
/** Node options of the processes under test (profiling, probes), before their own. */
const NODE_ARGS = [...(v['cpu-prof'] ? ['--cpu-prof', '--cpu-prof-dir', resolve(v['cpu-prof'])] : []), ...PROBES];
/** Seconds between the benchmark's VACUUM (ANALYZE) passes when the server's autovacuum is off. */
const VACUUM_EVERY_S = 60;
/** Seconds between the checks of autovacuum's analyze rule when the server's autovacuum is off. */
const ANALYZE_CHECK_S = 2;
/** How often the load generator prints a progress line during a run. */
const PROGRESS_S = soakS === undefined ? 5 : 30;

const say = (line = '') => process.stdout.write(`${line}\n`);
const indent = (text: string, by = '    ') => text.replace(/^/gm, by);
const AUTOSCALING = readAutoscaling();

/** Each service process's CPU limit (a cgroup each); a host that cannot set them stops here, before anything starts. */
const limits = (() => {
  if (cpuPerReplica === undefined) return undefined;
  try {
    return CpuLimits.open(cpuPerReplica, { group: `baedal-bench-${TAG}` });
  } catch (err) {
    if (!(err instanceof CpuLimitError)) throw err;
    console.error(`bench: ${err.message}\n(run it as root on a host with the cpu controller, or without --cpu-per-replica)`);
    rmSync(LOG_DIR, { recursive: true, force: true });
    return process.exit(2);
  }
})();

// ── every way out stops every process ────────────────────────────────────────────────────────
const group = new ProcessGroup(LOG_DIR, (m, how) => {
  void finish(1, `\n${m.name} ${how} during the benchmark. ${m.tail() ? `The last lines of its log (${m.logFile}):\n${indent(m.tail(40))}` : `It wrote nothing (${m.logFile}).`}`);
});
let finishing: Promise<void> | undefined;
let databaseCreated = false;
/** Directories to remove however the benchmark ends (Restate's data). */
const scratchDirs = new Set<string>();
function finish(code: number, message?: string): Promise<void> {
  finishing ??= (async () => {
    if (message) console.error(message);
    await group.stopAll(15_000).catch((err: unknown) => console.error(`stopping the processes: ${String(err)}`));
    for (const left of (await limits?.remove()) ?? []) console.error(`could not remove the cgroup ${left}`);
    await cleanUp().catch((err: unknown) => console.error(`cleaning up: ${String(err)}`));
    for (const dir of scratchDirs) rmSync(dir, { recursive: true, force: true });
    if (code === 0 && PROBES.length === 0) rmSync(LOG_DIR, { recursive: true, force: true });
    else console.error(`the processes' logs are in ${LOG_DIR}`);
    process.exit(code);
  })();
  return finishing;
}
const fail = (err: unknown) => void finish(1, `\nbenchmark failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
process.on('SIGINT', () => void finish(130, '\ninterrupted: stopping every process the benchmark started'));
process.on('SIGTERM', () => void finish(143, '\nterminated: stopping every process the benchmark started'));
process.on('uncaughtException', fail);
process.on('unhandledRejection', fail);
process.on('exit', () => {
  group.killAllNow();
  limits?.removeSync();
});

async function cleanUp(): Promise<void> {
  if (databaseCreated) {
    vacuum.stop();
    await dropDatabase();
  }
  for (const prefix of [QUEUE_PREFIX, CEILING_PREFIX]) await deleteKeys(REDIS_URL, `${prefix}:`);
}

// ── the database ─────────────────────────────────────────────────────────────────────────────
const adminQuery = (sql: string) => onServer(DATABASE_URL, sql);
const DATABASE_NAME = new URL(DATABASE_URL).pathname.slice(1);
if (!/^[a-z0-9_]+$/.test(DATABASE_NAME) || !DATABASE_NAME.includes('bench')) usageError(`BENCH_DATABASE_URL must name a database with "bench" in its name (it is dropped), not "${DATABASE_NAME}"`);
const dropDatabase = () => adminQuery(`DROP DATABASE IF EXISTS "${DATABASE_NAME}" WITH (FORCE)`);
async function recreateDatabase(): Promise<void> {
  await dropDatabase();
  await adminQuery(`CREATE DATABASE "${DATABASE_NAME}"`);
  databaseCreated = true;
}
async function query<T>(sql: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: DATABASE_URL });
  await client.connect();
  try {
    return (await client.query(sql)).rows as T[];
  } finally {
    await client.end();
  }
}

/** Stands in for autovacuum on the benchmark's database where the server has it off (see AutovacuumStandIn). */
const vacuum = new AutovacuumStandIn({ query, say, vacuumEveryS: VACUUM_EVERY_S, analyzeCheckS: ANALYZE_CHECK_S });

async function startVacuum(): Promise<void> {
  const setting = await vacuum.start();
  if (setting === undefined) return;
  say(vacuum.describe(setting, `on ${DATABASE_NAME} before each run of the service`));
}

// ── processes ────────────────────────────────────────────────────────────────────────────────
async function startGateway(): Promise<{ url: string; process: Managed }> {
  const port = await freePort();
  const gateway = group.start('payment-gateway', process.execPath, ['--import', 'tsx', 'scripts/payment-gateway.ts'], {
    env: { ...process.env, PAYMENT_GATEWAY_PORT: String(port), PAYMENT_GATEWAY_HOST: '127.0.0.1' },
  });
  const url = `http://127.0.0.1:${port}`;
  await waitUntil(async () => (await httpStatus(`${url}/_admin/ledger`)) === 200, 'the fake payment gateway', 30_000, gateway);
  return { url, process: gateway };
}

async function startService(n: number, gatewayUrl: string, webhookUrl: string | undefined, sink?: OtlpSink): Promise<{ url: string; process: Managed }> {
  const port = await freePort();
  const name = `service-${n}`;
  const nodeArgs = [...NODE_ARGS, ...SERVICE_ARGS];
  const { command, args } = limits?.wrap(name, process.execPath, nodeArgs) ?? { command: process.execPath, args: nodeArgs };
  const service = group.start(name, command, args, {
    env: {
      // Tracing is on only when asked for: never through an OTEL_* variable of the benchmark's own environment.
      ...withoutOtel(process.env),
      ...sink?.serviceEnv(),
      NODE_ENV: 'production',
      PORT: String(port),
      DATABASE_URL,
      REDIS_URL,
      QUEUE_PREFIX,
      AUTH_SECRET: SECRET,
      PAYMENT_URL: gatewayUrl,
      LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? 'warn',
      RATE_LIMIT_PER_MIN: '0',
      // Every client of a run shares 127.0.0.1: the limits are not what is measured.
      PUBLIC_RATE_LIMIT_PER_MIN: '0',
      // Signed, as production's deliveries are (the receiver takes them as they come).
      ...(webhookUrl && { NOTIFY_WEBHOOK_URL: webhookUrl, NOTIFY_WEBHOOK_SECRET: WEBHOOK_SECRET }),
    },
  });
  const url = `http://127.0.0.1:${port}`;
  await waitUntil(async () => (await httpStatus(`${url}/readyz`)) === 200, `${service.name} to be ready`, 60_000, service);
  limits?.verify(name, service.pid);
  return { url, process: service };
}

/** Waits until the given processes are nearly idle (the previous run's events drained). */
async function settle(processes: readonly Managed[]): Promise<number> {
  const started = performance.now();
  const watched = processes.map((p) => ({ name: p.name, pid: p.pid }));
  let last = cpuSnapshot(watched);
  await waitUntil(
    async () => {
      await new Promise((resolve) => setTimeout(resolve, 400));
      const now = cpuSnapshot(watched);
      const use = cpuUse(last, now);
      last = now;
      return Object.values(use.byName).every((s) => s / use.seconds < 0.1);
    },
    'the service to go idle after the run',
    30_000,
  ).catch(() => say('    (the service did not go idle within 30 s; going on)'));
  return (performance.now() - started) / 1000;
}

interface LoadRun {
  system: System;
  urls: string[];
  /** How the load generator spreads requests over several URLs. */
  route?: Route;
  concurrency: number;
  /** Commands started a second at most (the load generator's --rate). */
  rate?: number;
  durationS: number;
  warmupS: number;
  /** CPU is attributed to these as "service". */
  servers: Managed[];
  /** Memory is tracked for these. */
  memoryOf: Managed[];
  gateway?: Managed;
  /** Where the fake gateway answers GET /_admin/stats (its calls are counted per command). */
  gatewayUrl?: string;
  /** With webhooks on: the receiver the service delivers to, and where the events' times are read. */
  webhooks?: { receiver: WebhookReceiver; eventTimes: EventTimes };
  /** With tracing on: the OTLP sink the service processes export to. */
  tracing?: OtlpSink;
  viewStatusUrls: string[];
  onRss?: (elapsedS: number, mb: Record<string, number>) => void;
  /** Called as the measured window opens and closes. */
  onWindow?: (phase: 'measure' | 'drain') => void;
}

/** Runs the load generator in its own process and measures everything around its measured window. */
async function measure(run: LoadRun): Promise<RunResult> {
  const target = run.system;
  const args = [
    '--import', 'tsx', 'scripts/load.ts',
    '--target', target,
    '--url', run.urls.join(','),
    '--concurrency', String(run.concurrency),
    ...(run.rate ? ['--rate', String(run.rate)] : []),
    '--route', run.route ?? 'round-robin',
    '--duration', String(run.durationS),
    '--warmup', String(run.warmupS),
    '--stores', String(opts.stores),
    '--secret', SECRET,
    '--progress', String(PROGRESS_S),
    '--json', '--quiet',
  ];
  const adminToken = await signToken(SECRET, 'admin', 'bench-admin');
  let watched: Watched[] = [];
  let before: CpuSnapshot | undefined;
  let after: CpuSnapshot | undefined;
  let summary: LoadSummary | undefined;
  let windowFrom = 0;
  let windowTo = 0;
  const sampler = new RunSampler(
    run.memoryOf.map((m) => ({ name: m.name, pid: m.pid })),
    run.viewStatusUrls,
    adminToken,
    run.onRss,
  );
  let sampled: ReturnType<RunSampler['stop']> | undefined;
  // Round trips, counted at the window's edges (Baedal's: Restate uses neither PostgreSQL nor Redis).
  const counting = run.system === 'baedal' ? { databaseUrl: DATABASE_URL, redisUrl: REDIS_URL, gatewayUrl: run.gatewayUrl } : undefined;
  let countersBefore: Promise<TripCounters> | undefined;
  let countersAfter: Promise<TripCounters> | undefined;
  const receiver = run.webhooks?.receiver;
  await receiver?.reset();
  const sink = run.tracing;
  await sink?.reset();
  const loadGenerator = group.start(`load-${target}-c${run.concurrency}`, process.execPath, args, {
    finishes: true,
    onStdoutLine: (line) => {
      if (!line.startsWith('{')) return;
      const msg = JSON.parse(line) as { event?: string } & Partial<LoadSummary>;
      if (msg.event === 'measure') {
        vacuum.measuring = true;
        windowFrom = performance.now();
        before = cpuSnapshot(watched);
        if (counting) countersBefore = readTripCounters(counting);
        sampler.start();
        void receiver?.window('open');
        run.onWindow?.('measure');
      } else if (msg.event === 'drain') {
        vacuum.measuring = false;
        windowTo = performance.now();
        after = cpuSnapshot(watched);
        if (counting) countersAfter = readTripCounters(counting);
        sampled = sampler.stop();
        void receiver?.window('close');
        run.onWindow?.('drain');
      } else if (msg.commandsPerS !== undefined) summary = msg as LoadSummary;
    },
    onStderrLine: (line) => say(`    ${line}`),
  });
  watched = [
    ...run.servers.map((m) => ({ name: `server:${m.name}`, pid: m.pid })),
    ...(run.gateway ? [{ name: 'gateway', pid: run.gateway.pid }] : []),
    ...(receiver ? [{ name: 'receiver', pid: receiver.process.pid }] : []),
    ...(sink ? [{ name: 'otlp sink', pid: sink.process.pid }] : []),
    { name: 'load generator', pid: loadGenerator.pid },
  ];
  const { code } = await loadGenerator.exited;
  if (!summary || !before || !after || !sampled) {
    throw new Error(`the load generator exited (code ${code}) without a summary; its last lines:\n${indent(loadGenerator.tail(30))}`);
  }
  const deliveries = run.webhooks && (await collectDeliveries(run.webhooks.receiver, summary, run.webhooks.eventTimes));
  const maintenance = vacuum.inWindow(windowFrom, windowTo);
  if (maintenance) say(`    (in the measured window, standing in for autovacuum: ${maintenance})`);
  if (deliveries && deliveries.waitedS > 2) say(`    (the last notifications arrived ${deliveries.waitedS.toFixed(1)} s after the load generator finished)`);
  const use = cpuUse(before, after);
  const commands = summary.commands;
  const perCommand = (seconds: number) => (commands ? (seconds * 1000) / commands : NaN);
  /** A per-process figure summed over the service's processes. */
  const ofServers = (byName: Record<string, number>) =>
    Object.entries(byName)
      .filter(([name]) => name.startsWith('server:'))
      .reduce((sum, [, v]) => sum + v, 0);
  const serverSeconds = ofServers(use.byName);
  const serverSleeps = ofServers(use.sleepsByName);
  return {
    system: run.system,
    processes: run.system === 'baedal' ? run.servers.length : 1,
    concurrency: run.concurrency,
    webhooks: run.webhooks !== undefined,
    ...(run.system === 'baedal' && { tracing: sink !== undefined }),
    ...(sink && { exports: await sink.stats() }),
    load: summary,
    cpu: {
      ...use,
      serviceMsPerCommand: perCommand(serverSeconds),
      postgresMsPerCommand: perCommand(use.postgres),
      redisMsPerCommand: perCommand(use.redis),
      gatewayMsPerCommand: perCommand(use.byName.gateway ?? NaN),
      receiverMsPerCommand: perCommand(use.byName.receiver ?? NaN),
      otlpSinkMsPerCommand: perCommand(use.byName['otlp sink'] ?? NaN),
      loadGeneratorMsPerCommand: perCommand(use.byName['load generator'] ?? NaN),
      serviceSleepsPerCommand: commands ? serverSleeps / commands : NaN,
      postgresSleepsPerCommand: commands ? use.postgresSleeps / commands : NaN,
    },
    rss: sampled.rss,
    viewLag: sampled.viewLag,
    ...(deliveries && { deliveries }),
    ...(countersBefore && countersAfter && { roundTrips: tripsPerCommand(await countersBefore, await countersAfter, commands) }),
  };
}

// ── the phases ───────────────────────────────────────────────────────────────────────────────
async function machineHeader(): Promise<Record<string, string | number>> {
  const [row] = await query<{ server_version: string }>('SHOW server_version');
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  const info = await redis.info('server').finally(() => redis.disconnect());
  return {
    date: new Date().toISOString(),
    nproc: availableParallelism(),
    cpu: cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    postgres: row?.server_version ?? 'unknown',
    redis: /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown',
    loadAverageAtStart: loadavg().map((l) => l.toFixed(2)).join(' '),
    stolenSinceBoot: stolenShare(machineCpu()),
  };
}

async function measureCeilings(): Promise<Ceilings> {
  say(`\n── ceilings (${opts.ceilingS} s each, after 1 s of warm-up) ──`);
  const postgres = await postgresCeiling(DATABASE_URL, { seconds: opts.ceilingS, clients: 64, poolSize: 8 });
  say(`  PostgreSQL: ${postgres.perS.toFixed(0)} transactions/s of one command's shape`);
  const bullmq = await bullmqCeiling(REDIS_URL, { seconds: opts.ceilingS, prefix: CEILING_PREFIX });
  say(`  BullMQ: ${bullmq.perS.toFixed(0)} jobs/s added and processed`);
  const port = await freePort();
  const bare = group.start('bare-http', process.execPath, ['--import', 'tsx', 'bench/bare-server.ts'], { env: { ...process.env, PORT: String(port) } });
  const url = `http://127.0.0.1:${port}`;
  await waitUntil(async () => (await httpStatus(`${url}/`)) === 200, 'the bare HTTP server', 30_000, bare);
  say('  bare HTTP server, concurrency 64:');
  const bareHttp = await measure({ system: 'bare', urls: [url], concurrency: 64, durationS: opts.ceilingS, warmupS: 1, servers: [bare], memoryOf: [], viewStatusUrls: [] });
  await bare.stop();
  say(`  bare HTTP: ${bareHttp.load.commandsPerS.toFixed(0)} requests/s`);
  return { postgres, bullmq, bareHttp };
}

/** The run's webhook setting: the receiver and where the events' times come from, or none (webhooks off). */
const webhooksFor = (on: boolean, receiver: WebhookReceiver | undefined, eventTimes: EventTimes) => (on && receiver ? { receiver, eventTimes } : undefined);
const webhooksText = (on: boolean) => (on ? 'webhooks on: every notification POSTed to the receiver' : 'webhooks off: notifications recorded, not delivered');
/** The service's settings reach it from this environment: NOTIFY_BATCH=1 changes what a POST carries, so its runs say so. */
const notifyArraysText = process.env.NOTIFY_BATCH === '1' ? ', in arrays (NOTIFY_BATCH=1 from the environment)' : '';

async function benchBaedal(
  gateway: { url: string; process: Managed },
  receiver: WebhookReceiver | undefined,
  sink: OtlpSink | undefined,
  processes: readonly number[] = opts.processes,
): Promise<RunResult[]> {
  const runs: RunResult[] = [];
  for (const n of processes) {
    // Each process count with webhooks (and tracing) on and off back to back, so their ratio is of the same minutes.
    for (const settings of opts.webhooks.flatMap((on) => opts.tracing.map((traced) => ({ on, traced })))) {
      const { on } = settings;
      const tracing = settings.traced ? sink : undefined;
      const webhooks = webhooksFor(on, receiver, journalEventTimes(DATABASE_URL));
      say(`\n── Baedal, ${n} service process${n > 1 ? `es (the load generator spreads requests over them ${opts.route === 'order' ? 'by order id' : 'round-robin'})` : ''}; ${webhooksText(on)}${on ? notifyArraysText : ''}${tracing ? `; tracing on (${OtlpSink.settings()}), exported by OTLP to the sink` : opts.tracing.includes(true) ? '; tracing off' : ''} ──`);
      const services: { url: string; process: Managed }[] = [];
      // One at a time: the first applies the migrations.
      for (let i = 1; i <= n; i++) services.push(await startService(i, gateway.url, webhooks?.receiver.notifyUrl, tracing));
      for (const perRun of opts.concurrency) {
        const concurrency = opts.perReplica ? perRun * n : perRun;
        const rate = opts.rate === undefined ? undefined : opts.perReplica ? opts.rate * n : opts.rate;
        say(`  concurrency ${concurrency}${opts.perReplica ? ` (${perRun} per process)` : ''}${rate ? `, paced to ${rate} commands/s` : ''}: ${opts.warmupS} s warm-up, ${opts.durationS} s measured`);
        await vacuum.now();
        const sampler = new ScalingSampler(
          services.map((s) => ({ name: s.process.name, url: s.url })),
          limits ? { throttling: (name) => limits.throttling(name) } : {},
        );
        const result = await measure({
          system: 'baedal',
          urls: services.map((s) => s.url),
          route: opts.route,
          concurrency,
          ...(rate && { rate }),
          durationS: opts.durationS,
          warmupS: opts.warmupS,
          servers: services.map((s) => s.process),
          memoryOf: services.map((s) => s.process),
          gateway: gateway.process,
          gatewayUrl: gateway.url,
          webhooks,
          tracing,
          viewStatusUrls: services.map((s) => s.url),
          onWindow: (phase) => (phase === 'measure' ? sampler.open() : sampler.close()),
        });
        result.scaling = scalingFigures({
          concurrency: perRun,
          ...(opts.perReplica && { concurrencyPerReplica: true }),
          variant: `${webhooksText(on).split(':')[0]!}${tracing ? ', tracing on' : ''}${opts.route === 'order' ? ', routed by order id' : ''}${opts.rate ? `, paced to ${opts.rate} commands/s${opts.perReplica ? ' per replica' : ''}` : ''}`,
          ...(cpuPerReplica !== undefined && { cpuPerReplica }),
          load: { commands: result.load.commands, commandsPerS: result.load.commandsPerS, p99Ms: result.load.latencyMs.overall.p99, errors: result.load.errors.total },
          cpu: {
            seconds: result.cpu.seconds,
            replicaSeconds: Object.fromEntries(services.map((s) => [s.process.name, result.cpu.byName[`server:${s.process.name}`] ?? NaN])),
            replicaMainSeconds: Object.fromEntries(services.map((s) => [s.process.name, result.cpu.mainByName[`server:${s.process.name}`] ?? NaN])),
            postgresSeconds: result.cpu.postgres,
            loadGeneratorSeconds: result.cpu.byName['load generator'] ?? NaN,
            host: { busyCores: result.cpu.machineBusyCores, cores: availableParallelism(), stolenCores: result.cpu.machineStolenCores },
          },
          sample: await sampler.result(),
          viewLag: viewLagFigure(result.viewLag),
          autoscaling: AUTOSCALING,
        });
        runs.push(result);
        say(runLine(result));
        if (n > 1 || limits) say(describeReplicas(result.scaling, AUTOSCALING));
        const waited = await settle(services.map((s) => s.process));
        if (waited > 2) say(`    (the service took ${waited.toFixed(1)} s to go idle after the run)`);
      }
      for (const s of services.reverse()) await s.process.stop(30_000);
    }
  }
  return runs;
}

async function benchRestate(gateway: { url: string; process: Managed }, receiver: WebhookReceiver | undefined): Promise<RunResult[]> {
  ensureRestateInstalled(say);
  const versions = restateVersions();
  const runs: RunResult[] = [];
  for (const on of opts.webhooks) {
    const webhooks = webhooksFor(on, receiver, uuidV7EventTimes);
    say(
      `\n── Restate ${versions.server} (SDK ${versions.sdk}): one virtual object per order, same lifecycle; ${opts.restatePartitions} partition${opts.restatePartitions > 1 ? 's' : ''}; ${webhooksText(on)}${opts.restateNotifications ? '; notifications also recorded per customer' : ''} ──`,
    );
    const stack = await startRestate(group, {
      paymentUrl: gateway.url,
      secret: SECRET,
      partitions: opts.restatePartitions,
      notifications: opts.restateNotifications,
      ...(webhooks && { webhookUrl: webhooks.receiver.notifyUrl }),
      nodeArgs: NODE_ARGS,
    });
    scratchDirs.add(stack.dataDir);
    try {
      for (const concurrency of opts.concurrency) {
        say(`  concurrency ${concurrency}${opts.rate ? `, paced to ${opts.rate} commands/s` : ''}: ${opts.warmupS} s warm-up, ${opts.durationS} s measured`);
        const result = await measure({
          system: 'restate',
          urls: [stack.ingressUrl],
          concurrency,
          // Paced as Baedal's one process is, so the two are compared at the same load.
          ...(opts.rate && { rate: opts.rate }),
          durationS: opts.durationS,
          warmupS: opts.warmupS,
          servers: [stack.server, stack.service],
          memoryOf: [stack.server, stack.service],
          gateway: gateway.process,
          gatewayUrl: gateway.url,
          webhooks,
          viewStatusUrls: [],
        });
        runs.push(result);
        say(runLine(result));
        await settle([stack.server, stack.service]);
      }
    } finally {
      await stack.stop();
    }
  }
  return runs;
}

async function soak(gateway: { url: string; process: Managed }, receiver: WebhookReceiver | undefined, sink: OtlpSink | undefined, seconds: number): Promise<{ result: RunResult; tables: TableGrowth[] }> {
  const webhooks = webhooksFor(opts.webhooks[0]!, receiver, journalEventTimes(DATABASE_URL));
  const tracing = opts.tracing[0] ? sink : undefined;
  say(`\n── soak: Baedal, 1 process, concurrency 16, ${seconds} s measured; memory every 30 s; ${webhooksText(webhooks !== undefined)}${tracing ? '; tracing on' : ''} ──`);
  const service = await startService(1, gateway.url, webhooks?.receiver.notifyUrl, tracing);
  let before: ReturnType<typeof tableStats> | undefined;
  let after: ReturnType<typeof tableStats> | undefined;
  let nextPrint = 0;
  const result = await measure({
    system: 'baedal',
    urls: [service.url],
    concurrency: 16,
    durationS: seconds,
    warmupS: 5,
    servers: [service.process],
    memoryOf: [service.process],
    gateway: gateway.process,
    gatewayUrl: gateway.url,
    webhooks,
    tracing,
    viewStatusUrls: [service.url],
    onRss: (elapsed, mb) => {
      if (elapsed + 0.5 < nextPrint) return;
      nextPrint += 30;
      say(`  [${elapsed.toFixed(0).padStart(5)} s] RSS ${Object.entries(mb).map(([name, v]) => `${name} ${v.toFixed(1)} MB`).join(', ')}`);
    },
    onWindow: (phase) => {
      if (phase === 'measure') before = tableStats();
      else after = tableStats();
    },
  });
  await service.process.stop(30_000);
  if (!before || !after) throw new Error('the measured window never opened or closed');
  const [first, last] = [await before, await after];
  const tables = [...last].map(([table, a]) => {
    const b = first.get(table) ?? { inserted: 0, deleted: 0, live: 0, bytes: 0 };
    return { table, inserted: a.inserted - b.inserted, deleted: a.deleted - b.deleted, live: a.live, bytes: a.bytes };
  });
  return { result, tables };
}

interface TableGrowth {
  table: string;
  inserted: number;
  deleted: number;
  live: number;
  bytes: number;
}

async function tableStats(): Promise<Map<string, { inserted: number; deleted: number; live: number; bytes: number }>> {
  const rows = await query<{ table: string; inserted: string; deleted: string; live: string; bytes: string }>(
    `SELECT relname AS table, n_tup_ins AS inserted, n_tup_del AS deleted, n_live_tup AS live, pg_total_relation_size(relid) AS bytes FROM pg_stat_user_tables`,
  );
  return new Map(rows.map((r) => [r.table, { inserted: Number(r.inserted), deleted: Number(r.deleted), live: Number(r.live), bytes: Number(r.bytes) }]));
}

async function main(): Promise<void> {
  const started = performance.now();
  await recreateDatabase();
  const machine = await machineHeader();
  say(`Baedal benchmark — ${machine.date}; ${machine.nproc} cores (${machine.cpu}), ${machine.memoryGiB} GiB, Node ${machine.node}, PostgreSQL ${machine.postgres}, Redis ${machine.redis}`);
  say(`load average at the start: ${machine.loadAverageAtStart} (anything above 0 is other work on this machine); logs in ${LOG_DIR} (kept if the run fails)`);
  say(`CPU time the hypervisor took from this machine since it booted (steal): ${((machine.stolenSinceBoot as number) * 100).toFixed(1)} %; each run's share is in its "stolen" column`);
  say(`building the service (npm run build) … ${(await buildService()).seconds.toFixed(1)} s; each service process runs node ${SERVICE_ARGS.slice(0, -1).join(' ')} dist/main.js`);
  if (PROBES.length > 0) say(`with more node options (--node-option): ${PROBES.join(' ')}: figures taken with a probe are not production's; the logs are kept in ${LOG_DIR}`);
  if (limits) say(`CPU limit: ${limits.describe()}; the ceilings, Restate, the gateway and the load generator run without one`);
  const gateway = await startGateway();
  // One receiver for every run, Baedal's and Restate's alike.
  const receiver = opts.webhooks.includes(true) ? await WebhookReceiver.start(group) : undefined;
  const sink = opts.tracing.includes(true) && opts.targets.includes('baedal') ? await OtlpSink.start(group) : undefined;
  await startVacuum();

  if (soakS !== undefined) {
    const { result, tables } = await soak(gateway, receiver, sink, soakS);
    if (vacuum.enabled) say(`\n${vacuum.passes} VACUUM (ANALYZE) passes, ${vacuum.vacuums} tables vacuumed by autovacuum's rule and ${vacuum.analyses} analyzed by it during the soak`);
    say(`\n${resultsTable([result])}`);
    say('\nmemory over the run:');
    say(rssText(result.rss, rssSlopeMbPer10Min));
    say(`\ntable growth over the measured window (${result.load.commands} commands; PostgreSQL's statistics, approximate):`);
    say('  table                          inserted   deleted  per 1,000 commands   live rows   size MB');
    for (const t of tables.sort((a, b) => b.inserted - a.inserted)) {
      say(`  ${t.table.padEnd(28)} ${String(t.inserted).padStart(10)} ${String(t.deleted).padStart(9)} ${(((t.inserted - t.deleted) * 1000) / Math.max(1, result.load.commands)).toFixed(1).padStart(19)} ${String(t.live).padStart(11)} ${(t.bytes / 2 ** 20).toFixed(1).padStart(9)}`);
    }
    if (v.out) writeFileSync(v.out, `${JSON.stringify({ machine, soak: result, tables }, null, 2)}\n`);
    if (reportLostNotifications([result])) process.exitCode = 1;
    return;
  }

  const rounds: Round[] = [];
  for (let k = 1; k <= opts.rounds; k++) {
    const of = opts.rounds > 1 ? ` — round ${k} of ${opts.rounds}` : '';
    if (of) say(`\n════ round ${k} of ${opts.rounds} ════`);
    const ceilings = opts.ceilings ? await measureCeilings() : {};
    const runs: RunResult[] = [];
    // Every other round runs the process counts the other way round: this host's speed drifts by a
    // third within minutes, and a round that always went 1, 2, 3, 4 would hand the drift to the ratios.
    const processes = k % 2 === 0 ? [...opts.processes].reverse() : opts.processes;
    if (opts.targets.includes('baedal')) runs.push(...(await benchBaedal(gateway, receiver, sink, processes)));
    if (opts.targets.includes('restate')) runs.push(...(await benchRestate(gateway, receiver)));
    rounds.push({ runs, ceilings });

    say(`\n══ results${of} (${opts.durationS} s measured per run after ${opts.warmupS} s of warm-up; ${opts.stores} stores; 85 % full lifecycles, 10 % cancelled after pay, 5 % rejected) ══\n`);
    say(resultsTable(runs));
    say('\nceilings, measured in this run:');
    say(ceilingsText(ceilings));
    const scaling = runs.flatMap((r) => (r.scaling ? [r.scaling] : []));
    if (new Set(scaling.map((s) => s.replicas)).size > 1 || (limits && scaling.length)) {
      say(`\nscaling${of}, ${opts.durationS} s measured per run:`);
      say(indent(scalingTables([scaling]), '  '));
    }
    if (runs.some((r) => r.system === 'baedal')) {
      say(`\ntargets${of}:`);
      say(targetsText(runs, ceilings));
    }
  }
  if (rounds.length > 1 && rounds.some((r) => r.runs.some((x) => x.system === 'baedal'))) {
    say(`\n══ over the ${rounds.length} rounds: each round's figure, and the median the targets are judged on ══\n`);
    say(roundsText(rounds));
    const scaling = rounds.map((r) => r.runs.flatMap((x) => (x.scaling ? [x.scaling] : [])));
    if (scaling.some((s) => s.length > 0)) {
      say('\nscaling, each figure the median over the rounds (ratios: each round\'s, then their median):');
      say(indent(scalingTables(scaling), '  '));
    }
  }
  const runs = rounds.flatMap((r) => r.runs);
  const wrong = runs.filter((r) => r.load.verify && r.load.verify.mismatches > 0);
  const errors = runs.filter((r) => r.load.errors.total > 0);
  for (const r of errors) say(`\n${systemLabel(r)} at concurrency ${r.concurrency} had ${errorsText(r.load.errors.total, r.load.errors.byKind)}`);
  say(`\nfinished in ${((performance.now() - started) / 1000).toFixed(0)} s; load average now ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  if (v.out) {
    // One round keeps the shape of earlier results files; several add them all under `rounds`.
    const figures = rounds.length === 1 ? { ceilings: rounds[0]!.ceilings, runs } : { rounds };
    writeFileSync(v.out, `${JSON.stringify({ machine, options: opts, ...figures }, null, 2)}\n`);
    say(`every figure written to ${v.out}`);
  }
  if (wrong.length) {
    for (const r of wrong) console.error(`${systemLabel(r)} at concurrency ${r.concurrency}: ${r.load.verify!.mismatches} lifecycles ended in the wrong state, e.g. ${JSON.stringify(r.load.verify!.examples.slice(0, 3))}`);
    process.exitCode = 1;
  }
  if (reportLostNotifications(runs)) process.exitCode = 1;
}

/** Runs whose notifications did not all reach the receiver, on stderr; true if there were any. */
function reportLostNotifications(runs: readonly RunResult[]): boolean {
  const lost = runs.filter((r) => r.deliveries && !r.deliveries.complete);
  for (const r of lost) {
    const d = r.deliveries!;
    console.error(`${systemLabel(r)} at concurrency ${r.concurrency}: ${d.expected - d.distinct} of the ${d.expected} notifications its commands owe never reached the webhook receiver (waited ${d.waitedS.toFixed(0)} s)`);
  }
  return lost.length > 0;
}

main().then(() => finish(Number(process.exitCode ?? 0)), fail);
