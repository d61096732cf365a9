// How the work spreads over the replicas, and what each replica added: read from every replica's
// /metrics at the opening and the closing of a measured window (and, for the demo, every second
// between), then printed per replica count as the scaling table. Shared by `npm run demo:scale`
// and `npm run bench`.
import { percentile } from '../scripts/load/stats.ts';
import { describeDecision, hpaDecision, type Autoscaling, type HpaDecision } from './autoscaler.ts';
import { throttlingBetween, type Throttling } from './cpu-limit.ts';
import { median, p99RankText } from './report.ts';

// ── the Prometheus text format ───────────────────────────────────────────────────────────────
export interface MetricSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
const VALUES: Record<string, number> = { '+Inf': Infinity, '-Inf': -Infinity, NaN: NaN };

/** The samples of a text exposition, and the metric names it declares (`# TYPE`), sampled or not yet. */
export function parseExposition(text: string): { samples: MetricSample[]; declared: Set<string> } {
  const samples: MetricSample[] = [];
  const declared = new Set<string>();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('# TYPE ')) declared.add(line.split(/\s+/)[2]!);
    if (line === '' || line.startsWith('#')) continue;
    const m = LINE.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(LABEL)) labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    samples.push({ name: m[1]!, labels, value: VALUES[m[3]!] ?? Number(m[3]) });
  }
  return { samples, declared };
}

/** What one scrape of one replica says about its share of the work. */
export interface ReplicaReading {
  /** Commands it answered 2xx (POST requests: every command is one). */
  commandsOk: number;
  /** Events it applied, per partition (`baedal_events_applied_total{partition}`); undefined when the replica has no such metric. */
  appliedByPartition?: Map<string, number>;
  /** Events its workers delivered to consumer groups (`baedal_events_delivered_total`). */
  delivered: number;
  /** `baedal_event_partitions_owned`, when the replica has it. */
  partitionsOwned?: number;
  /** `baedal_queue_backlog` per queue. */
  backlogByQueue: Map<string, number>;
  /** The largest `baedal_view_lag_seconds` over the views. */
  viewLagS?: number;
  /** `baedal_event_lag_seconds`: events counted at or under each bucket's bound (seconds; +Inf last), when the replica has it. */
  eventLagBuckets?: Map<number, number>;
}

export function readReplica(text: string): ReplicaReading {
  const { samples, declared } = parseExposition(text);
  const reading: ReplicaReading = { commandsOk: 0, delivered: 0, backlogByQueue: new Map() };
  const partitioned = declared.has('baedal_events_applied_total') || samples.some((s) => s.name === 'baedal_events_applied_total');
  if (partitioned) reading.appliedByPartition = new Map();
  for (const s of samples) {
    switch (s.name) {
      case 'baedal_http_requests_total':
        if (s.labels.method === 'POST' && /^2\d\d$/.test(s.labels.status ?? '')) reading.commandsOk += s.value;
        break;
      case 'baedal_events_applied_total': {
        const p = s.labels.partition ?? '';
        reading.appliedByPartition!.set(p, (reading.appliedByPartition!.get(p) ?? 0) + s.value);
        break;
      }
      case 'baedal_events_delivered_total':
        reading.delivered += s.value;
        break;
      case 'baedal_event_partitions_owned':
        reading.partitionsOwned = (reading.partitionsOwned ?? 0) + s.value;
        break;
      case 'baedal_queue_backlog':
        reading.backlogByQueue.set(s.labels.queue ?? '', s.value);
        break;
      case 'baedal_view_lag_seconds':
        reading.viewLagS = Math.max(reading.viewLagS ?? 0, s.value);
        break;
      case 'baedal_event_lag_seconds_bucket': {
        const le = s.labels.le === '+Inf' ? Infinity : Number(s.labels.le);
        if (Number.isNaN(le)) break;
        reading.eventLagBuckets ??= new Map();
        reading.eventLagBuckets.set(le, (reading.eventLagBuckets.get(le) ?? 0) + s.value);
        break;
      }
    }
  }
  return reading;
}

/**
 * The q-quantile (0..1) of a histogram's cumulative buckets, as PromQL's histogram_quantile reads
 * it: linear within the bucket the rank falls in (from 0 for the first); the highest finite bound
 * when it falls in +Inf. Undefined when nothing was counted.
 */
