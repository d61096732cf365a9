import { spawn } from 'node:child_process';
import { expect } from 'chai';
import { waitUntil } from '../../bench/processes.ts';
import { cpuSeconds, machineCpu, mainThreadCpuSeconds, parseMachineCpu, TICKS_PER_S } from '../../bench/proc.ts';

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
