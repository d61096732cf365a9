import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { contract } from './contract.ts';
import { TEST_ENV, eventually, request } from './system.ts';

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
  // Callers pass a system's `env` to run against its database and settings.
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    env: {
      ...process.env,
      ...TEST_ENV,
      PORT: String(port),
      PAYMENT_URL: opts.gatewayUrl,
      QUEUE_PREFIX: opts.queuePrefix,
      LOG_LEVEL: 'info',
      // Off, so tests are not throttled; the rate-limit tests turn them on.
      RATE_LIMIT_PER_MIN: '0',
      PUBLIC_RATE_LIMIT_PER_MIN: '0',
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
  // Once it has exited, whatever takes its port next is not this service.
  const unregister = contract.registerServed(baseUrl);
  void exited.then(unregister);
  return { baseUrl, child, exited, output: () => output };
}
