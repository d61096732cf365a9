// The scaling demo: 1, then 2, then 3 replicas behind a proxy that plays the ingress, under a load
// that grows with them, each replica limited to a pod's CPU (0.25 core by default), with what each
// replica added and what the Kubernetes autoscaler would decide at each step. `npm run demo:scale -- --help` says how.
import { randomUUID } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { availableParallelism } from 'node:os';
import { readAutoscaling } from '../bench/autoscaler.ts';
import { AutovacuumStandIn } from '../bench/autovacuum.ts';
import { buildService, SERVICE_ARGS } from '../bench/compiled.ts';
import { CpuLimitError, CpuLimits, parseCores } from '../bench/cpu-limit.ts';
import { cpuSnapshot, cpuUse, RunSampler, viewLagFigure, type CpuSnapshot, type ViewLag } from '../bench/measure.ts';
import { errorsText } from '../bench/report.ts';
import { describeReplicas, ScalingSampler, scalingFigures, scalingRows, scalingTable, type ScalingFigures } from '../bench/scaling.ts';
import { commandLine, usageError as refuse } from '../src/cli.ts';
import { Cluster } from './cluster/cluster.ts';
import { checkInvariants, nothingOwed, owedNow } from './cluster/invariants.ts';
import { ROUTES, type Route } from './load/route.ts';
import type { LoadSummary } from './load/runner.ts';
import { signToken } from './load/tokens.ts';

const USAGE = `usage: npm run demo:scale -- [options]

Builds the service (npm run build) and starts the fake payment gateway, a webhook receiver and a
proxy that plays the ingress, then the compiled service (node dist/main.js, production settings) as 1, then 2,
then 3 replica processes on one fresh database (baedal_demo, dropped and re-created) and queue
prefix, each replica in a CPU-quota cgroup of its own as a Kubernetes pod with limits.cpu is
(cgroup v1 cpu.cfs_quota_us or v2 cpu.max, whichever the host has; removed at the end). At each
step the load generator, in a process of its own, drives the mixed lifecycle load through the
proxy: by default --concurrency virtual users per replica (the users grow, the autoscaler adds
replicas), each order's requests routed to the replica its order id hashes to (as the ingress of
docs/scaling.md does). For each replica count it prints commands/s and their ratio to the first step, p99, CPU per
command of the replicas (all together) and of PostgreSQL with their ratios to the first step, that
of the load generator as a control (its work per command is the same at every step, so its ratio
moves with the host's speed, not with the replicas), each
replica's share of the commands and of the events applied (per partition, when the replicas report
baedal_events_applied_total{partition}; else of baedal_events_delivered_total), the partitions each
owns, its CPU, the share of it off the main thread (V8 compiling and collecting garbage on its
helper threads: high while the replica still warms up) and how often its quota throttled it, the view lag p99 (GET /views/_status of every
replica every 250 ms, as the benchmark reads it: over the distinct measures, a replica answering
its measure for up to a second; a 20 s step's p99 is its highest), the p99 of each event's lag
(baedal_event_lag_seconds of every replica over the step, from the events' decisions to their
batches' commits), the event backlog, and the decision the autoscaler of k8s/hpa.yaml and
k8s/keda would take from those figures: desired = ceil(current × metric ÷ target), the larger of
the CPU and backlog proposals, within minReplicas..maxReplicas. At the end it waits until nothing
is owed, stops the replicas and checks the invariants (the same as npm run test:chaos).

  --steps <list>            replica counts, in order                         (default 1,2,3)
  --duration <s>            measured seconds per step                        (default 20)
  --warmup <s>              unmeasured seconds before each step              (default 40: at 0.25 core a replica's JIT warm-up takes that long)
  --concurrency <n>         virtual users, per replica with --load per-replica (default 32)
  --load <how>              per-replica (n replicas, n × --concurrency users) or fixed (the same
                            --concurrency users at every step)               (default per-replica)
  --route <how>             how the proxy spreads requests: order (by the order id in the path, as an
                            ingress hashing on it; placing an order goes round-robin) or round-robin
                            (each request to the next replica, as a bare Kubernetes Service) (default order)
  --cpu-per-replica <cores> each replica's CPU limit, in cores (0.25) or millicores (250m),
                            or "none" for no limit                           (default 0.25)
  --json                    print every figure as JSON at the end too
  --help                    this text

Environment: DEMO_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/baedal_demo),
DEMO_REDIS_URL (default redis://127.0.0.1:6379). Exit status 0 when the invariants held, 1 if not,
2 for bad usage or when the CPU limits cannot be set (cgroups not writable: not root, no cpu
controller); the demo never runs the replicas without the limit it was asked for.`;

