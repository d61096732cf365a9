// The service as production runs it: compiled by `npm run build` into dist/ and started as
// `node dist/main.js` (no tsx, no TypeScript at run time), for the benchmark and the scaling demo.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../', import.meta.url));

/** What node runs as the service once built. */
export const SERVICE_MAIN = join(ROOT, 'dist', 'main.js');

/** Runs `npm run build` (scripts/build.ts): dist/ afresh from the sources. Throws with its output when it fails. */
export function buildService(): { seconds: number } {
  const started = performance.now();
  const run = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'scripts', 'build.ts')], { cwd: ROOT, encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`npm run build failed (exit ${run.status ?? run.signal}):\n${run.stdout}${run.stderr}`);
  return { seconds: (performance.now() - started) / 1000 };
}
