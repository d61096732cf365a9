import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import type { CpuLimits } from '../../bench/cpu-limit.ts';
import { freePort, httpStatus, ProcessGroup, waitUntil, type Managed, type StartOptions } from '../../bench/processes.ts';
import { SIGNATURE_HEADER, verify } from '../../src/notifications/signature.ts';
import type { LedgerCharge, LedgerRefund } from '../../dev/fake-gateway.ts';
import { deleteKeys, onServer } from './infra.ts';
import { ReplicaProxy } from './proxy.ts';

export interface ClusterOptions {
  /** The database is dropped and created afresh, and dropped again at the end. */
  databaseUrl: string;
  redisUrl: string;
  /** Settings of every replica, over the defaults below. */
  env?: Record<string, string>;
  /** Called when a process dies that nobody killed on purpose. */
  onCrash?: (name: string, how: string, tail: string) => void;
  /** Node options of the replicas (e.g. --cpu-prof). */
  nodeArgs?: string[];
  /** What node runs as a replica: the sources through tsx by default, or the compiled service (`dist/main.js`). */
  serviceArgs?: string[];
  /** Each replica in a CPU-quota cgroup of its own (named as the replica), as a pod with `limits.cpu`. */
  cpuLimits?: CpuLimits;
}

export interface Ledger {
  charges: LedgerCharge[];
  refunds: LedgerRefund[];
}

export interface Replica {
  name: string;
  url: string;
  port: number;
  process: Managed;
}

/**
 * A webhook receiver standing in for the messaging provider: counts each notification it receives.
 * As a production receiver does, it takes only requests whose signature verifies with the
 * cluster's secret, and answers 401 to the others (counted in `unverified`).
 */
class WebhookReceiver {
  /** notificationId (the Idempotency-Key) → times received. */
  readonly received = new Map<string, number>();
  unverified = 0;
  private server?: http.Server;

  constructor(private readonly secret: string) {}

  async listen(): Promise<string> {
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const signature = req.headers[SIGNATURE_HEADER.toLowerCase()] as string | undefined;
        if (!verify(signature, Buffer.concat(chunks), this.secret).ok) {
          this.unverified += 1;
          res.writeHead(401).end();
          return;
        }
        const key = req.headers['idempotency-key'];
        if (typeof key === 'string') this.received.set(key, (this.received.get(key) ?? 0) + 1);
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/notify`;
  }

  async close(): Promise<void> {
    if (!this.server) return;
    const closed = new Promise<void>((resolve) => this.server!.close(() => resolve()));
    this.server.closeAllConnections();
    await closed;
  }
}

/**
 * Identical replicas of the service (`src/main.ts`, each its own process) sharing one fresh
 * PostgreSQL database and one Redis queue prefix, behind a proxy (round-robin unless told to route by order id), with the fake payment
 * gateway and a webhook receiver in processes and servers of their own. Replicas can be killed and
 * restarted while load runs through the proxy.
 */
export class Cluster {
  readonly tag = randomUUID().slice(0, 8);
  readonly queuePrefix = `{baedal-cluster-${this.tag}}`;
  readonly secret = randomBytes(32).toString('base64url');
  /** What the replicas sign their webhook requests with, and the receiver verifies with. */
  readonly webhookSecret = randomBytes(32).toString('base64url');
  readonly logDir = mkdtempSync(join(tmpdir(), 'baedal-cluster-'));
  readonly proxy = new ReplicaProxy();
  readonly webhook = new WebhookReceiver(this.webhookSecret);
  readonly replicas = new Map<string, Replica>();
  /** A pool on the cluster's database, for the checks. */
  readonly db: pg.Pool;
  readonly databaseName: string;
  url = '';
  gatewayUrl = '';
  private webhookUrl = '';
  private readonly group: ProcessGroup;
  private readonly adminUrl: string;

  constructor(private readonly opts: ClusterOptions) {
    this.group = new ProcessGroup(this.logDir, (m, how) => opts.onCrash?.(m.name, how, m.tail(40)));
    const url = new URL(opts.databaseUrl);
    this.databaseName = url.pathname.slice(1);
    url.pathname = '/postgres';
    this.adminUrl = url.toString();
    this.db = new pg.Pool({ connectionString: opts.databaseUrl, max: 4 });
    // A pooled connection PostgreSQL terminates (the outage drill) is replaced on the next query.
    this.db.on('error', () => undefined);
  }

  /** Creates the database, starts the gateway, the webhook receiver and the proxy (no replica yet). */
  async start(): Promise<void> {
    await this.admin(`DROP DATABASE IF EXISTS "${this.databaseName}" WITH (FORCE)`);
    await this.admin(`CREATE DATABASE "${this.databaseName}"`);
    const port = await freePort();
    const gateway = this.group.start('payment-gateway', process.execPath, ['--import', 'tsx', 'scripts/payment-gateway.ts'], {
      env: { ...process.env, PAYMENT_GATEWAY_PORT: String(port), PAYMENT_GATEWAY_HOST: '127.0.0.1' },
    });
    this.gatewayUrl = `http://127.0.0.1:${port}`;
    await waitUntil(async () => (await httpStatus(`${this.gatewayUrl}/_admin/ledger`)) === 200, 'the fake payment gateway', 30_000, gateway);
    this.webhookUrl = await this.webhook.listen();
    this.url = await this.proxy.listen();
  }

  /** Statements on the `postgres` database (create, drop, allow or refuse connections). */
  admin(sql: string): Promise<void> {
    return onServer(this.opts.databaseUrl, sql);
  }

