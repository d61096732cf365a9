import { expect } from 'chai';
import { exponentialBackoff } from '../../src/actors/work.ts';

/** The one retry schedule of durable work and owed events (cockatiel's exponential backoff). */
describe('retry backoff', () => {
  const delays = (backoff: (attempts: number) => number, attempts: number) => Array.from({ length: 50 }, () => backoff(attempts));

  it('doubles from the base per attempt, jittered between half and all of it', () => {
    const backoff = exponentialBackoff(500, 60_000);
    for (const [attempts, full] of [[1, 500], [2, 1000], [3, 2000], [5, 8000]] as const) {
      const seen = delays(backoff, attempts);
      for (const d of seen) expect(d, `attempt ${attempts}`).to.be.within(full / 2, full);
      expect(new Set(seen).size, `attempt ${attempts} is jittered`).to.be.greaterThan(1);
    }
  });

  it('never waits past the cap, however many attempts failed', () => {
    const backoff = exponentialBackoff(500, 30_000);
    for (const attempts of [7, 8, 20, 100, 10_000]) for (const d of delays(backoff, attempts)) expect(d).to.be.within(15_000, 30_000);
  });

  it('waits at least a millisecond, and an item that never failed waits as for its first retry', () => {
    expect(exponentialBackoff(1, 1)(3)).to.equal(1);
    for (const d of delays(exponentialBackoff(2000, 300_000), 0)) expect(d).to.be.within(1000, 2000);
  });
});
