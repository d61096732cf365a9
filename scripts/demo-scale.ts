// The scaling demo: 1, then 2, then 3 replicas behind a round-robin proxy under the same load, with
// what the Kubernetes autoscaler would decide at each step. `npm run demo:scale -- --help` says how.
import { readFileSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import { parseAllDocuments } from 'yaml';
import { cpuSnapshot, cpuUse } from '../bench/measure.ts';
import { commandLine, usageError as refuse } from '../src/cli.ts';
import { Cluster } from './cluster/cluster.ts';
import { checkInvariants, nothingOwed, owedNow } from './cluster/invariants.ts';
import type { LoadSummary } from './load/runner.ts';

const USAGE = `usage: npm run demo:scale -- [options]

Starts the fake payment gateway, a webhook receiver and a round-robin proxy, then the service
(src/main.ts, production settings) as 1, then 2, then 3 replica processes on one fresh database
(baedal_demo, dropped and re-created) and queue prefix. At each step the load generator, in a
process of its own, drives the same mixed lifecycle load through the proxy. For each replica count
it prints commands/s, p99, each replica's share of the commands and of the events consumed, its
CPU, the event backlog, and the decision the autoscaler of k8s/hpa.yaml and k8s/keda would take
from those figures: desired = ceil(current × metric ÷ target), the larger of the CPU and backlog
proposals, within minReplicas..maxReplicas. At the end it waits until nothing is owed, stops the
replicas and checks the invariants (the same as npm run test:chaos).

  --steps <list>       replica counts, in order                         (default 1,2,3)
  --duration <s>       measured seconds per step                        (default 20)
  --warmup <s>         unmeasured seconds before each step              (default 3)
  --concurrency <n>    virtual users of the load                        (default 16)
  --json               print every figure as JSON at the end too
  --help               this text

Environment: DEMO_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/baedal_demo),
DEMO_REDIS_URL (default redis://127.0.0.1:6379). Exit status 0 when the invariants held, 1 if not.`;

const v = commandLine('demo:scale', USAGE, {
  steps: { type: 'string', default: '1,2,3' },
  duration: { type: 'string', default: '20' },
  warmup: { type: 'string', default: '3' },
  concurrency: { type: 'string', default: '16' },
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

// ── the autoscaler's settings, read from the manifests it runs with ──────────────────────────
interface Autoscaling {
  min: number;
  max: number;
  cpuTargetPercent: number;
  cpuRequestCores: number;
  backlogTarget: number;
  backlogQuery: string;
}
function readAutoscaling(): Autoscaling {
  const docs = (file: string) => parseAllDocuments(readFileSync(file, 'utf8')).map((d) => d.toJS() as any);
  const hpa = docs('k8s/hpa.yaml').find((d) => d?.kind === 'HorizontalPodAutoscaler');
  const deployment = docs('k8s/deployment.yaml').find((d) => d?.kind === 'Deployment');
  const scaled = docs('k8s/keda/scaledobject.yaml').find((d) => d?.kind === 'ScaledObject');
  const container = deployment.spec.template.spec.containers.find((c: any) => c.name === 'baedal');
  const cpu = String(container.resources.requests.cpu);
  const prometheus = scaled.spec.triggers.find((t: any) => t.type === 'prometheus');
  return {
    min: hpa.spec.minReplicas,
    max: hpa.spec.maxReplicas,
    cpuTargetPercent: hpa.spec.metrics.find((m: any) => m.type === 'Resource').resource.target.averageUtilization,
    cpuRequestCores: cpu.endsWith('m') ? Number(cpu.slice(0, -1)) / 1000 : Number(cpu),
    backlogTarget: Number(prometheus.metadata.threshold),
    backlogQuery: prometheus.metadata.query,
  };
}
const AUTOSCALING = readAutoscaling();
/** The HPA does nothing while the ratio of metric to target is within 10 % of 1. */
const TOLERANCE = 0.1;

/** The HPA's rule for one metric: ceil(current × metric ÷ target), unless within the tolerance. */
function proposal(current: number, metric: number, target: number): number {
  const ratio = metric / target;
  return Math.abs(ratio - 1) <= TOLERANCE ? current : Math.ceil(current * ratio);
}

// ── metrics of one replica ───────────────────────────────────────────────────────────────────
/** Sum of the samples of `name` in a Prometheus text exposition (those matching `labels`, if given). */
function sample(text: string, name: string, labels?: string): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name) || (line[name.length] !== ' ' && line[name.length] !== '{')) continue;
    if (labels && !line.includes(labels)) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}
