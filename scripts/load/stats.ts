/** Latency percentiles in milliseconds. */
export interface LatencySummary {
  count: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
  mean: number;
}

/** The nearest rank of percentile `p` among `n` values (1 = the lowest, `n` = the highest). */
export function nearestRank(n: number, p: number): number {
  return Math.min(n, Math.max(1, Math.ceil((p / 100) * n)));
}

/** Nearest-rank percentile of an ascending list. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[nearestRank(sorted.length, p) - 1]!;
}

export function summarise(samples: readonly number[]): LatencySummary {
  const sorted = Float64Array.from(samples).sort();
  let sum = 0;
  for (const v of sorted) sum += v;
  return {
    count: sorted.length,
    p50: percentile(sorted, 50),
    p95: percentile(sorted, 95),
    p99: percentile(sorted, 99),
    max: sorted.length ? sorted[sorted.length - 1]! : NaN,
    mean: sorted.length ? sum / sorted.length : NaN,
  };
}

/** Latencies per name, kept whole so percentiles are exact (a 10-minute run at 3,000/s is ~15 MB). */
export class Latencies {
  private readonly byName = new Map<string, number[]>();

  record(name: string, ms: number): void {
    let list = this.byName.get(name);
    if (!list) this.byName.set(name, (list = []));
    list.push(ms);
  }

  count(): number {
    let n = 0;
    for (const list of this.byName.values()) n += list.length;
    return n;
  }

  summary(order: readonly string[]): { overall: LatencySummary; byCommand: Record<string, LatencySummary> } {
    const byCommand: Record<string, LatencySummary> = {};
    const all: number[] = [];
    const names = [...order.filter((n) => this.byName.has(n)), ...[...this.byName.keys()].filter((n) => !order.includes(n))];
    for (const name of names) {
      const list = this.byName.get(name)!;
      byCommand[name] = summarise(list);
      for (const v of list) all.push(v);
    }
    return { overall: summarise(all), byCommand };
  }
}

/** Counts by a key, e.g. errors by `<status> <code>`. */
export class Counter {
  readonly counts = new Map<string, number>();
  total = 0;

  add(key: string, n = 1): void {
    this.counts.set(key, (this.counts.get(key) ?? 0) + n);
    this.total += n;
  }

  toJSON(): Record<string, number> {
    return Object.fromEntries([...this.counts].sort((a, b) => b[1] - a[1]));
  }
}