export function histogramQuantile(q: number, buckets: ReadonlyMap<number, number>): number | undefined {
  const sorted = [...buckets].sort(([a], [b]) => a - b);
  const total = sorted.at(-1)?.[1] ?? 0;
  if (total <= 0) return undefined;
  const rank = q * total;
  let lowerBound = 0;
  let lowerCount = 0;
  for (const [le, count] of sorted) {
    if (count >= rank) {
      if (le === Infinity) return lowerBound;
      return count === lowerCount ? le : lowerBound + ((le - lowerBound) * (rank - lowerCount)) / (count - lowerCount);
    }
    lowerBound = le;
    lowerCount = count;
  }
  return lowerBound;
}

/** The KEDA query `sum(max by (queue) (baedal_queue_backlog))` over the replicas' readings. */
export function backlogOf(readings: readonly ReplicaReading[]): number {
  const byQueue = new Map<string, number>();
  for (const r of readings) for (const [q, v] of r.backlogByQueue) byQueue.set(q, Math.max(byQueue.get(q) ?? 0, v));
  return [...byQueue.values()].reduce((a, b) => a + b, 0);
}

// ── one measured window ──────────────────────────────────────────────────────────────────────
export interface ReplicaEndpoint {
  name: string;
  url: string;
}

/** Each replica's part of a measured window. */
export interface ReplicaWindow {
  name: string;
  commands: number;
  /** Events applied (partitioned metric) or delivered (per group), whichever the replicas report. */
  events: number;
  partitionsOwned?: number;
  /** Partitions it applied at least one event of. */
  partitionsApplied?: number;
  throttling?: Throttling;
}

export interface ScalingSample {
  perReplica: ReplicaWindow[];
  /** Where the events shares come from. */
  eventsSource: 'baedal_events_applied_total' | 'baedal_events_delivered_total';
  /** Partition → replica → events applied in the window (empty without the partitioned metric). */
  partitions: Map<string, Map<string, number>>;
  /** Sampled between the ends (when sampling every so often): the KEDA backlog and the view lag. */
  backlog?: { avg: number; max: number; samples: number };
  viewLag?: { p99Ms: number; maxMs: number; samples: number };
  /** Each event's lag (`baedal_event_lag_seconds`) over the window, all replicas together, when they report it. */
  eventLag?: { p99Ms: number; events: number };
}

/** Events applied per partition between two readings; a partition new at the end counts from 0. */
function partitionDelta(a: ReplicaReading, b: ReplicaReading): Map<string, number> {
  const out = new Map<string, number>();
  for (const [p, v] of b.appliedByPartition ?? []) {
    const d = v - (a.appliedByPartition?.get(p) ?? 0);
    if (d > 0) out.set(p, d);
  }
  return out;
}

/** The events counted per bucket between two readings, summed over the replicas; undefined when none reports the histogram. */
function eventLagDelta(opening: readonly ReplicaReading[], closing: readonly ReplicaReading[]): Map<number, number> | undefined {
  let out: Map<number, number> | undefined;
  closing.forEach((b, i) => {
    if (!b.eventLagBuckets) return;
    out ??= new Map();
    for (const [le, v] of b.eventLagBuckets) out.set(le, (out.get(le) ?? 0) + v - (opening[i]?.eventLagBuckets?.get(le) ?? 0));
  });
  return out;
}

/** The window from each replica's readings at its opening and closing. Pure. */
export function windowOf(
  names: readonly string[],
  opening: readonly ReplicaReading[],
  closing: readonly ReplicaReading[],
  throttling?: { opening: readonly Throttling[]; closing: readonly Throttling[] },
): Omit<ScalingSample, 'backlog' | 'viewLag'> {
  const partitioned = closing.every((r) => r.appliedByPartition !== undefined);
  const partitions = new Map<string, Map<string, number>>();
  const perReplica = names.map((name, i) => {
    const a = opening[i]!;
    const b = closing[i]!;
    const window: ReplicaWindow = { name, commands: b.commandsOk - a.commandsOk, events: b.delivered - a.delivered };
    if (partitioned) {
      const applied = partitionDelta(a, b);
      window.events = [...applied.values()].reduce((s, v) => s + v, 0);
      window.partitionsApplied = applied.size;
      for (const [p, v] of applied) {
        if (!partitions.has(p)) partitions.set(p, new Map());
        partitions.get(p)!.set(name, v);
      }
    }
    if (b.partitionsOwned !== undefined) window.partitionsOwned = b.partitionsOwned;
    if (throttling) window.throttling = throttlingBetween(throttling.opening[i]!, throttling.closing[i]!);
    return window;
  });
  const lagBuckets = eventLagDelta(opening, closing);
  const lagP99 = lagBuckets && histogramQuantile(0.99, lagBuckets);
  return {
    perReplica,
    eventsSource: partitioned ? 'baedal_events_applied_total' : 'baedal_events_delivered_total',
    partitions,
    ...(lagBuckets && lagP99 !== undefined && { eventLag: { p99Ms: lagP99 * 1000, events: lagBuckets.get(Infinity) ?? 0 } }),
  };
}

