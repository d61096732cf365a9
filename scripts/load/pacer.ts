// Spaces the starts of commands at a fixed rate, however many virtual users are waiting: with
// `--rate`, the load is the rate asked for (as long as the users and the service keep up), not
// whatever a closed loop of users reaches. Each caller gets the next free slot.

export class Pacer {
  private readonly intervalMs: number;
  private nextAt = -Infinity;

  /** `perS` starts a second; `now` in milliseconds (performance.now by default). */
  constructor(
    perS: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    if (!(perS > 0) || !Number.isFinite(perS)) throw new RangeError(`a rate must be a positive number of commands a second, not ${perS}`);
    this.intervalMs = 1000 / perS;
  }

  /**
   * Milliseconds the caller waits before its start, and books that slot. A slot left unused (no
   * caller ready in time) is not made up later: the pace never bursts above the rate.
   */
  book(): number {
    const t = this.now();
    const at = Math.max(t, this.nextAt);
    this.nextAt = at + this.intervalMs;
    return at - t;
  }
}
