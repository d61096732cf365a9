// How the benchmark prints what it measured.
import type { LoadSummary } from '../scripts/load/runner.ts';
import { nearestRank } from '../scripts/load/stats.ts';
import type { Ceiling } from './ceilings.ts';
import type { CpuUse, RssTrack, ViewLag } from './measure.ts';
import type { ScalingFigures } from './scaling.ts';
import type { SinkStats } from './tracing.ts';
import type { RoundTrips } from './round-trips.ts';
import type { Deliveries } from './webhooks.ts';

export type System = 'baedal' | 'restate' | 'bare';

/** One load run and everything measured around it. */
export interface RunResult {
  system: System;
  /** Service processes (Baedal replicas); 1 for Restate and the bare server. */
  processes: number;
  concurrency: number;
  /** Whether the service delivered its notifications to the webhook receiver in this run. */
  webhooks: boolean;
  /** Baedal: whether its processes exported traces (to the benchmark's OTLP sink) in this run. */
  tracing?: boolean;
  /** With tracing on: what the OTLP sink received over the run (its warm-up included). */
  exports?: SinkStats;
  load: LoadSummary;
  cpu: CpuUse & {
    /** CPU ms per command of: the service processes (Baedal) or restate-server + its service endpoint (Restate). */
    serviceMsPerCommand: number;
    postgresMsPerCommand: number;
    redisMsPerCommand: number;
    gatewayMsPerCommand: number;
    /** The webhook receiver (NaN when webhooks were off). */
    receiverMsPerCommand: number;
    /** The OTLP sink (absent or NaN when tracing was off). */
    otlpSinkMsPerCommand?: number;
    loadGeneratorMsPerCommand: number;
    /** Times the service processes' main threads slept per command (each a wake-up; absent in older results). */
    serviceSleepsPerCommand?: number;
    /** The same for every PostgreSQL process together. */
    postgresSleepsPerCommand?: number;
  };
  rss: RssTrack[];
  viewLag: ViewLag;
  /** What arrived at the webhook receiver, when webhooks were on. */
  deliveries?: Deliveries;
  /** Baedal: each replica's share of the work and the ratios' inputs (bench/scaling.ts). */
  scaling?: ScalingFigures;
  /** Baedal: round trips per command to PostgreSQL, Redis and the gateway, counted over the window (bench/round-trips.ts). */
  roundTrips?: RoundTrips;
}

export interface Ceilings {
  postgres?: Ceiling;
  bullmq?: Ceiling;
  bareHttp?: RunResult;
}

const f = (v: number | undefined, digits = 1) => (v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(digits));
const pad = (s: string, n: number) => s.padStart(n);

export function systemLabel(r: Pick<RunResult, 'system' | 'processes'>): string {
  if (r.system === 'baedal') return `Baedal ×${r.processes}`;
  if (r.system === 'restate') return 'Restate';
  return 'bare HTTP';
}

/** One line right after a run. */
export function runLine(r: RunResult): string {
  const l = r.load;
  const check = !l.verify ? 'no final check' : l.verify.mismatches === 0 ? `final check ok (${l.verify.checked})` : `FINAL CHECK: ${l.verify.mismatches} of ${l.verify.checked} in the wrong state`;
  const d = r.deliveries;
  const webhooks = !r.webhooks
    ? 'webhooks off'
    : !d
      ? 'webhooks on'
      : `webhooks on: ${d.complete ? `every notification arrived (${count(d.distinct)})` : `ONLY ${count(d.distinct)} OF ${count(d.expected)} NOTIFICATIONS ARRIVED`}, delivery lag p99 ${d.lag.available ? `${f(d.lag.p99Ms, 0)} ms` : (d.lag.note ?? 'n/a')}`;
  const tracing = r.tracing ? `; tracing on: ${count(r.exports?.exports ?? 0)} OTLP exports, ${f((r.exports?.bytes ?? 0) / 2 ** 20, 1)} MB` : '';
  return (
    `  → ${f(l.commandsPerS, 0)} commands/s, ${f(l.lifecycles.perS)} lifecycles/s, p50/p95/p99 ${f(l.latencyMs.overall.p50)}/${f(l.latencyMs.overall.p95)}/${f(l.latencyMs.overall.p99)} ms, ` +
    `errors ${l.errors.total}, ${check}; ${webhooks}${tracing}; CPU ms/command: service ${f(r.cpu.serviceMsPerCommand, 2)}, PostgreSQL ${f(r.cpu.postgresMsPerCommand, 2)}, ` +
    `${r.webhooks ? `receiver ${f(r.cpu.receiverMsPerCommand, 2)}, ` : ''}${r.tracing ? `OTLP sink ${f(r.cpu.otlpSinkMsPerCommand, 2)}, ` : ''}load generator ${f(r.cpu.loadGeneratorMsPerCommand, 2)}`
  );
}

