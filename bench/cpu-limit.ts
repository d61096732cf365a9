// A replica's CPU limit as Kubernetes sets a pod's `limits.cpu`: the process runs in a cgroup of its
// own with a CFS quota (cgroup v1 `cpu.cfs_quota_us` per `cpu.cfs_period_us`, or v2 `cpu.max`), so
// it gets at most `cores` of CPU time per period however many cores the machine has. Shared by the
// scaling demo and the benchmark.
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** The CFS period Kubernetes uses (the kernel's default too): 100 ms. */
export const PERIOD_US = 100_000;
/** The kernel refuses a quota under 1 ms per period. */
export const MIN_QUOTA_US = 1000;

/** Microseconds of CPU per period that `cores` cores are. */
export function quotaUs(cores: number, periodUs = PERIOD_US): number {
  if (!Number.isFinite(cores) || cores <= 0) throw new RangeError(`a CPU limit must be a positive number of cores, not ${cores}`);
  const quota = Math.round(cores * periodUs);
  if (quota < MIN_QUOTA_US) throw new RangeError(`${cores} cores is ${quota} µs per ${periodUs} µs period; the kernel takes at least ${MIN_QUOTA_US} µs`);
  return quota;
}

/** `--cpu-per-replica`: cores as a decimal (0.25, 1.5) or millicores as Kubernetes writes them (250m); undefined when neither. */
export function parseCores(raw: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?|\.\d+)(m?)$/.exec(raw.trim());
  if (!m) return undefined;
  const cores = Number(m[1]) / (m[2] ? 1000 : 1);
  if (!(cores > 0)) return undefined;
  try {
    quotaUs(cores);
  } catch {
    return undefined;
  }
  return cores;
}

/** Where the cpu controller is, or why there is none. */
export type CgroupLayout = { version: 1; base: string } | { version: 2; base: string } | { version: 0; reason: string };

function controllersOf(dir: string): string[] | undefined {
  try {
    return readFileSync(join(dir, 'cgroup.controllers'), 'utf8').trim().split(/\s+/);
  } catch {
    return undefined;
  }
}

/**
 * Finds the cpu controller under `root` (the cgroup mount point, /sys/fs/cgroup): v2 when `root`
 * itself is a cgroup2 mount that offers `cpu`; v1 when `root/cpu` has `cpu.cfs_quota_us` (also
 * where cpu and cpuacct are mounted together, `cpu` then being a link to `cpu,cpuacct`); v2 again
 * on a hybrid host whose `root/unified` offers `cpu`.
 */
export function detectCgroup(root = '/sys/fs/cgroup'): CgroupLayout {
  const v2 = controllersOf(root);
  if (v2?.includes('cpu')) return { version: 2, base: root };
  if (existsSync(join(root, 'cpu', 'cpu.cfs_quota_us'))) return { version: 1, base: join(root, 'cpu') };
  const unified = join(root, 'unified');
  if (controllersOf(unified)?.includes('cpu')) return { version: 2, base: unified };
  if (v2) return { version: 0, reason: `${root} is cgroup v2, but its cgroup.controllers offers no cpu controller (it offers: ${v2.join(' ') || 'none'})` };
  return { version: 0, reason: `no cpu controller under ${root}: neither ${join(root, 'cgroup.controllers')} listing cpu (v2) nor ${join(root, 'cpu', 'cpu.cfs_quota_us')} (v1)` };
}

/** How often the quota held a group back, from its cpu.stat. */
export interface Throttling {
  periods: number;
  throttled: number;
  throttledS: number;
}

/** cpu.stat of either version: v1 says throttled_time in ns, v2 throttled_usec. */
export function parseCpuStat(text: string): Throttling {
  const field = (name: string) => {
    const m = new RegExp(`^${name} (\\d+)$`, 'm').exec(text);
    return m ? Number(m[1]) : undefined;
  };
  const ns = field('throttled_time');
  const us = field('throttled_usec');
  return {
    periods: field('nr_periods') ?? 0,
    throttled: field('nr_throttled') ?? 0,
    throttledS: ns !== undefined ? ns / 1e9 : (us ?? 0) / 1e6,
  };
}

/** What happened between two readings of a group's cpu.stat. */
export function throttlingBetween(a: Throttling, b: Throttling): Throttling {
  return { periods: b.periods - a.periods, throttled: b.throttled - a.throttled, throttledS: b.throttledS - a.throttledS };
}

/** Cgroups cannot be written (not root, no cpu controller, a read-only mount): names the path and why. */
export class CpuLimitError extends Error {
  constructor(
    readonly path: string,
    readonly reason: string,
  ) {
    super(`cannot limit CPU per replica: ${path}: ${reason}`);
  }
}

function describe(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  const hint =
    e.code === 'EACCES' || e.code === 'EPERM'
      ? ' (writing cgroups needs root, or a delegated cgroup)'
      : e.code === 'EROFS'
        ? ' (the cgroup file system is mounted read-only, as in an unprivileged container)'
        : e.code === 'EBUSY'
          ? ' (cgroup v2 enables a controller only for a group with no processes of its own)'
          : '';
  const message = e.code && e.message.startsWith(`${e.code}:`) ? e.message : `${e.code ?? 'error'}: ${e.message}`;
  return `${message}${hint}`;
}

/** Runs `fn` on `path`, turning a failure into a CpuLimitError naming the path. */
function at<T>(path: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw new CpuLimitError(path, describe(err));
  }
}

export interface CpuLimitsOptions {
  /** The cgroup mount point (a directory under a tmp dir in tests). */
  root?: string;
  /** The run's group under the controller, e.g. `baedal-bench-1a2b3c4d`: runs side by side never share groups. */
  group: string;
}