/** The KEDA query `sum(max by (queue) (baedal_queue_backlog))` over the replicas' scrapes. */
function backlogOf(scrapes: readonly string[]): number {
  const byQueue = new Map<string, number>();
  for (const text of scrapes) {
    for (const m of text.matchAll(/^baedal_queue_backlog\{queue="([^"]+)"\} ([0-9.e+-]+)$/gm)) {
      byQueue.set(m[1]!, Math.max(byQueue.get(m[1]!) ?? 0, Number(m[2])));
    }
  }
  return [...byQueue.values()].reduce((a, b) => a + b, 0);
}

interface StepResult {
  replicas: number;
  commandsPerS: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  /** Per replica: share of the commands answered 2xx, of the events consumed, and CPU cores used. */
  perReplica: { name: string; commandShare: number; eventShare: number; cpuCores: number }[];
  cpuPercentOfRequest: number;
  backlogAvg: number;
  backlogMax: number;
  hpa: { cpuProposal: number; backlogProposal: number; desired: number };
}

const say = (line = '') => process.stdout.write(`${line}\n`);
const pct = (x: number) => `${(x * 100).toFixed(0)} %`;

const cluster = new Cluster({
  databaseUrl: process.env.DEMO_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/baedal_demo',
  redisUrl: process.env.DEMO_REDIS_URL ?? 'redis://127.0.0.1:6379',
  onCrash: (name, how, tail) => {
    console.error(`\n${name} ${how} during the demo; its last lines:\n${tail}`);
    void cluster.stop(true).finally(() => process.exit(1));
  },
});
process.on('exit', () => cluster.killAllNow());
process.on('SIGINT', () => void cluster.stop().finally(() => process.exit(130)));