  /**
   * Starts replica `name` (a new one, or a dead one again), waits until it is ready, and puts it
   * behind the proxy. `preload`: modules loaded before the service's (`node --import`), such as a
   * test fixture that makes it run another version of the order machine.
   */
  async startReplica(name = `replica-${this.replicas.size + 1}`, env: Record<string, string> = {}, preload: readonly string[] = []): Promise<Replica> {
    const port = await freePort();
    // Preloaded modules go right before the entry script (a TypeScript one needs the default, tsx).
    const service = this.opts.serviceArgs ?? ['--import', 'tsx', 'src/main.ts'];
    const nodeArgs = [...(this.opts.nodeArgs ?? []), ...service.slice(0, -1), ...preload.flatMap((m) => ['--import', m]), ...service.slice(-1)];
    const { command, args } = this.opts.cpuLimits?.wrap(name, process.execPath, nodeArgs) ?? { command: process.execPath, args: nodeArgs };
    const child = this.group.start(name, command, args, {
      env: {
        ...process.env,
        NODE_ENV: 'production',
        PORT: String(port),
        HOST: '127.0.0.1',
        DATABASE_URL: this.opts.databaseUrl,
        REDIS_URL: this.opts.redisUrl,
        QUEUE_PREFIX: this.queuePrefix,
        AUTH_SECRET: this.secret,
        PAYMENT_URL: this.gatewayUrl,
        NOTIFY_WEBHOOK_URL: this.webhookUrl,
        NOTIFY_WEBHOOK_SECRET: this.webhookSecret,
        LOG_LEVEL: 'warn',
        RATE_LIMIT_PER_MIN: '0',
        // Every client of a run shares 127.0.0.1: the limits are not what is measured.
        PUBLIC_RATE_LIMIT_PER_MIN: '0',
        ...this.opts.env,
        ...env,
      },
    });
    const url = `http://127.0.0.1:${port}`;
    await waitUntil(async () => (await httpStatus(`${url}/readyz`)) === 200, `${name} to be ready`, 60_000, child);
    this.opts.cpuLimits?.verify(name, child.pid);
    const replica = { name, url, port, process: child };
    this.replicas.set(name, replica);
    this.proxy.set(name, port);
    return replica;
  }

  /** Runs a TypeScript script as a process of the cluster's (stopped with the rest), e.g. the load generator; `preload` as for a replica. */
  run(name: string, script: string, args: readonly string[], opts: Omit<StartOptions, 'finishes'> & { preload?: readonly string[] } = {}): Managed {
    const { preload = [], ...start } = opts;
    return this.group.start(name, process.execPath, ['--import', 'tsx', ...preload.flatMap((m) => ['--import', m]), script, ...args], { ...start, finishes: true });
  }

  /** Sends `signal` to a replica and waits for it to exit; it stays out of the proxy until started again. */
  async kill(name: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    const replica = this.replicas.get(name);
    if (!replica) throw new Error(`no replica ${name}`);
    if (signal === 'SIGKILL') this.proxy.remove(name); // a load balancer notices a dead pod's refused connections anyway
    replica.process.signal(signal);
    const exit = await replica.process.exited;
    this.proxy.remove(name);
    return exit;
  }

  async ledger(): Promise<Ledger> {
    const res = await fetch(`${this.gatewayUrl}/_admin/ledger`, { signal: AbortSignal.timeout(5000) });
    return (await res.json()) as Ledger;
  }

  /** One replica's /metrics, as text. */
  async metrics(name: string): Promise<string> {
    const replica = this.replicas.get(name);
    if (!replica) throw new Error(`no replica ${name}`);
    const res = await fetch(`${replica.url}/metrics`, { signal: AbortSignal.timeout(5000) });
    return res.text();
  }

  /** Deletes every Redis key of the cluster's queues: Redis restarted without persistence. */
  flushQueues(): Promise<number> {
    return deleteKeys(this.opts.redisUrl, this.queuePrefix);
  }

  /**
   * PostgreSQL refuses the service for `ms`: new connections to the database are refused and every
   * existing one (but this harness's own) is terminated; then connections are allowed again.
   */
  async refuseDatabase(ms: number): Promise<number> {
    await this.admin(`ALTER DATABASE "${this.databaseName}" ALLOW_CONNECTIONS false`);
    try {
      const client = new pg.Client({ connectionString: this.adminUrl });
      await client.connect();
      let terminated = 0;
      try {
        const rows = await client.query<{ n: number }>(
          `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`,
          [this.databaseName],
        );
        terminated = rows.rows[0]?.n ?? 0;
      } finally {
        await client.end();
      }
      await new Promise((resolve) => setTimeout(resolve, ms));
      return terminated;
    } finally {
      await this.admin(`ALTER DATABASE "${this.databaseName}" ALLOW_CONNECTIONS true`);
    }
  }

  /** Stops everything, drops the database and the queues' keys; the logs are kept when `keepLogs`. */
  async stop(keepLogs = false): Promise<void> {
    await this.group.stopAll(15_000).catch(() => undefined);
    await this.proxy.close().catch(() => undefined);
    await this.webhook.close().catch(() => undefined);
    await this.db.end().catch(() => undefined);
    await this.flushQueues().catch(() => undefined);
    await this.admin(`DROP DATABASE IF EXISTS "${this.databaseName}" WITH (FORCE)`).catch(() => undefined);
    if (!keepLogs) rmSync(this.logDir, { recursive: true, force: true });
  }

  /** For `process.on('exit')`: kills whatever still runs. */
  killAllNow(): void {
    this.group.killAllNow();
  }
}
