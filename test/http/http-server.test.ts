import { expect } from 'chai';
import { connect } from 'node:net';
import { startServiceProcess, type ServiceProcess } from '../support/service-process.ts';
import { sharedSystem } from '../support/system.ts';

/** The HTTP server of a real service process: how long it keeps an idle connection. */
describe('HTTP keep-alive of the service process', () => {
  let service: ServiceProcess | undefined;
  after(async () => {
    service?.child.kill('SIGTERM');
    await service?.exited;
  });

  it('keeps an idle keep-alive connection for HTTP_KEEP_ALIVE_TIMEOUT_MS, then closes it', async () => {
    const sys = await sharedSystem();
    // Shorter than Node's 5 s default on purpose: a close before 5 s shows the setting took effect.
    service = await startServiceProcess({ gatewayUrl: sys.gateway.url, queuePrefix: sys.queuePrefix, env: { HTTP_KEEP_ALIVE_TIMEOUT_MS: '1500' } });
    const { hostname, port } = new URL(service.baseUrl);
    const socket = connect(Number(port), hostname);
    let received = '';
    let answeredAt = 0;
    const closed = new Promise<number>((resolve, reject) => {
      socket.on('data', (d: Buffer) => {
        received += d.toString();
        if (!answeredAt && /\r\n\r\n/.test(received)) answeredAt = Date.now();
      });
      socket.on('close', () => resolve(Date.now()));
      socket.on('error', reject);
      setTimeout(() => reject(new Error('the idle connection was still open after 10 s')), 10_000).unref();
    });
    socket.write(`GET /healthz HTTP/1.1\r\nHost: ${hostname}\r\nConnection: keep-alive\r\n\r\n`);
    const closedAt = await closed;
    expect(received).to.match(/^HTTP\/1\.1 200/);
    expect(received.toLowerCase()).to.include('connection: keep-alive');
    const idle = closedAt - answeredAt;
    expect(idle, 'open for the configured time').to.be.at.least(1400);
    expect(idle, "closed by the setting, before Node's 5 s default").to.be.below(4500);
  });
});
