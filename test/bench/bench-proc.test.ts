import { spawn } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { expect } from 'chai';
import { cpuSnapshot, cpuUse } from '../../bench/measure.ts';
import { waitUntil } from '../../bench/processes.ts';
import { cpuSeconds, machineCpu, mainThreadCpuSeconds, mainThreadSleeps, parseMachineCpu, parseSleeps, postgresSleeps, sleepsBetween, TICKS_PER_S } from '../../bench/proc.ts';

/** A Node process that keeps one core busy for 20 s, on its main thread or on a worker thread. */
function busyProcess(on: 'main' | 'worker') {
  const spin = 'const end = Date.now() + 20000; while (Date.now() < end);';
  const code = on === 'main' ? spin : `new (require('node:worker_threads').Worker)(${JSON.stringify(spin)}, { eval: true }); setTimeout(() => {}, 20000);`;
  const child = spawn(process.execPath, ['-e', code], { stdio: 'ignore' });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  return { pid: child.pid!, stop: async () => (child.kill('SIGKILL'), await exited) };
}

/** The grain of /proc's CPU times, in seconds. */
const TICK = 1 / TICKS_PER_S;

describe("bench: a process's CPU on its main thread and on its others", function () {
  this.timeout(30_000);

  for (const on of ['main', 'worker'] as const) {
    it(`tells a process busy on its ${on} thread${on === 'worker' ? ' (as V8 compiling or collecting)' : ''} from the other kind`, async () => {
      const busy = busyProcess(on);
      try {
        // Past the process's start-up (its main thread loads Node and starts the worker), half a
        // second of CPU: /proc counts in 10 ms ticks, so the split is well above its grain.
        await waitUntil(async () => cpuSeconds(busy.pid) >= 0.3, 'the process to start', 20_000);
        // The main thread's reads fall inside the whole process's, so its time cannot exceed the
        // process's but for the rounding of a tick: the two files scale their ticks apart.
        const total0 = cpuSeconds(busy.pid);
        const main0 = mainThreadCpuSeconds(busy.pid);
        await waitUntil(async () => cpuSeconds(busy.pid) >= total0 + 0.5, 'the process to use half a second of CPU more', 20_000);
        const main = mainThreadCpuSeconds(busy.pid) - main0;
        const total = cpuSeconds(busy.pid) - total0;
        expect(main).to.be.at.most(total + TICK);
        if (on === 'main') expect(main / total, `main ${main} s of ${total} s`).to.be.greaterThan(0.9);
        else expect(main / total, `main ${main} s of ${total} s`).to.be.lessThan(0.1);
      } finally {
        await busy.stop();
      }
      expect(mainThreadCpuSeconds(busy.pid), 'a process that is gone').to.equal(0);
    });
  }
});

