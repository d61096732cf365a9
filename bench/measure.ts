// What the benchmark samples around one load run: CPU time of every party, memory of the
// service processes, and view lag when the service reports it.
import { percentile } from '../scripts/load/stats.ts';
import { cpuSeconds, machineCpu, mainThreadCpuSeconds, mainThreadSleeps, postgresCpuSeconds, postgresSleeps, redisCpuSeconds, rssBytes, sleepsBetween } from './proc.ts';

export interface Watched {
  name: string;
  pid: number;
}

export interface CpuSnapshot {
  at: number;
  byName: Map<string, number>;
  /** The same processes' main threads. */
  mainByName: Map<string, number>;
  postgres: number;
  redis: number;
  machine: { busy: number; stolen: number; total: number };
  /** Times each process's main thread has slept so far, and each PostgreSQL process's (by pid; none where there is no user postgres). */
  sleepsByName: Map<string, number>;
  postgresSleeps: Map<number, number> | undefined;
}

export function cpuSnapshot(watched: readonly Watched[]): CpuSnapshot {
  return {
    at: performance.now(),
    byName: new Map(watched.map((w) => [w.name, cpuSeconds(w.pid)])),
    mainByName: new Map(watched.map((w) => [w.name, mainThreadCpuSeconds(w.pid)])),
    postgres: postgresCpuSeconds(),
    redis: redisCpuSeconds(),
    machine: machineCpu(),
    sleepsByName: new Map(watched.map((w) => [w.name, mainThreadSleeps(w.pid)])),
    postgresSleeps: postgresSleeps(),
  };
}

/** CPU seconds each party used between two snapshots, and how many cores the machine kept busy. */
export interface CpuUse {
  seconds: number;
  byName: Record<string, number>;
  /** The same for each process's main thread alone (the rest is its helper threads'). */
  mainByName: Record<string, number>;
  postgres: number;
  redis: number;
  /** Cores busy on average over the window with this machine's own work, every process on it included. */
  machineBusyCores: number;
  /**
   * Cores the hypervisor took on average over the window (steal time): while this machine had work
   * to run, its virtual cores ran another guest's. Not in `machineBusyCores`.
   */
  machineStolenCores: number;
  /**
   * Times each process's main thread slept in the window (each a wake-up), and PostgreSQL's
   * processes together (a floor: a backend that ended in the window took its count with it).
   */
  sleepsByName: Record<string, number>;
  postgresSleeps: number;
}

/** What each named counter gained from `a` to `b` (0 for one that `a` did not have). */
function gained(a: Map<string, number>, b: Map<string, number>): Record<string, number> {
  return Object.fromEntries([...b].map(([name, v]) => [name, v - (a.get(name) ?? v)]));
}

export function cpuUse(a: CpuSnapshot, b: CpuSnapshot): CpuUse {
  const seconds = (b.at - a.at) / 1000;
  return {
    seconds,
    byName: gained(a.byName, b.byName),
    mainByName: gained(a.mainByName, b.mainByName),
    postgres: b.postgres - a.postgres,
    redis: b.redis - a.redis,
    machineBusyCores: (b.machine.busy - a.machine.busy) / seconds,
    machineStolenCores: (b.machine.stolen - a.machine.stolen) / seconds,
    sleepsByName: gained(a.sleepsByName, b.sleepsByName),
    postgresSleeps: sleepsBetween(a.postgresSleeps, b.postgresSleeps),
  };
}

export interface RssTrack {
  name: string;
  /** [seconds since the window opened, MB] */
  samples: [number, number][];
}

export interface ViewLag {
  available: boolean;
  /** Why there is no figure, when there is none. */
  note?: string;
  /**
   * What the figures are over: `measures`, each distinct measure the service answered once (told
   * apart by its `measuredAt`, where the answer has one); else `ticks`, the worst answer of each
   * 250 ms tick.
   */
  basis: 'measures' | 'ticks';
  samples: number;
  maxMs: number;
  p99Ms: number;
  /**
   * Over `measures`: the worst answer of each tick, cached answers included (each replica answers
   * the same measure for up to a second), as the benchmark read the lag before it told measures
   * apart; its p99 sits at the top of the window's ramps.
   */
  ticks?: { samples: number; p99Ms: number };
}

/** A sampled view lag as the scaling table takes it (`ScalingInput.viewLag`); undefined when none was read. */
export function viewLagFigure(lag: ViewLag): { p99Ms: number; from: string; samples: number } | undefined {
  if (!lag.available) return undefined;
  return { p99Ms: lag.p99Ms, from: `GET /views/_status, ${lag.samples} ${lag.basis === 'measures' ? 'distinct measures' : 'samples'}`, samples: lag.samples };
}

/**
 * The largest number found under a key that names a lag (`lagMs`, `lag_ms`, `maxLagMs`, `lag`, ...)
 * anywhere in a JSON document, in milliseconds (keys that say seconds are converted). The shape
 * of GET /views/_status is the service's to choose; this reads any of the usual ones.
 */
export function largestLagMs(doc: unknown, key = ''): number | undefined {
  if (typeof doc === 'number') {
    if (!Number.isFinite(doc) || !/lag/i.test(key) || /event|count|seq|position|jobs/i.test(key)) return undefined;
    return /(seconds|secs|_s)$/i.test(key) || /[a-z]S$/.test(key) ? doc * 1000 : doc;
  }
  if (doc === null || typeof doc !== 'object') return undefined;
  const entries: [string, unknown][] = Array.isArray(doc) ? doc.map((v) => [key, v]) : Object.entries(doc);
  let best: number | undefined;
  for (const [k, v] of entries) {
    const found = largestLagMs(v, k);
    if (found !== undefined && (best === undefined || found > best)) best = found;
  }
  return best;
}

