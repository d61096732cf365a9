// The service as production runs it: compiled by `npm run build` into dist/ and started as
// `node dist/main.js` (no tsx, no TypeScript at run time), for the benchmark and the scaling demo.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SERVICE_NODE_FLAGS } from '../src/node-flags.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));

/** What node runs as the service once built. */
export const SERVICE_MAIN = join(ROOT, 'dist', 'main.js');
/** What node runs for a service process: its flags (src/node-flags.ts), as the image runs it, then SERVICE_MAIN. */
export const SERVICE_ARGS: readonly string[] = [...SERVICE_NODE_FLAGS, SERVICE_MAIN];

/**
 * Node options a measurement adds to the service processes' own (`--node-option`, for a probe such
 * as `--trace-gc-nvp` or `--heapsnapshot-signal=SIGUSR2`): each must be one option of node's or V8's,
 * written as on node's command line (`--name` or `--name=value`). Returns them, or the reason one is
 * refused.
 */
export function extraNodeOptions(raw: readonly string[]): { options: string[] } | { refused: string } {
  for (const option of raw) {
    if (!/^--[a-z0-9][a-z0-9_-]*(=\S*)?$/i.test(option)) return { refused: `--node-option takes one option of node's, written as "--name" or "--name=value", not "${option}"` };
  }
  return { options: [...raw] };
}

/**
 * Runs `npm run build` (scripts/build.ts): dist/ afresh from the sources. Throws with its output
 * when it fails. Asynchronous, so that a Ctrl-C meanwhile is handled at once (tsx kills a script
 * that does not acknowledge a signal within 30 ms) and the build is stopped with the caller.
 */
export async function buildService(): Promise<{ seconds: number }> {
  const started = performance.now();
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'scripts', 'build.ts')], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  const stop = () => child.kill();
  process.once('exit', stop);
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr.on('data', (c: Buffer) => (output += c.toString()));
  try {
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', (c, s) => resolve([c, s]));
    });
    if (code !== 0) throw new Error(`npm run build failed (exit ${code ?? signal}):\n${output}`);
  } finally {
    process.removeListener('exit', stop);
  }
  return { seconds: (performance.now() - started) / 1000 };
}
