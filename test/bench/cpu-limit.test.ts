import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { CpuLimitError, CpuLimits, detectCgroup, parseCores, parseCpuStat, quotaUs, throttlingBetween } from '../../bench/cpu-limit.ts';
import { cpuSeconds } from '../../bench/proc.ts';

/** Waits for `check` to hold, polling, failing at the deadline. */
async function until(check: () => boolean, what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('CPU limit per replica: the arithmetic', () => {
  it('turns cores into microseconds per 100 ms period', () => {
    expect(quotaUs(0.25)).to.equal(25_000);
    expect(quotaUs(1.5)).to.equal(150_000);
    expect(quotaUs(0.5, 50_000)).to.equal(25_000);
  });

  it('refuses a limit of no cores, or under the kernel minimum of 1 ms per period', () => {
    expect(() => quotaUs(0)).to.throw(RangeError, /positive/);
    expect(() => quotaUs(-1)).to.throw(RangeError, /positive/);
    expect(() => quotaUs(Number.NaN)).to.throw(RangeError, /positive/);
    expect(() => quotaUs(0.005)).to.throw(RangeError, /at least 1000 µs/);
  });

  it('reads --cpu-per-replica as cores or as Kubernetes millicores', () => {
    expect(parseCores('0.25')).to.equal(0.25);
    expect(parseCores('.5')).to.equal(0.5);
    expect(parseCores('2')).to.equal(2);
    expect(parseCores('250m')).to.equal(0.25);
    expect(parseCores('1500m')).to.equal(1.5);
    for (const bad of ['', '0', '0.0', '0m', '5m', '-1', 'abc', '1e3', '0.25 cores', 'none']) expect(parseCores(bad), bad).to.equal(undefined);
  });

  it('reads throttling from cpu.stat of either version, and its growth between two readings', () => {
    const v1 = parseCpuStat('nr_periods 120\nnr_throttled 90\nthrottled_time 4500000000\nnr_bursts 0\nburst_time 0\n');
    expect(v1).to.deep.equal({ periods: 120, throttled: 90, throttledS: 4.5 });
    const v2 = parseCpuStat('usage_usec 51000\nuser_usec 50000\nsystem_usec 1000\nnr_periods 10\nnr_throttled 4\nthrottled_usec 250000\n');
    expect(v2).to.deep.equal({ periods: 10, throttled: 4, throttledS: 0.25 });
    expect(throttlingBetween(v2, v1)).to.deep.equal({ periods: 110, throttled: 86, throttledS: 4.25 });
  });
});

describe('CPU limit per replica: finding and writing cgroups (a directory standing in for /sys/fs/cgroup)', () => {
  let root: string;
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'baedal-cgroup-'));
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  const v1Root = () => {
    mkdirSync(join(root, 'cpu'));
    writeFileSync(join(root, 'cpu', 'cpu.cfs_quota_us'), '-1\n');
    writeFileSync(join(root, 'cpu', 'cpu.cfs_period_us'), '100000\n');
  };

  it('finds cgroup v2 where the mount point offers the cpu controller', () => {
    writeFileSync(join(root, 'cgroup.controllers'), 'cpuset cpu io memory pids\n');
    expect(detectCgroup(root)).to.deep.equal({ version: 2, base: root });
  });

  it('finds cgroup v1 where cpu/ has cpu.cfs_quota_us', () => {
    v1Root();
    expect(detectCgroup(root)).to.deep.equal({ version: 1, base: join(root, 'cpu') });
  });

  it('finds cgroup v2 under unified/ on a hybrid host, and v1 first when the cpu controller is bound there', () => {
    mkdirSync(join(root, 'unified'));
    writeFileSync(join(root, 'unified', 'cgroup.controllers'), 'cpu memory\n');
    expect(detectCgroup(root)).to.deep.equal({ version: 2, base: join(root, 'unified') });
    writeFileSync(join(root, 'unified', 'cgroup.controllers'), 'hugetlb\n');
    v1Root();
    expect(detectCgroup(root)).to.deep.equal({ version: 1, base: join(root, 'cpu') });
  });

  it('says why when there is no cpu controller', () => {
    writeFileSync(join(root, 'cgroup.controllers'), 'memory pids\n');
    const v2 = detectCgroup(root);
    expect(v2.version).to.equal(0);
    expect(v2.version === 0 && v2.reason).to.include(`${root} is cgroup v2`).and.include('no cpu controller').and.include('memory pids');
    rmSync(join(root, 'cgroup.controllers'));
    const none = detectCgroup(root);
    expect(none.version === 0 && none.reason).to.include(join(root, 'cpu', 'cpu.cfs_quota_us'));
    expect(() => CpuLimits.open(0.25, { root, group: 'run' }))
      .to.throw(CpuLimitError)
      .that.satisfies((e: CpuLimitError) => e.path === root && e.message.includes('no cpu controller'));
  });

  it('v1: a group per run, and per replica the period and the quota', () => {
    v1Root();
    const limits = CpuLimits.open(0.25, { root, group: 'baedal-bench-test' });
    const dir = limits.create('replica-1');
    expect(dir).to.equal(join(root, 'cpu', 'baedal-bench-test', 'replica-1'));
    expect(readFileSync(join(dir, 'cpu.cfs_period_us'), 'utf8')).to.equal('100000');
    expect(readFileSync(join(dir, 'cpu.cfs_quota_us'), 'utf8')).to.equal('25000');
    expect(limits.describe()).to.include('cgroup v1').and.include('cpu.cfs_quota_us 25000 per cpu.cfs_period_us 100000');
  });

  it('v2: the cpu controller enabled down to the run group, and cpu.max per replica', () => {
    writeFileSync(join(root, 'cgroup.controllers'), 'cpu memory\n');
    writeFileSync(join(root, 'cgroup.subtree_control'), 'memory\n');
    const limits = CpuLimits.open(1.5, { root, group: 'run' });
    const dir = limits.create('replica-2');
    expect(readFileSync(join(dir, 'cpu.max'), 'utf8')).to.equal('150000 100000');
    expect(readFileSync(join(root, 'cgroup.subtree_control'), 'utf8')).to.equal('+cpu');
    expect(readFileSync(join(root, 'run', 'cgroup.subtree_control'), 'utf8')).to.equal('+cpu');
  });

  it('fails at once, naming the path and the reason, when a group cannot be made', () => {
    v1Root();
    writeFileSync(join(root, 'cpu', 'taken'), 'a file where the run group would go');
    let caught: unknown;
    try {
      CpuLimits.open(0.25, { root, group: 'taken' });
    } catch (err) {
      caught = err;
    }
    expect(caught).to.be.instanceOf(CpuLimitError);
    expect((caught as CpuLimitError).path).to.equal(join(root, 'cpu', 'taken'));
    expect((caught as CpuLimitError).message).to.match(/cannot limit CPU per replica: .*taken: E(EXIST|NOTDIR)/);
  });

  it('refuses a replica name that is not one path segment', () => {
    v1Root();
    const limits = CpuLimits.open(0.25, { root, group: 'run' });
    expect(() => limits.create('../escape')).to.throw(/not a cgroup name/);
    expect(() => limits.create('')).to.throw(/not a cgroup name/);
  });

  it('starts the command with its own pid written to cgroup.procs first, and the same pid running the command', async () => {
    v1Root();
    const limits = CpuLimits.open(0.25, { root, group: 'run' });
    const { command, args } = limits.wrap('replica-1', process.execPath, ['-e', 'console.log(process.pid)']);
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    const code = await new Promise((resolve) => child.once('exit', resolve));
    expect(code).to.equal(0);
    expect(Number(out.trim())).to.equal(child.pid);
    expect(limits.pids('replica-1')).to.deep.equal([child.pid]);
  });

  it('does not run the command when its pid cannot be written', async () => {
    v1Root();
    const limits = CpuLimits.open(0.25, { root, group: 'run' });
    const { command, args } = limits.wrap('replica-1', process.execPath, ['-e', 'console.log("ran")']);
    mkdirSync(join(root, 'cpu', 'run', 'replica-1', 'cgroup.procs')); // a directory: the shell's write fails
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    const code = await new Promise((resolve) => child.once('exit', resolve));
    expect(code).to.not.equal(0);
    expect(out).to.equal('');
  });
});