export interface ScalingSamplerOptions {
  /** Scrapes between the ends every so often (backlog, view lag); 0 for the ends only. */
  everyMs?: number;
  /** A replica's cpu.stat now, when it runs under a CPU limit. */
  throttling?: (name: string) => Throttling;
  fetchText?: (url: string) => Promise<string>;
}

async function fetchText(url: string): Promise<string> {
  const res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  if (!res.ok) throw new Error(`${url} answered ${res.status}`);
  return res.text();
}

/**
 * Reads every replica's /metrics when the measured window opens and when it closes (and every
 * `everyMs` between, for the backlog and the view lag). `open()` and `close()` return at once
 * (they are called from the load generator's phase lines); `result()` waits for the readings.
 */
export class ScalingSampler {
  private opening?: Promise<ReplicaReading[]>;
  private closing?: Promise<ReplicaReading[]>;
  private throttleOpen?: Throttling[];
  private throttleClose?: Throttling[];
  private timer?: NodeJS.Timeout;
  private busy = false;
  private readonly backlogs: number[] = [];
  private readonly lagsMs: number[] = [];

  constructor(
    private readonly replicas: readonly ReplicaEndpoint[],
    private readonly opts: ScalingSamplerOptions = {},
  ) {}

  open(): void {
    this.throttleOpen = this.readThrottling();
    this.opening = this.scrape();
    this.opening.catch(() => undefined);
    if (this.opts.everyMs) this.timer = setInterval(() => void this.sample(), this.opts.everyMs);
  }

  close(): void {
    clearInterval(this.timer);
    this.throttleClose = this.readThrottling();
    this.closing = this.scrape();
    this.closing.catch(() => undefined);
  }

  async result(): Promise<ScalingSample> {
    if (!this.opening || !this.closing) throw new Error('the measured window never opened or closed');
    const [a, b] = await Promise.all([this.opening, this.closing]);
    const names = this.replicas.map((r) => r.name);
    const throttling = this.throttleOpen && this.throttleClose ? { opening: this.throttleOpen, closing: this.throttleClose } : undefined;
    const sorted = (xs: number[]) => Float64Array.from(xs).sort();
    return {
      ...windowOf(names, a, b, throttling),
      ...(this.backlogs.length > 0 && {
        backlog: { avg: this.backlogs.reduce((s, x) => s + x, 0) / this.backlogs.length, max: Math.max(...this.backlogs), samples: this.backlogs.length },
      }),
      ...(this.lagsMs.length > 0 && { viewLag: { p99Ms: percentile(sorted(this.lagsMs), 99), maxMs: Math.max(...this.lagsMs), samples: this.lagsMs.length } }),
    };
  }

  private readThrottling(): Throttling[] | undefined {
    const read = this.opts.throttling;
    return read ? this.replicas.map((r) => read(r.name)) : undefined;
  }

  private async scrape(): Promise<ReplicaReading[]> {
    const get = this.opts.fetchText ?? fetchText;
    return Promise.all(
      this.replicas.map(async (r) => {
        try {
          return readReplica(await get(`${r.url}/metrics`));
        } catch (err) {
          throw new Error(`reading ${r.name}'s /metrics: ${err instanceof Error ? err.message : String(err)}`);
        }
      }),
    );
  }

  /** One sample between the ends; one that fails or overlaps the last is skipped. */
  private async sample(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const readings = await this.scrape();
      this.backlogs.push(backlogOf(readings));
      const lags = readings.map((r) => r.viewLagS).filter((x): x is number => x !== undefined);
      if (lags.length) this.lagsMs.push(Math.max(...lags) * 1000);
    } catch {
      // a replica too busy to answer in time: no sample this second
    } finally {
      this.busy = false;
    }
  }
}

