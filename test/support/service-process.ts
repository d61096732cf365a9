import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { AUTH_SECRET, TEST_DATABASE_URL, TEST_REDIS_URL, eventually, request } from './system.ts';

export interface ServiceProcess {
  baseUrl: string;
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  output: () => string;
}

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Runs `src/main.ts` as a real child process, as production would, and waits until it is ready. */
export async function startServiceProcess(opts: { gatewayUrl: string; queuePrefix: string; env?: Record<string, string> }): Promise<ServiceProcess> {
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    env: {
      ...process.env,
      NODE_ENV: 'test',
      PORT: String(port),
      DATABASE_URL: TEST_DATABASE_URL,
      REDIS_URL: TEST_REDIS_URL,
      PAYMENT_URL: opts.gatewayUrl,
      AUTH_SECRET,
      QUEUE_PREFIX: opts.queuePrefix,
      RELAY_POLL_MS: '100',
      JOB_LOCK_MS: '3000',
      LOG_LEVEL: 'info',
      // Off, so tests are not throttled; the rate-limit tests turn it on.
      RATE_LIMIT_PER_MIN: '0',
      ...opts.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const baseUrl = `http://127.0.0.1:${port}`;
  await eventually(async () => {
    if (child.exitCode !== null) throw new Error(`service exited early:\n${output}`);
    return (await request(baseUrl, 'GET', '/readyz')).status === 200;
  }, 'the service process to be ready', 30_000);
  return { baseUrl, child, exited, output: () => output };
}
