import { commandLine } from './cli.ts';
import { loadConfigOrExit } from './config.ts';
import { tracingRequested } from './tracing.ts';

const USAGE = `usage: node dist/main.js   (from a checkout: npm start, which builds dist/ when it is stale)

Runs the Baedal service in the foreground: the HTTP API and, unless ROLE=api, the event workers,
durable work and the sweeper. SIGTERM or SIGINT drains it and exits 0 within SHUTDOWN_TIMEOUT_MS;
exits 1 when PostgreSQL stays unreachable for STARTUP_WAIT_MS, 2 on an invalid configuration.
Configuration comes from the environment (every variable is in README.md, Configuration), e.g.
PORT, HOST, DATABASE_URL, REDIS_URL, PAYMENT_URL, AUTH_SECRET, NOTIFY_WEBHOOK_URL, NOTIFY_WEBHOOK_SECRET,
ROLE, LOG_LEVEL; OTEL_EXPORTER_OTLP_ENDPOINT turns on OpenTelemetry traces (README.md, Traces).`;

async function main(): Promise<void> {
  commandLine('baedal', USAGE, {});
  const config = loadConfigOrExit();
  // Tracing starts before the service's modules load: its instrumentations patch pg, ioredis and
  // koa as they are first required. Without an OTLP endpoint the SDK is not even loaded.
  const tracing = tracingRequested() ? (await import('./tracing-sdk.ts')).startTracing() : undefined;
  const { serve } = await import('./service.ts');
  await serve(config, tracing);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