const v = commandLine('demo:scale', USAGE, {
  steps: { type: 'string', default: '1,2,3' },
  duration: { type: 'string', default: '20' },
  warmup: { type: 'string', default: '40' },
  concurrency: { type: 'string', default: '32' },
  load: { type: 'string', default: 'per-replica' },
  route: { type: 'string', default: 'order' },
  'cpu-per-replica': { type: 'string', default: '0.25' },
  json: { type: 'boolean', default: false },
});
const whole = (name: string, raw: string, min: number): number => {
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n < min) refuse('demo:scale', USAGE, `--${name} must be a whole number ≥ ${min}, not "${raw}"`);
  return n;
};
const steps = v.steps!.split(',').map((s) => whole('steps', s.trim(), 1));
for (let i = 1; i < steps.length; i += 1) if (steps[i]! <= steps[i - 1]!) refuse('demo:scale', USAGE, '--steps must grow (replicas are added, never removed)');
const durationS = whole('duration', v.duration!, 1);
const warmupS = whole('warmup', v.warmup!, 0);
const concurrency = whole('concurrency', v.concurrency!, 1);
if (v.load !== 'per-replica' && v.load !== 'fixed') refuse('demo:scale', USAGE, `--load takes per-replica or fixed, not "${v.load}"`);
const perReplica = v.load === 'per-replica';
if (!ROUTES.includes(v.route as Route)) refuse('demo:scale', USAGE, `--route takes ${ROUTES.join(' or ')}, not "${v.route}"`);
const route = v.route as Route;
/** Virtual users at a step of `replicas`. */
const usersAt = (replicas: number) => (perReplica ? concurrency * replicas : concurrency);
const cpuArg = v['cpu-per-replica']!;
const cores = cpuArg === 'none' ? undefined : parseCores(cpuArg);
if (cpuArg !== 'none' && cores === undefined) refuse('demo:scale', USAGE, `--cpu-per-replica takes cores (0.25), millicores (250m; at least 10m) or "none", not "${cpuArg}"`);

const AUTOSCALING = readAutoscaling();
const say = (line = '') => process.stdout.write(`${line}\n`);

// ── the limits first: a host that cannot set them stops here, before anything has started ────
let limits: CpuLimits | undefined;
if (cores !== undefined) {
  try {
    limits = CpuLimits.open(cores, { group: `baedal-demo-${randomUUID().slice(0, 8)}` });
  } catch (err) {
    if (!(err instanceof CpuLimitError)) throw err;
    console.error(`demo:scale: ${err.message}\n(run it as root on a host with the cpu controller, or with --cpu-per-replica none to run the replicas without a limit)`);
    process.exit(2);
  }
}

const cluster = new Cluster({
  databaseUrl: process.env.DEMO_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/baedal_demo',
  redisUrl: process.env.DEMO_REDIS_URL ?? 'redis://127.0.0.1:6379',
  serviceArgs: [...SERVICE_ARGS],
  ...(limits && { cpuLimits: limits }),
  onCrash: (name, how, tail) => {
    console.error(`\n${name} ${how} during the demo; its last lines:\n${tail}`);
    void shutdown(1, true);
  },
});

/** Stands in for autovacuum on the demo's database where the server has it off (see AutovacuumStandIn). */
const vacuum = new AutovacuumStandIn({ query: async <T>(sql: string) => (await cluster.db.query(sql)).rows as T[], say });

/** Every way out: the processes stopped, the database dropped, the cgroups removed. */
let shuttingDown: Promise<never> | undefined;
function shutdown(code: number, keepLogs = false): Promise<never> {
  shuttingDown ??= (async () => {
    vacuum.stop();
    await cluster.stop(keepLogs).catch((err: unknown) => console.error(`stopping the cluster: ${String(err)}`));
    const left = (await limits?.remove()) ?? [];
    for (const l of left) console.error(`could not remove the cgroup ${l}`);
    if (keepLogs) console.error(`the processes' logs are in ${cluster.logDir}`);
    process.exit(code);
  })();
  return shuttingDown;
}
process.on('exit', () => {
  cluster.killAllNow();
  limits?.removeSync();
});
process.on('SIGINT', () => {
  say('\ninterrupted: stopping the replicas, dropping the database, removing the cgroups');
  void shutdown(130);
});
process.on('SIGTERM', () => void shutdown(143));