// ── the figures of one replica count ─────────────────────────────────────────────────────────
export interface ReplicaFigures {
  name: string;
  commandShare: number;
  eventShare: number;
  partitionsOwned?: number;
  partitionsApplied?: number;
  cpuCores: number;
  /**
   * Share of the replica's CPU spent off its main thread: V8 compiling hot code and collecting
   * garbage on helper threads (and libuv's pool). High while the replica is still warming up.
   */
  helperShare?: number;
  /** Share of the CFS periods in which the quota held the replica back. */
  throttledShare?: number;
}

/** The figures of one replica count at one concurrency. */
export interface ScalingFigures {
  replicas: number;
  /** Virtual users of the run, or per replica when `concurrencyPerReplica`. */
  concurrency: number;
  /** The run had `concurrency` virtual users per replica (n replicas, n times the users). */
  concurrencyPerReplica?: boolean;
  /** What else sets the run apart (e.g. "webhooks on"): the table compares only runs alike in it. */
  variant?: string;
  /** Cores each replica was limited to; undefined for none. */
  cpuPerReplica?: number;
  commandsPerS: number;
  p99Ms: number;
  errors: number;
  /** CPU ms per command, all replicas together. */
  serviceMsPerCommand: number;
  postgresMsPerCommand: number;
  /**
   * The load generator's CPU ms per command, when measured: the same work per command at every
   * replica count (one HTTP request), so it moves mostly with the host's speed.
   */
  loadGeneratorMsPerCommand?: number;
  /** Cores PostgreSQL used in the window (all its processes). */
  postgresCores: number;
  /**
   * Cores of the whole machine busy in the window, how many it has, and how many the hypervisor
   * took from it (steal time; when measured).
   */
  host?: HostCores;
  viewLagP99Ms?: number;
  /** Where the view lag comes from ("GET /views/_status every 250 ms", "baedal_view_lag_seconds every second"). */
  viewLagFrom?: string;
  /** How many samples the view lag p99 was taken over, when known (which of them it is: `p99RankText`). */
  viewLagSamples?: number;
  /** The p99 of each event's lag (`baedal_event_lag_seconds`, read from its buckets) and how many events it is over. */
  eventLag?: { p99Ms: number; events: number };
  perReplica: ReplicaFigures[];
  eventsSource: ScalingSample['eventsSource'];
  /** Per partition: how many were applied by one replica only, and the others with each replica's share. */
  partitions?: { count: number; single: number; shared: { partition: string; shares: Record<string, number> }[] };
  hpa: HpaDecision;
}

/** The whole machine over a window: cores busy (its own work), how many it has, cores stolen by the hypervisor. */
export interface HostCores {
  busyCores: number;
  cores: number;
  stolenCores?: number;
}

export interface ScalingInput {
  concurrency: number;
  concurrencyPerReplica?: boolean;
  variant?: string;
  cpuPerReplica?: number;
  load: { commands: number; commandsPerS: number; p99Ms: number; errors: number };
  /**
   * The measured window's length and the CPU seconds each replica (by name) and PostgreSQL used in
   * it; with `host`, the cores of the whole machine busy in it and how many it has.
   */
  cpu: {
    seconds: number;
    replicaSeconds: Record<string, number>;
    /** The CPU seconds of each replica's main thread alone, when measured. */
    replicaMainSeconds?: Record<string, number>;
    postgresSeconds: number;
    /** The CPU seconds of the load generator, when measured. */
    loadGeneratorSeconds?: number;
    host?: HostCores;
  };
  sample: ScalingSample;
  /** The view lag p99 measured another way (the benchmark's GET /views/_status); else the sample's. */
  viewLag?: { p99Ms: number; from: string; samples?: number } | undefined;
  autoscaling: Autoscaling;
}

