import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { builtinModules } from 'node:module';
import { join } from 'node:path';
import { expect } from 'chai';
import { assetFiles, staleReason } from '../../scripts/build.ts';
import { SERVICE_NODE_FLAGS } from '../../src/node-flags.ts';
import { ROOT } from '../support/manifests.ts';
import { freePort } from '../support/service-process.ts';
import { AUTH_SECRET, TEST_REDIS_URL, eventually, removeQueueKeys, request, resetDatabase, testDatabaseUrl } from '../support/system.ts';

const DIST = join(ROOT, 'dist');
/** Entry points: loading them starts a server or touches PostgreSQL. */
const ENTRY_POINTS = ['main.js', 'migrate.js', 'machines-migrate.js', 'tools/scripts/payment-gateway.js'];
/** Browser scripts served by /statechart: they need a DOM. */
const BROWSER_ONLY = ['http/statechart/page.js'];

function distFiles(): string[] {
  return readdirSync(DIST, { recursive: true }).map(String).sort();
}

/** The environment of a child that must run compiled code with plain node (no tsx loader). */
function plainNodeEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const { NODE_OPTIONS: _ignored, ...env } = process.env;
  return { ...env, ...extra };
}

interface Child {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

function run(args: string[], env: NodeJS.ProcessEnv): Child {
  const child = spawn(process.execPath, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, output: () => output, exited };
}

/** Resolves with the exit code, or fails after `ms`, killing the child. */
async function exitWithin(c: Child, ms: number, what: string): Promise<number | null> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      c.child.kill('SIGKILL');
      reject(new Error(`${what} did not exit within ${ms} ms:\n${c.output()}`));
    }, ms);
  });
  try {
    return await Promise.race([c.exited, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** The processes under `pid` (children, grandchildren, …) with their command lines, from /proc. */
function descendants(pid: number): { pid: number; cmdline: string }[] {
  const parents = new Map<number, number[]>();
  for (const entry of readdirSync('/proc').filter((e) => /^\d+$/.test(e))) {
    try {
      // The command name in field 2 may hold spaces and parentheses: read after its last ')'.
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      parents.set(ppid, [...(parents.get(ppid) ?? []), Number(entry)]);
    } catch {
      // gone meanwhile
    }
  }
  const out: { pid: number; cmdline: string }[] = [];
  const visit = (p: number) => {
    for (const child of parents.get(p) ?? []) {
      try {
        out.push({ pid: child, cmdline: readFileSync(`/proc/${child}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ') });
      } catch {
        continue;
      }
      visit(child);
    }
  };
  visit(pid);
  return out;
}

/** The service's environment for a test run: its own database and queue prefix. */
function serviceEnv(url: string, port: number, queuePrefix: string): NodeJS.ProcessEnv {
  return plainNodeEnv({
    NODE_ENV: 'test',
    HOST: '127.0.0.1',
    PORT: String(port),
    DATABASE_URL: url,
    REDIS_URL: TEST_REDIS_URL,
    QUEUE_PREFIX: queuePrefix,
    AUTH_SECRET,
    LOG_LEVEL: 'warn',
  });
}

// --- Dockerfile, read the way the builder reads it (continuations joined, comments dropped) ---

interface Instruction {
  op: string;
  args: string;
}
interface Stage {
  name: string;
  instructions: Instruction[];
}

function parseDockerfile(text: string): Stage[] {
  const lines: string[] = [];
  let pending = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('#') || (line === '' && pending === '')) continue;
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1)} `;
      continue;
    }
    lines.push(pending + line);
    pending = '';
  }
  const stages: Stage[] = [];
  for (const line of lines) {
    const [op, ...rest] = line.split(/\s+/);
    const args = rest.join(' ');
    if (op!.toUpperCase() === 'FROM') {
      stages.push({ name: /\bAS\s+(\S+)/i.exec(args)?.[1] ?? String(stages.length), instructions: [] });
    } else if (stages.length > 0) {
      stages.at(-1)!.instructions.push({ op: op!.toUpperCase(), args });
    }
  }
  return stages;
}

/** COPY's flags and paths: `--from=build /app/dist ./dist` → { from: 'build', sources: ['/app/dist'], dest: './dist' }. */
function parseCopy(args: string): { from?: string; sources: string[]; dest: string } {
  const words = args.split(/\s+/);
  const from = words.find((w) => w.startsWith('--from='))?.slice('--from='.length);
  const paths = words.filter((w) => !w.startsWith('--'));
  return { from, sources: paths.slice(0, -1), dest: paths.at(-1)! };
}

/** Whether `.dockerignore` lets `path` into the build context (the last matching pattern decides). */
function inBuildContext(path: string, dockerignore: string): boolean {
  const glob = (pattern: string) =>
    new RegExp(
      `^${pattern
        .replace(/^\/+|\/+$/g, '')
        .replace(/[.+^${}()|[\]\\]/g, '\\$&')
        .replace(/\*\*/g, '\u0000')
        .replace(/\*/g, '[^/]*')
        .replace(/\?/g, '[^/]')
        .replace(/\u0000/g, '.*')}$`,
    );
  const parts = path.replace(/^\.\//, '').replace(/\/+$/, '').split('/');
  const prefixes = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
  let included = true;
  for (const raw of dockerignore.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const negated = line.startsWith('!');
    const re = glob(negated ? line.slice(1) : line);
    if (prefixes.some((p) => re.test(p))) included = negated;
  }
  return included;
}

describe('npm run build: the compiled tree the image runs', function () {
  this.timeout(90_000);
  let buildOutput = '';

  before(() => {
    const build = spawnSync('npm', ['run', 'build'], { cwd: ROOT, encoding: 'utf8' });
    buildOutput = build.stdout + build.stderr;
    expect(build.status, buildOutput).to.equal(0);
  });

  it('compiles every module under src/ to dist/ and copies the files tsc does not emit', () => {
    const files = distFiles();
    const sources = readdirSync(join(ROOT, 'src'), { recursive: true })
      .map(String)
      .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'));
    expect(sources.length).to.be.greaterThan(20);
    for (const f of sources) expect(files, f).to.include(f.replace(/\.ts$/, '.js'));
    const assets = assetFiles();
    expect(assets).to.include.members(['http/statechart/chart.js', 'http/statechart/page.js', 'http/statechart/index.html']);
    for (const f of assets) expect(readFileSync(join(DIST, f), 'utf8'), f).to.equal(readFileSync(join(ROOT, 'src', f), 'utf8'));
    expect(files).to.include('tools/scripts/payment-gateway.js');
    // The fake gateway is a development tool (dev/): the service's own tree does not carry it.
    expect(files.filter((f) => /fake-gateway/.test(f) && !f.startsWith('tools/'))).to.deep.equal([]);
    expect(files).to.include('tools/dev/fake-gateway.js');
    expect(files.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts')), 'no TypeScript left in dist/').to.deep.equal([]);
    expect(buildOutput).to.match(/build: dist\/ has \d+ JavaScript files/);
  });

  it('loads every compiled module with plain node, without tsx, except the entry points', () => {
    const modules = distFiles().filter((f) => f.endsWith('.js') && !ENTRY_POINTS.includes(f) && !BROWSER_ONLY.includes(f));
    const script = `
      const loaders = process.execArgv.filter((a) => /^(--import|--loader|--experimental-loader|--require|-r)\b/.test(a));
      if (loaders.length > 0 || /tsx/.test(process.env.NODE_OPTIONS ?? '')) throw new Error('expected plain node, without loaders');
      const modules = ${JSON.stringify(modules)};
      for (const f of modules) await import('./dist/' + f);
      console.log('loaded ' + modules.length);
      process.exit(0);`;
    const load = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, env: plainNodeEnv(), encoding: 'utf8', timeout: 60_000 });
    expect(load.status, load.stderr).to.equal(0);
    expect(load.stdout.trim()).to.equal(`loaded ${modules.length}`);
  });

  it('imports only packages that `npm ci --omit=dev` installs (dependencies, not devDependencies)', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
    const builtins = new Set(builtinModules);
    const used = new Map<string, string>();
    for (const f of distFiles().filter((x) => x.endsWith('.js') && !BROWSER_ONLY.includes(x))) {
      const code = readFileSync(join(DIST, f), 'utf8');
      const specifiers = [
        ...code.matchAll(/^\s*(?:import|export)\b[^;'"]*?\bfrom\s*['"]([^'"]+)['"]/gm), // static import / re-export
        ...code.matchAll(/^\s*import\s*['"]([^'"]+)['"]/gm), // import for side effects
        ...code.matchAll(/\b(?:import|require|\.resolve)\(\s*['"]([^'"]+)['"]\s*\)/g), // import(), require(), require.resolve()
      ];
      for (const m of specifiers) {
        const spec = m[1]!;
        if (spec.startsWith('.') || spec.startsWith('node:') || builtins.has(spec)) continue;
        const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!;
        used.set(name, f);
      }
    }
    expect(used.size, 'found the imports').to.be.greaterThan(5);
    for (const [name, file] of used) expect(pkg.dependencies, `${name} (imported by dist/${file})`).to.have.property(name);
  });

  it('dist/migrate.js: several at once on a new database all exit 0, and exactly one applies the migrations', async () => {
    const url = testDatabaseUrl('build');
    await resetDatabase(url);
    try {
      const env = plainNodeEnv({ NODE_ENV: 'test', DATABASE_URL: url, AUTH_SECRET, LOG_LEVEL: 'info' });
      const runs = [1, 2, 3].map(() => run(['dist/migrate.js'], env));
      const codes = await Promise.all(runs.map((r, i) => exitWithin(r, 30_000, `migrate #${i + 1}`)));
      expect(codes, runs.map((r) => r.output()).join('\n')).to.deep.equal([0, 0, 0]);
      const applied = runs.map((r) => (JSON.parse(r.output().trim().split('\n').at(-1)!) as { applied: string[] }).applied);
      expect(applied.filter((a) => a.length > 0), 'one run applied them').to.have.length(1);
      expect(applied.filter((a) => a.length === 0), 'the others found nothing to do').to.have.length(2);
    } finally {
      await resetDatabase(url);
    }
  });

  it('node dist/main.js serves /readyz and the state chart, and exits 0 on SIGTERM', async () => {
    const url = testDatabaseUrl('build');
    await resetDatabase(url);
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const queuePrefix = `{baedal-build-${randomUUID()}}`;
    const service = run(['dist/main.js'], serviceEnv(url, port, queuePrefix));
    try {
      await eventually(async () => {
        if (service.child.exitCode !== null) throw new Error(`exited early:\n${service.output()}`);
        return (await request(base, 'GET', '/readyz')).status === 200;
      }, 'dist/main.js to be ready', 30_000);
      const page = await request<string>(base, 'GET', '/statechart');
      expect(page.status).to.equal(200);
      expect(page.body).to.include('<svg');
      expect((await request(base, 'GET', '/statechart/assets/page.js')).status).to.equal(200);
      service.child.kill('SIGTERM');
      expect(await exitWithin(service, 30_000, 'dist/main.js after SIGTERM'), service.output()).to.equal(0);
    } finally {
      service.child.kill('SIGKILL');
      await resetDatabase(url);
      await removeQueueKeys(queuePrefix);
    }
  });

  it('node dist/main.js --help prints the usage and exits 0, without starting', () => {
    const help = spawnSync(process.execPath, ['dist/main.js', '--help'], { cwd: ROOT, env: plainNodeEnv({ DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none' }), encoding: 'utf8', timeout: 15_000 });
    expect(help.status, help.stderr).to.equal(0);
    expect(help.stdout).to.match(/^usage: node dist\/main\.js/);
    expect(help.stdout).to.include('NOTIFY_WEBHOOK_URL');
    expect(help.stderr).to.equal('');
    const bad = spawnSync(process.execPath, ['dist/main.js', '--port', '1'], { cwd: ROOT, env: plainNodeEnv(), encoding: 'utf8', timeout: 15_000 });
    expect(bad.status).to.equal(2);
    expect(bad.stderr).to.include("Unknown option '--port'");
  });

  it('npm start -- --help prints the usage and exits 0, without building or starting', () => {
    // dist/ made stale: a start would build first.
    utimesSync(join(DIST, '.built'), 1000, 1000);
    const stamp = statSync(join(DIST, '.built')).mtimeMs;
    expect(staleReason()).to.match(/changed after the last build/);
    const help = spawnSync('npm', ['start', '--', '--help'], { cwd: ROOT, env: plainNodeEnv(), encoding: 'utf8', timeout: 30_000 });
    expect(help.status, help.stderr).to.equal(0);
    expect(help.stdout).to.include('usage: npm start');
    expect(help.stdout).to.include(`node ${SERVICE_NODE_FLAGS.join(' ')} dist/main.js`);
    expect(help.stdout).to.include('DATABASE_URL');
    expect(statSync(join(DIST, '.built')).mtimeMs, 'dist/ untouched').to.equal(stamp);
  });

  it('npm start builds a stale dist/, runs it compiled (node, its flags, dist/main.js; no tsx), serves, and stops cleanly on Ctrl-C', async () => {
    const url = testDatabaseUrl('build');
    await resetDatabase(url);
    const port = await freePort();
    const queuePrefix = `{baedal-build-${randomUUID()}}`;
    // dist/ made stale: npm start builds first.
    utimesSync(join(DIST, '.built'), 1000, 1000);
    expect(staleReason()).to.not.equal(undefined);
    // A process group of its own, as a terminal gives a command: Ctrl-C signals the whole group.
    const npm = spawn('npm', ['start'], { cwd: ROOT, env: { ...serviceEnv(url, port, queuePrefix), LOG_LEVEL: 'info' }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let output = '';
    npm.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    npm.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    const c: Child = { child: npm, output: () => output, exited: new Promise((resolve) => npm.once('exit', (code) => resolve(code))) };
    let servicePid: number | undefined;
    try {
      await eventually(async () => {
        if (npm.exitCode !== null) throw new Error(`exited early:\n${output}`);
        return (await request(`http://127.0.0.1:${port}`, 'GET', '/readyz')).status === 200;
      }, 'npm start to build and be ready', 90_000);
      expect(output).to.match(/start: \S+ changed after the last build; building \(npm run build\)/);
      expect(staleReason(), 'built').to.equal(undefined);
      const tree = descendants(npm.pid!);
      const services = tree.filter((p) => / dist\/main\.js$/.test(p.cmdline));
      expect(services, tree.map((p) => p.cmdline).join('\n')).to.have.length(1);
      expect(services[0]!.cmdline, 'plain node, with the service\'s flags').to.equal([process.execPath, ...SERVICE_NODE_FLAGS, 'dist/main.js'].join(' '));
      expect(tree.some((p) => /src\/main\.ts/.test(p.cmdline)), 'nothing runs the TypeScript sources').to.equal(false);
      servicePid = services[0]!.pid;
      process.kill(-npm.pid!, 'SIGINT');
      await exitWithin(c, 30_000, 'npm start after Ctrl-C');
      await eventually(async () => !existsSync(`/proc/${servicePid}`), 'the service process to be gone');
      // The service drained and stopped by itself (npm reports the signal, not the service's exit code).
      expect(output).to.match(/"msg":"shutting down"/);
      expect(output).to.match(/"msg":"stopped"/);
    } finally {
      for (const p of descendants(npm.pid!)) process.kill(p.pid, 'SIGKILL');
      npm.kill('SIGKILL');
      await resetDatabase(url);
      await removeQueueKeys(queuePrefix);
    }
  });

  it('the compiled fake payment gateway starts, answers and stops on SIGTERM', async () => {
    const port = await freePort();
    const gateway = run(['dist/tools/scripts/payment-gateway.js'], plainNodeEnv({ PAYMENT_GATEWAY_PORT: String(port) }));
    try {
      const ledger = await eventually(async () => {
        if (gateway.child.exitCode !== null) throw new Error(`exited early:\n${gateway.output()}`);
        const res = await request(`http://127.0.0.1:${port}`, 'GET', '/_admin/ledger');
        return res.status === 200 ? res.body : undefined;
      }, 'the compiled gateway to answer', 15_000);
      expect(ledger).to.have.property('charges');
      gateway.child.kill('SIGTERM');
      expect(await exitWithin(gateway, 15_000, 'the gateway after SIGTERM')).to.equal(0);
    } finally {
      gateway.child.kill('SIGKILL');
    }
  });

  it('dist/ counts as stale without a finished build, or when a source or a build input changed after it', () => {
    const root = mkdtempSync(join(tmpdir(), 'baedal-stale-'));
    try {
      mkdirSync(join(root, 'src', 'http'), { recursive: true });
      writeFileSync(join(root, 'src', 'main.ts'), '');
      writeFileSync(join(root, 'src', 'http', 'app.ts'), '');
      writeFileSync(join(root, 'tsconfig.json'), '{}');
      const at = (path: string, seconds: number) => utimesSync(join(root, path), seconds, seconds);
      for (const path of ['src', 'src/main.ts', 'src/http', 'src/http/app.ts', 'tsconfig.json']) at(path, 1000);
      expect(staleReason(root)).to.equal('dist/ has no finished build');
      mkdirSync(join(root, 'dist'));
      writeFileSync(join(root, 'dist', '.built'), '');
      at('dist/.built', 2000);
      expect(staleReason(root)).to.equal(undefined);
      at('src/http/app.ts', 3000);
      expect(staleReason(root)).to.equal(join('src', 'http', 'app.ts') + ' changed after the last build');
      at('src/http/app.ts', 1000);
      rmSync(join(root, 'src', 'main.ts')); // a deleted module changes its folder
      at('src', 3000);
      expect(staleReason(root)).to.equal('src changed after the last build');
      at('src', 1000);
      at('tsconfig.json', 3000);
      expect(staleReason(root)).to.equal('tsconfig.json changed after the last build');
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('a build leaves dist/ current (npm start and npm run up then run it without building)', () => {
    expect(existsSync(join(DIST, '.built'))).to.equal(true);
    expect(staleReason()).to.equal(undefined);
  });

  describe('Dockerfile (no Docker engine here: checked against the build output)', () => {
    const stages = parseDockerfile(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'));
    const runtime = stages.at(-1)!;
    const ops = (stage: Stage, op: string) => stage.instructions.filter((i) => i.op === op);

    it('the runtime stage runs `node dist/main.js` under tini, as a numeric non-root user, with no tsx', () => {
      expect(JSON.parse(ops(runtime, 'CMD').at(-1)!.args)).to.deep.equal(['node', ...SERVICE_NODE_FLAGS, 'dist/main.js']);
      expect(JSON.parse(ops(runtime, 'ENTRYPOINT').at(-1)!.args)).to.deep.equal(['/usr/bin/tini', '--']);
      const users = ops(runtime, 'USER');
      expect(users, 'USER set in the runtime stage').to.have.length.greaterThan(0);
      const [uid, gid] = users.at(-1)!.args.split(':');
      expect(uid, 'numeric, so runAsNonRoot can verify it').to.match(/^\d+$/);
      expect(Number(uid)).to.be.greaterThan(0);
      if (gid !== undefined) expect(gid).to.match(/^\d+$/);
      for (const i of runtime.instructions) expect(`${i.op} ${i.args}`).not.to.match(/\btsx\b/);
      const env = ops(runtime, 'ENV').map((i) => i.args).join(' ');
      expect(env).to.match(/\bHOST=0\.0\.0\.0\b/);
      expect(env).to.match(/\bNODE_ENV=production\b/);
    });

    it('builds with `npm run build` in a build stage, and the runtime stage takes only dist/ from it', () => {
      const build = stages.find((s) => ops(s, 'RUN').some((i) => /\bnpm run build\b/.test(i.args)));
      expect(build, 'a stage runs npm run build').to.not.equal(undefined);
      expect(build).to.not.equal(runtime);
      const fromBuild = ops(runtime, 'COPY').map((i) => parseCopy(i.args)).filter((c) => c.from === build!.name);
      expect(fromBuild.map((c) => c.sources)).to.deep.equal([['/app/dist']]);
      const deps = ops(runtime, 'COPY').map((i) => parseCopy(i.args)).find((c) => c.sources.includes('/app/node_modules'));
      const depsStage = stages.find((s) => s.name === deps?.from);
      expect(ops(depsStage!, 'RUN').map((i) => i.args).join(' '), 'production dependencies only').to.include('npm ci --omit=dev');
    });

    it('every path it COPYs exists after `npm run build`, and .dockerignore lets each source in', () => {
      const dockerignore = readFileSync(join(ROOT, '.dockerignore'), 'utf8');
      let checked = 0;
      for (const stage of stages) {
        const workdir = ops(stage, 'WORKDIR').at(-1)?.args ?? '/';
        for (const copy of ops(stage, 'COPY').map((i) => parseCopy(i.args))) {
          for (const source of copy.sources) {
            checked += 1;
            if (copy.from === undefined) {
              expect(existsSync(join(ROOT, source)), `COPY ${source}`).to.equal(true);
              expect(inBuildContext(source, dockerignore), `.dockerignore lets ${source} in`).to.equal(true);
            } else {
              const from = stages.find((s) => s.name === copy.from);
              expect(from, `stage ${copy.from}`).to.not.equal(undefined);
              const fromWorkdir = ops(from!, 'WORKDIR').at(-1)?.args ?? '/';
              expect(source.startsWith(`${fromWorkdir}/`), `${source} under ${fromWorkdir}`).to.equal(true);
              expect(existsSync(join(ROOT, source.slice(fromWorkdir.length + 1))), `COPY --from=${copy.from} ${source}`).to.equal(true);
            }
          }
        }
        expect(workdir).to.equal('/app');
      }
      expect(checked).to.be.greaterThan(5);
      expect(inBuildContext('node_modules', dockerignore), 'the host node_modules stays out').to.equal(false);
      expect(inBuildContext('dist', dockerignore), 'the host dist/ stays out').to.equal(false);
      expect(inBuildContext('src/node_modules/x', dockerignore)).to.equal(false);
    });

    it('the commands the image is run with (k8s, compose) exist in the compiled tree', () => {
      const commands = [
        'node dist/main.js',
        ...readFileSync(join(ROOT, 'k8s/deployment.yaml'), 'utf8').matchAll(/\["node", "(dist\/[^"]+)"\]/g),
        ...readFileSync(join(ROOT, 'k8s/payment-gateway.yaml'), 'utf8').matchAll(/\["node", "(dist\/[^"]+)"\]/g),
        ...readFileSync(join(ROOT, 'compose.yaml'), 'utf8').matchAll(/\["node", "(dist\/[^"]+)"\]/g),
      ].map((m) => (typeof m === 'string' ? m.split(' ')[1]! : m[1]!));
      expect(commands).to.include.members(['dist/main.js', 'dist/migrate.js', 'dist/tools/scripts/payment-gateway.js']);
      for (const file of commands) expect(existsSync(join(ROOT, file)), file).to.equal(true);
    });
  });
});