async function runStep(replicas: number, n: number): Promise<StepResult> {
  const names = [...cluster.replicas.keys()];
  const scrapeAll = () => Promise.all(names.map((name) => cluster.metrics(name)));
  let window: { cpu: ReturnType<typeof cpuSnapshot>; events: number[] } | undefined;
  let result: { cpu: ReturnType<typeof cpuUse>; events: number[]; proxy: ReturnType<typeof cluster.proxy.counts> } | undefined;
  const backlog: number[] = [];
  let sampling = false;
  let summary: LoadSummary | undefined;
  const watched = () => names.map((name) => ({ name, pid: cluster.replicas.get(name)!.process.pid }));
  const delivered = (scrapes: string[]) => scrapes.map((t) => sample(t, 'baedal_events_delivered_total'));
  const phases: Promise<void>[] = [];

  const load = cluster.run(
    `load-${replicas}`,
    'scripts/load.ts',
    ['--url', cluster.url, '--secret', cluster.secret, '--concurrency', String(concurrency), '--duration', String(durationS), '--warmup', String(warmupS), '--progress', '5', '--run-id', `demo-${cluster.tag}-${n}`, '--json', '--quiet'],
    {
      onStdoutLine: (line) => {
        let doc: { event?: string } & LoadSummary;
        try {
          doc = JSON.parse(line);
        } catch {
          return say(`    ${line}`);
        }
        if (doc.event === 'measure') {
          phases.push(
            (async () => {
              cluster.proxy.resetCounts();
              window = { cpu: cpuSnapshot(watched()), events: delivered(await scrapeAll()) };
              sampling = true;
            })(),
          );
        } else if (doc.event === 'drain') {
          sampling = false;
          const cpu = cpuSnapshot(watched());
          const proxy = cluster.proxy.counts();
          phases.push(
            (async () => {
              result = { cpu: cpuUse(window!.cpu, cpu), events: delivered(await scrapeAll()), proxy };
            })(),
          );
        } else if (doc.event === undefined) summary = doc;
      },
      onStderrLine: (line) => say(`    ${line}`),
    },
  );
  const sampler = (async () => {
    while (load.running()) {
      if (sampling) backlog.push(backlogOf(await scrapeAll().catch(() => [])));
      await delay(1000);
    }
  })();
  const exit = await load.exited;
  await sampler;
  await Promise.all(phases);
  if (exit.code !== 0 || !summary || !result || !window) throw new Error(`the load generator failed (exit ${exit.code}):\n${load.tail(20)}`);

  const okTotal = names.reduce((sum, name) => sum + (result!.proxy[name]?.ok ?? 0), 0);
  const eventsTotal = result.events.reduce((sum, e, i) => sum + (e - window!.events[i]!), 0);
  const perReplica = names.map((name, i) => ({
    name,
    commandShare: okTotal ? (result!.proxy[name]?.ok ?? 0) / okTotal : 0,
    eventShare: eventsTotal ? (result!.events[i]! - window!.events[i]!) / eventsTotal : 0,
    cpuCores: (result!.cpu.byName[name] ?? 0) / result!.cpu.seconds,
  }));
  const cpuPercentOfRequest = (perReplica.reduce((s, r) => s + r.cpuCores, 0) / names.length / AUTOSCALING.cpuRequestCores) * 100;
  const backlogAvg = backlog.length ? backlog.reduce((a, b) => a + b, 0) / backlog.length : 0;
  const backlogMax = backlog.length ? Math.max(...backlog) : 0;
  const cpuProposal = proposal(replicas, cpuPercentOfRequest, AUTOSCALING.cpuTargetPercent);
  // AverageValue: the target is per replica, so the proposal is ceil(total ÷ target).
  const backlogProposal = Math.ceil(backlogAvg / AUTOSCALING.backlogTarget);
  const desired = Math.min(AUTOSCALING.max, Math.max(AUTOSCALING.min, cpuProposal, backlogProposal));
  return {
    replicas,
    commandsPerS: summary.commandsPerS,
    p50Ms: summary.latencyMs.overall.p50,
    p99Ms: summary.latencyMs.overall.p99,
    errors: summary.errors.total,
    perReplica,
    cpuPercentOfRequest,
    backlogAvg,
    backlogMax,
    hpa: { cpuProposal, backlogProposal, desired },
  };
}

function describeStep(r: StepResult): string {
  const lines = [
    `  ${r.replicas} replica${r.replicas > 1 ? 's' : ''}: ${r.commandsPerS.toFixed(0)} commands/s, p50 ${r.p50Ms.toFixed(1)} ms, p99 ${r.p99Ms.toFixed(1)} ms, ${r.errors} errors`,
    ...r.perReplica.map((p) => `    ${p.name.padEnd(10)} commands ${pct(p.commandShare).padStart(5)}   events consumed ${pct(p.eventShare).padStart(5)}   CPU ${p.cpuCores.toFixed(2)} cores`),
    `    autoscaler: CPU ${r.cpuPercentOfRequest.toFixed(0)} % of the ${AUTOSCALING.cpuRequestCores * 1000}m request (target ${AUTOSCALING.cpuTargetPercent} %) → ceil(${r.replicas} × ${r.cpuPercentOfRequest.toFixed(0)} ÷ ${AUTOSCALING.cpuTargetPercent}) = ${r.hpa.cpuProposal}; backlog ${r.backlogAvg.toFixed(1)} jobs (max ${r.backlogMax}; target ${AUTOSCALING.backlogTarget} per replica) → ${r.hpa.backlogProposal}; desired ${r.hpa.desired} (within ${AUTOSCALING.min}..${AUTOSCALING.max})`,
  ];
  return lines.join('\n');
}