export function scalingFigures(x: ScalingInput): ScalingFigures {
  const { sample } = x;
  const commandsTotal = sample.perReplica.reduce((s, r) => s + r.commands, 0);
  const eventsTotal = sample.perReplica.reduce((s, r) => s + r.events, 0);
  const perCommand = (seconds: number) => (x.load.commands ? (seconds * 1000) / x.load.commands : NaN);
  const perReplica = sample.perReplica.map((r): ReplicaFigures => {
    const seconds = x.cpu.replicaSeconds[r.name] ?? NaN;
    const main = x.cpu.replicaMainSeconds?.[r.name];
    return {
      name: r.name,
      commandShare: commandsTotal ? r.commands / commandsTotal : 0,
      eventShare: eventsTotal ? r.events / eventsTotal : 0,
      ...(r.partitionsOwned !== undefined && { partitionsOwned: r.partitionsOwned }),
      ...(r.partitionsApplied !== undefined && { partitionsApplied: r.partitionsApplied }),
      cpuCores: seconds / x.cpu.seconds,
      ...(main !== undefined && Number.isFinite(main) && seconds > 0 && { helperShare: Math.min(1, Math.max(0, 1 - main / seconds)) }),
      ...(r.throttling && { throttledShare: r.throttling.periods ? r.throttling.throttled / r.throttling.periods : 0 }),
    };
  });
  let partitions: ScalingFigures['partitions'];
  if (sample.eventsSource === 'baedal_events_applied_total') {
    const shared: { partition: string; shares: Record<string, number> }[] = [];
    for (const [partition, byReplica] of [...sample.partitions].sort(([a], [b]) => a.localeCompare(b, 'en', { numeric: true }))) {
      if (byReplica.size < 2) continue;
      const total = [...byReplica.values()].reduce((s, v) => s + v, 0);
      shared.push({ partition, shares: Object.fromEntries([...byReplica].map(([name, v]) => [name, v / total])) });
    }
    partitions = { count: sample.partitions.size, single: sample.partitions.size - shared.length, shared };
  }
  const viewLag = x.viewLag ?? (sample.viewLag && { p99Ms: sample.viewLag.p99Ms, from: `baedal_view_lag_seconds, ${sample.viewLag.samples} samples`, samples: sample.viewLag.samples });
  return {
    replicas: sample.perReplica.length,
    concurrency: x.concurrency,
    ...(x.concurrencyPerReplica && { concurrencyPerReplica: true }),
    ...(x.variant !== undefined && { variant: x.variant }),
    ...(x.cpuPerReplica !== undefined && { cpuPerReplica: x.cpuPerReplica }),
    commandsPerS: x.load.commandsPerS,
    p99Ms: x.load.p99Ms,
    errors: x.load.errors,
    serviceMsPerCommand: perCommand(Object.values(x.cpu.replicaSeconds).reduce((s, v) => s + v, 0)),
    postgresMsPerCommand: perCommand(x.cpu.postgresSeconds),
    ...(x.cpu.loadGeneratorSeconds !== undefined && Number.isFinite(x.cpu.loadGeneratorSeconds) && { loadGeneratorMsPerCommand: perCommand(x.cpu.loadGeneratorSeconds) }),
    postgresCores: x.cpu.postgresSeconds / x.cpu.seconds,
    ...(x.cpu.host && { host: x.cpu.host }),
    ...(viewLag && { viewLagP99Ms: viewLag.p99Ms, viewLagFrom: viewLag.from }),
    ...(viewLag?.samples !== undefined && { viewLagSamples: viewLag.samples }),
    ...(sample.eventLag && { eventLag: sample.eventLag }),
    perReplica,
    eventsSource: sample.eventsSource,
    ...(partitions && { partitions }),
    hpa: hpaDecision(
      x.autoscaling,
      sample.perReplica.length,
      perReplica.map((r) => r.cpuCores),
      sample.backlog,
    ),
  };
}

// ── printing ─────────────────────────────────────────────────────────────────────────────────
const f = (v: number | undefined, digits = 1) => (v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(digits));
const pct = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? '-' : `${(x * 100).toFixed(0)} %`);