/**
 * One run's CPU limits: a group per run under the cpu controller, and in it a group per replica
 * with the quota. `wrap()` starts a process already inside its group (a shell writes its own pid
 * to `cgroup.procs`, then execs the command: same pid, limited before it runs a line of its own).
 * `remove()` deletes every group once its processes are gone.
 */
export class CpuLimits {
  readonly quotaUs: number;
  readonly dir: string;
  private readonly groups = new Set<string>();

  private constructor(
    readonly cores: number,
    readonly layout: { version: 1 | 2; base: string },
    group: string,
  ) {
    this.quotaUs = quotaUs(cores);
    this.dir = join(layout.base, group);
  }

  /**
   * Creates the run's group and checks, with a probe group, that a quota can be written: a
   * CpuLimitError now rather than a replica running without its limit later.
   */
  static open(cores: number, opts: CpuLimitsOptions): CpuLimits {
    const root = opts.root ?? '/sys/fs/cgroup';
    const layout = detectCgroup(root);
    if (layout.version === 0) throw new CpuLimitError(root, layout.reason);
    const limits = new CpuLimits(cores, layout, opts.group);
    if (layout.version === 2) limits.enableCpu(layout.base);
    at(limits.dir, () => mkdirSync(limits.dir, { recursive: true }));
    try {
      if (layout.version === 2) limits.enableCpu(limits.dir);
      limits.create('probe');
    } catch (err) {
      limits.removeSync();
      throw err;
    }
    try {
      limits.removeGroup('probe');
    } catch {
      // left for remove(), which tries every group again
    }
    return limits;
  }

  /** How the limit reads: `0.25 core (cgroup v1, cpu.cfs_quota_us 25000 per 100000 µs, under /sys/fs/cgroup/cpu/…)`. */
  describe(): string {
    const how = this.layout.version === 1 ? `cpu.cfs_quota_us ${this.quotaUs} per cpu.cfs_period_us ${PERIOD_US}` : `cpu.max "${this.quotaUs} ${PERIOD_US}"`;
    return `${this.cores} core${this.cores > 1 ? 's' : ''} per replica (cgroup v${this.layout.version}, ${how}, groups under ${this.dir})`;
  }

  /** The directory of replica `name`'s group. */
  path(name: string): string {
    if (!/^[A-Za-z0-9_.-]+$/.test(name) || name.startsWith('.')) throw new Error(`not a cgroup name: "${name}"`);
    return join(this.dir, name);
  }

  /** Creates replica `name`'s group (or finds it: a replica started again) with the quota written. */
  create(name: string): string {
    const dir = this.path(name);
    at(dir, () => mkdirSync(dir, { recursive: true }));
    this.groups.add(name);
    if (this.layout.version === 1) {
      this.write(join(dir, 'cpu.cfs_period_us'), String(PERIOD_US));
      this.write(join(dir, 'cpu.cfs_quota_us'), String(this.quotaUs));
    } else {
      this.write(join(dir, 'cpu.max'), `${this.quotaUs} ${PERIOD_US}`);
    }
    return dir;
  }

  /** The command line that runs `command args` inside replica `name`'s group (created here). */
  wrap(name: string, command: string, args: readonly string[]): { command: string; args: string[] } {
    const procs = join(this.create(name), 'cgroup.procs');
    // $0 is the procs file, "$@" the command: `exec` keeps the shell's pid, already in the group.
    return { command: '/bin/sh', args: ['-c', 'echo $$ > "$0" && exec "$@"', procs, command, ...args] };
  }

  /** The pids in replica `name`'s group. */
  pids(name: string): number[] {
    return readFileSync(join(this.path(name), 'cgroup.procs'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map(Number);
  }

  /** Throws unless `pid` is in replica `name`'s group: a replica is never measured without its limit. */
  verify(name: string, pid: number): void {
    if (!this.pids(name).includes(pid)) throw new CpuLimitError(join(this.path(name), 'cgroup.procs'), `pid ${pid} is not in the group`);
  }

  /** Replica `name`'s cpu.stat now. */
  throttling(name: string): Throttling {
    return parseCpuStat(readFileSync(join(this.path(name), 'cpu.stat'), 'utf8'));
  }

  /**
   * Removes every group, waiting up to `timeoutMs` for the processes in them to be gone (a killed
   * process leaves its group as it exits). Answers the groups it could not remove, with why.
   */
  async remove(timeoutMs = 5000): Promise<string[]> {
    const deadline = Date.now() + timeoutMs;
    for (const name of this.groups) {
      while (this.occupied(name) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return this.removeSync();
  }

  /** remove() without waiting, for `process.on('exit')`. */
  removeSync(): string[] {
    const left: string[] = [];
    for (const name of [...this.groups]) {
      try {
        this.removeGroup(name);
      } catch (err) {
        left.push(`${this.path(name)}: ${describe(err)}`);
      }
    }
    try {
      if (existsSync(this.dir)) rmdirSync(this.dir);
    } catch (err) {
      left.push(`${this.dir}: ${describe(err)}`);
    }
    return left;
  }

  private occupied(name: string): boolean {
    try {
      return this.pids(name).length > 0;
    } catch {
      return false;
    }
  }

  private removeGroup(name: string): void {
    const dir = this.path(name);
    if (existsSync(dir)) rmdirSync(dir);
    this.groups.delete(name);
  }

  private write(file: string, value: string): void {
    at(file, () => writeFileSync(file, value));
  }

  /** cgroup v2: a group's children get the cpu controller only once it is in the group's subtree_control. */
  private enableCpu(dir: string): void {
    const file = join(dir, 'cgroup.subtree_control');
    const enabled = at(file, () => (existsSync(file) ? readFileSync(file, 'utf8') : '')).split(/\s+/);
    if (!enabled.includes('cpu')) this.write(file, '+cpu');
  }
}
