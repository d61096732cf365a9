import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { hpaDecision, proposal, type Autoscaling } from '../../bench/autoscaler.ts';
import { Histogram, Registry } from 'prom-client';
import { EVENT_LAG_BUCKETS } from '../../src/metrics.ts';
import { backlogOf, describeReplicas, histogramQuantile, medianRows, parseExposition, readReplica, ScalingSampler, scalingFigures, scalingRows, scalingTable, scalingTables, windowOf, type ScalingFigures } from '../../bench/scaling.ts';

const AUTOSCALING: Autoscaling = { min: 1, max: 3, cpuTargetPercent: 50, cpuRequestCores: 0.2, backlogTarget: 100, backlogQuery: 'q' };

/** A replica's /metrics as prom-client writes it. */
function exposition(o: { posts?: number; gets?: number; applied?: Record<string, number>; appliedDeclared?: boolean; delivered?: number; owned?: number; backlog?: Record<string, number>; lag?: Record<string, number> }): string {
  const lines = [
    '# HELP baedal_http_requests_total HTTP requests by route template and status',
    '# TYPE baedal_http_requests_total counter',
    `baedal_http_requests_total{method="POST",route="/orders/:id/pay",status="200"} ${o.posts ?? 0}`,
    `baedal_http_requests_total{method="POST",route="/orders/:id/pay",status="409"} 7`,
    `baedal_http_requests_total{method="GET",route="/metrics",status="200"} ${o.gets ?? 0}`,
    '# TYPE baedal_events_delivered_total counter',
    `baedal_events_delivered_total{group="views"} ${o.delivered ?? 0}`,
    `baedal_events_delivered_total{group="notify"} ${o.delivered ?? 0}`,
  ];
  if (o.applied || o.appliedDeclared) lines.push('# HELP baedal_events_applied_total x', '# TYPE baedal_events_applied_total counter');
  for (const [p, n] of Object.entries(o.applied ?? {})) lines.push(`baedal_events_applied_total{partition="${p}"} ${n}`);
  if (o.owned !== undefined) lines.push('# TYPE baedal_event_partitions_owned gauge', `baedal_event_partitions_owned ${o.owned}`);
  for (const [q, n] of Object.entries(o.backlog ?? {})) lines.push(`baedal_queue_backlog{queue="${q}"} ${n}`);
  for (const [view, s] of Object.entries(o.lag ?? {})) lines.push(`baedal_view_lag_seconds{view="${view}"} ${s}`);
  return `${lines.join('\n')}\n`;
}

describe('bench: reading the replicas\' metrics', () => {
  it('parses samples with labels, escapes, special values and timestamps', () => {
    const { samples, declared } = parseExposition(
      ['# TYPE a counter', 'a 3', 'b{x="1",y="say \\"hi\\"\\n"} 2.5 1700000000000', 'c{le="+Inf"} +Inf', 'nonsense line here', ''].join('\n'),
    );
    expect([...declared]).to.deep.equal(['a']);
    expect(samples).to.deep.equal([
      { name: 'a', labels: {}, value: 3 },
      { name: 'b', labels: { x: '1', y: 'say "hi"\n' }, value: 2.5 },
      { name: 'c', labels: { le: '+Inf' }, value: Infinity },
    ]);
  });

  it('counts commands answered 2xx (POSTs only), events per partition, partitions owned, backlog and the worst view lag', () => {
    const r = readReplica(exposition({ posts: 120, gets: 50, applied: { '0': 10, '3': 5 }, delivered: 4, owned: 16, backlog: { events: 3, work: 1 }, lag: { a: 0.02, b: 0.3 } }));
    expect(r.commandsOk).to.equal(120);
    expect([...r.appliedByPartition!]).to.deep.equal([['0', 10], ['3', 5]]);
    expect(r.delivered).to.equal(8);
    expect(r.partitionsOwned).to.equal(16);
    expect(r.viewLagS).to.equal(0.3);
    expect(backlogOf([r, readReplica(exposition({ backlog: { events: 5, work: 0 } }))])).to.equal(6);
  });

  it('tells a replica without the partitioned metric from one that declares it but applied nothing yet', () => {
    expect(readReplica(exposition({ delivered: 1 })).appliedByPartition).to.equal(undefined);
    expect(readReplica(exposition({ appliedDeclared: true })).appliedByPartition?.size).to.equal(0);
  });
});