/** Each replica's share of the work, the partitions, and the autoscaler's decision: the lines under a step. */
export function describeReplicas(s: ScalingFigures, a: Autoscaling, indent = '    '): string {
  const partitioned = s.eventsSource === 'baedal_events_applied_total';
  const lines = s.perReplica.map((r) => {
    const parts = [
      `${r.name.padEnd(10)} commands ${pct(r.commandShare).padStart(5)}`,
      `events ${partitioned ? 'applied' : 'delivered'} ${pct(r.eventShare).padStart(5)}`,
    ];
    if (r.partitionsOwned !== undefined || r.partitionsApplied !== undefined) {
      parts.push(`partitions owned ${f(r.partitionsOwned, 0).padStart(3)}, applied ${f(r.partitionsApplied, 0).padStart(3)}`);
    }
    parts.push(`CPU ${f(r.cpuCores, 2)} cores${s.cpuPerReplica !== undefined ? ` of ${s.cpuPerReplica}` : ''}`);
    if (r.helperShare !== undefined) parts.push(`off the main thread ${pct(r.helperShare)}`);
    if (r.throttledShare !== undefined) parts.push(`throttled in ${pct(r.throttledShare)} of periods`);
    return `${indent}${parts.join('   ')}`;
  });
  if (s.partitions) {
    const shared = s.partitions.shared
      .slice(0, 6)
      .map((p) => `${p.partition} (${Object.entries(p.shares).map(([n, v]) => `${n} ${pct(v)}`).join(', ')})`)
      .join('; ');
    lines.push(
      `${indent}partitions with events: ${s.partitions.count}, applied by one replica each: ${s.partitions.single}` +
        (s.partitions.shared.length ? `; by more than one (moved during the window): ${shared}${s.partitions.shared.length > 6 ? `; … ${s.partitions.shared.length - 6} more` : ''}` : ''),
    );
  } else {
    lines.push(`${indent}(events: the replicas have no baedal_events_applied_total{partition}; shares are of baedal_events_delivered_total, per consumer group)`);
  }
  const rank = s.viewLagSamples ? `: ${p99RankText(s.viewLagSamples)}` : '';
  lines.push(`${indent}view lag p99 ${f(s.viewLagP99Ms, 0)} ms${s.viewLagFrom ? ` (${s.viewLagFrom}${rank})` : ''}`);
  if (s.eventLag) {
    lines.push(
      `${indent}event lag p99 ${f(s.eventLag.p99Ms, 0)} ms (each of the ${s.eventLag.events.toLocaleString('en')} events applied in the window, from its decision to its batch's commit: baedal_event_lag_seconds, read from its buckets)`,
    );
  }
  if (s.host) {
    const stolen = s.host.stolenCores === undefined ? '' : `, ${f(s.host.stolenCores, 2)} taken by the hypervisor (steal time)`;
    lines.push(`${indent}host: ${f(s.host.busyCores, 2)} of ${f(s.host.cores, 0)} cores busy${stolen}`);
  }
  lines.push(`${indent}${describeDecision(a, s.replicas, s.hpa)}`);
  return lines.join('\n');
}

/** One row of the scaling table: the figures, and the ratios to the row with the fewest replicas. */
export interface ScalingRow {
  replicas: number;
  commandsPerS: number;
  commandsRatio: number;
  p99Ms: number;
  serviceMsPerCommand: number;
  serviceRatio: number;
  postgresMsPerCommand: number;
  postgresRatio: number;
  /** The load generator's CPU per command and its ratio to the first row's (see ScalingFigures). */
  loadGeneratorMsPerCommand?: number;
  loadGeneratorRatio?: number;
  postgresCores: number;
  /** Cores of the machine busy, how many it has, and how many the hypervisor took (when measured). */
  hostBusyCores?: number;
  hostCores?: number;
  hostStolenCores?: number;
  viewLagP99Ms?: number;
  cpuPercentOfRequest: number;
  hpaDesired: number;
}

/** The rows of one round (one concurrency), with ratios to the first (fewest replicas). */
export function scalingRows(figures: readonly ScalingFigures[]): ScalingRow[] {
  const sorted = [...figures].sort((a, b) => a.replicas - b.replicas);
  const base = sorted[0];
  return sorted.map((s) => ({
    replicas: s.replicas,
    commandsPerS: s.commandsPerS,
    commandsRatio: s.commandsPerS / base!.commandsPerS,
    p99Ms: s.p99Ms,
    serviceMsPerCommand: s.serviceMsPerCommand,
    serviceRatio: s.serviceMsPerCommand / base!.serviceMsPerCommand,
    postgresMsPerCommand: s.postgresMsPerCommand,
    postgresRatio: s.postgresMsPerCommand / base!.postgresMsPerCommand,
    ...(s.loadGeneratorMsPerCommand !== undefined && { loadGeneratorMsPerCommand: s.loadGeneratorMsPerCommand }),
    ...(s.loadGeneratorMsPerCommand !== undefined &&
      base!.loadGeneratorMsPerCommand !== undefined && { loadGeneratorRatio: s.loadGeneratorMsPerCommand / base!.loadGeneratorMsPerCommand }),
    postgresCores: s.postgresCores,
    ...(s.host && { hostBusyCores: s.host.busyCores, hostCores: s.host.cores }),
    ...(s.host?.stolenCores !== undefined && { hostStolenCores: s.host.stolenCores }),
    ...(s.viewLagP99Ms !== undefined && { viewLagP99Ms: s.viewLagP99Ms }),
    cpuPercentOfRequest: s.hpa.cpuPercentOfRequest,
    hpaDesired: s.hpa.desired,
  }));
}

