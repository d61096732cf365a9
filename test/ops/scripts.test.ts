import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { ROOT } from '../support/manifests.ts';

/** Every command a user can start from the repository, as `node --import tsx <file>`. */
const COMMANDS = [
  'scripts/bench.ts',
  'scripts/bench-rebuild.ts',
  'scripts/build.ts',
  'scripts/chaos.ts',
  'scripts/demo-scale.ts',
  'scripts/load.ts',
  'scripts/monitoring.ts',
  'scripts/payment-gateway.ts',
  'scripts/start.ts',
  'scripts/statechart.ts',
  'scripts/token.ts',
  'scripts/up.ts',
  'scripts/views-rebuild.ts',
  'src/main.ts',
  'src/migrate.ts',
  'src/machines-migrate.ts',
];
/** Scripts that do not answer --help yet; each must leave this list once it does. */
const WITHOUT_HELP_YET: string[] = [];

/** Modification times of what the scripts write (the docs pictures, the generated monitoring objects, dist/). */
function outputs(): Record<string, number | null> {
  const paths = ['docs/order-lifecycle.svg', 'docs/order-lifecycle.mmd', 'k8s/monitoring/prometheusrule.yaml', 'k8s/monitoring/dashboard-configmap.yaml', 'dist'];
  return Object.fromEntries(paths.map((p) => [p, existsSync(join(ROOT, p)) ? statSync(join(ROOT, p)).mtimeMs : null]));
}

function run(file: string, args: string[]) {
  return spawnSync(process.execPath, ['--import', 'tsx', file, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 20_000 });
}

describe('scripts: --help answers with the usage instead of running', () => {
  it('covers every script under scripts/', () => {
    const scripts = readdirSync(join(ROOT, 'scripts'))
      .filter((f) => f.endsWith('.ts') && statSync(join(ROOT, 'scripts', f)).isFile())
      .map((f) => `scripts/${f}`);
    expect([...COMMANDS, ...WITHOUT_HELP_YET].filter((c) => c.startsWith('scripts/')).sort()).to.deep.equal(scripts.sort());
  });

  for (const file of COMMANDS) {
    it(`${file} --help prints its usage and exits 0, touching nothing`, () => {
      const before = outputs();
      // A script that ran instead (serving, building, migrating) would print logs or not exit.
      const res = run(file, ['--help']);
      expect(res.status, res.stderr).to.equal(0);
      expect(res.stdout).to.match(/^usage: /);
      expect(res.stderr).to.equal('');
      expect(outputs(), 'files the scripts write').to.deep.equal(before);
    });

    it(`${file} refuses an unknown option with a message and exit 2`, () => {
      const res = run(file, ['--no-such-option']);
      expect(res.status, res.stdout + res.stderr).to.equal(2);
      expect(res.stderr).to.include("Unknown option '--no-such-option'");
      expect(res.stderr).to.include('usage: ');
    });
  }
});