const count = (n: number) => n.toLocaleString('en-US');

/** `n errors`, and when there are any, of which kinds (`503 payment_unavailable 4, …`), most first. */
export function errorsText(total: number, byKind: Record<string, number>): string {
  const kinds = Object.entries(byKind).sort(([a, x], [b, y]) => y - x || (a < b ? -1 : a > b ? 1 : 0));
  return kinds.length === 0 ? `${total} errors` : `${total} errors (${kinds.map(([kind, n]) => `${kind} ${n}`).join(', ')})`;
}

/** Says next to a figure whether notifications were delivered to the webhook receiver in its run. */
export const webhooksTag = (on: boolean) => (on ? '[webhooks on]' : '[webhooks off]');
/** Baedal's runs without tracing: the targets are judged on these (a traced run is compared with its untraced twin). */
const untraced = (r: RunResult) => !r.tracing;
/** What Baedal must reach against Restate at concurrency 64, each doing the same work. */
export const RESTATE_RATIO_TARGET = { on: 2, off: 2.5 } as const;
/** Baedal with webhooks on against itself with them off, back to back in one run. */
export const WEBHOOKS_ON_OFF_TARGET = 0.85;
/** View lag p99 of several replicas at 70 % of their top rate (docs/scaling.md). */
export const SCALED_VIEW_LAG_TARGET_MS = 250;

/** Which of `n` samples their p99 (nearest rank, as `percentile`) is, counted from the highest (1: the highest itself, as for any n under 100). */
export const p99RankFromTop = (n: number) => n - nearestRank(n, 99) + 1;

const ORDINAL_SUFFIX: Record<string, string> = { one: 'st', two: 'nd', few: 'rd', other: 'th' };
const ORDINAL_RULES = new Intl.PluralRules('en', { type: 'ordinal' });
const ordinal = (k: number) => `${k}${ORDINAL_SUFFIX[ORDINAL_RULES.select(k)] ?? 'th'}`;

/** Which of `n` samples their p99 is, from the top: "the highest", "the 2nd highest". */
export const p99RankText = (n: number): string => {
  const k = p99RankFromTop(n);
  return k === 1 ? 'the highest' : `the ${ordinal(k)} highest`;
};

/**
 * What a view lag p99 stands on: the distinct measures the replicas answered (each measures at
 * most once a second), or the ticks (every 250 ms) where the answers do not tell measures apart.
 * Under 100 of them the p99 is their highest; the target wants a longer window.
 */
export function lagSamplesText(lag: Pick<ViewLag, 'samples' | 'basis' | 'ticks'>): string {
  const n = lag.samples;
  const advice = p99RankFromTop(n) === 1 ? ` (a p99 that is not the highest wants 100 or more; --duration 80 gives about ${lag.basis === 'measures' ? 200 : 310})` : '';
  const rank = `${p99RankText(n)} of ${n} ${lag.basis === 'measures' ? 'distinct measures' : 'samples'}${advice}`;
  return lag.ticks ? `${rank}; the worst answer of each 250 ms tick, cached ones too (as read before measures were told apart): p99 ${f(lag.ticks.p99Ms, 0)} ms over ${lag.ticks.samples}` : rank;
}

