import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { largestLagMs, RunSampler } from '../../bench/measure.ts';
import { errorsText, lagSamplesText, maintenanceInWindow, median, p99RankFromTop, roundsText, targetsText, type Round, type RunResult } from '../../bench/report.ts';

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

describe('bench: sampling view lag while a run is measured', () => {
  /** A stand-in for GET /views/_status answering `answers` in turn (a status, or a lag in seconds), then the last one. */
  async function statusServer(answers: (number | { lagSeconds: number })[]) {
    let n = 0;
    const server = http.createServer((_req, res) => {
      const a = answers[Math.min(n++, answers.length - 1)]!;
      if (typeof a === 'number') res.writeHead(a).end('{}');
      else res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ views: [{ view: 'v', lagSeconds: a.lagSeconds }] }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server, asked: () => n };
  }

  it('skips an answer that failed (a replica at its CPU limit answering 500 once) and keeps sampling', async () => {
    const s = await statusServer([500, 503, { lagSeconds: 0.2 }]);
    try {
      const sampler = new RunSampler([], [s.url], 'token');
      sampler.start();
      const deadline = Date.now() + 10_000;
      while (s.asked() < 5 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
      const { viewLag } = sampler.stop();
      expect(viewLag.available).to.equal(true);
      expect(viewLag.maxMs).to.equal(200);
    } finally {
      s.server.close();
    }
  });

  it('counts each measure once where the answers say when they were measured (a cached measure answered again)', async () => {
    // Each measure answered three times (a second's cache at 250 ms ticks): 0.9 s, then 0.1 s, ...
    const lags = [0.9, 0.1, 0.2, 0.1, 0.3];
    let n = 0;
    const server = http.createServer((_req, res) => {
      const i = Math.min(Math.floor(n++ / 3), lags.length - 1);
      const doc = { measuredAt: new Date(Date.UTC(2026, 11, 7, 10, 0, i)).toISOString(), complete: true, views: [{ view: 'v', lagSeconds: lags[i] }] };
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(doc));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const sampler = new RunSampler([], [`http://127.0.0.1:${(server.address() as AddressInfo).port}`], 'token');
      sampler.start();
      const deadline = Date.now() + 15_000;
      while (n < 17 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
      const { viewLag } = sampler.stop();
      expect(viewLag.basis).to.equal('measures');
      expect(viewLag.samples).to.equal(5);
      expect(viewLag.maxMs).to.equal(900);
      expect(viewLag.ticks!.samples).to.be.at.least(15);
      // One measure of 900 ms among five is their p99; over the ticks it came three times.
      expect(viewLag.p99Ms).to.equal(900);
      expect(viewLag.ticks!.p99Ms).to.equal(900);
    } finally {
      server.close();
    }
  });

  it('says which answers it got when no sample succeeded, and stops asking a service without the route', async () => {
    const failing = await statusServer([500]);
    const missing = await statusServer([404]);
    try {
      const a = new RunSampler([], [failing.url], 'token');
      const b = new RunSampler([], [missing.url], 'token');
      a.start();
      b.start();
      const deadline = Date.now() + 10_000;
      while ((failing.asked() < 3 || missing.asked() < 1) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
      await new Promise((resolve) => setTimeout(resolve, 600)); // two more sampling periods: the 404 must not be asked again
      expect(a.stop().viewLag.note).to.match(/^n\/a: GET \/views\/_status answered 500 \(\d+×\)$/);
      expect(b.stop().viewLag.note).to.equal('n/a: the service has no GET /views/_status');
      expect(missing.asked()).to.equal(1);
    } finally {
      failing.server.close();
      missing.server.close();
    }
  });
});

describe('bench: several rounds, judged on the median', () => {
  /** A run with only the figures the summary reads. */
  const run = (system: 'baedal' | 'restate', processes: number, concurrency: number, commandsPerS: number, p50 = 2, p99 = 30, lag?: number, webhooks = false, deliveryLag?: number) =>
    ({
      system,
      processes,
      concurrency,
      webhooks,
      load: { commandsPerS, latencyMs: { overall: { p50, p99 } } },
      viewLag: lag === undefined ? { available: false, basis: 'ticks', samples: 0, maxMs: NaN, p99Ms: NaN } : { available: true, basis: 'ticks', samples: 10, maxMs: lag, p99Ms: lag },
      ...(webhooks && {
        deliveries: { expected: 10, received: 10, distinct: 10, complete: true, waitedS: 0, lag: { available: deliveryLag !== undefined, samples: 10, p50Ms: 1, p99Ms: deliveryLag ?? NaN, maxMs: deliveryLag ?? NaN } },
      }),
    }) as unknown as RunResult;
  const round = (baedal64: number, restate64: number, postgres: number, p50: number, p99: number, lag16: number): Round => ({
    runs: [
      run('baedal', 1, 1, 300, p50, 10, 30),
      run('baedal', 1, 16, 1000, 10, p99, lag16),
      run('baedal', 1, 64, baedal64, 30, 80, 200),
      run('restate', 1, 64, restate64),
    ],
    ceilings: { postgres: { perS: postgres } as NonNullable<Round['ceilings']['postgres']> },
  });
  /** A round with webhooks on and off: Baedal ×1 at 16 and 64 each way, and Restate at 64 each way. */
  const bothWays = (on64: number, off64: number, restateOn: number, restateOff: number, deliveryLag16: number): Round => ({
    runs: [
      run('baedal', 1, 16, 900, 10, 40, 80, true, deliveryLag16),
      run('baedal', 1, 64, on64, 30, 80, 200, true, deliveryLag16 * 2),
      run('baedal', 1, 16, 1000, 10, 30, 70),
      run('baedal', 1, 64, off64, 30, 80, 200),
      run('restate', 1, 64, restateOn, 2, 30, undefined, true, 300),
      run('restate', 1, 64, restateOff),
    ],
    ceilings: {},
  });

  it('takes the middle value, or the mean of the two middle ones', () => {
    expect(median([3, 1, 2])).to.equal(2);
    expect(median([4, 1, 3, 2])).to.equal(2.5);
    expect(median([])).to.equal(undefined);
  });

  it("lists each round's ratio and judges the median, not the best or the worst round", () => {
    // Ratios 2.4, 2.7, 3.4: one round short of 2.5×, the median over it.
    const text = roundsText([round(1200, 500, 2000, 2.7, 36, 82), round(2025, 750, 2700, 3.1, 37, 90), round(2040, 600, 3000, 1.9, 26, 81)]);
    expect(text).to.include('Baedal ×1 [webhooks off] / Restate [webhooks off] at concurrency 64: 2.40×, 2.70×, 3.40× → median 2.70× (target ≥ 2.5×)  ✓');
    expect(text).to.include('Baedal ×1 [webhooks off] / PostgreSQL ceiling at concurrency 64: 0.60, 0.75, 0.68 → median 0.68 (target ≥ 0.45)  ✓');
    expect(text).to.include('Baedal ×1 [webhooks off] p50 at concurrency 1: 2.70 ms, 3.10 ms, 1.90 ms → median 2.70 ms (target ≤ 3 ms)  ✓');
    expect(text).to.include('Baedal ×1 [webhooks off] p99 at concurrency 16: 36.0 ms, 37.0 ms, 26.0 ms → median 36.0 ms (target ≤ 50 ms)  ✓');
    expect(text).to.include('Baedal ×1 [webhooks off] view lag p99 at concurrency 16: 82 ms, 90 ms, 81 ms → median 82 ms');
    expect(text).to.include('Restate [webhooks off] commands/s at concurrency 64: 500, 750, 600 → median 600');
  });

  it('marks a target missed when the median misses it, even if one round met it', () => {
    const text = roundsText([round(1200, 500, 2000, 3.5, 60, 82), round(1300, 600, 2000, 3.2, 55, 82), round(1900, 700, 2000, 2.0, 40, 82)]);
    expect(text).to.include('→ median 2.40× (target ≥ 2.5×)  ✗');
    expect(text).to.include('→ median 3.20 ms (target ≤ 3 ms)  ✗');
    expect(text).to.include('→ median 55.0 ms (target ≤ 50 ms)  ✗');
  });

  it('with webhooks on and off: each compared with Restate doing the same, and on against off, each on its median', () => {
    const text = roundsText([bothWays(1500, 1800, 700, 800, 120), bothWays(1700, 1900, 800, 700, 600), bothWays(1600, 2000, 900, 750, 200)]);
    // On against Restate with notifications delivered: 2.14, 2.13, 1.78.
    expect(text).to.include('Baedal ×1 [webhooks on] / Restate [webhooks on] at concurrency 64: 2.14×, 2.13×, 1.78× → median 2.13× (target ≥ 2×)  ✓');
    expect(text).to.include('Baedal ×1 [webhooks off] / Restate [webhooks off] at concurrency 64: 2.25×, 2.71×, 2.67× → median 2.67× (target ≥ 2.5×)  ✓');
    expect(text).to.include('Baedal ×1 webhooks on / off at concurrency 64: 0.83, 0.89, 0.80 → median 0.83 (target ≥ 0.85)  ✗');
    expect(text).to.include('Baedal ×1 [webhooks on] notification delivery lag p99 at concurrency 16: 120 ms, 600 ms, 200 ms → median 200 ms (target ≤ 500 ms)  ✓');
    expect(text).to.include('Baedal ×1 [webhooks on] notification delivery lag p99 at concurrency 64: 240 ms, 1200 ms, 400 ms → median 400 ms');
    expect(text).to.not.include('[webhooks off] notification delivery lag');
    expect(text).to.include('Restate [webhooks on] commands/s at concurrency 64: 700, 800, 900 → median 800');
    expect(text).to.include('Restate [webhooks off] commands/s at concurrency 64: 800, 700, 750 → median 750');
  });

  it("one round's targets: the on/off ratio, the ratio to Restate with the same setting, and the delivery lag at half the top rate", () => {
    const { runs } = bothWays(1500, 1800, 700, 800, 520);
    const text = targetsText(runs, {});
    expect(text).to.include('Baedal ×1 [webhooks on] at concurrency 64, 1500 commands/s against: Restate [webhooks on] ×2.14 (target ≥ 2)  ✓');
    expect(text).to.include('Baedal ×1 [webhooks off] at concurrency 64, 1800 commands/s against: Restate [webhooks off] ×2.25 (target ≥ 2.5)  ✗');
    expect(text).to.include('Baedal ×1 at concurrency 64 with webhooks on / off: 1500 / 1800 = 0.83 (target ≥ 0.85)  ✗');
    expect(text).to.include('Baedal ×1 notification delivery lag p99 at concurrency 16: 520 ms (target ≤ 500 ms at half the top rate)  ✗');
    const lost = runs.map((r) => (r.webhooks && r.system === 'restate' ? { ...r, deliveries: { ...r.deliveries!, distinct: 7, complete: false } } : r));
    expect(targetsText(lost, {})).to.include('Restate at concurrency 64: 3 of 10 notifications never arrived  ✗');
  });
  it('the view lag of one process is held to the single-process target, that of several to the scale-out one', () => {
    const text = targetsText([run('baedal', 1, 16, 900, 2, 30, 80), run('baedal', 3, 144, 414, 2, 30, 482)], {});
    expect(text).to.include('Baedal ×1 [webhooks off] view lag p99 at concurrency 16: 80 ms (target ≤ 100 ms at half the top rate)');
    expect(text).to.include('Baedal ×3 [webhooks off] view lag p99 at concurrency 144: 482 ms (target ≤ 250 ms at 3 replicas at 70 % of their top rate)');
    expect(text).to.not.include('482 ms (target ≤ 100 ms');
    expect(text).to.include('482 ms (target ≤ 250 ms at 3 replicas at 70 % of their top rate); the highest of 10 samples (a p99 that is not the highest wants 100 or more; --duration 80 gives about 310)');
  });
  it('says which sample a view lag p99 is: the highest of fewer than 100, then one further down per hundred', () => {
    expect([1, 80, 99, 100, 150, 200, 201, 310].map(p99RankFromTop)).to.deep.equal([1, 1, 1, 2, 2, 3, 3, 4]);
    expect(lagSamplesText({ basis: 'ticks', samples: 310 })).to.equal('the 4th highest of 310 samples');
    expect(lagSamplesText({ basis: 'ticks', samples: 150 })).to.equal('the 2nd highest of 150 samples');
    expect(lagSamplesText({ basis: 'ticks', samples: 2010 })).to.equal('the 21st highest of 2010 samples');
    const long = run('baedal', 3, 144, 414, 2, 30, 600);
    const text = targetsText([{ ...long, viewLag: { ...long.viewLag, samples: 310 } }], {});
    expect(text).to.include('600 ms (target ≤ 250 ms at 3 replicas at 70 % of their top rate); the 4th highest of 310 samples');
    // Over distinct measures, with the per-tick reading beside it.
    const measured = targetsText([{ ...long, viewLag: { ...long.viewLag, basis: 'measures', samples: 210, p99Ms: 380, ticks: { samples: 320, p99Ms: 600 } } }], {});
    expect(measured).to.include(
      '380 ms (target ≤ 250 ms at 3 replicas at 70 % of their top rate); the 3rd highest of 210 distinct measures; the worst answer of each 250 ms tick, cached ones too (as read before measures were told apart): p99 600 ms over 320',
    );
    expect(lagSamplesText({ basis: 'measures', samples: 60 })).to.equal('the highest of 60 distinct measures (a p99 that is not the highest wants 100 or more; --duration 80 gives about 200)');
  });
  it('with tracing on and off: the targets are judged on the untraced runs, and each traced run is compared with its twin', () => {
    const withCpu = (r: RunResult, service: number, tracing?: boolean): RunResult =>
      ({ ...r, ...(tracing !== undefined && { tracing }), cpu: { serviceMsPerCommand: service, otlpSinkMsPerCommand: tracing ? 0.05 : NaN }, load: { ...r.load, latencyMs: { overall: { p50: 2, p99: tracing ? 44 : 40 } } } }) as RunResult;
    const runs = [withCpu(run('baedal', 1, 64, 1500), 0.8, true), withCpu(run('baedal', 1, 64, 1800), 0.6, false), withCpu(run('restate', 1, 64, 800), 1)];
    const text = targetsText(runs, {});
    expect(text).to.include('Baedal ×1 [webhooks off] at concurrency 64, 1800 commands/s against: Restate [webhooks off] ×2.25');
    expect(text).to.not.include('1500 commands/s against');
    expect(text).to.include(
      'Baedal ×1 [webhooks off] at concurrency 64, tracing on / off: 1500 / 1800 commands/s = 0.83; service CPU 0.80 / 0.60 ms per command (+33 %); p99 44.0 / 40.0 ms; OTLP sink 0.05 ms per command',
    );
    expect(roundsText([{ runs, ceilings: {} }])).to.include('Baedal ×1 [webhooks off] commands/s at concurrency 64: 1800 → median 1800');
  });
});

describe('bench: what the autovacuum stand-in ran inside a measured window', () => {
  const log = [
    { what: 'VACUUM (ANALYZE)', start: 1_000, end: 4_000 }, // ends 2 s into the window
    { what: 'ANALYZE of orders', start: 10_000, end: 10_400 }, // inside it
    { what: 'ANALYZE of timers', start: 21_000, end: 21_500 }, // after it
    { what: 'VACUUM (ANALYZE)', start: 21_500, end: 30_000 }, // starts 0.5 s before it closes
  ];

  it('names each operation that overlapped the window with the seconds of it inside', () => {
    expect(maintenanceInWindow(log, 2_000, 22_000)).to.equal(
      'VACUUM (ANALYZE) for 2.0 s, ANALYZE of orders for 0.4 s, ANALYZE of timers for 0.5 s, VACUUM (ANALYZE) for 0.5 s',
    );
  });

  it('says nothing when none did, including one that ended as the window opened', () => {
    expect(maintenanceInWindow(log, 4_000, 10_000)).to.equal('');
    expect(maintenanceInWindow([], 0, 1_000)).to.equal('');
  });
});

describe("bench and demo: a run's errors, by kind", () => {
  it('says how many and of which kinds, the most frequent first, ties by name', () => {
    expect(errorsText(6, { 'network timeout': 1, '503 payment_unavailable': 4, '429 busy': 1 })).to.equal(
      '6 errors (503 payment_unavailable 4, 429 busy 1, network timeout 1)',
    );
  });

  it('says only the count when there were none', () => {
    expect(errorsText(0, {})).to.equal('0 errors');
  });
});