describe('CPU limit per replica: a real cgroup on this machine', function () {
  this.timeout(30_000);
  let limits: CpuLimits | undefined;
  let unavailable: string | undefined;
  before(function () {
    try {
      limits = CpuLimits.open(0.1, { group: `baedal-test-${process.pid}` });
    } catch (err) {
      if (!(err instanceof CpuLimitError)) throw err;
      unavailable = err.message;
    }
  });
  after(async () => {
    if (limits) expect(await limits.remove()).to.deep.equal([]);
  });

  it('holds a busy process to its quota (throttled, CPU ≤ quota × wall time), then removes the groups', async function () {
    if (!limits) {
      console.log(`      skipped: cgroups are not writable here (${unavailable})`);
      this.skip();
    }
    const { command, args } = limits.wrap('busy', process.execPath, ['-e', 'const end = Date.now() + 25000; while (Date.now() < end);']);
    const child = spawn(command, args, { stdio: 'ignore' });
    const exited = new Promise((resolve) => child.once('exit', resolve));
    try {
      const pid = child.pid!;
      await until(() => limits!.pids('busy').includes(pid), 'the process to be in its group', 5000);
      limits.verify('busy', pid);
      const startStat = limits.throttling('busy');
      const startCpu = cpuSeconds(pid);
      const startAt = performance.now();
      // 15 periods of 100 ms held back: the quota binds, over 1.5 s of wall time at least.
      await until(() => throttlingBetween(startStat, limits!.throttling('busy')).throttled >= 15, 'the quota to throttle the process', 20_000);
      const wallS = (performance.now() - startAt) / 1000;
      const usedS = cpuSeconds(pid) - startCpu;
      // Slack: one period's quota at each end of the window, and /proc's 10 ms clock ticks.
      expect(usedS, `CPU used over ${wallS.toFixed(2)} s`).to.be.at.most(0.1 * wallS + 0.05);
      expect(usedS, 'the process did run').to.be.greaterThan(0);
    } finally {
      child.kill('SIGKILL');
      await exited;
    }
    const dir = limits.path('busy');
    expect(await limits.remove()).to.deep.equal([]);
    expect(existsSync(dir)).to.equal(false);
    expect(existsSync(limits.dir)).to.equal(false);
    limits = undefined;
  });
});

