import http from 'node:http';
import { orderKey, rendezvous, type Route } from './route.ts';

/** What one request came back with: an HTTP status and its JSON body, or status 0 and a network error code. */
export interface HttpResult {
  status: number;
  body: any;
  /** `Retry-After` in seconds, when the server sent one. */
  retryAfter?: number;
  /** Set when no HTTP answer arrived: ECONNREFUSED, ECONNRESET, ETIMEDOUT, ... */
  networkError?: string;
}

interface Origin {
  url: string;
  hostname: string;
  port: number;
  agent: http.Agent;
}

/**
 * A small HTTP/1.1 client on keep-alive sockets, kept cheap because on a 2-core machine the load
 * generator's own CPU competes with the service it measures. With several base URLs it spreads
 * requests over them as a load balancer in front of the replicas would: round-robin, or by order
 * id (see `Route`).
 */
export class HttpClient {
  private readonly origins: Origin[];
  private readonly byUrl: Map<string, Origin>;
  private readonly urls: string[];
  private next = 0;

  constructor(
    baseUrls: readonly string[],
    private readonly opts: { maxSockets: number; timeoutMs: number; route?: Route },
  ) {
    if (baseUrls.length === 0) throw new Error('at least one URL is needed');
    this.origins = baseUrls.map((raw) => {
      const url = new URL(raw);
      if (url.protocol !== 'http:') throw new Error(`only http:// URLs are supported, not ${raw}`);
      if (url.pathname !== '/' || url.search) throw new Error(`a base URL has no path or query: ${raw}`);
      return {
        url: raw,
        hostname: url.hostname.replace(/^\[|\]$/g, ''),
        port: Number(url.port || 80),
        agent: new http.Agent({ keepAlive: true, maxSockets: opts.maxSockets, maxFreeSockets: opts.maxSockets, scheduling: 'lifo' }),
      };
    });
    this.byUrl = new Map(this.origins.map((o) => [o.url, o]));
    this.urls = [...this.byUrl.keys()];
  }

  /** The origin a request goes to: by its order id (route `order`), else the next in turn. */
  originOf(path: string): Origin {
    const key = this.opts.route === 'order' && this.origins.length > 1 ? orderKey(path) : undefined;
    if (key !== undefined) return this.byUrl.get(rendezvous(key, this.urls)!)!;
    const origin = this.origins[this.next]!;
    this.next = (this.next + 1) % this.origins.length;
    return origin;
  }

  /**
   * Sends one request to the origin `originOf` picks; never rejects (a network failure is a result
   * too). A GET that fails with ECONNRESET or EPIPE on a reused keep-alive socket, before any answer,
   * is sent once more on another: the service closed that socket as idle just as the request went
   * out (its `HTTP_KEEP_ALIVE_TIMEOUT_MS`), so it never saw the request. Commands are not resent.
   */
  async request(method: string, path: string, token: string | undefined, body?: string): Promise<HttpResult> {
    const origin = this.originOf(path);
    const { closedIdle, ...first } = await this.send(origin, method, path, token, body);
    if (method !== 'GET' || !closedIdle) return first;
    const { closedIdle: _again, ...again } = await this.send(origin, method, path, token, body);
    return again;
  }

  private send(origin: Origin, method: string, path: string, token: string | undefined, body?: string): Promise<HttpResult & { closedIdle?: boolean }> {
    const headers: http.OutgoingHttpHeaders = { accept: 'application/json' };
    if (token) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = Buffer.byteLength(body);
    }
    return new Promise((resolve) => {
      let settled = false;
      const done = (r: HttpResult & { closedIdle?: boolean }) => {
        if (!settled) {
          settled = true;
          resolve(r);
        }
      };
      const req = http.request({ hostname: origin.hostname, port: origin.port, method, path, headers, agent: origin.agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (err: NodeJS.ErrnoException) => done({ status: 0, body: undefined, networkError: err.code ?? err.message }));
        res.on('end', () => {
          const text = chunks.length === 1 ? chunks[0]!.toString('utf8') : Buffer.concat(chunks).toString('utf8');
          let parsed: unknown;
          if (text.length > 0 && (res.headers['content-type'] ?? '').includes('json')) {
            try {
              parsed = JSON.parse(text);
            } catch {
              parsed = text;
            }
          } else parsed = text || undefined;
          const retryAfter = res.headers['retry-after'] === undefined ? undefined : Number(res.headers['retry-after']);
          done({ status: res.statusCode ?? 0, body: parsed, ...(retryAfter !== undefined && Number.isFinite(retryAfter) && { retryAfter }) });
        });
      });
      req.setTimeout(this.opts.timeoutMs, () => req.destroy(Object.assign(new Error('request timed out'), { code: 'ETIMEDOUT' })));
      req.on('error', (err: NodeJS.ErrnoException) => {
        const closedIdle = req.reusedSocket && (err.code === 'ECONNRESET' || err.code === 'EPIPE');
        done({ status: 0, body: undefined, networkError: err.code ?? err.message, ...(closedIdle && { closedIdle }) });
      });
      req.end(body);
    });
  }

  close(): void {
    for (const o of this.origins) o.agent.destroy();
  }
}
