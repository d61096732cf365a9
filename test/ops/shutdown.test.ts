import { expect } from 'chai';
import { connect, type Socket } from 'node:net';
import { startServiceProcess, type ServiceProcess } from '../support/service-process.ts';
import { eventually, request, sharedSystem, type Parties, type TestSystem } from '../support/system.ts';

interface Answer {
  status: number;
  headers: Record<string, string>;
  body: string;
  at: number;
}

/** One HTTP/1.1 keep-alive connection, written by hand so the test sees exactly what the server does with it. */
class Connection {
  readonly answers: Answer[] = [];
  closedAt: number | undefined;
  private buffer = Buffer.alloc(0);
  private waiting: ((a: Answer) => void)[] = [];
  private readonly closed: Promise<void>;

  private constructor(private readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      this.parse();
    });
    socket.on('error', () => undefined);
    this.closed = new Promise((resolve) =>
      socket.on('close', () => {
        this.closedAt = performance.now();
        resolve();
      }),
    );
  }

  static async open(baseUrl: string): Promise<Connection> {
    const url = new URL(baseUrl);
    const socket = connect(Number(url.port), url.hostname);
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    return new Connection(socket);
  }

  send(method: string, path: string, opts: { token?: string; body?: unknown } = {}): Promise<Answer> {
    const body = opts.body === undefined ? '' : JSON.stringify(opts.body);
    const lines = [`${method} ${path} HTTP/1.1`, 'Host: service', 'Connection: keep-alive'];
    if (opts.token) lines.push(`Authorization: Bearer ${opts.token}`);
    if (body) lines.push('Content-Type: application/json');
    lines.push(`Content-Length: ${Buffer.byteLength(body)}`);
    const answered = new Promise<Answer>((resolve) => this.waiting.push(resolve));
    this.socket.write(`${lines.join('\r\n')}\r\n\r\n${body}`);
    return answered;
  }

  whenClosed(): Promise<void> {
    return this.closed;
  }

  destroy(): void {
    this.socket.destroy();
  }

  private parse(): void {
    for (;;) {
      const end = this.buffer.indexOf('\r\n\r\n');
      if (end < 0) return;
      const [statusLine, ...headerLines] = this.buffer.subarray(0, end).toString('latin1').split('\r\n');
      const headers = Object.fromEntries(headerLines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
      const length = Number(headers['content-length'] ?? 0);
      if (this.buffer.length < end + 4 + length) return;
      const answer = { status: Number(statusLine!.split(' ')[1]), headers, body: this.buffer.subarray(end + 4, end + 4 + length).toString('utf8'), at: performance.now() };
      this.buffer = this.buffer.subarray(end + 4 + length);
      this.answers.push(answer);
      this.waiting.shift()?.(answer);
    }
  }
}

/** SIGTERM of a real service process: what its keep-alive connections see, and when it exits. */
describe('graceful shutdown of a service process', function () {
  this.timeout(60_000);
  let sys: TestSystem;
  let p: Parties;
  let service: ServiceProcess | undefined;

  before(async () => {
    sys = await sharedSystem();
  });
  beforeEach(async () => {
    await sys.resetGateway();
    p = await sys.newParties();
  });
  afterEach(async () => {
    service?.child.kill('SIGKILL');
    await service?.exited;
    service = undefined;
    await sys.resetGateway();
  });

  it('after SIGTERM every answer says Connection: close; idle connections close at once, busy ones after their answer; exit within 1 s of the last answer', async () => {
    // A long budget: nothing below may depend on connections being cut at its deadline.
    service = await startServiceProcess({ gatewayUrl: sys.gateway.url, queuePrefix: sys.queuePrefix, env: { SHUTDOWN_TIMEOUT_MS: '20000' } });
    const order = await sys.placeOrder(p);
    const idle = await Connection.open(service.baseUrl);
    expect((await idle.send('GET', '/healthz')).headers.connection).to.equal('keep-alive');
    const chatty = await Connection.open(service.baseUrl);
    expect((await chatty.send('GET', '/healthz')).status).to.equal(200);

    // A pay that takes a while at the gateway keeps its connection busy across the signal.
    await sys.setGatewayBehaviour({ latencyMs: 1500 });
    const busy = await Connection.open(service.baseUrl);
    const paying = busy.send('POST', `/orders/${order.id}/pay`, { token: p.customer });
    await eventually(async () => (await sys.gatewayStats()).charges >= 1, 'the charge to reach the gateway');

    // A client that keeps its connection busy with one request after another.
    let chatting = true;
    const chat = (async () => {
      while (chatting && chatty.closedAt === undefined) await Promise.race([chatty.send('GET', '/healthz'), chatty.whenClosed()]);
    })();
    await eventually(async () => chatty.answers.length > 50, 'the client to keep its connection busy');
    const signalledAt = performance.now();
    service.child.kill('SIGTERM');

    await idle.whenClosed();
    const paid = await paying;
    expect(idle.closedAt!, 'the idle connection closed before the busy one was answered').to.be.below(paid.at);
    expect(paid.status, paid.body).to.equal(200);
    expect(JSON.parse(paid.body).status).to.equal('paid');
    expect(paid.headers.connection).to.equal('close');
    await busy.whenClosed();

    await chatty.whenClosed();
    chatting = false;
    await chat;
    // Once the service took the signal (a busy host may deliver it some requests after it was sent), the
    // connection was answered at most once more, saying close, then closed; or closed at once, idle
    // between two requests. Every earlier answer kept it open.
    const closing = chatty.answers.filter((a) => a.headers.connection === 'close');
    expect(closing.length, 'answers saying close on the busy client connection').to.be.at.most(1);
    if (closing.length === 1) expect(chatty.answers.at(-1), 'the answer saying close was the last one').to.equal(closing[0]);
    for (const a of chatty.answers.slice(0, closing.length === 1 ? -1 : undefined)) expect(a.headers.connection).to.equal('keep-alive');
    if (closing.length === 1) expect(closing[0]!.at, 'close was said only after the signal').to.be.above(signalledAt);
    expect(chatty.closedAt!, 'the busy client connection closed before the pay was answered').to.be.below(paid.at);

    const exit = await service.exited;
    const exitedAt = performance.now();
    expect(exit).to.deep.equal({ code: 0, signal: null });
    const lastAnswer = Math.max(paid.at, ...chatty.answers.map((a) => a.at));
    const stops = service.output().split('\n').filter((l) => /"msg":"(shutting down|HTTP connections closed|stopped)"/.test(l));
    expect(exitedAt - lastAnswer, `exited ${Math.round(exitedAt - lastAnswer)} ms after the last answer:\n${stops.join('\n')}`).to.be.below(1000);
    service = undefined;
  });
});