/** Delivery lag p99 at half the top rate (concurrency 16, as for the view lag). */
export const DELIVERY_LAG_TARGET_MS = 500;

/** Cores kept busy during the run by processes this benchmark does not account for: other work on the machine. */
export function othersCores(r: RunResult): number {
  const ours = Object.values(r.cpu.byName).reduce((sum, s) => sum + s, 0) + r.cpu.postgres + r.cpu.redis;
  return Math.max(0, r.cpu.machineBusyCores - ours / r.cpu.seconds);
}

export function resultsTable(runs: readonly RunResult[]): string {
  const lines: string[] = [];
  const traced = runs.some((r) => r.tracing);
  const hooks = (r: RunResult) => pad(r.webhooks ? 'on' : 'off', 8) + (traced ? pad(r.tracing ? 'on' : 'off', 8) : '');
  lines.push(`system      conc  webhooks${traced ? ' tracing' : ''}  commands/s  lifecycles/s   p50 ms   p95 ms   p99 ms  errors  wrong state`);
  for (const r of runs) {
    const l = r.load;
    lines.push(
      `${systemLabel(r).padEnd(10)} ${pad(String(r.concurrency), 5)} ${hooks(r)} ${pad(f(l.commandsPerS, 0), 11)} ${pad(f(l.lifecycles.perS), 13)} ${pad(f(l.latencyMs.overall.p50), 8)} ${pad(f(l.latencyMs.overall.p95), 8)} ${pad(f(l.latencyMs.overall.p99), 8)} ${pad(String(l.errors.total), 7)} ${pad(l.verify ? String(l.verify.mismatches) : 'n/a', 12)}`,
    );
  }
  lines.push('');
  lines.push(`CPU ms per command  webhooks${traced ? ' tracing' : ''}  service  PostgreSQL  Redis  gateway  receiver${traced ? '  OTLP sink' : ''}  load gen   cores busy (others)   stolen   RSS MB start→end (max)   view lag max / p99 ms`);
  for (const r of runs) {
    const rss =
      r.rss
        .map((t) => {
          const mbs = t.samples.map(([, mb]) => mb);
          return `${f(mbs[0], 0)}→${f(mbs[mbs.length - 1], 0)} (${f(Math.max(...mbs), 0)})`;
        })
        .join(' + ') || '-';
    const lag = r.viewLag.available ? `${f(r.viewLag.maxMs, 0)} / ${f(r.viewLag.p99Ms, 0)}` : (r.viewLag.note ?? 'n/a');
    lines.push(
      `${`${systemLabel(r)} c${r.concurrency}`.padEnd(18)} ${hooks(r)} ${pad(f(r.cpu.serviceMsPerCommand, 2), 8)} ${pad(f(r.cpu.postgresMsPerCommand, 2), 11)} ${pad(f(r.cpu.redisMsPerCommand, 2), 6)} ${pad(f(r.cpu.gatewayMsPerCommand, 2), 8)} ${pad(f(r.cpu.receiverMsPerCommand, 2), 9)}${traced ? ` ${pad(f(r.cpu.otlpSinkMsPerCommand, 2), 10)}` : ''} ${pad(f(r.cpu.loadGeneratorMsPerCommand, 2), 9)} ${pad(f(r.cpu.machineBusyCores, 2), 11)} (${f(othersCores(r), 2)})   ${pad(f(r.cpu.machineStolenCores, 2), 6)}   ${pad(rss, 24)}   ${lag}`,
    );
  }
  const counted = runs.filter((r) => r.roundTrips);
  if (counted.length) {
    lines.push('');
    lines.push('round trips per command (counted)   PostgreSQL transactions   Redis requests   gateway calls   webhook messages   WAL records   WAL KB   sleeps: service  PostgreSQL');
    for (const r of counted) {
      const t = r.roundTrips!;
      // What the receiver got over the whole run, per command the whole run made (warm-up and drain included).
      const all = Object.values(r.load.commandsAllPhases ?? {}).reduce((sum, n) => sum + n, 0);
      const hooks = r.deliveries && all ? f(r.deliveries.received / all, 2) : '-';
      lines.push(
        `${`${systemLabel(r)} c${r.concurrency}`.padEnd(35)} ${pad(f(t.postgresTransactions, 2), 25)} ${pad(f(t.redisReads, 2), 16)} ${pad(f(t.gatewayCalls, 3), 15)} ${pad(hooks, 18)} ${pad(f(t.walRecords, 1), 13)} ${pad(f(t.walBytes === undefined ? undefined : t.walBytes / 1024, 2), 8)} ${pad(f(r.cpu.serviceSleepsPerCommand, 2), 16)} ${pad(f(r.cpu.postgresSleepsPerCommand, 2), 11)}`,
      );
    }
  }
  const delivered = runs.filter((r) => r.deliveries);
  if (delivered.length) {
    lines.push('');
    lines.push('notifications       expected   arrived  repeats  waited s   delivery lag p50 / p99 / max ms (samples)');
    for (const r of delivered) {
      const d = r.deliveries!;
      const lag = d.lag.available ? `${f(d.lag.p50Ms, 0)} / ${f(d.lag.p99Ms, 0)} / ${f(d.lag.maxMs, 0)} (${count(d.lag.samples)})` : (d.lag.note ?? 'n/a');
      lines.push(
        `${`${systemLabel(r)} c${r.concurrency}`.padEnd(18)} ${pad(count(d.expected), 9)} ${pad(count(d.distinct), 9)} ${pad(count(d.received - d.distinct), 8)} ${pad(f(d.waitedS, 1), 9)}   ${lag}${d.complete ? '' : '   ✗ not all arrived'}`,
      );
    }
  }
  return lines.join('\n');
}