/**
 * Several rounds' rows: per replica count, the median of each figure over the rounds (the ratios
 * too are each round's, then their median: a host whose speed drifts between rounds moves both
 * figures of a round together).
 */
export function medianRows(rounds: readonly (readonly ScalingRow[])[]): ScalingRow[] {
  const counts = [...new Set(rounds.flatMap((r) => r.map((x) => x.replicas)))].sort((a, b) => a - b);
  return counts.map((replicas) => {
    const rows = rounds.map((r) => r.find((x) => x.replicas === replicas)).filter((x): x is ScalingRow => x !== undefined);
    const m = (pick: (r: ScalingRow) => number | undefined) => median(rows.map(pick).filter((v): v is number => v !== undefined)) ?? NaN;
    const lag = m((r) => r.viewLagP99Ms);
    const busy = m((r) => r.hostBusyCores);
    const cores = m((r) => r.hostCores);
    const stolen = m((r) => r.hostStolenCores);
    const loadGen = m((r) => r.loadGeneratorMsPerCommand);
    const loadGenRatio = m((r) => r.loadGeneratorRatio);
    return {
      replicas,
      commandsPerS: m((r) => r.commandsPerS),
      commandsRatio: m((r) => r.commandsRatio),
      p99Ms: m((r) => r.p99Ms),
      serviceMsPerCommand: m((r) => r.serviceMsPerCommand),
      serviceRatio: m((r) => r.serviceRatio),
      postgresMsPerCommand: m((r) => r.postgresMsPerCommand),
      postgresRatio: m((r) => r.postgresRatio),
      ...(Number.isFinite(loadGen) && { loadGeneratorMsPerCommand: loadGen }),
      ...(Number.isFinite(loadGenRatio) && { loadGeneratorRatio: loadGenRatio }),
      postgresCores: m((r) => r.postgresCores),
      ...(Number.isFinite(busy) && Number.isFinite(cores) && { hostBusyCores: busy, hostCores: cores }),
      ...(Number.isFinite(stolen) && { hostStolenCores: stolen }),
      ...(Number.isFinite(lag) && { viewLagP99Ms: lag }),
      cpuPercentOfRequest: m((r) => r.cpuPercentOfRequest),
      hpaDesired: m((r) => r.hpaDesired),
    };
  });
}

/**
 * A host this busy (share of its cores, what the hypervisor took counted as busy) has no CPU left
 * for a replica's quota: the table says so.
 */
export const HOST_SATURATED = 0.95;
/**
 * Steal time above this share of the host's cores is named under the table: the hypervisor ran
 * other guests on them, so the row measures the neighbours as much as the service.
 */
export const HOST_STOLEN_NOTABLE = 0.05;
/**
 * The load generator's CPU per command this far from the first row's (either way) is named under
 * the table: its work per command does not change with the replicas, so it is a sign that the host
 * ran every process about that much faster or slower in that row than in the first, the replicas too.
 */
export const LOAD_GENERATOR_NOTABLE = 1.15;

