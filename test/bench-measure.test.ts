import { expect } from 'chai';
import { largestLagMs } from '../bench/measure.ts';

/** The benchmark reads view lag from whatever GET /views/_status answers: units must come out right. */
describe('bench: reading view lag', () => {
  it('reads GET /views/_status (lagSeconds per view) in milliseconds', () => {
    const status = { measuredAt: '2026-11-28T20:00:00Z', complete: true, views: [{ view: 'a', eventsBehind: 40, lagSeconds: 1.5 }, { view: 'b', eventsBehind: 0, lagSeconds: 0 }] };
    expect(largestLagMs(status)).to.equal(1500);
  });

  it('takes keys that say milliseconds as they are, and seconds in any spelling times 1000', () => {
    expect(largestLagMs({ lagMs: 20 })).to.equal(20);
    expect(largestLagMs({ maxLagMs: 7, lag_ms: 9 })).to.equal(9);
    expect(largestLagMs({ lag_s: 2 })).to.equal(2000);
    expect(largestLagMs({ lagSecs: 3 })).to.equal(3000);
    expect(largestLagMs({ lag_seconds: 0.25 })).to.equal(250);
  });

  it('ignores counts that merely mention a lag', () => {
    expect(largestLagMs({ lagEvents: 900, lagSeconds: 0.01 })).to.equal(10);
    expect(largestLagMs({ views: [] })).to.equal(undefined);
  });
});
