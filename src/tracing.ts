import {
  context,
  defaultTextMapGetter,
  defaultTextMapSetter,
  isSpanContextValid,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type Link,
  type Span,
} from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';

/**
 * Trace helpers over the OpenTelemetry API only. The SDK (src/tracing-sdk.ts) is started by
 * `main` when an OTLP endpoint is configured; until then every helper returns at its first line,
 * so code that traces costs a boolean test when tracing is off, and nothing is written anywhere.
 *
 * The context of a piece of work travels with the rows that owe it (the journal, refunds, timers,
 * notifications, payment attempts) as a W3C `traceparent`, whatever propagators are configured:
 * the work done later, on any replica, is a child of the span that recorded it.
 */

/** The OTLP endpoint traces go to, as the standard variables set it (undefined: none). */
export function otlpTracesEndpoint(env: NodeJS.ProcessEnv = process.env): string | undefined {
  return (env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? '').trim() || (env.OTEL_EXPORTER_OTLP_ENDPOINT ?? '').trim() || undefined;
}

/**
 * Whether the environment asks for traces: an OTLP endpoint is set and `OTEL_SDK_DISABLED` is not
 * true. Otherwise the SDK is never loaded.
 */
export function tracingRequested(env: NodeJS.ProcessEnv = process.env): boolean {
  return otlpTracesEndpoint(env) !== undefined && (env.OTEL_SDK_DISABLED ?? '').trim().toLowerCase() !== 'true';
}

let enabled = false;
const propagator = new W3CTraceContextPropagator();
const tracer = trace.getTracer('baedal');

/** Called once the SDK is registered (tracing-sdk.ts). */
export function enableTracing(): void {
  enabled = true;
}

/** Whether spans are recorded and trace context is written. */
export function tracingEnabled(): boolean {
  return enabled;
}

export { SpanKind };
export type { Context, Span };

export interface SpanOptions {
  kind?: SpanKind;
  attributes?: Attributes;
  /**
   * The parent: a stored traceparent (null or undefined: none, a new trace), or `'active'` (the
   * default) for the span active now.
   */
  parent?: string | null | 'active';
  /** Other spans this one belongs with (stored traceparents; empty and repeated ones are skipped). */
  links?: readonly (string | null | undefined)[];
  /** When the span started (default now). */
  startTime?: number;
}

/** The W3C traceparent of a span (its sampled flag included), or undefined for none or the API's no-op span. */
export function traceparentOf(span: Span | undefined): string | undefined {
  if (!span) return undefined;
  const sc = span.spanContext();
  if (!isSpanContextValid(sc)) return undefined;
  const carrier: Record<string, string> = {};
  propagator.inject(trace.setSpanContext(ROOT_CONTEXT, sc), carrier, defaultTextMapSetter);
  return carrier.traceparent;
}

/** The traceparent of the span active now: what a row recorded now carries. Undefined when tracing is off. */
export function activeTraceparent(): string | undefined {
  if (!enabled) return undefined;
  return traceparentOf(trace.getActiveSpan());
}

/** A context whose parent is the stored traceparent (the root context for none or a malformed one). */
function contextOf(traceparent: string | null | undefined): Context {
  if (!traceparent) return ROOT_CONTEXT;
  return propagator.extract(ROOT_CONTEXT, { traceparent }, defaultTextMapGetter);
}

function linksOf(traceparents: readonly (string | null | undefined)[] | undefined, parent: string | undefined): Link[] | undefined {
  if (!traceparents || traceparents.length === 0) return undefined;
  const links: Link[] = [];
  const seen = new Set<string>(parent ? [parent] : []);
  for (const tp of traceparents) {
    if (!tp || seen.has(tp)) continue;
    seen.add(tp);
    const sc = trace.getSpanContext(contextOf(tp));
    if (sc && isSpanContextValid(sc)) links.push({ context: sc });
  }
  return links.length > 0 ? links : undefined;
}

/** Starts a span the caller ends (`endSpan`); undefined when tracing is off. */
export function startSpan(name: string, opts: SpanOptions = {}): Span | undefined {
  if (!enabled) return undefined;
  const parent = opts.parent === undefined || opts.parent === 'active' ? context.active() : contextOf(opts.parent);
  return tracer.startSpan(
    name,
    {
      kind: opts.kind ?? SpanKind.INTERNAL,
      attributes: opts.attributes,
      links: linksOf(opts.links, opts.parent === 'active' ? undefined : (opts.parent ?? undefined)),
      startTime: opts.startTime,
      root: parent === ROOT_CONTEXT,
    },
    parent,
  );
}

/** Ends a span, marking it failed with `err` when given. */
export function endSpan(span: Span | undefined, err?: unknown): void {
  if (!span) return;
  if (err !== undefined) failSpan(span, err);
  span.end();
}

function failSpan(span: Span, err: unknown): void {
  span.recordException(err instanceof Error ? err : String(err));
  span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
}

/**
 * Runs `fn` inside a new span (active for everything `fn` calls), ended when `fn` settles and
 * marked failed when it throws. With tracing off, runs `fn` alone.
 */
export function inSpan<T>(name: string, opts: SpanOptions, fn: (span: Span | undefined) => Promise<T>): Promise<T> {
  if (!enabled) return fn(undefined);
  const span = startSpan(name, opts)!;
  return (async () => {
    try {
      return await context.with(trace.setSpan(context.active(), span), () => fn(span));
    } catch (err) {
      failSpan(span, err);
      throw err;
    } finally {
      span.end();
    }
  })();
}

/** Runs `fn` with `span` active (as is, when tracing is off or there is no span). */
export function withSpan<T>(span: Span | undefined, fn: () => T): T {
  if (!span) return fn();
  return context.with(trace.setSpan(context.active(), span), fn);
}

/** The context active now, to run later work in (undefined when tracing is off). */
export function activeContext(): Context | undefined {
  return enabled ? context.active() : undefined;
}

/** Runs `fn` in a context `activeContext` captured (as is, when there is none). */
export function withContext<T>(ctx: Context | undefined, fn: () => T): T {
  return ctx ? context.with(ctx, fn) : fn();
}

/**
 * Runs `fn` outside whatever span is active: for background loops started from a request (a
 * batch of many orders' work must not become a child of the request that happened to wake it).
 */
export function detached<T>(fn: () => T): T {
  if (!enabled) return fn();
  return context.with(ROOT_CONTEXT, fn);
}

/** Sets attributes on a span, if there is one. */
export function annotate(span: Span | undefined, attributes: Attributes): void {
  span?.setAttributes(attributes);
}

/** The attribute names the service's spans carry. */
export const ATTR = {
  orderId: 'baedal.order_id',
  command: 'baedal.command',
  orderVersion: 'baedal.order_version',
  eventType: 'baedal.event.type',
  eventSeq: 'baedal.event.seq',
  consumer: 'baedal.consumer',
  events: 'baedal.events',
  partitions: 'baedal.partitions',
  workKind: 'baedal.work.kind',
  workKey: 'baedal.work.key',
  workAttempt: 'baedal.work.attempt',
  workOutcome: 'baedal.work.outcome',
  notificationId: 'baedal.notification_id',
  messages: 'baedal.messages',
  paymentKey: 'baedal.payment.idempotency_key',
  paymentOutcome: 'baedal.payment.outcome',
} as const;