try {
  say(`demo:scale — ${steps.join(' → ')} replicas, ${concurrency} virtual users, ${warmupS} s warm-up + ${durationS} s measured per step`);
  say(`autoscaler (k8s/hpa.yaml, k8s/keda): CPU ${AUTOSCALING.cpuTargetPercent} % of a ${AUTOSCALING.cpuRequestCores * 1000}m request, backlog ${AUTOSCALING.backlogTarget} jobs per replica (${AUTOSCALING.backlogQuery}), ${AUTOSCALING.min}..${AUTOSCALING.max} replicas`);
  await cluster.start();
  // Without autovacuum (some development hosts turn it off) the tables bloat and the service's
  // cached plans stay those of empty tables, and each step would be slower for that alone.
  const autovacuum = (await cluster.db.query<{ v: string }>(`SELECT current_setting('autovacuum') AS v`)).rows[0]?.v;
  if (autovacuum !== 'on') say(`PostgreSQL runs with autovacuum=${autovacuum}: VACUUM (ANALYZE) runs before each step in its stead`);
  const results: StepResult[] = [];
  for (const [n, replicas] of steps.entries()) {
    while (cluster.replicas.size < replicas) {
      const r = await cluster.startReplica(`replica-${cluster.replicas.size + 1}`);
      say(`  ${r.name} ready (pid ${r.process.pid})`);
    }
    if (autovacuum !== 'on') await cluster.db.query('VACUUM (ANALYZE)');
    say(`\nstep ${n + 1}: ${replicas} replica${replicas > 1 ? 's' : ''} behind ${cluster.url}`);
    const result = await runStep(replicas, n);
    results.push(result);
    say(describeStep(result));
    // The next step starts from a cluster that owes nothing.
    const deadline = Date.now() + 60_000;
    while (!nothingOwed(await owedNow(cluster.db)) && Date.now() < deadline) await delay(250);
  }

  say('\nsummary');
  say('  replicas  commands/s  p99 ms  CPU % of request  backlog avg  HPA desired');
  for (const r of results) {
    say(`  ${String(r.replicas).padStart(8)}  ${r.commandsPerS.toFixed(0).padStart(10)}  ${r.p99Ms.toFixed(1).padStart(6)}  ${r.cpuPercentOfRequest.toFixed(0).padStart(16)}  ${r.backlogAvg.toFixed(1).padStart(11)}  ${String(r.hpa.desired).padStart(11)}`);
  }

  say('\nchecking the invariants once nothing is owed…');
  const deadline = Date.now() + 120_000;
  let owed = await owedNow(cluster.db);
  while (!nothingOwed(owed) && Date.now() < deadline) {
    await delay(250);
    owed = await owedNow(cluster.db);
  }
  for (const name of [...cluster.replicas.keys()]) await cluster.kill(name, 'SIGTERM');
  const report = await checkInvariants(cluster.db, await cluster.ledger(), [], cluster.webhook.received);
  const f = report.figures;
  say(
    report.ok
      ? `  held: ${f.orders} orders, ${f.journalEvents} journal events with consecutive seqs and allowed histories, ${f.charges} charges and ${f.refunds} refunds as the orders' ends require, views = replay, ${f.notifications} notifications delivered`
      : `  VIOLATED:\n${report.failures.map((x) => `    - ${x}`).join('\n')}`,
  );
  if (v.json) say(JSON.stringify({ autoscaling: AUTOSCALING, steps: results, invariants: report }));
  await cluster.stop(!report.ok);
  process.exit(report.ok ? 0 : 1);
} catch (err) {
  console.error(`demo:scale failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  await cluster.stop(true);
  process.exit(1);
}