/**
 * Samples, while a load run's measured window is open, each service process's resident memory
 * (every second) and the view lag its GET /views/_status reports (every 250 ms). A service
 * without that route (404) has no view lag to report: "n/a". Where the answers say when they
 * were measured (`measuredAt`: Baedal's measure is shared for up to a second), the lag's figures
 * are over the distinct measures, each once; else over each tick's worst answer.
 */
export class RunSampler {
  private readonly rss: RssTrack[];
  /** Each tick's worst answer. */
  private readonly lags: number[] = [];
  /** Each distinct measure's lag, told apart by the answer's `measuredAt` (per URL). */
  private readonly measures: number[] = [];
  private readonly lastMeasuredAt = new Map<string, string>();
  private viewNote: string | undefined;
  /** Answers other than 200 and 404, by status: skipped samples. */
  private readonly failed = new Map<number, number>();
  private timers: NodeJS.Timeout[] = [];
  private started = 0;
  private inFlight = false;

  constructor(
    private readonly processes: readonly Watched[],
    private readonly viewStatusUrls: readonly string[],
    private readonly adminToken: string,
    private readonly onRss?: (elapsedS: number, mb: Record<string, number>) => void,
  ) {
    this.rss = processes.map((p) => ({ name: p.name, samples: [] }));
    if (viewStatusUrls.length === 0) this.viewNote = 'not sampled';
  }

  start(): void {
    this.started = performance.now();
    this.sampleRss();
    this.timers.push(setInterval(() => this.sampleRss(), 1000));
    if (!this.viewNote) this.timers.push(setInterval(() => void this.sampleLag(), 250));
  }

  stop(): { rss: RssTrack[]; viewLag: ViewLag } {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    this.sampleRss();
    const ticks = Float64Array.from(this.lags).sort();
    const byMeasure = this.measures.length > 0;
    const sorted = byMeasure ? Float64Array.from(this.measures).sort() : ticks;
    return {
      rss: this.rss,
      viewLag: {
        available: this.lags.length > 0,
        ...(this.lags.length === 0 && { note: this.viewNote ?? (this.failed.size ? `n/a: GET /views/_status answered ${[...this.failed].map(([status, n]) => `${status} (${n}×)`).join(', ')}` : 'no sample answered in time') }),
        basis: byMeasure ? 'measures' : 'ticks',
        samples: sorted.length,
        maxMs: sorted.length ? sorted[sorted.length - 1]! : NaN,
        p99Ms: percentile(sorted, 99),
        ...(byMeasure && { ticks: { samples: ticks.length, p99Ms: percentile(ticks, 99) } }),
      },
    };
  }

  private sampleRss(): void {
    const elapsed = (performance.now() - this.started) / 1000;
    const now: Record<string, number> = {};
    this.processes.forEach((p, i) => {
      const bytes = rssBytes(p.pid);
      if (bytes !== undefined) {
        now[p.name] = bytes / 2 ** 20;
        this.rss[i]!.samples.push([elapsed, bytes / 2 ** 20]);
      }
    });
    this.onRss?.(elapsed, now);
  }

  private async sampleLag(): Promise<void> {
    if (this.inFlight || this.viewNote) return;
    this.inFlight = true;
    try {
      let worst: number | undefined;
      for (const url of this.viewStatusUrls) {
        const res = await fetch(`${url}/views/_status`, { headers: { authorization: `Bearer ${this.adminToken}` }, signal: AbortSignal.timeout(2000) });
        if (res.status === 404) {
          this.viewNote = 'n/a: the service has no GET /views/_status';
          await res.arrayBuffer();
          return;
        }
        if (!res.ok) {
          // A replica held to a small CPU share can fail one answer under load: skip the sample, keep sampling.
          this.failed.set(res.status, (this.failed.get(res.status) ?? 0) + 1);
          await res.arrayBuffer();
          return;
        }
        const doc: unknown = await res.json();
        const lag = largestLagMs(doc);
        if (lag === undefined) {
          this.viewNote = 'n/a: GET /views/_status names no lag';
          return;
        }
        worst = worst === undefined ? lag : Math.max(worst, lag);
        // A service that caches its measure answers the same one again: count each measure once.
        const measuredAt = (doc as { measuredAt?: unknown }).measuredAt;
        if (typeof measuredAt === 'string' && this.lastMeasuredAt.get(url) !== measuredAt) {
          this.lastMeasuredAt.set(url, measuredAt);
          this.measures.push(lag);
        }
      }
      if (worst !== undefined) this.lags.push(worst);
    } catch {
      // a sample that did not answer within its deadline is skipped
    } finally {
      this.inFlight = false;
    }
  }
}

/** Least-squares slope of memory over time, in MB per 10 minutes. */
export function rssSlopeMbPer10Min(samples: readonly [number, number][]): number {
  const n = samples.length;
  if (n < 2) return NaN;
  let sx = 0;
  let sy = 0;
  let sxx = 0;
  let sxy = 0;
  for (const [x, y] of samples) {
    sx += x;
    sy += y;
    sxx += x * x;
    sxy += x * y;
  }
  const denominator = n * sxx - sx * sx;
  return denominator === 0 ? NaN : ((n * sxy - sx * sy) / denominator) * 600;
}