describe('CPU limit per replica: never a run without the limit asked for', function () {
  this.timeout(60_000);
  /** The script as a user who may not write cgroups: `nobody` when the tests run as root. */
  const unprivileged = (script: string, args: string[]) => {
    const node = [process.execPath, '--import', 'tsx', script, ...args];
    const [command, ...rest] = process.getuid?.() === 0 ? ['runuser', '-u', 'nobody', '--', ...node] : node;
    return spawnSync(command!, rest, { encoding: 'utf8', timeout: 50_000 });
  };

  for (const [script, args] of [
    ['scripts/demo-scale.ts', ['--steps', '1']],
    ['scripts/bench.ts', ['--cpu-per-replica', '250m', '--no-ceilings']],
  ] as const) {
    it(`${script} exits 2 naming the cgroup path and the reason, before starting anything`, function () {
      if (process.getuid?.() === 0 && spawnSync('runuser', ['--help']).error) this.skip();
      const res = unprivileged(script, [...args]);
      expect(res.status, res.stdout + res.stderr).to.equal(2);
      // A path under the cgroup mount and why: EACCES here (not root); elsewhere EROFS, or no cpu controller.
      expect(res.stderr).to.match(/cannot limit CPU per replica: \/sys\/fs\/cgroup\S*: \S/);
      // Nothing ran: no build, no database, no replica (each of which prints a line first).
      expect(res.stdout).to.not.match(/building|ready|Baedal benchmark/);
    });
  }
});