/** The scaling table: one row per replica count, with the ratios to the first row. */
export function scalingTable(rows: readonly ScalingRow[], indent = '  '): string {
  const base = rows[0]?.replicas ?? 1;
  const x = `×${base}`.padStart(5);
  // The load generator's column only where it was measured (the benchmark; not the demo).
  const loadGen = rows.some((r) => r.loadGeneratorMsPerCommand !== undefined);
  const lines = [
    `${indent}replicas  commands/s ${x}   p99 ms   service CPU ms/cmd ${x}   PostgreSQL CPU ms/cmd ${x}   ${loadGen ? `load gen CPU ms/cmd ${x}   ` : ''}PostgreSQL cores   host cores busy   stolen   view lag p99 ms   CPU % of request   HPA desired`,
  ];
  for (const r of rows) {
    const host = r.hostBusyCores === undefined ? '-' : `${f(r.hostBusyCores, 2)} of ${f(r.hostCores, 0)}`;
    const gen = loadGen ? `${f(r.loadGeneratorMsPerCommand, 2).padStart(19)} ${f(r.loadGeneratorRatio, 2).padStart(5)}   ` : '';
    lines.push(
      `${indent}${String(r.replicas).padStart(8)}  ${f(r.commandsPerS, 0).padStart(10)} ${f(r.commandsRatio, 2).padStart(5)}   ${f(r.p99Ms).padStart(6)}   ${f(r.serviceMsPerCommand, 2).padStart(18)} ${f(r.serviceRatio, 2).padStart(5)}   ${f(r.postgresMsPerCommand, 2).padStart(21)} ${f(r.postgresRatio, 2).padStart(5)}   ${gen}${f(r.postgresCores, 2).padStart(16)}   ${host.padStart(15)}   ${f(r.hostStolenCores, 2).padStart(6)}   ${f(r.viewLagP99Ms, 0).padStart(15)}   ${f(r.cpuPercentOfRequest, 0).padStart(16)}   ${f(r.hpaDesired, 0).padStart(11)}`,
    );
  }
  // Under the table, in the rows' order: where the host was saturated, else where the hypervisor took much of it.
  const stolenOf = (r: ScalingRow) => r.hostStolenCores ?? 0;
  for (const r of rows) {
    if (r.hostBusyCores === undefined || r.hostCores === undefined) continue;
    const at = `${indent}at ${r.replicas} replica${r.replicas > 1 ? 's' : ''}`;
    if (r.hostBusyCores + stolenOf(r) >= HOST_SATURATED * r.hostCores) {
      const taken = stolenOf(r) > 0 ? ` and ${f(stolenOf(r), 2)} taken by the hypervisor` : '';
      lines.push(
        `${at} the host was saturated: ${f(r.hostBusyCores, 2)} of its ${f(r.hostCores, 0)} cores busy${taken}, PostgreSQL using ${f(r.postgresCores, 2)} of them; the replicas' ratio measures the host there, not what another replica adds`,
      );
    } else if (stolenOf(r) >= HOST_STOLEN_NOTABLE * r.hostCores) {
      lines.push(
        `${at} the hypervisor took ${f(stolenOf(r), 2)} of the host's ${f(r.hostCores, 0)} cores (steal time): other guests ran on them, so the row measures them as much as the service`,
      );
    }
  }
  // Then the rows whose load generator, doing the same work per command, was much dearer or cheaper than in the first.
  for (const r of rows.slice(1)) {
    const ratio = r.loadGeneratorRatio;
    if (ratio === undefined || !Number.isFinite(ratio) || (ratio < LOAD_GENERATOR_NOTABLE && ratio > 1 / LOAD_GENERATOR_NOTABLE)) continue;
    lines.push(
      `${indent}at ${r.replicas} replica${r.replicas > 1 ? 's' : ''} the load generator, whose work per command is the same at every replica count, spent ×${f(ratio, 2)} of its CPU per command at ${base} replica${base > 1 ? 's' : ''}: a sign that the host ran every process ${ratio > 1 ? 'slower' : 'faster'} there than in the first row, the replicas too`,
    );
  }
  return lines.join('\n');
}

/**
 * The scaling tables of one or several rounds, one per concurrency: with one round its rows, with
 * several the median of each figure over the rounds.
 */
export function scalingTables(rounds: readonly (readonly ScalingFigures[])[]): string {
  const all = rounds.flat();
  // Runs with the total and with the per-replica number of virtual users are never compared.
  const loadOf = (s: ScalingFigures) => `${s.concurrency}${s.concurrencyPerReplica ? ' per replica' : ''}`;
  const concurrencies = [...new Set([...all].sort((a, b) => a.concurrency - b.concurrency).map(loadOf))];
  const variants = [...new Set(all.map((s) => s.variant))];
  const limit = all.find((s) => s.cpuPerReplica !== undefined)?.cpuPerReplica;
  const out: string[] = [];
  for (const conc of concurrencies) {
    for (const variant of variants) {
      const alike = (s: ScalingFigures) => loadOf(s) === conc && s.variant === variant;
      const perRound = rounds.map((r) => scalingRows(r.filter(alike))).filter((r) => r.length > 0);
      if (perRound.length === 0) continue;
      const rows = perRound.length === 1 ? perRound[0]! : medianRows(perRound);
      const base = rows[0]?.replicas ?? 1;
      out.push(
        `at concurrency ${conc}${variant ? `, ${variant}` : ''}, ${limit === undefined ? 'no CPU limit' : `${limit} core per replica`}${perRound.length > 1 ? `, median of ${perRound.length} rounds` : ''} (ratios to ${base} replica${base > 1 ? 's' : ''}; CPU per command of all replicas together):`,
        scalingTable(rows),
      );
    }
  }
  return out.join('\n');
}
