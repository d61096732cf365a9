// Restate for the comparison: its server (the prebuilt binary from the npm registry) and the order
// lifecycle of bench/restate/service.ts as a deployment registered with it. bench/restate is an npm
// project of its own, installed on demand, so the service's lockfile never carries Restate.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { freePort, httpStatus, portOpen, waitUntil, type Managed, type ProcessGroup } from './processes.ts';

export const RESTATE_PROJECT = resolve('bench/restate');

/** Installs bench/restate from its own lockfile unless that install is already current. */
export function ensureRestateInstalled(log: (line: string) => void): void {
  const marker = join(RESTATE_PROJECT, 'node_modules/.package-lock.json');
  const lock = join(RESTATE_PROJECT, 'package-lock.json');
  if (existsSync(marker) && statSync(marker).mtimeMs >= statSync(lock).mtimeMs && existsSync(restateServerBinary())) return;
  log('installing bench/restate (npm ci --prefix bench/restate --ignore-scripts): the Restate server binary and SDK');
  // No install scripts: the server binary comes whole in its platform package, and the only
  // script in the tree is a telemetry ping.
  const npm = spawnSync('npm', ['ci', '--prefix', RESTATE_PROJECT, '--no-audit', '--no-fund', '--ignore-scripts'], { stdio: 'inherit' });
  if (npm.status !== 0) throw new Error(`npm ci --prefix bench/restate failed (${npm.error?.message ?? `exit ${npm.status}`})`);
  if (!existsSync(restateServerBinary())) {
    throw new Error(`the Restate server binary for ${process.platform}-${process.arch} was not installed (expected ${restateServerBinary()})`);
  }
}

/** The server binary that `@restatedev/restate-server` ships per platform as an optional dependency. */
export function restateServerBinary(): string {
  return join(RESTATE_PROJECT, `node_modules/@restatedev/restate-server-${process.platform}-${process.arch}/bin/restate-server`);
}

export function restateVersions(): { server: string; sdk: string } {
  const version = (pkg: string) => {
    try {
      return (JSON.parse(readFileSync(join(RESTATE_PROJECT, 'node_modules', pkg, 'package.json'), 'utf8')) as { version: string }).version;
    } catch {
      return 'unknown';
    }
  };
  return { server: version('@restatedev/restate-server'), sdk: version('@restatedev/restate-sdk') };
}

export interface RestateStack {
  ingressUrl: string;
  /** Restate's data, removed by stop(). */
  dataDir: string;
  server: Managed;
  service: Managed;
  stop(): Promise<void>;
}

export interface RestateOptions {
  paymentUrl: string;
  secret: string;
  /**
   * Partitions of the fresh cluster. Restate provisions 24 by default, which on a 2-core machine
   * costs it about 40 % of its throughput; a partition per core is the fair opponent.
   */
  partitions: number;
  /** A notification per status change recorded in a per-customer object, as Baedal's notifications feed records it. */
  notifications: boolean;
  /** Where the service POSTs each status change's notifications (as Baedal's NOTIFY_WEBHOOK_URL); none when unset. */
  webhookUrl?: string;
  nodeArgs?: readonly string[];
}

/**
 * Starts restate-server (single node, Restate's defaults but for the number of partitions, data in
 * a fresh directory under the OS temp dir, removed on stop) and the order service endpoint, then
 * registers the endpoint as a deployment.
 */
export async function startRestate(group: ProcessGroup, opts: RestateOptions): Promise<RestateStack> {
  const baseDir = mkdtempSync(join(tmpdir(), 'baedal-bench-restate-'));
  const [ingressPort, adminPort, nodePort, servicePort] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const server = group.start('restate-server', restateServerBinary(), ['--no-logo', '--base-dir', baseDir, '--listen-mode', 'tcp', '--node-name', 'bench'], {
    env: {
      ...process.env,
      RESTATE_INGRESS__BIND_ADDRESS: `127.0.0.1:${ingressPort}`,
      RESTATE_ADMIN__BIND_ADDRESS: `127.0.0.1:${adminPort}`,
      RESTATE_BIND_ADDRESS: `127.0.0.1:${nodePort}`,
      RESTATE_LOG_FILTER: 'warn',
      RESTATE_LOG_DISABLE_ANSI_CODES: 'true',
      RESTATE_DISABLE_TELEMETRY: 'true',
      RESTATE_DEFAULT_NUM_PARTITIONS: String(opts.partitions),
    },
  });
  const service = group.start('restate-service', process.execPath, [...(opts.nodeArgs ?? []), '--import', 'tsx', join(RESTATE_PROJECT, 'service.ts')], {
    env: {
      ...process.env,
      PORT: String(servicePort),
      PAYMENT_URL: opts.paymentUrl,
      AUTH_SECRET: opts.secret,
      NOTIFICATIONS: opts.notifications ? 'on' : 'off',
      NOTIFY_WEBHOOK_URL: opts.webhookUrl ?? '',
      RESTATE_LOGGING: 'ERROR',
    },
  });
  const stop = async () => {
    await service.stop();
    await server.stop(30_000);
    rmSync(baseDir, { recursive: true, force: true });
  };
  try {
    const ingressUrl = `http://127.0.0.1:${ingressPort}`;
    const adminUrl = `http://127.0.0.1:${adminPort}`;
    await waitUntil(async () => (await httpStatus(`${adminUrl}/health`)) === 200, 'the Restate admin API', 60_000, server);
    await waitUntil(async () => (await httpStatus(`${ingressUrl}/restate/health`)) === 200, 'the Restate ingress', 60_000, server);
    await waitUntil(() => portOpen(servicePort), 'the Restate service endpoint', 30_000, service);
    const registered = await fetch(`${adminUrl}/deployments`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ uri: `http://127.0.0.1:${servicePort}`, force: true }),
    });
    if (!registered.ok) throw new Error(`registering the deployment answered ${registered.status}: ${await registered.text()}`);
    // The ingress knows the services once the registration has reached it.
    await waitUntil(async () => (await httpStatus(`${ingressUrl}/Order/probe/get`, { method: 'POST' })) === 401, 'the Order service at the ingress', 30_000, server);
    return { ingressUrl, dataDir: baseDir, server, service, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
