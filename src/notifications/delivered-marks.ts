import type { Carried } from '../actors/consumers/types.ts';
import { Batcher } from '../db/batcher.ts';
import type { Database } from '../db/pg.ts';

const MARK_DELIVERED = `UPDATE notifications SET delivered_at = now(), transport = $2, due_at = NULL, lease_until = NULL, last_error = NULL
                        WHERE id = ANY($1::uuid[])`;

interface Held {
  ids: readonly string[];
  resolve: () => void;
  reject: (err: unknown) => void;
}

/**
 * Records notifications as delivered. When this replica's event reader has a batch coming (it is
 * reading, or will read a busy partition again a linger later), the marks wait for that batch and
 * travel in its statement (`take`), which saves a round trip and a commit of their own per batch;
 * otherwise, or after `holdMs`, or when the batch's statement fails, one statement records every
 * mark waiting. A mark that is never recorded (a crash) leaves its notification owed: sent again
 * once its lease runs out, with the same id, which the receiver drops as a repeat.
 */
export class DeliveredMarks {
  private held: Held[] = [];
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly recording = new Set<Promise<void>>();
  private readonly alone: Batcher<readonly string[], void>;
  /** Whether a batch statement is coming soon that could carry the marks (set by the runtime; never, by default). */
  carrierBusy: () => boolean = () => false;

  constructor(
    db: Database,
    private readonly transport: string,
    private readonly opts: { holdMs?: number } = {},
  ) {
    this.alone = new Batcher<readonly string[], void>(
      async (batches) => {
        await db.query(MARK_DELIVERED, [batches.flat(), transport]);
        return batches.map(() => undefined);
      },
      { maxBatch: 2000, maxInFlight: 1 },
    );
  }

  /** Records `ids` as delivered: resolves once a committed statement did. */
  mark(ids: readonly string[]): Promise<void> {
    if (ids.length === 0) return Promise.resolve();
    if (this.closed || !this.carrierBusy()) return this.record(ids);
    return new Promise<void>((resolve, reject) => {
      this.held.push({ ids, resolve, reject });
      this.timer ??= setTimeout(() => this.flush(), this.opts.holdMs ?? HOLD_MS);
    });
  }

  /**
   * The marks waiting, for a batch's statement to write; `settle` says whether it committed. With
   * none waiting, the same statement marks nothing, so that the batch's statement, prepared once
   * per connection, does not come in twice as many shapes.
   */
  take(): Carried {
    const taken = this.takeHeld();
    let settled = false;
    return {
      effect: { text: MARK_DELIVERED, params: [taken.flatMap((h) => h.ids), this.transport] },
      settle: (committed) => {
        if (settled) return;
        settled = true;
        if (committed) for (const h of taken) h.resolve();
        else this.sendAlone(taken);
      },
    };
  }

  /** Records the marks waiting now, in a statement of their own (no batch is coming for them). */
  flush(): void {
    if (this.held.length > 0) this.sendAlone(this.takeHeld());
    else this.clearTimer();
  }

  /** From now on every mark is recorded on its own; resolves once the marks waiting or under way are recorded (or failed). */
  async close(): Promise<void> {
    this.closed = true;
    this.flush();
    await Promise.allSettled([...this.recording]);
  }

  private takeHeld(): Held[] {
    const taken = this.held;
    this.held = [];
    this.clearTimer();
    return taken;
  }

  private clearTimer(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private sendAlone(held: readonly Held[]): void {
    for (const h of held) this.record(h.ids).then(h.resolve, h.reject);
  }

  private record(ids: readonly string[]): Promise<void> {
    const recording = this.alone.submit(ids);
    this.recording.add(recording);
    const forget = () => this.recording.delete(recording);
    recording.then(forget, forget);
    return recording;
  }
}

/** How long marks wait at most for a batch to carry them. */
const HOLD_MS = 100;