export function ceilingsText(c: Ceilings): string {
  const lines: string[] = [];
  if (c.postgres) {
    lines.push(
      `  PostgreSQL, one command's transaction (BEGIN; SELECT … FOR UPDATE; UPDATE with version check; INSERT journal; COMMIT), pg pool 8, 64 callers: ${f(c.postgres.perS, 0)} tx/s (PostgreSQL ${f(c.postgres.serverCpuMsPerOp, 3)} CPU ms per tx)`,
    );
  }
  if (c.bullmq) lines.push(`  BullMQ, add + process of small jobs, 1 Worker with concurrency 8: ${f(c.bullmq.perS, 0)} jobs/s (Redis ${f(c.bullmq.serverCpuMsPerOp, 3)} CPU ms per job)`);
  if (c.bareHttp) {
    lines.push(
      `  bare Node HTTP server answering a constant, same load generator, concurrency ${c.bareHttp.concurrency}: ${f(c.bareHttp.load.commandsPerS, 0)} requests/s (p50 ${f(c.bareHttp.load.latencyMs.overall.p50)} ms; server ${f(c.bareHttp.cpu.serviceMsPerCommand, 3)} CPU ms, load generator ${f(c.bareHttp.cpu.loadGeneratorMsPerCommand, 3)} CPU ms per request)`,
    );
  }
  return lines.length ? lines.join('\n') : '  (not measured: --no-ceilings)';
}

const mark = (ok: boolean | undefined) => (ok === undefined ? '' : ok ? '  ✓' : '  ✗');

