// `npm run build`: the compiled tree the image runs, so production needs neither tsx nor TypeScript.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { commandLine } from '../src/cli.ts';

const USAGE = `usage: npm run build

Compiles the service into dist/ and exits 0 (non-zero when tsc reports an error):
  tsconfig.build.json        src/ → dist/               node dist/main.js, node dist/migrate.js
  tsconfig.build-tools.json  the fake payment gateway   node dist/tools/scripts/payment-gateway.js
and copies the files under src/ that tsc does not emit (the state chart page's scripts, styles
and HTML) to the same places under dist/, where the compiled modules look for them.
dist/ is deleted first, so nothing stale survives; dist/.built is written last, when all went
well (npm start and npm run up build again when a source is newer than it).`;

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const SRC = join(ROOT, 'src');
const DIST = join(ROOT, 'dist');
const PROJECTS = ['tsconfig.build.json', 'tsconfig.build-tools.json'];
/** Written last by a build that succeeded: its time is the build's. */
const STAMP = '.built';
/** What the build reads besides src/: a change to any of them makes dist/ stale. */
const INPUTS = [...PROJECTS, 'tsconfig.json', 'scripts/build.ts', 'scripts/payment-gateway.ts'];

/** Files under src/ that are not TypeScript (a .d.ts only types a .js beside it): tsc leaves them out. */
export function assetFiles(srcDir = SRC): string[] {
  return readdirSync(srcDir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && !e.name.endsWith('.ts'))
    .map((e) => join(e.parentPath, e.name).slice(srcDir.length + 1))
    .sort();
}

function tsc(project: string): void {
  const tscBin = join(dirname(createRequire(import.meta.url).resolve('typescript/package.json')), 'bin', 'tsc');
  const run = spawnSync(process.execPath, [tscBin, '-p', project], { cwd: ROOT, stdio: 'inherit' });
  if (run.status !== 0) {
    console.error(`build: tsc -p ${project} failed`);
    process.exit(run.status ?? 1);
  }
}

/** Compiles src/ into dist/ (exits the process when tsc fails) and returns the summary line. */
export function build(): string {
  const started = performance.now();
  rmSync(DIST, { recursive: true, force: true });
  for (const project of PROJECTS) tsc(project);
  const assets = assetFiles();
  for (const file of assets) cpSync(join(SRC, file), join(DIST, file));
  const modules = readdirSync(DIST, { recursive: true }).filter((f) => String(f).endsWith('.js')).length;
  writeFileSync(join(DIST, STAMP), `${new Date().toISOString()}\n`);
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  return `build: dist/ has ${modules} JavaScript files (${assets.length} copied from src/ as they are) in ${seconds} s`;
}

/**
 * Why dist/ cannot be run as it is: no finished build, or a source (a file or folder under src/,
 * which a deleted file changes too, or a build input) changed after it; undefined when it is current.
 */
export function staleReason(root = ROOT): string | undefined {
  const stamp = join(root, 'dist', STAMP);
  if (!existsSync(stamp)) return 'dist/ has no finished build';
  const built = statSync(stamp).mtimeMs;
  const src = join(root, 'src');
  const sources = [src, ...readdirSync(src, { recursive: true }).map((f) => join(src, String(f))), ...INPUTS.map((f) => join(root, f))];
  for (const path of sources) {
    if (existsSync(path) && statSync(path).mtimeMs > built) return `${relative(root, path)} changed after the last build`;
  }
  return undefined;
}

/** Builds dist/ when it is stale (for the commands that run the compiled service). */
export function ensureBuilt(name: string): void {
  const reason = staleReason();
  if (reason === undefined) return;
  console.error(`${name}: ${reason}; building (npm run build)`);
  console.error(build());
}

function main(): void {
  commandLine('build', USAGE, {});
  console.log(build());
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  try {
    main();
  } catch (err) {
    console.error(`build: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  }
}
