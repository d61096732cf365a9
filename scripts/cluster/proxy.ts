import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { orderKey, rendezvous, type Route } from '../load/route.ts';

/** What the proxy sent one upstream. */
export interface UpstreamCounts {
  requests: number;
  /** Requests it answered 2xx. */
  ok: number;
  /** Requests sent and not answered yet, by path. */
  inFlight: Record<string, number>;
}

/**
 * A small HTTP proxy in front of the replicas, as a Kubernetes Service or an ingress would be: each
 * request goes to the next upstream, or, with `route = 'order'`, a request about an existing order
 * goes to the upstream its order id hashes to (rendezvous hashing: adding or removing an upstream
 * moves only the orders that go to it), as an ingress hashing on the order id does. A request whose connection is refused (the
 * replica is down, nothing was sent) goes to the next one; one cut after it was sent is answered
 * 502, since the replica may have acted on it. Upstreams come and go while it runs. With
 * `retryVersionAhead`, a 503 `machine_version_ahead` (a replica of an older machine version met
 * an order a newer one moved; it changed nothing) is sent on to the next upstream, as a load
 * balancer told to retry that answer does during a rolling deploy.
 */
export class ReplicaProxy {
  private readonly upstreams = new Map<string, { port: number; agent: http.Agent; counts: UpstreamCounts }>();
  private order: string[] = [];
  private next = 0;
  private server?: http.Server;
  /** Requests no upstream took (every one refused the connection). */
  unavailable = 0;
  /** How requests are spread: each to the next upstream, or by the order id of their path. */
  route: Route = 'round-robin';
  /** Send a 503 machine_version_ahead answer's request on to the next upstream. */
  retryVersionAhead = false;
  /** 503 machine_version_ahead answers, by the upstream that gave them (retried or not). */
  readonly versionAhead = new Map<string, number>();

  /** Adds (or re-adds, after a restart on a new port) the upstream `name`. */
  set(name: string, port: number): void {
    const existing = this.upstreams.get(name);
    existing?.agent.destroy();
    this.upstreams.set(name, {
      port,
      agent: new http.Agent({ keepAlive: true, maxSockets: 256 }),
      counts: existing?.counts ?? { requests: 0, ok: 0, inFlight: {} },
    });
    if (!this.order.includes(name)) this.order.push(name);
  }

  /** Takes `name` out of the rotation (its counts stay). */
  remove(name: string): void {
    this.order = this.order.filter((n) => n !== name);
    this.upstreams.get(name)?.agent.destroy();
  }

  counts(): Record<string, UpstreamCounts> {
    return Object.fromEntries([...this.upstreams].map(([name, u]) => [name, { ...u.counts, inFlight: { ...u.counts.inFlight } }]));
  }

  resetCounts(): void {
    for (const u of this.upstreams.values()) u.counts = { requests: 0, ok: 0, inFlight: {} };
    this.unavailable = 0;
  }

  async listen(): Promise<string> {
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => this.forward(req, res, Buffer.concat(chunks), this.order.length));
    });
    this.server.keepAliveTimeout = 60_000;
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** The upstream of the request's order id (route `order`), else the next in turn; never one in `avoid`. */
  private pick(avoid: ReadonlySet<string>, path: string): string | undefined {
    const key = this.route === 'order' ? orderKey(path) : undefined;
    if (key !== undefined) return rendezvous(key, this.order.filter((n) => !avoid.has(n)));
    for (let i = 0; i < this.order.length; i += 1) {
      const name = this.order[this.next % this.order.length]!;
      this.next = (this.next + 1) % this.order.length;
      if (!avoid.has(name)) return name;
    }
    return undefined;
  }

  private forward(req: http.IncomingMessage, res: http.ServerResponse, body: Buffer, triesLeft: number, avoid: ReadonlySet<string> = new Set()): void {
    const name = this.pick(avoid, req.url ?? '/');
    const upstream = name === undefined ? undefined : this.upstreams.get(name);
    if (!upstream || triesLeft <= 0) {
      this.unavailable += 1;
      res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '1' });
      res.end(JSON.stringify({ error: { code: 'no_replica', message: 'no replica accepted the connection' } }));
      return;
    }
    const headers = { ...req.headers };
    delete headers.connection;
    const path = (req.url ?? '/').split('?')[0]!;
    const inFlight = upstream.counts.inFlight;
    inFlight[path] = (inFlight[path] ?? 0) + 1;
    let landed = false;
    const land = () => {
      if (landed) return;
      landed = true;
      inFlight[path]! -= 1;
      if (inFlight[path] === 0) delete inFlight[path];
    };
    const out = http.request(
      { hostname: '127.0.0.1', port: upstream.port, method: req.method, path: req.url, headers, agent: upstream.agent },
      (answer) => {
        land();
        upstream.counts.requests += 1;
        if ((answer.statusCode ?? 0) >= 200 && (answer.statusCode ?? 0) < 300) upstream.counts.ok += 1;
        if (answer.statusCode === 503) {
          // Read it whole (it is small) to see whether another replica may take the request.
          const chunks: Buffer[] = [];
          answer.on('data', (c: Buffer) => chunks.push(c));
          answer.on('error', () => res.destroy());
          answer.on('end', () => {
            const text = Buffer.concat(chunks);
            let code: unknown;
            try {
              code = (JSON.parse(text.toString('utf8')) as { error?: { code?: unknown } }).error?.code;
            } catch {
              code = undefined;
            }
            if (code === 'machine_version_ahead') {
              this.versionAhead.set(name!, (this.versionAhead.get(name!) ?? 0) + 1);
              if (this.retryVersionAhead && this.order.some((n) => n !== name && !avoid.has(n))) {
                this.forward(req, res, body, triesLeft, new Set([...avoid, name!]));
                return;
              }
            }
            res.writeHead(503, answer.headers);
            res.end(text);
          });
          return;
        }
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
        answer.on('error', () => res.destroy());
      },
    );
    out.on('error', (err: NodeJS.ErrnoException) => {
      land();
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (err.code === 'ECONNREFUSED') {
        // Nothing was sent: another upstream may take it (not the same one again, as a load balancer marks it down).
        this.forward(req, res, body, triesLeft - 1, new Set([...avoid, name!]));
        return;
      }
      upstream.counts.requests += 1;
      res.writeHead(502, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code: 'upstream_failed', message: `replica ${name} failed mid-request (${err.code ?? err.message})` } }));
    });
    out.end(body);
  }

  async close(): Promise<void> {
    for (const u of this.upstreams.values()) u.agent.destroy();
    if (!this.server) return;
    const closed = new Promise<void>((resolve) => this.server!.close(() => resolve()));
    this.server.closeAllConnections();
    await closed;
  }
}
