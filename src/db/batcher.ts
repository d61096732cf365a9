import { activeContext, withContext, type Context } from '../tracing.ts';

/**
 * Group commit: requests that arrive while the previous batch is on its way to PostgreSQL (or in
 * the same tick) travel together in one statement, so round trips per request fall as load rises.
 * At most `maxInFlight` batches run at once; at low load a request waits one tick at most.
 * Requests with the same `key` never share a batch (one transition per order per statement).
 * With `alone`, a batch that fails is run again one request at a time, so one bad request fails
 * only itself, not the others that shared its statement. With `spacingMs`, while requests keep
 * coming a batch starts no sooner than that after the one before it (the requests that arrive
 * meanwhile join it, even with a slot free; a second batch goes with it only for what it cannot
 * carry: more than `maxBatch`, or a second request with one key); a request after a quiet spell
 * that long goes at once.
 */
export class Batcher<In, Out> {
  /** `ctx`: the trace context of the request (tracing on): its batch's statement is traced in the first one's. */
  private queue: { input: In; ctx: Context | undefined; resolve: (out: Out) => void; reject: (err: unknown) => void }[] = [];
  private inFlight = 0;
  private scheduled = false;
  /** When (performance.now()) the last batch was sent. */
  private lastSent = -Infinity;

  constructor(
    private readonly run: (inputs: In[]) => Promise<Out[]>,
    private readonly opts: { maxBatch: number; maxInFlight: number; key?: (input: In) => string; alone?: boolean; spacingMs?: number },
  ) {}

  submit(input: In): Promise<Out> {
    return new Promise<Out>((resolve, reject) => {
      this.queue.push({ input, ctx: activeContext(), resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    if (this.scheduled || this.inFlight >= this.opts.maxInFlight || this.queue.length === 0) return;
    this.scheduled = true;
    const go = () => {
      this.scheduled = false;
      this.flush();
    };
    const wait = this.lastSent + (this.opts.spacingMs ?? 0) - performance.now();
    if (wait > 0) setTimeout(go, wait);
    else setImmediate(go);
  }

  private flush(): void {
    while (this.inFlight < this.opts.maxInFlight && this.queue.length > 0) {
      const batch: typeof this.queue = [];
      const rest: typeof this.queue = [];
      const keys = new Set<string>();
      for (const entry of this.queue) {
        const key = this.opts.key?.(entry.input);
        if (batch.length < this.opts.maxBatch && (key === undefined || !keys.has(key))) {
          batch.push(entry);
          if (key !== undefined) keys.add(key);
        } else {
          rest.push(entry);
        }
      }
      this.queue = rest;
      this.inFlight += 1;
      this.lastSent = performance.now();
      withContext(batch[0]!.ctx, () => this.run(batch.map((e) => e.input)))
        .then(
          (outs) => batch.forEach((e, i) => e.resolve(outs[i]!)),
          async (err: unknown) => {
            if (!this.opts.alone || batch.length === 1) return batch.forEach((e) => e.reject(err));
            await Promise.all(batch.map((e) => withContext(e.ctx, () => this.run([e.input])).then(([out]) => e.resolve(out!), e.reject)));
          },
        )
        .finally(() => {
          this.inFlight -= 1;
          this.pump();
        });
    }
  }
}
