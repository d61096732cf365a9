import { spawnSync } from 'node:child_process';
import { expect } from 'chai';
import { extraNodeOptions } from '../../bench/compiled.ts';
import { ROOT } from '../support/manifests.ts';

describe('bench: --node-option, a probe for the service processes', () => {
  it("takes node's and V8's options as written on node's command line, in order", () => {
    expect(extraNodeOptions(['--trace-gc-nvp', '--max-semi-space-size=64', '--heapsnapshot-signal=SIGUSR2'])).to.deep.equal({
      options: ['--trace-gc-nvp', '--max-semi-space-size=64', '--heapsnapshot-signal=SIGUSR2'],
    });
    expect(extraNodeOptions([])).to.deep.equal({ options: [] });
  });

  it('refuses what is not one option: no dashes, a short option, a space, an empty string', () => {
    for (const bad of ['trace-gc', '-e', '--trace-gc --expose-gc', '--import=a b', '', '--']) {
      const answer = extraNodeOptions(['--trace-gc', bad]);
      expect(answer, bad).to.have.property('refused').that.includes(`not "${bad}"`);
    }
  });

  it('the benchmark refuses a bad one before it starts anything, with exit status 2', () => {
    const res = spawnSync(process.execPath, ['--import', 'tsx', 'scripts/bench.ts', '--node-option', 'trace-gc'], { cwd: ROOT, encoding: 'utf8', timeout: 20_000 });
    expect(res.status).to.equal(2);
    expect(res.stderr).to.include('--node-option takes one option of node\'s').and.include('usage: ');
  });
});
