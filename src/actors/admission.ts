/**
 * Holds new commands while this replica's event batches run late, so that a replica at its CPU
 * limit spends its quota applying the events it owes before it decides more of them.
 *
 * Each event batch the replica applies reports how old its oldest event was when the batch was
 * written (`note`). While that is over the budget, a new command waits (`admit`) until a batch
 * comes in within the budget, the owner has nothing left to read, or `maxWaitMs` has passed:
 * commands are held, never refused, and never for longer than `maxWaitMs`. Only new commands
 * wait: queries, timers, durable work and the events themselves never do. A replica that consumes
 * no partitions reports nothing, so it never holds.
 */
export class AdmissionGate {
  private lateMs = 0;
  private waiting: (() => void)[] = [];
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  /**
   * @param budgetMs how old a batch's oldest event may be before new commands wait (0: never)
   * @param maxWaitMs the longest a command waits
   * @param onHeld told how long (seconds) each held command waited
   */
  constructor(
    readonly budgetMs: number,
    readonly maxWaitMs: number,
    private readonly onHeld?: (seconds: number) => void,
  ) {}

  /** Whether new commands wait now. */
  get holding(): boolean {
    return !this.closed && this.budgetMs > 0 && this.lateMs > this.budgetMs;
  }

  /** How old (ms) the oldest event of the batch just written was; 0 when the owner has nothing left to read. */
  note(lateMs: number): void {
    this.lateMs = lateMs;
    if (!this.holding) this.release();
  }

  /** Undefined when a new command may go on at once; otherwise a promise that resolves when it may. */
  admit(): Promise<void> | undefined {
    if (!this.holding) return undefined;
    const since = performance.now();
    return new Promise<void>((resolve) => {
      this.waiting.push(() => {
        this.onHeld?.((performance.now() - since) / 1000);
        resolve();
      });
      // One timer for the commands held together: the first one's deadline lets them all go.
      this.timer ??= setTimeout(() => this.release(), this.maxWaitMs);
    });
  }

  /** On shutdown (the replica reads no more events): lets every held command go, and holds none again. */
  close(): void {
    this.closed = true;
    this.release();
  }

  /** Lets every held command go. */
  release(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const waiting = this.waiting;
    this.waiting = [];
    for (const go of waiting) go();
  }
}
