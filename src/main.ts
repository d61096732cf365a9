import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startRuntime } from './actors/runtime.ts';
import { loadConfigOrExit } from './config.ts';
import { appSettings, createApp } from './http/app.ts';
import { createLogger } from './log.ts';
import { createHttpPaymentGateway } from './payment/payment-gateway.ts';

async function main(): Promise<void> {
  const config = loadConfigOrExit();
  const log = createLogger(config.LOG_LEVEL);
  if (config.usingDevSecret) {
    log.warn('AUTH_SECRET is not set: using the INSECURE development secret. Set AUTH_SECRET before exposing this service.');
  }
  const payments = createHttpPaymentGateway({ baseUrl: config.PAYMENT_URL, timeoutMs: config.PAYMENT_TIMEOUT_MS });
  const runtime = await startRuntime({ config, log, payments });

  let server: Server | undefined;
  if (config.ROLE !== 'worker') {
    const { koa } = createApp({ ...runtime, log, ...appSettings(config) });
    const listening = koa.listen(config.PORT, config.HOST, () => {
      const { address, port } = listening.address() as AddressInfo;
      const host = address.includes(':') ? `[${address}]` : address;
      log.info({ host: address, port, role: config.ROLE }, `Baedal listening on http://${host}:${port}`);
    });
    server = listening;
  } else {
    log.info({ role: config.ROLE }, 'Baedal worker started');
  }

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    // Stop taking requests first; in-flight ones finish, then the runtime drains its jobs.
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    await runtime.close();
    log.info('stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
