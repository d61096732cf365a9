import { ATTR, endSpan, SpanKind, startSpan, traceparentOf, tracingEnabled, type Span } from '../../tracing.ts';
import type { History } from './history.ts';
import type { OrderEvent } from './types.ts';

/** Links a batch span keeps at most (each an event's trace). */
const BATCH_LINKS = 32;

/**
 * The spans of a batch (tracing on): one for the batch, a root linked to the traces of (some of)
 * its events, and one per consumer and traced event, a child of the span that recorded the event
 * and linked to the order's first event (the trace of its placement). They end when the batch's
 * statement has committed, or failed.
 */
export class ConsumerSpans {
  readonly batch: Span | undefined;
  private readonly spans: Span[] = [];
  private readonly batchContext: string | undefined;
  private ended = false;

  constructor(
    name: string,
    private readonly history: History,
    applied: readonly OrderEvent[],
    /** When the batch was read (epoch milliseconds). */
    private readonly started: number,
    attributes: Record<string, number>,
  ) {
    this.batch = startSpan(name, {
      parent: null,
      startTime: this.started,
      links: [...new Set(applied.map((e) => e.traceparent))].slice(0, BATCH_LINKS),
      attributes: { ...attributes, [ATTR.events]: applied.length },
    });
    this.batchContext = traceparentOf(this.batch);
  }

  /** Starts the span of `consumer` applying `e`; answers its traceparent (the event's when none is recorded). */
  start(consumer: string, e: OrderEvent): string | null | undefined {
    const placed = this.history.events.get(e.orderId)?.[0]?.traceparent;
    const span = startSpan(`consume ${consumer}`, {
      kind: SpanKind.CONSUMER,
      parent: e.traceparent,
      links: [placed, this.batchContext],
      startTime: this.started,
      attributes: { [ATTR.consumer]: consumer, [ATTR.orderId]: e.orderId, [ATTR.eventType]: e.type, [ATTR.eventSeq]: e.seq },
    });
    if (!span) return e.traceparent;
    this.spans.push(span);
    return traceparentOf(span) ?? e.traceparent;
  }

  /** Ends the consumers' spans (failed with `err`, when given); the batch span stays open. */
  endConsumers(err?: unknown): void {
    for (const span of this.spans) endSpan(span, err);
    this.spans.length = 0;
  }

  /** Ends every span of the batch (failed with `err`, when given); once. */
  end(err?: unknown): void {
    if (this.ended) return;
    this.ended = true;
    this.endConsumers(err);
    endSpan(this.batch, err);
  }
}

/** The spans of a batch when tracing is on and some of its events were recorded with a trace context. */
export function consumerSpans(name: string, history: History, applied: readonly OrderEvent[], started: number, attributes: Record<string, number>): ConsumerSpans | undefined {
  if (!tracingEnabled() || !applied.some((e) => e.traceparent)) return undefined;
  return new ConsumerSpans(name, history, applied, started, attributes);
}