/** One step's figures; `maintenance` is what stood in for autovacuum inside its measured window (empty: nothing). */
type StepResult = ScalingFigures & { p50Ms: number; maintenance: string; errorsByKind: Record<string, number> };

async function runStep(replicas: number, n: number): Promise<StepResult> {
  const names = [...cluster.replicas.keys()];
  const loadName = `load-${replicas}`;
  const sampler = new ScalingSampler(
    names.map((name) => ({ name, url: cluster.replicas.get(name)!.url })),
    { everyMs: 1000, ...(limits && { throttling: (name: string) => limits!.throttling(name) }) },
  );
  // The view lag as the benchmark reads it: GET /views/_status of every replica every 250 ms, each
  // distinct measure once (a replica answers its measure for up to a second).
  const lagSampler = new RunSampler([], names.map((name) => cluster.replicas.get(name)!.url), await signToken(cluster.secret, 'admin', 'demo-admin'));
  let opened: CpuSnapshot | undefined;
  let closed: CpuSnapshot | undefined;
  let windowFrom = 0;
  let windowTo = 0;
  let summary: LoadSummary | undefined;
  let lagged: ViewLag | undefined;

  const load = cluster.run(
    loadName,
    'scripts/load.ts',
    ['--url', cluster.url, '--secret', cluster.secret, '--concurrency', String(usersAt(replicas)), '--duration', String(durationS), '--warmup', String(warmupS), '--progress', '5', '--run-id', `demo-${cluster.tag}-${n}`, '--json', '--quiet'],
    {
      onStdoutLine: (line) => {
        let doc: { event?: string } & LoadSummary;
        try {
          doc = JSON.parse(line);
        } catch {
          return say(`    ${line}`);
        }
        if (doc.event === 'measure') {
          vacuum.measuring = true;
          windowFrom = performance.now();
          opened = cpuSnapshot(watched);
          sampler.open();
          lagSampler.start();
        } else if (doc.event === 'drain') {
          vacuum.measuring = false;
          windowTo = performance.now();
          closed = cpuSnapshot(watched);
          sampler.close();
          lagged = lagSampler.stop().viewLag;
        } else if (doc.event === undefined) summary = doc;
      },
      onStderrLine: (line) => say(`    ${line}`),
    },
  );
  // The replicas, and the load generator as a control: its work per command is the same at every
  // step, so its CPU per command moves with the host's speed, not with the replicas.
  const watched = [...names.map((name) => ({ name, pid: cluster.replicas.get(name)!.process.pid })), { name: loadName, pid: load.pid }];
  const exit = await load.exited;
  if (exit.code !== 0 || !summary || !opened || !closed) throw new Error(`the load generator failed (exit ${exit.code}):\n${load.tail(20)}`);
  const cpu = cpuUse(opened, closed);
  const figures = scalingFigures({
    concurrency,
    ...(perReplica && { concurrencyPerReplica: true }),
    ...(cores !== undefined && { cpuPerReplica: cores }),
    load: { commands: summary.commands, commandsPerS: summary.commandsPerS, p99Ms: summary.latencyMs.overall.p99, errors: summary.errors.total },
    cpu: {
      seconds: cpu.seconds,
      replicaSeconds: Object.fromEntries(names.map((name) => [name, cpu.byName[name] ?? Number.NaN])),
      replicaMainSeconds: Object.fromEntries(names.map((name) => [name, cpu.mainByName[name] ?? Number.NaN])),
      postgresSeconds: cpu.postgres,
      loadGeneratorSeconds: cpu.byName[loadName] ?? Number.NaN,
      host: { busyCores: cpu.machineBusyCores, cores: availableParallelism(), stolenCores: cpu.machineStolenCores },
    },
    sample: await sampler.result(),
    viewLag: lagged && viewLagFigure(lagged),
    autoscaling: AUTOSCALING,
  });
  return { ...figures, p50Ms: summary.latencyMs.overall.p50, maintenance: vacuum.inWindow(windowFrom, windowTo), errorsByKind: summary.errors.byKind };
}

const f = (x: number, digits: number) => (Number.isFinite(x) ? x.toFixed(digits) : '-');