describe('bench: one measured window over the replicas', () => {
  it('shares by partition: events applied in the window, partitions applied, partitions that moved', () => {
    const opening = [readReplica(exposition({ posts: 100, applied: { '0': 10, '1': 4 }, owned: 2 })), readReplica(exposition({ posts: 50, applied: {}, owned: 2 }))];
    const closing = [readReplica(exposition({ posts: 160, applied: { '0': 40, '1': 10 }, owned: 1 })), readReplica(exposition({ posts: 90, applied: { '1': 30, '2': 20 }, owned: 3 }))];
    const w = windowOf(['r1', 'r2'], opening, closing, {
      opening: [{ periods: 10, throttled: 1, throttledS: 0.1 }, { periods: 5, throttled: 0, throttledS: 0 }],
      closing: [{ periods: 60, throttled: 26, throttledS: 1.1 }, { periods: 55, throttled: 5, throttledS: 0.2 }],
    });
    expect(w.eventsSource).to.equal('baedal_events_applied_total');
    expect(w.perReplica).to.deep.equal([
      { name: 'r1', commands: 60, events: 36, partitionsApplied: 2, partitionsOwned: 1, throttling: { periods: 50, throttled: 25, throttledS: 1 } },
      { name: 'r2', commands: 40, events: 50, partitionsApplied: 2, partitionsOwned: 3, throttling: { periods: 50, throttled: 5, throttledS: 0.2 } },
    ]);
    expect(Object.fromEntries([...w.partitions].map(([p, m]) => [p, Object.fromEntries(m)]))).to.deep.equal({ '0': { r1: 30 }, '1': { r1: 6, r2: 30 }, '2': { r2: 20 } });
  });

  it("reads each event's lag from the replicas' histograms: the p99 of the events of the window, all replicas together", async () => {
    // Each replica's histogram as the service writes it (prom-client, the service's buckets).
    const replicas = [new Registry(), new Registry()];
    const lags = replicas.map((registry) => new Histogram({ name: 'baedal_event_lag_seconds', help: 'x', buckets: EVENT_LAG_BUCKETS, registers: [registry] }));
    const read = () => Promise.all(replicas.map(async (r) => readReplica(await r.metrics())));
    for (let i = 0; i < 500; i += 1) lags[0]!.observe(5); // before the window: not counted
    const opening = await read();
    for (let i = 0; i < 600; i += 1) lags[0]!.observe(0.04);
    for (let i = 0; i < 390; i += 1) lags[1]!.observe(0.03);
    for (let i = 0; i < 10; i += 1) lags[1]!.observe(0.6);
    const w = windowOf(['r1', 'r2'], opening, await read());
    // 990 of the 1,000 events within 50 ms (none within 25): the 990th is read at the bucket's top.
    expect(w.eventLag).to.deep.equal({ p99Ms: 50, events: 1000 });
    // Without the histogram on any replica, no figure.
    expect(windowOf(['r1'], [readReplica(exposition({}))], [readReplica(exposition({}))]).eventLag).to.equal(undefined);
  });

  it('reads a quantile from cumulative buckets as histogram_quantile does', () => {
    const buckets = new Map([[0.1, 50], [0.2, 90], [0.5, 100], [Infinity, 100]]);
    expect(histogramQuantile(0.5, buckets)).to.be.closeTo(0.1, 1e-12); // the 50th: the first bucket's top
    expect(histogramQuantile(0.7, buckets)).to.be.closeTo(0.15, 1e-12); // 20 of the next 40
    expect(histogramQuantile(0.99, buckets)).to.be.closeTo(0.47, 1e-12); // 9 of the last 10, in 0.2–0.5
    expect(histogramQuantile(0.99, new Map([[0.1, 10], [Infinity, 20]]))).to.equal(0.1); // in +Inf: the highest bound
    expect(histogramQuantile(0.99, new Map([[0.1, 0], [Infinity, 0]]))).to.equal(undefined);
  });

  it('falls back to the events delivered per consumer group when a replica lacks the partitioned metric', () => {
    const w = windowOf(['r1', 'r2'], [readReplica(exposition({ delivered: 5 })), readReplica(exposition({ delivered: 0 }))], [readReplica(exposition({ delivered: 15 })), readReplica(exposition({ delivered: 30 }))]);
    expect(w.eventsSource).to.equal('baedal_events_delivered_total');
    expect(w.perReplica.map((r) => r.events)).to.deep.equal([20, 60]);
    expect(w.partitions.size).to.equal(0);
  });

  it('reads every replica at the opening and the closing, and samples backlog and view lag between', async () => {
    let posts = 0;
    const server = http.createServer((_req, res) => {
      posts += 10;
      res.end(exposition({ posts, delivered: posts, backlog: { events: posts / 10 }, lag: { a: posts / 1000 } }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const sampler = new ScalingSampler([{ name: 'r1', url }], { everyMs: 20 });
      sampler.open();
      const deadline = Date.now() + 5000;
      while (posts < 60 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
      sampler.close();
      const s = await sampler.result();
      expect(s.perReplica[0]!.commands).to.be.greaterThan(0);
      expect(s.backlog!.samples).to.be.greaterThan(0);
      expect(s.backlog!.max).to.be.greaterThan(1);
      expect(s.viewLag!.maxMs).to.be.greaterThan(10);
    } finally {
      server.close();
    }
  });

  it('fails, naming the replica, when a reading at either end cannot be had', async () => {
    const sampler = new ScalingSampler([{ name: 'r9', url: 'http://x' }], { fetchText: () => Promise.reject(new Error('ECONNREFUSED')) });
    sampler.open();
    sampler.close();
    let caught: Error | undefined;
    await sampler.result().catch((err: Error) => (caught = err));
    expect(caught?.message).to.equal("reading r9's /metrics: ECONNREFUSED");
  });
});

describe('bench: the scaling figures and table', () => {
  const figures = (replicas: number, commandsPerS: number, serviceSeconds: number, postgresSeconds: number, lag?: number, hostBusy?: number, hostStolen?: number): ScalingFigures => {
    const names = Array.from({ length: replicas }, (_, i) => `r${i + 1}`);
    return scalingFigures({
      concurrency: 48,
      cpuPerReplica: 0.25,
      load: { commands: commandsPerS * 10, commandsPerS, p99Ms: 50 * replicas, errors: 0 },
      cpu: {
        seconds: 10,
        replicaSeconds: Object.fromEntries(names.map((n) => [n, serviceSeconds / replicas])),
        postgresSeconds,
        ...(hostBusy !== undefined && { host: { busyCores: hostBusy, cores: 2, ...(hostStolen !== undefined && { stolenCores: hostStolen }) } }),
      },
      sample: {
        perReplica: names.map((name) => ({ name, commands: 100, events: 300 })),
        eventsSource: 'baedal_events_applied_total',
        partitions: new Map(names.map((n, i) => [String(i), new Map([[n, 300]])])),
        ...(lag !== undefined && { viewLag: { p99Ms: lag, maxMs: lag, samples: 10 } }),
      },
      autoscaling: AUTOSCALING,
    });
  };

  it('adds up the replicas: shares, CPU per command of all of them, cores each, the HPA on the average', () => {
    const f = figures(2, 600, 5, 3, 120);
    expect(f.perReplica.map((r) => [r.commandShare, r.eventShare, r.cpuCores])).to.deep.equal([[0.5, 0.5, 0.25], [0.5, 0.5, 0.25]]);
    expect(f.serviceMsPerCommand).to.be.closeTo(5000 / 6000, 1e-9);
    expect(f.postgresMsPerCommand).to.be.closeTo(0.5, 1e-9);
    expect(f.viewLagP99Ms).to.equal(120);
    expect(f.partitions).to.deep.equal({ count: 2, single: 2, shared: [] });
    // 0.25 core of a 0.2 core request is 125 %: ceil(2 × 125 ÷ 50) = 5, held to max 3.
    expect(f.hpa).to.deep.include({ cpuPercentOfRequest: 125, cpuProposal: 5, desired: 3 });
  });

  it('says which of its samples the view lag p99 is: the highest of fewer than 100', () => {
    expect(describeReplicas(figures(2, 600, 5, 3, 120), AUTOSCALING)).to.include('    view lag p99 120 ms (baedal_view_lag_seconds, 10 samples: the highest)');
    const measured = { ...figures(3, 900, 7, 4), viewLagP99Ms: 410, viewLagFrom: 'GET /views/_status, 310 samples', viewLagSamples: 310 };
    expect(describeReplicas(measured, AUTOSCALING)).to.include('    view lag p99 410 ms (GET /views/_status, 310 samples: the 4th highest)');
    expect(describeReplicas(measured, AUTOSCALING)).not.to.include('event lag');
    // With the replicas' histogram of each event's lag, its p99 on the next line.
    const lines = describeReplicas({ ...measured, eventLag: { p99Ms: 187.4, events: 41_230 } }, AUTOSCALING).split('\n');
    const at = lines.findIndex((l) => l.startsWith('    view lag p99 410 ms'));
    expect(lines[at + 1]).to.equal(
      '    event lag p99 187 ms (each of the 41,230 events applied in the window, from its decision to its batch\'s commit: baedal_event_lag_seconds, read from its buckets)',
    );
  });

  it("each replica's share of its CPU off the main thread (V8's compiler and collector), when measured", () => {
    const base = figures(2, 600, 5, 3, 120);
    expect(base.perReplica.every((r) => r.helperShare === undefined)).to.equal(true);
    expect(describeReplicas(base, AUTOSCALING)).not.to.include('off the main thread');
    const measured = scalingFigures({
      concurrency: 48,
      cpuPerReplica: 0.25,
      load: { commands: 6000, commandsPerS: 600, p99Ms: 100, errors: 0 },
      cpu: { seconds: 10, replicaSeconds: { 'service-1': 2.5, 'service-2': 2 }, replicaMainSeconds: { 'service-1': 2, 'service-2': Number.NaN }, postgresSeconds: 3 },
      sample: { perReplica: ['service-1', 'service-2'].map((name) => ({ name, commands: 100, events: 300 })), eventsSource: 'baedal_events_applied_total', partitions: new Map() },
      autoscaling: AUTOSCALING,
    });
    // service-1: 2 of its 2.5 s on the main thread, 20 % on the others; service-2's main thread unread: no figure.
    expect(measured.perReplica[0]!.helperShare).to.be.closeTo(0.2, 1e-9);
    expect(measured.perReplica[1]!.helperShare).to.equal(undefined);
    const lines = describeReplicas(measured, AUTOSCALING).split('\n');
    expect(lines[0]).to.include('off the main thread 20 %');
    expect(lines[1]).not.to.include('off the main thread');
  });

  it('ratios to the fewest replicas, and the median of each figure over rounds', () => {
    const round1 = scalingRows([figures(2, 540, 5.4, 3), figures(1, 300, 3, 1.5, 50)]);
    expect(round1.map((r) => r.replicas)).to.deep.equal([1, 2]);
    expect(round1[1]!.commandsRatio).to.be.closeTo(1.8, 1e-9);
    expect(round1[1]!.serviceRatio).to.be.closeTo(1, 1e-9);
    expect(round1[1]!.postgresRatio).to.be.closeTo(1.0 / 0.9 / 1, 1e-9);
    const round2 = scalingRows([figures(1, 200, 2, 1), figures(2, 400, 4, 2)]);
    const round3 = scalingRows([figures(1, 310, 3, 1.5), figures(2, 620, 6.2, 3.1)]);
    const m = medianRows([round1, round2, round3]);
    expect(m.map((r) => r.commandsPerS)).to.deep.equal([300, 540]);
    expect(m[1]!.commandsRatio).to.be.closeTo(2, 1e-9);
    expect(m[0]!.viewLagP99Ms).to.equal(50);
    expect(m[1]!.viewLagP99Ms).to.equal(undefined);
    const table = scalingTable(m);
    expect(table.split('\n')).to.have.length(3);
    expect(table).to.match(/^\s+2\s+540\s+2\.00\s/m);
  });

  it("shows PostgreSQL's cores and the host's, and says at which replica counts the host was saturated", () => {
    // 10 s windows: PostgreSQL used 3, 6 and 9 CPU seconds; the host 0.7, 1.4 and 1.97 of its 2 cores.
    const rows = medianRows([
      scalingRows([figures(1, 300, 2.5, 3, undefined, 0.7), figures(2, 560, 5, 6, undefined, 1.4), figures(4, 700, 10, 9, undefined, 1.97)]),
      scalingRows([figures(1, 280, 2.5, 3, undefined, 0.72), figures(2, 500, 5, 6, undefined, 1.3), figures(4, 650, 10, 9, undefined, 1.99)]),
    ]);
    [0.3, 0.6, 0.9].forEach((cores, i) => expect(rows[i]!.postgresCores, `row ${i}`).to.be.closeTo(cores, 1e-9));
    [0.71, 1.35, 1.98].forEach((busy, i) => expect(rows[i]!.hostBusyCores, `row ${i}`).to.be.closeTo(busy, 1e-9));
    expect(rows.map((r) => r.hostCores)).to.deep.equal([2, 2, 2]);
    const table = scalingTable(rows);
    expect(table).to.include('PostgreSQL cores   host cores busy');
    expect(table).to.match(/^\s+4\s+675\s.*\s0\.90\s+1\.98 of 2\s/m);
    const saturated = table.split('\n').filter((l) => l.includes('saturated'));
    expect(saturated).to.deep.equal([
      "  at 4 replicas the host was saturated: 1.98 of its 2 cores busy, PostgreSQL using 0.90 of them; the replicas' ratio measures the host there, not what another replica adds",
    ]);
    // Without the host's reading (the demo's older runs), a dash and no verdict.
    const bare = scalingTable(scalingRows([figures(1, 300, 2.5, 3), figures(2, 560, 5, 6)]));
    expect(bare).to.match(/^\s+2\s+560\s.*\s0\.60\s+-\s/m);
    expect(bare).to.not.include('saturated');
  });

  it('shows the cores the hypervisor took, counts them as busy for saturation, and names a row they weigh on', () => {
    // Round medians: 1 replica 0.60 busy and 0.02 stolen; 2 replicas 1.00 and 0.40 (a neighbour);
    // 3 replicas 1.30 and 0.62: 1.92 of 2 cores not idle, so saturated though only 1.30 were this machine's work.
    const rows = medianRows([
      scalingRows([figures(1, 300, 2.5, 3, undefined, 0.6, 0.02), figures(2, 500, 5, 6, undefined, 1.0, 0.4), figures(3, 600, 7.5, 9, undefined, 1.3, 0.62)]),
      scalingRows([figures(1, 290, 2.5, 3, undefined, 0.62, 0.0), figures(2, 480, 5, 6, undefined, 1.1, 0.3), figures(3, 610, 7.5, 9, undefined, 1.2, 0.7)]),
      scalingRows([figures(1, 310, 2.5, 3, undefined, 0.58, 0.04), figures(2, 520, 5, 6, undefined, 0.9, 0.5), figures(3, 590, 7.5, 9, undefined, 1.4, 0.5)]),
    ]);
    expect(rows.map((r) => r.hostStolenCores)).to.deep.equal([0.02, 0.4, 0.62]);
    expect(describeReplicas(figures(2, 500, 5, 6, undefined, 1.0, 0.4), AUTOSCALING)).to.include('    host: 1.00 of 2 cores busy, 0.40 taken by the hypervisor (steal time)');
    expect(describeReplicas(figures(2, 500, 5, 6), AUTOSCALING)).to.not.include('host:');
    const table = scalingTable(rows);
    expect(table).to.include('host cores busy   stolen   view lag p99 ms');
    expect(table).to.match(/^\s+2\s+500\s.*\s1\.00 of 2\s+0\.40\s/m);
    const notes = table.split('\n').filter((l) => l.startsWith('  at '));
    expect(notes).to.deep.equal([
      "  at 2 replicas the hypervisor took 0.40 of the host's 2 cores (steal time): other guests ran on them, so the row measures them as much as the service",
      "  at 3 replicas the host was saturated: 1.30 of its 2 cores busy and 0.62 taken by the hypervisor, PostgreSQL using 0.90 of them; the replicas' ratio measures the host there, not what another replica adds",
    ]);
  });

  it("shows the load generator's CPU per command as a control, and names the rows where the host's speed moved", () => {
    // The same work per command at every count: 0.15 ms at 1 replica, 0.15 at 2, 0.21 at 3 (×1.40), 0.12 at 4 (×0.80).
    const withLoadGen = (f: ScalingFigures, ms: number): ScalingFigures => ({ ...f, loadGeneratorMsPerCommand: ms });
    const measured = scalingFigures({
      concurrency: 48,
      load: { commands: 6000, commandsPerS: 600, p99Ms: 100, errors: 0 },
      cpu: { seconds: 10, replicaSeconds: { r1: 2.5 }, postgresSeconds: 3, loadGeneratorSeconds: 0.9 },
      sample: { perReplica: [{ name: 'r1', commands: 100, events: 300 }], eventsSource: 'baedal_events_applied_total', partitions: new Map() },
      autoscaling: AUTOSCALING,
    });
    expect(measured.loadGeneratorMsPerCommand).to.be.closeTo(0.15, 1e-9);
    const unread = scalingFigures({
      concurrency: 48,
      load: { commands: 6000, commandsPerS: 600, p99Ms: 100, errors: 0 },
      cpu: { seconds: 10, replicaSeconds: { r1: 2.5 }, postgresSeconds: 3, loadGeneratorSeconds: Number.NaN },
      sample: { perReplica: [{ name: 'r1', commands: 100, events: 300 }], eventsSource: 'baedal_events_applied_total', partitions: new Map() },
      autoscaling: AUTOSCALING,
    });
    expect(unread.loadGeneratorMsPerCommand).to.equal(undefined);
    const round = (ms: number[]) => scalingRows([1, 2, 3, 4].map((n, i) => withLoadGen(figures(n, 300 * n, 2.5 * n, 3 * n), ms[i]!)));
    const rows = medianRows([round([0.15, 0.15, 0.21, 0.12]), round([0.2, 0.2, 0.28, 0.16]), round([0.1, 0.1, 0.14, 0.08])]);
    expect(rows.map((r) => r.loadGeneratorMsPerCommand)).to.deep.equal([0.15, 0.15, 0.21, 0.12]);
    [1, 1, 1.4, 0.8].forEach((ratio, i) => expect(rows[i]!.loadGeneratorRatio, `row ${i}`).to.be.closeTo(ratio, 1e-9));
    const table = scalingTable(rows);
    expect(table).to.include('PostgreSQL CPU ms/cmd    ×1   load gen CPU ms/cmd    ×1   PostgreSQL cores');
    expect(table).to.match(/^\s+3\s+900\s.*\s0\.21\s+1\.40\s/m);
    expect(table.split('\n').filter((l) => l.includes('load generator'))).to.deep.equal([
      '  at 3 replicas the load generator, whose work per command is the same at every replica count, spent ×1.40 of its CPU per command at 1 replica: a sign that the host ran every process slower there than in the first row, the replicas too',
      '  at 4 replicas the load generator, whose work per command is the same at every replica count, spent ×0.80 of its CPU per command at 1 replica: a sign that the host ran every process faster there than in the first row, the replicas too',
    ]);
    // Not measured (the demo): no column, no note.
    const bare = scalingTable(scalingRows([figures(1, 300, 2.5, 3), figures(2, 560, 5, 6)]));
    expect(bare).to.not.include('load gen');
  });

  it('tables runs with users per replica apart from runs with a fixed total, each headed by its load', () => {
    const perReplica = (f: ScalingFigures): ScalingFigures => ({ ...f, concurrencyPerReplica: true });
    const text = scalingTables([[figures(1, 300, 3, 1.5), figures(2, 540, 5.4, 3), perReplica(figures(1, 300, 3, 1.5)), perReplica(figures(2, 600, 6, 3))]]);
    const headers = text.split('\n').filter((l) => l.startsWith('at '));
    expect(headers).to.have.length(2);
    expect(headers[0]).to.match(/^at concurrency 48, 0\.25 core per replica/);
    expect(headers[1]).to.match(/^at concurrency 48 per replica, 0\.25 core per replica/);
    // Each table's ratio is to its own first row: 1.80 with the fixed total, 2.00 with users per replica.
    const [fixed, grown] = text.split(/^at .*$/m).slice(1);
    expect(fixed).to.match(/^\s+2\s+540\s+1\.80\s/m);
    expect(grown).to.match(/^\s+2\s+600\s+2\.00\s/m);
  });

  it('the HPA rule: no change within 10 % of the target, else ceil(current × metric ÷ target)', () => {
    expect(proposal(2, 54, 50)).to.equal(2);
    expect(proposal(2, 80, 50)).to.equal(4);
    expect(proposal(3, 10, 50)).to.equal(1);
    expect(hpaDecision(AUTOSCALING, 1, [0.05], { avg: 250, max: 400 })).to.deep.equal({ cpuPercentOfRequest: 25, cpuProposal: 1, backlogAvg: 250, backlogMax: 400, backlogProposal: 3, desired: 3 });
  });
});
