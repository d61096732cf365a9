import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { within } from './actors/queues.ts';
import { startRuntime } from './app.ts';
import type { Config } from './config.ts';
import { appSettings, createApp } from './http/app.ts';
import { createLogger } from './log.ts';
import { createHttpPaymentGateway } from './payment/payment-gateway.ts';
import type { Tracing } from './tracing-sdk.ts';

/**
 * The service in the foreground (see main.ts, which starts tracing before this module and the
 * packages it instruments are loaded): the HTTP API and, unless ROLE=api, the workers; SIGTERM or
 * SIGINT drains it and exits 0 within SHUTDOWN_TIMEOUT_MS.
 */
export async function serve(config: Config, tracing?: Tracing): Promise<void> {
  const log = createLogger(config.LOG_LEVEL);
  if (tracing) log.info({ endpoint: tracing.endpoint }, 'tracing on: spans are exported by OTLP');
  if (config.usingDevSecret) {
    log.warn('AUTH_SECRET is not set: using the INSECURE development secret. Set AUTH_SECRET before exposing this service.');
  }
  const payments = createHttpPaymentGateway({ baseUrl: config.PAYMENT_URL, timeoutMs: config.PAYMENT_TIMEOUT_MS });
  const runtime = await startRuntime({ config, log, payments });

  let server: Server | undefined;
  let stopping = false;
  /** Answers not yet finished, so shutdown can close their connections once they are. */
  const inFlight = new Set<ServerResponse>();
  if (config.ROLE !== 'worker') {
    const { koa } = createApp({ ...runtime, log, ...appSettings(config), stopping: () => stopping });
    const listening = koa.listen(config.PORT, config.HOST, () => {
      const { address, port } = listening.address() as AddressInfo;
      const host = address.includes(':') ? `[${address}]` : address;
      log.info({ host: address, port, role: config.ROLE }, `Baedal listening on http://${host}:${port}`);
    });
    // Node's 5 s default would close idle connections before a load balancer does (see config.ts).
    listening.keepAliveTimeout = config.HTTP_KEEP_ALIVE_TIMEOUT_MS;
    listening.headersTimeout = config.HTTP_KEEP_ALIVE_TIMEOUT_MS + 1000;
    listening.on('request', (_req: IncomingMessage, res: ServerResponse) => {
      inFlight.add(res);
      res.once('close', () => inFlight.delete(res));
    });
    server = listening;
  } else {
    log.info({ role: config.ROLE }, 'Baedal worker started');
  }

  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true; // readiness answers 503 from now on
    const deadline = Date.now() + config.SHUTDOWN_TIMEOUT_MS;
    const left = () => Math.max(0, deadline - Date.now());
    log.info({ signal, timeoutMs: config.SHUTDOWN_TIMEOUT_MS }, 'shutting down');
    // Whatever happens below, the process is gone within the bound; held jobs go back to BullMQ.
    setTimeout(() => {
      log.warn('shutdown reached SHUTDOWN_TIMEOUT_MS; exiting, unfinished jobs are handed back');
      process.exit(0);
    }, config.SHUTDOWN_TIMEOUT_MS).unref();
    if (server) {
      // Stop taking connections and close the idle ones now; a busy one closes after its answer
      // (each answer from now on says Connection: close). Requests in flight get half the budget,
      // then their connections are cut.
      const closed = new Promise<void>((resolve) => server!.close(() => resolve()));
      server.closeIdleConnections();
      for (const res of inFlight) {
        // An answer already on its way when the signal came went out without Connection: close.
        if (res.headersSent) res.once('finish', () => res.socket?.end());
      }
      if ((await within(closed, left() / 2)) === 'timeout') {
        log.warn('requests still in flight at half the shutdown budget; closing their connections');
        server.closeAllConnections();
      }
      log.info({ tookMs: config.SHUTDOWN_TIMEOUT_MS - left() }, 'HTTP connections closed');
    }
    await runtime.close(Math.max(0, left() - 1000));
    // The spans of the last moments, exported while the bound allows.
    if (tracing && (await within(tracing.shutdown().catch(() => undefined), Math.max(0, left() - 500))) === 'timeout') log.warn('spans not exported within the shutdown bound');
    log.info({ tookMs: config.SHUTDOWN_TIMEOUT_MS - left() }, 'stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}