try {
  say(`demo:scale — ${steps.join(' → ')} replicas, ${perReplica ? `${concurrency} virtual users per replica (${steps.map(usersAt).join(' → ')})` : `${concurrency} virtual users at every step`}, ${warmupS} s warm-up + ${durationS} s measured per step`);
  say(`routing: ${route === 'order' ? "each order's requests to the replica its order id hashes to, as an ingress hashing on the order id (docs/scaling.md); placing an order round-robin" : 'round-robin, each request to the next replica'}`);
  say(`CPU limit: ${limits ? limits.describe() : 'none (--cpu-per-replica none): every replica may use every core'}`);
  say(`autoscaler (k8s/hpa.yaml, k8s/keda): CPU ${AUTOSCALING.cpuTargetPercent} % of a ${AUTOSCALING.cpuRequestCores * 1000}m request, backlog ${AUTOSCALING.backlogTarget} jobs per replica (${AUTOSCALING.backlogQuery}), ${AUTOSCALING.min}..${AUTOSCALING.max} replicas`);
  say(`building the service (npm run build) … ${(await buildService()).seconds.toFixed(1)} s; the replicas run node ${SERVICE_ARGS.slice(0, -1).join(' ')} dist/main.js`);
  await cluster.start();
  cluster.proxy.route = route;
  // Without autovacuum (some development hosts turn it off) the tables bloat and the service's
  // cached plans stay those of empty tables, and each step would be slower for that alone: the
  // first step most, whose tables are empty when it starts.
  const autovacuum = await vacuum.start();
  if (autovacuum !== undefined) say(vacuum.describe(autovacuum, 'before each step'));
  const results: StepResult[] = [];
  for (const [n, replicas] of steps.entries()) {
    while (cluster.replicas.size < replicas) {
      const r = await cluster.startReplica(`replica-${cluster.replicas.size + 1}`);
      say(`  ${r.name} ready (pid ${r.process.pid}${limits ? `, in ${limits.path(r.name)}` : ''})`);
    }
    await vacuum.now();
    say(`\nstep ${n + 1}: ${replicas} replica${replicas > 1 ? 's' : ''} behind ${cluster.url}, ${usersAt(replicas)} virtual users`);
    const r = await runStep(replicas, n);
    results.push(r);
    const base = results[0]!;
    say(
      `  ${r.replicas} replica${r.replicas > 1 ? 's' : ''}: ${f(r.commandsPerS, 0)} commands/s (×${f(r.commandsPerS / base.commandsPerS, 2)} of ${base.replicas}), p50 ${f(r.p50Ms, 1)} ms, p99 ${f(r.p99Ms, 1)} ms, ${errorsText(r.errors, r.errorsByKind)}; ` +
        `CPU ms per command: service ${f(r.serviceMsPerCommand, 2)} (×${f(r.serviceMsPerCommand / base.serviceMsPerCommand, 2)}), PostgreSQL ${f(r.postgresMsPerCommand, 2)} (×${f(r.postgresMsPerCommand / base.postgresMsPerCommand, 2)})`,
    );
    if (r.maintenance) say(`    (in the measured window, standing in for autovacuum: ${r.maintenance})`);
    say(describeReplicas(r, AUTOSCALING));
    // The next step starts from a cluster that owes nothing.
    const deadline = Date.now() + 60_000;
    while (!nothingOwed(await owedNow(cluster.db)) && Date.now() < deadline) await delay(250);
  }

  say(`\nsummary (ratios to ${results[0]!.replicas} replica${results[0]!.replicas > 1 ? 's' : ''}; CPU per command of all replicas together)`);
  say(scalingTable(scalingRows(results)));

  say('\nchecking the invariants once nothing is owed…');
  const deadline = Date.now() + 120_000;
  let owed = await owedNow(cluster.db);
  while (!nothingOwed(owed) && Date.now() < deadline) {
    await delay(250);
    owed = await owedNow(cluster.db);
  }
  for (const name of [...cluster.replicas.keys()]) await cluster.kill(name, 'SIGTERM');
  const report = await checkInvariants(cluster.db, await cluster.ledger(), [], cluster.webhook.received);
  const fig = report.figures;
  say(
    report.ok
      ? `  held: ${fig.orders} orders, ${fig.journalEvents} journal events with consecutive seqs and allowed histories, ${fig.charges} charges and ${fig.refunds} refunds as the orders' ends require, views = replay, ${fig.notifications} notifications delivered`
      : `  VIOLATED:\n${report.failures.map((x) => `    - ${x}`).join('\n')}`,
  );
  if (v.json) say(JSON.stringify({ autoscaling: AUTOSCALING, cpuPerReplica: cores ?? null, load: v.load, route, steps: results, invariants: report }));
  await shutdown(report.ok ? 0 : 1, !report.ok);
} catch (err) {
  // Once shutting down (Ctrl-C, a crash), what fails meanwhile is its consequence, not news.
  if (!shuttingDown) console.error(`demo:scale failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  await shutdown(err instanceof CpuLimitError ? 2 : 1, true);
}
