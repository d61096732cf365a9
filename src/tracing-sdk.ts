import { createRequire } from 'node:module';
import type { IncomingMessage } from 'node:http';
import { HttpInstrumentation } from '@opentelemetry/instrumentation-http';
import { IORedisInstrumentation } from '@opentelemetry/instrumentation-ioredis';
import { KoaInstrumentation, KoaLayerType } from '@opentelemetry/instrumentation-koa';
import { PgInstrumentation } from '@opentelemetry/instrumentation-pg';
import { UndiciInstrumentation } from '@opentelemetry/instrumentation-undici';
import { NodeSDK } from '@opentelemetry/sdk-node';
import { enableTracing, otlpTracesEndpoint, tracingRequested } from './tracing.ts';

/** Probes and scrapes: frequent, and of no interest in a trace. */
const UNTRACED_PATHS = new Set(['/healthz', '/readyz', '/metrics']);

export interface Tracing {
  /** Where spans go, for the start-up log. */
  endpoint: string;
  /** Exports the spans still buffered and stops; call it last, when the service has stopped. */
  shutdown(): Promise<void>;
}

/**
 * Starts the OpenTelemetry SDK for traces: spans of the HTTP server and the service's own work
 * (commands, consumers, durable work, the payment and webhook calls), with the Koa, pg, ioredis,
 * node:http and undici instrumentations, exported by OTLP as the standard `OTEL_*` variables say
 * (endpoint, protocol, headers, sampler, batch delays, service name, resource attributes). No
 * metrics or logs go through it: /metrics and the JSON log are the service's own.
 *
 * It must run before pg, ioredis and koa are loaded: the instrumentations patch those packages
 * when they are first required. So `main` calls it before it imports the rest of the service, and
 * it requires them here at once: the service's own ES imports then get the patched modules from
 * the shared CommonJS cache. Undefined when `tracingRequested` is false.
 */
export function startTracing(env: NodeJS.ProcessEnv = process.env): Tracing | undefined {
  if (!tracingRequested(env)) return undefined;
  const named = Boolean(env.OTEL_SERVICE_NAME?.trim()) || /(^|,)\s*service\.name\s*=/.test(env.OTEL_RESOURCE_ATTRIBUTES ?? '');
  const sdk = new NodeSDK({
    serviceName: named ? undefined : 'baedal',
    // Traces only; an empty list keeps the SDK from starting OTLP metrics and logs by default.
    metricReaders: [],
    logRecordProcessors: [],
    instrumentations: [
      new HttpInstrumentation({
        ignoreIncomingRequestHook: (req: IncomingMessage) => UNTRACED_PATHS.has((req.url ?? '').split('?')[0]!),
        // Only calls made for traced work (the payment gateway's, under a payment or refund span).
        requireParentforOutgoingSpans: true,
      }),
      // Route spans only: one per middleware of every request would cost more than they tell.
      new KoaInstrumentation({ ignoreLayersType: [KoaLayerType.MIDDLEWARE] }),
      // Statements of traced work only, never their parameters (they hold personal data); no span
      // for taking a pooled connection (one per statement, about as many spans again).
      new PgInstrumentation({ requireParentSpan: true, enhancedDatabaseReporting: false, ignoreConnectSpans: true }),
      new IORedisInstrumentation({ requireParentSpan: true }),
      new UndiciInstrumentation({ requireParentforSpans: true }),
    ],
  });
  sdk.start();
  enableTracing();
  const require = createRequire(import.meta.url);
  for (const name of ['http', 'https', 'pg', 'ioredis', 'koa']) require(name);
  return { endpoint: otlpTracesEndpoint(env)!, shutdown: () => sdk.shutdown() };
}