/** The issue's targets, each against this run's figures. */
export function targetsText(runs: readonly RunResult[], c: Ceilings): string {
  const lines: string[] = [];
  const baedal = runs.filter((r) => r.system === 'baedal' && untraced(r));
  const restate64 = (webhooks: boolean) => runs.find((r) => r.system === 'restate' && r.concurrency === 64 && r.webhooks === webhooks);
  const at = (conc: number) => baedal.filter((r) => r.concurrency === conc);
  const label = (r: RunResult) => `${systemLabel(r)} ${webhooksTag(r.webhooks)}`;
  for (const r of at(64)) {
    const x = r.load.commandsPerS;
    const parts: string[] = [];
    const restate = restate64(r.webhooks);
    const target = RESTATE_RATIO_TARGET[r.webhooks ? 'on' : 'off'];
    if (restate) parts.push(`Restate ${webhooksTag(r.webhooks)} ×${f(x / restate.load.commandsPerS, 2)} (target ≥ ${target})${mark(x / restate.load.commandsPerS >= target)}`);
    else parts.push(`Restate ${webhooksTag(r.webhooks)}: not run (npm run bench -- --targets baedal,restate)`);
    if (c.postgres) parts.push(`PostgreSQL ceiling ×${f(x / c.postgres.perS, 2)} (target ≥ 0.45)${mark(x / c.postgres.perS >= 0.45)}`);
    if (c.bareHttp) parts.push(`bare HTTP ×${f(x / c.bareHttp.load.commandsPerS, 2)} (as close to 1 as can be)`);
    if (c.bullmq) parts.push(`BullMQ ×${f(x / c.bullmq.perS, 2)}`);
    lines.push(`  ${label(r)} at concurrency 64, ${f(x, 0)} commands/s against: ${parts.join('; ')}`);
  }
  for (const on of at(64).filter((r) => r.webhooks)) {
    const off = at(64).find((r) => !r.webhooks && r.processes === on.processes);
    if (!off) continue;
    const ratio = on.load.commandsPerS / off.load.commandsPerS;
    lines.push(
      `  ${systemLabel(on)} at concurrency 64 with webhooks on / off: ${f(on.load.commandsPerS, 0)} / ${f(off.load.commandsPerS, 0)} = ${f(ratio, 2)} (target ≥ ${WEBHOOKS_ON_OFF_TARGET})${mark(ratio >= WEBHOOKS_ON_OFF_TARGET)}`,
    );
  }
  for (const on of runs.filter((r) => r.system === 'baedal' && r.tracing)) {
    const off = baedal.find((r) => r.processes === on.processes && r.concurrency === on.concurrency && r.webhooks === on.webhooks);
    if (off) lines.push(`  ${label(on)} at concurrency ${on.concurrency}, ${tracingCost(on, off)}`);
  }
  for (const r of at(1)) lines.push(`  ${label(r)} p50 at concurrency 1: ${f(r.load.latencyMs.overall.p50, 2)} ms (target ≤ 3 ms)${mark(r.load.latencyMs.overall.p50 <= 3)}`);
  for (const r of at(16)) lines.push(`  ${label(r)} p99 at concurrency 16: ${f(r.load.latencyMs.overall.p99, 1)} ms (target ≤ 50 ms)${mark(r.load.latencyMs.overall.p99 <= 50)}`);
  for (const r of baedal) {
    if (!r.viewLag.available) continue;
    // One process: the single-process target. Several: the scale-out target, at a rate the benchmark cannot judge by itself (give --rate at 70 % of the top rate).
    const target = r.processes === 1 ? 'target ≤ 100 ms at half the top rate' : `target ≤ ${SCALED_VIEW_LAG_TARGET_MS} ms at 3 replicas at 70 % of their top rate`;
    lines.push(`  ${label(r)} view lag p99 at concurrency ${r.concurrency}: ${f(r.viewLag.p99Ms, 0)} ms (${target}); ${lagSamplesText(r.viewLag)}`);
  }
  if (baedal.length && !baedal.some((r) => r.viewLag.available)) lines.push(`  view lag: ${baedal[0]!.viewLag.note ?? 'n/a'}`);
  for (const r of baedal) {
    const d = r.deliveries;
    if (!d) continue;
    const lag = d.lag.available ? `${f(d.lag.p99Ms, 0)} ms` : (d.lag.note ?? 'n/a');
    const judged = r.concurrency === 16 && d.lag.available ? mark(d.lag.p99Ms <= DELIVERY_LAG_TARGET_MS) : '';
    lines.push(`  ${systemLabel(r)} notification delivery lag p99 at concurrency ${r.concurrency}: ${lag} (target ≤ ${DELIVERY_LAG_TARGET_MS} ms at half the top rate)${judged}`);
  }
  for (const r of runs) {
    const d = r.deliveries;
    if (d && !d.complete) lines.push(`  ${systemLabel(r)} at concurrency ${r.concurrency}: ${count(d.expected - d.distinct)} of ${count(d.expected)} notifications never arrived  ✗`);
  }
  return lines.join('\n');
}