describe("bench: the machine's CPU, with what the hypervisor took apart", () => {
  it('counts user, nice, system, irq and softirq as busy, steal apart, and all of them with idle and I/O wait in the total', () => {
    const stat = `cpu  800 10 90 1000 20 5 15 360 0 0\ncpu0 400 5 45 500 10 2 7 180 0 0\nintr 1 2 3\n`;
    const m = parseMachineCpu(stat);
    expect(m.busy).to.be.closeTo(920 * TICK, 1e-9);
    expect(m.stolen).to.be.closeTo(360 * TICK, 1e-9);
    expect(m.total).to.be.closeTo(2300 * TICK, 1e-9);
  });

  it('reads a kernel that counts no steal as none stolen, and refuses a file that is not /proc/stat', () => {
    const old = parseMachineCpu('cpu  100 0 50 300 10 0 0\n');
    expect(old.stolen).to.equal(0);
    expect(old.busy).to.be.closeTo(150 * TICK, 1e-9);
    expect(old.total).to.be.closeTo(460 * TICK, 1e-9);
    expect(() => parseMachineCpu('intr 1 2 3\n')).to.throw(/does not start with the machine's cpu line/);
  });

  it("reads this machine's /proc/stat: busy, stolen and total only grow, busy and stolen within the total", () => {
    const a = machineCpu();
    const b = machineCpu();
    for (const k of ['busy', 'stolen', 'total'] as const) expect(b[k], k).to.be.at.least(a[k]);
    expect(a.busy + a.stolen).to.be.at.most(a.total);
    expect(a.total).to.be.greaterThan(0);
  });
});

describe("bench: how often a process's main thread sleeps (each sleep a wake-up)", function () {
  this.timeout(30_000);

  it('reads voluntary_ctxt_switches from a status file, and 0 from one without it', () => {
    expect(parseSleeps('Name:\tnode\nvoluntary_ctxt_switches:\t1234\nnonvoluntary_ctxt_switches:\t56\n')).to.equal(1234);
    expect(parseSleeps('Name:\tnode\n')).to.equal(0);
  });

  it('counts a main thread that waits on a 5 ms timer 200 times most of those times, and one that spins hardly at all', async () => {
    const spawnNode = (code: string) => {
      const child = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'ignore'] });
      const exited = new Promise((resolve) => child.once('exit', resolve));
      return { child, pid: child.pid!, exited };
    };
    // Each prints a line when its part starts, then waits on stdin's end (killed by the test).
    const sleeper = spawnNode(`process.stdout.write('go\\n'); let n = 0; const t = setInterval(() => { if (++n === 200) { clearInterval(t); process.stdout.write('done\\n'); setInterval(() => {}, 1000); } }, 5);`);
    const spinner = spawnNode(`process.stdout.write('go\\n'); const end = Date.now() + 1500; while (Date.now() < end); process.stdout.write('done\\n'); setInterval(() => {}, 1000);`);
    const lines = (c: typeof sleeper) => {
      let text = '';
      c.child.stdout!.on('data', (d: Buffer) => (text += d.toString()));
      return () => text;
    };
    const sleeperOut = lines(sleeper);
    const spinnerOut = lines(spinner);
    try {
      await waitUntil(async () => sleeperOut().includes('go') && spinnerOut().includes('go'), 'both to start', 20_000);
      const s0 = mainThreadSleeps(sleeper.pid);
      const p0 = mainThreadSleeps(spinner.pid);
      await waitUntil(async () => sleeperOut().includes('done') && spinnerOut().includes('done'), 'both to finish their part', 20_000);
      const slept = mainThreadSleeps(sleeper.pid) - s0;
      const spun = mainThreadSleeps(spinner.pid) - p0;
      // A timer already due when the loop comes back needs no sleep (a late wake-up on a busy host): most do.
      expect(slept, 'the timer loop').to.be.at.least(150);
      expect(spun, 'the busy loop').to.be.lessThan(20);
    } finally {
      sleeper.child.kill('SIGKILL');
      spinner.child.kill('SIGKILL');
      await Promise.all([sleeper.exited, spinner.exited]);
    }
    expect(mainThreadSleeps(sleeper.pid), 'a process that is gone').to.equal(0);
  });

  it("counts PostgreSQL's processes sleeping while it answers statements", async () => {
    const { default: pg } = await import('pg');
    const client = new pg.Client({ connectionString: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test' });
    await client.connect();
    try {
      const before = postgresSleeps();
      // Each statement wakes the backend that waits on the socket, and it sleeps again after
      // answering (but when the next one is already there, as may happen once in a while).
      for (let i = 0; i < 100; i++) await client.query('SELECT 1');
      expect(sleepsBetween(before, postgresSleeps())).to.be.at.least(80);
    } finally {
      await client.end();
    }
  });

  it('never counts fewer sleeps in a window because a backend that slept a lot ended in it', async () => {
    const { default: pg } = await import('pg');
    const url = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
    const busy = new pg.Client({ connectionString: url });
    await busy.connect();
    const pid = (await busy.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    for (let i = 0; i < 500; i++) await busy.query('SELECT 1');
    const before = postgresSleeps()!;
    expect(before.get(pid), "the busy backend's count").to.be.at.least(400);
    await busy.end();
    await waitUntil(async () => !postgresSleeps()!.has(pid), 'the busy backend to end', 20_000);
    const other = new pg.Client({ connectionString: url });
    await other.connect();
    try {
      for (let i = 0; i < 20; i++) await other.query('SELECT 1');
      const after = postgresSleeps()!;
      const totals = (m: Map<number, number>) => [...m.values()].reduce((x, y) => x + y, 0);
      // What the totals' difference said before: the ended backend's count taken off the window.
      expect(totals(after) - totals(before), 'the totals subtracted').to.be.below(0);
      expect(sleepsBetween(before, after)).to.be.at.least(15);
    } finally {
      await other.end();
    }
  });

  it("counts a process's gain, a new process's whole count, and nothing for one that ended", () => {
    const a = new Map([[10, 100], [11, 50], [12, 70]]);
    // 10 gained 5, 11 ended, 12 is a new process under a reused pid (its count went down), 13 is new.
    const b = new Map([[10, 105], [12, 3], [13, 8]]);
    expect(sleepsBetween(a, b)).to.equal(5 + 3 + 8);
    expect(sleepsBetween(b, b)).to.equal(0);
    expect(sleepsBetween(new Map(), b)).to.equal(105 + 3 + 8);
    expect(sleepsBetween(undefined, b), 'a reading that counted nothing').to.be.NaN;
  });
});

describe("bench: a window's figures from two snapshots", function () {
  this.timeout(30_000);

  it("gives each watched process's sleeps and the cores stolen over the window", async () => {
    const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 5)'], { stdio: 'ignore' });
    const exited = new Promise((resolve) => child.once('exit', resolve));
    try {
      const watched = [{ name: 'ticker', pid: child.pid! }];
      await waitUntil(async () => mainThreadSleeps(child.pid!) > 0, 'the ticker to start', 20_000);
      const a = cpuSnapshot(watched);
      await waitUntil(async () => mainThreadSleeps(child.pid!) >= (a.sleepsByName.get('ticker') ?? 0) + 50, 'fifty sleeps more', 20_000);
      const use = cpuUse(a, cpuSnapshot(watched));
      expect(use.sleepsByName.ticker).to.be.at.least(50);
      expect(use.postgresSleeps).to.be.at.least(0);
      expect(use.machineStolenCores).to.be.at.least(0).and.at.most(availableParallelism());
    } finally {
      child.kill('SIGKILL');
      await exited;
    }
  });
});
