// Development launcher: the fake payment gateway and the service together, in the foreground.
// Ctrl-C (or SIGTERM) stops both.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { commandLine } from '../src/cli.ts';
import { SERVICE_NODE_FLAGS } from '../src/node-flags.ts';
import { ensureBuilt } from './build.ts';

const USAGE = `usage: npm run up

Starts the fake payment gateway and the service in the foreground, both compiled as production
runs them (node dist/tools/scripts/payment-gateway.js, node dist/main.js; \`npm run build\` first
when dist/ is missing or a source changed after the last build), and prints where each listens;
Ctrl-C or SIGTERM stops both, and when one of them exits the other is stopped too. Environment:
  PORT                  the service's port (default 3000)
  PAYMENT_GATEWAY_PORT  the fake gateway's port (default 4010)
  PAYMENT_URL           where the service finds the gateway (default: the fake one started here)
and every other setting of the service (DATABASE_URL, REDIS_URL, ...; see README.md).`;

commandLine('up', USAGE, {});
ensureBuilt('up');

const port = process.env.PORT ?? '3000';
const gatewayPort = process.env.PAYMENT_GATEWAY_PORT ?? '4010';
const env = { ...process.env, PORT: port, PAYMENT_GATEWAY_PORT: gatewayPort, PAYMENT_URL: process.env.PAYMENT_URL ?? `http://127.0.0.1:${gatewayPort}` };

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const children: ChildProcess[] = [];
function run(name: string, script: string, flags: readonly string[] = []): ChildProcess {
  const child = spawn(process.execPath, [...flags, script], { cwd: ROOT, env, stdio: 'inherit' });
  child.on('exit', (code, signal) => {
    if (!stopping) {
      console.error(`[up] ${name} exited (${signal ?? code}); stopping the rest`);
      void stop(code ?? 1);
    }
  });
  children.push(child);
  return child;
}

let stopping = false;
async function stop(code: number): Promise<void> {
  stopping = true;
  await Promise.all(
    children.map(
      (c) => new Promise<void>((resolve) => (c.exitCode !== null || c.signalCode !== null ? resolve() : (c.once('exit', () => resolve()), c.kill('SIGTERM')))),
    ),
  );
  process.exit(code);
}
process.on('SIGINT', () => void stop(0));
process.on('SIGTERM', () => void stop(0));

console.error(`[up] payment gateway (fake) → http://127.0.0.1:${gatewayPort}`);
console.error(`[up] Baedal API           → http://127.0.0.1:${port}  (OpenAPI: /openapi.json, state chart: /statechart)`);
run('payment gateway', 'dist/tools/scripts/payment-gateway.js');
run('service', 'dist/main.js', SERVICE_NODE_FLAGS);