/** What tracing cost a run, against the same run without it. */
export function tracingCost(on: RunResult, off: RunResult): string {
  const sCpu = on.cpu.serviceMsPerCommand - off.cpu.serviceMsPerCommand;
  return (
    `tracing on / off: ${f(on.load.commandsPerS, 0)} / ${f(off.load.commandsPerS, 0)} commands/s = ${f(on.load.commandsPerS / off.load.commandsPerS, 2)}; ` +
    `service CPU ${f(on.cpu.serviceMsPerCommand, 2)} / ${f(off.cpu.serviceMsPerCommand, 2)} ms per command (${sCpu >= 0 ? '+' : ''}${f((sCpu / off.cpu.serviceMsPerCommand) * 100, 0)} %); ` +
    `p99 ${f(on.load.latencyMs.overall.p99)} / ${f(off.load.latencyMs.overall.p99)} ms; OTLP sink ${f(on.cpu.otlpSinkMsPerCommand, 2)} ms per command`
  );
}

/**
 * Memory over a soak run: per process, first and last sample, the largest, and the trend over the
 * second half of the window (the first half holds the warming of caches and compiled code).
 */
export function rssText(tracks: readonly RssTrack[], slope: (samples: [number, number][]) => number): string {
  return tracks
    .map((t) => {
      const mbs = t.samples.map(([, mb]) => mb);
      const secondHalf = t.samples.slice(Math.floor(t.samples.length / 2));
      return `  ${t.name}: ${f(mbs[0], 1)} MB at the start of the window, ${f(mbs[mbs.length - 1], 1)} MB at the end, max ${f(Math.max(...mbs), 1)} MB; trend over the second half ${f(slope(secondHalf), 1)} MB per 10 min`;
    })
    .join('\n');
}

/** What one round of `--rounds` measured: its runs and the ceilings measured with them. */
export interface Round {
  runs: readonly RunResult[];
  ceilings: Ceilings;
}

/** A maintenance operation the benchmark ran (VACUUM, ANALYZE), with its start and end in ms of one clock. */
export interface Maintenance {
  what: string;
  start: number;
  end: number;
}

/**
 * The operations that overlapped the window [from, to], each with the seconds of it inside the
 * window ("VACUUM (ANALYZE) for 2.3 s"), joined by commas; empty when none did.
 */
export function maintenanceInWindow(log: readonly Maintenance[], from: number, to: number): string {
  return log
    .filter((o) => o.start < to && o.end > from)
    .map((o) => `${o.what} for ${((Math.min(o.end, to) - Math.max(o.start, from)) / 1000).toFixed(1)} s`)
    .join(', ');
}

