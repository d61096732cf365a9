import { spawn } from 'node:child_process';
import { expect } from 'chai';
import type { LoadSummary } from '../../scripts/load/runner.ts';
import { AUTH_SECRET, sharedSystem, type TestSystem } from '../support/system.ts';

interface Finished {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the load generator as its own process, as `npm run load` does, and collects what it printed. */
function runLoadGenerator(args: string[], deadlineMs = 45_000): Promise<Finished> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/load.ts', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the load generator did not finish within ${deadlineMs} ms:\n${stderr}`));
    }, deadlineMs);
    child.once('error', reject);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** `--json` puts the summary on the last line of stdout, after the measure/drain markers. */
function summaryOf(run: Finished): LoadSummary {
  const lines = run.stdout.trim().split('\n');
  expect(lines.length, `stdout:\n${run.stdout}\nstderr:\n${run.stderr}`).to.be.at.least(3);
  expect(JSON.parse(lines[0]!)).to.include({ event: 'measure' });
  expect(JSON.parse(lines[1]!)).to.include({ event: 'drain' });
  return JSON.parse(lines[lines.length - 1]!) as LoadSummary;
}

describe('load generator (npm run load)', function () {
  this.timeout(60_000);
  let sys: TestSystem;

  beforeEach(async () => {
    sys = await sharedSystem();
    await sys.resetGateway();
  });
  afterEach(async () => {
    await sys.resetGateway();
  });

  it('drives mixed lifecycles from its own process and finds every order in the state its lifecycle ends in', async () => {
    const run = await runLoadGenerator(['--url', sys.baseUrl, '--secret', AUTH_SECRET, '--concurrency', '4', '--duration', '3', '--warmup', '0', '--stores', '2', '--progress', '0', '--json']);
    expect(run.code, run.stderr).to.equal(0);
    const s = summaryOf(run);
    expect(s.errors, JSON.stringify(s.errors)).to.deep.include({ total: 0 });
    expect(s.lifecycles.completed).to.be.greaterThan(0);
    expect(s.commands).to.be.at.least(s.lifecycles.completed * 3);
    // Every command answered 2xx in any phase, by command (what the benchmark's notification check counts from).
    expect(s.commandsAllPhases.place).to.be.at.least(s.lifecycles.completedAllPhases);
    expect(s.commandsAllPhases.pay).to.be.at.least(s.lifecycles.completedAllPhases);
    expect(Object.values(s.commandsAllPhases).reduce((sum, n) => sum + n, 0)).to.be.at.least(s.commands);
    expect(s.verify).to.not.equal(null);
    expect(s.verify!.mismatches, JSON.stringify(s.verify!.examples)).to.equal(0);
    expect(s.verify!.checked).to.equal(s.lifecycles.completedAllPhases);
    expect(s.verify!.ok).to.equal(s.verify!.checked);
    expect(s.latencyMs.byCommand).to.have.property('place');
    expect(s.latencyMs.byCommand.pay!.count).to.be.greaterThan(0);
    expect(s.client.cpuSeconds).to.be.greaterThan(0);
    // The human report goes to stderr with --json.
    expect(run.stderr).to.match(/final check: all \d+ finished lifecycles ended in the expected state/);
  });

  it('counts refused commands by kind and carries on: a payment gateway that is down gives 503 payment_unavailable on pay', async () => {
    await sys.setGatewayBehaviour({ failRate: 1 });
    const run = await runLoadGenerator(['--url', sys.baseUrl, '--secret', AUTH_SECRET, '--concurrency', '2', '--duration', '2', '--warmup', '0', '--stores', '1', '--progress', '0', '--json']);
    expect(run.code, run.stderr).to.equal(0);
    const s = summaryOf(run);
    expect(s.errors.byKind['503 payment_unavailable'], JSON.stringify(s.errors)).to.be.greaterThan(0);
    expect(Object.keys(s.errors.byCommand)).to.deep.equal(['pay']);
    expect(s.commandsAllPhases.place).to.be.greaterThan(0);
    expect(s.commandsAllPhases.pay).to.equal(0);
    expect(s.lifecycles.completed).to.equal(0);
    expect(s.lifecycles.abandoned).to.equal(s.errors.total);
    expect(s.verify).to.deep.include({ checked: 0, mismatches: 0 });
  });

  it('stops with a clear message when the service refuses its tokens (another AUTH_SECRET)', async () => {
    const run = await runLoadGenerator(['--url', sys.baseUrl, '--secret', 'not-the-service-secret-at-all', '--duration', '1', '--warmup', '0', '--progress', '0']);
    expect(run.code).to.equal(1);
    expect(run.stderr).to.match(/publishing the menu of .* answered 401/);
  });

  it('--rate paces the commands: many users, yet no more commands a second than asked for', async () => {
    // 16 users reach well over 40 commands/s on the test system unpaced; paced, the window holds at most 40 a second.
    const run = await runLoadGenerator(['--url', sys.baseUrl, '--secret', AUTH_SECRET, '--concurrency', '16', '--rate', '40', '--duration', '3', '--warmup', '1', '--stores', '2', '--progress', '0', '--json']);
    expect(run.code, run.stderr).to.equal(0);
    const s = summaryOf(run);
    expect(s.rate).to.equal(40);
    expect(s.errors, JSON.stringify(s.errors)).to.deep.include({ total: 0 });
    // Commands answered in the window started in it or just before it: at most one slot per 25 ms, plus those under way at its opening.
    expect(s.commands).to.be.at.most(40 * s.measuredS + 16);
    expect(s.commands).to.be.at.least(40 * s.measuredS * 0.5);
    expect(s.verify).to.include({ mismatches: 0 });
  });

  it('refuses bad usage with exit status 2 and the usage text', async () => {
    const run = await runLoadGenerator(['--concurrency', '0']);
    expect(run.code).to.equal(2);
    expect(run.stderr).to.include('--concurrency must be a whole number ≥ 1').and.include('usage: npm run load');
    const badRate = await runLoadGenerator(['--rate', '0']);
    expect(badRate.code).to.equal(2);
    expect(badRate.stderr).to.include('--rate must be a whole number ≥ 1');
  });
});