/** The middle value (the mean of the two middle ones for an even count); undefined for none. */
export function median(values: readonly number[]): number | undefined {
  const sorted = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (sorted.length === 0) return undefined;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/**
 * The targets over several rounds: each round's figure and their median, judged on the median.
 * On a host whose speed drifts between the Baedal and the Restate runs of one round, a single
 * round can land on either side of a target; the median of several is the figure to read. Each
 * figure says whether webhooks were on, and Baedal is compared with Restate with the same setting.
 */
export function roundsText(rounds: readonly Round[]): string {
  const lines: string[] = [];
  const all = rounds.flatMap((r) => r.runs).filter(untraced);
  const processCounts = [...new Set(all.filter((x) => x.system === 'baedal').map((x) => x.processes))].sort((a, b) => a - b);
  const modes = [true, false].filter((w) => all.some((x) => x.webhooks === w));
  const row = (label: string, values: (number | undefined)[], digits: number, unit: string, target?: { text: string; ok: (m: number) => boolean }) => {
    const known = values.filter((x): x is number => x !== undefined);
    if (known.length === 0) return;
    const m = median(known)!;
    const each = values.map((x) => (x === undefined ? '-' : `${f(x, digits)}${unit}`)).join(', ');
    lines.push(`  ${label}: ${each} → median ${f(m, digits)}${unit}${target ? ` (target ${target.text})${mark(target.ok(m))}` : ''}`);
  };
  const restate64 = (r: Round, webhooks: boolean) => r.runs.find((x) => x.system === 'restate' && x.concurrency === 64 && x.webhooks === webhooks);
  for (const n of processCounts) {
    const pick = (r: Round, conc: number, webhooks: boolean) => r.runs.find((x) => x.system === 'baedal' && untraced(x) && x.processes === n && x.concurrency === conc && x.webhooks === webhooks);
    for (const webhooks of modes) {
      const label = `${systemLabel({ system: 'baedal', processes: n })} ${webhooksTag(webhooks)}`;
      const restateTarget = RESTATE_RATIO_TARGET[webhooks ? 'on' : 'off'];
      row(`${label} commands/s at concurrency 64`, rounds.map((r) => pick(r, 64, webhooks)?.load.commandsPerS), 0, '');
      row(
        `${label} / Restate ${webhooksTag(webhooks)} at concurrency 64`,
        rounds.map((r) => {
          const b = pick(r, 64, webhooks);
          const s = restate64(r, webhooks);
          return b && s ? b.load.commandsPerS / s.load.commandsPerS : undefined;
        }),
        2,
        '×',
        { text: `≥ ${restateTarget}×`, ok: (m) => m >= restateTarget },
      );
      row(
        `${label} / PostgreSQL ceiling at concurrency 64`,
        rounds.map((r) => {
          const b = pick(r, 64, webhooks);
          return b && r.ceilings.postgres ? b.load.commandsPerS / r.ceilings.postgres.perS : undefined;
        }),
        2,
        '',
        { text: '≥ 0.45', ok: (m) => m >= 0.45 },
      );
      row(`${label} p50 at concurrency 1`, rounds.map((r) => pick(r, 1, webhooks)?.load.latencyMs.overall.p50), 2, ' ms', { text: '≤ 3 ms', ok: (m) => m <= 3 });
      row(`${label} p99 at concurrency 16`, rounds.map((r) => pick(r, 16, webhooks)?.load.latencyMs.overall.p99), 1, ' ms', { text: '≤ 50 ms', ok: (m) => m <= 50 });
      const concurrencies = [...new Set(all.filter((x) => x.system === 'baedal' && x.processes === n && x.webhooks === webhooks).map((x) => x.concurrency))].sort((a, b) => a - b);
      for (const conc of concurrencies) {
        row(
          `${label} view lag p99 at concurrency ${conc}`,
          rounds.map((r) => {
            const x = pick(r, conc, webhooks);
            return x?.viewLag.available ? x.viewLag.p99Ms : undefined;
          }),
          0,
          ' ms',
        );
      }
      for (const conc of concurrencies) {
        row(
          `${label} notification delivery lag p99 at concurrency ${conc}`,
          rounds.map((r) => {
            const lag = pick(r, conc, webhooks)?.deliveries?.lag;
            return lag?.available ? lag.p99Ms : undefined;
          }),
          0,
          ' ms',
          conc === 16 ? { text: `≤ ${DELIVERY_LAG_TARGET_MS} ms`, ok: (m) => m <= DELIVERY_LAG_TARGET_MS } : undefined,
        );
      }
    }
    if (modes.length === 2) {
      row(
        `${systemLabel({ system: 'baedal', processes: n })} webhooks on / off at concurrency 64`,
        rounds.map((r) => {
          const on = pick(r, 64, true);
          const off = pick(r, 64, false);
          return on && off ? on.load.commandsPerS / off.load.commandsPerS : undefined;
        }),
        2,
        '',
        { text: `≥ ${WEBHOOKS_ON_OFF_TARGET}`, ok: (m) => m >= WEBHOOKS_ON_OFF_TARGET },
      );
    }
  }
  for (const webhooks of modes) row(`Restate ${webhooksTag(webhooks)} commands/s at concurrency 64`, rounds.map((r) => restate64(r, webhooks)?.load.commandsPerS), 0, '');
  return lines.join('\n');
}
