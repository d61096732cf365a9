import { expect } from 'chai';
import { formatChaos, runChaos, type ChaosReport } from '../../scripts/cluster/chaos.ts';
import { TEST_REDIS_URL, testDatabaseUrl } from '../support/system.ts';

/** Seconds of the short chaos run inside `npm test`; `npm run test:chaos` runs the long one. */
const SECONDS = Number(process.env.CHAOS_TEST_SECONDS ?? 25);

describe(`chaos, short run (${SECONDS} s; npm run test:chaos for the long one)`, function () {
  this.timeout((SECONDS + 200) * 1000);
  let report: ChaosReport;

  before(async () => {
    const lines: string[] = [];
    report = await runChaos({
      databaseUrl: testDatabaseUrl('chaos'),
      redisUrl: TEST_REDIS_URL,
      replicas: 3,
      seconds: SECONDS,
      everyS: 5,
      downS: 2,
      refuseS: 3,
      concurrency: 8,
      seed: Date.now() % 100_000,
      settleS: 90,
      log: (line) => lines.push(line),
    });
    console.log(`${formatChaos(report).replace(/^/gm, '      ')}\n`);
    if (!report.ok) console.log(lines.join('\n'));
  });

  it('struck every kind of fault while the load ran: kill -9 (each victim started again), a Redis flush, PostgreSQL refusing connections', () => {
    expect(report.faults['kill -9']).to.be.at.least(2);
    expect(report.restarts).to.equal(report.faults['kill -9']);
    expect(report.faults['redis flush']).to.be.at.least(1);
    expect(report.faults['postgres refuses']).to.be.at.least(1);
    expect(report.commands).to.be.greaterThan(100);
  });

  it('recovered from every fault: what was owed when it struck was all done, and nothing was owed once the load stopped', () => {
    for (const r of report.recoveries) expect(r.recoveredS, `${r.fault} at ${r.atS.toFixed(0)} s`).to.be.a('number');
    expect(report.settledS, JSON.stringify(report.owedAtEnd)).to.be.a('number');
    expect(report.stopExits, 'exit codes of the replicas stopped with SIGTERM').to.deep.equal([0, 0, 0]);
  });

  it('kept every invariant: acknowledged commands journaled once, consecutive seqs, allowed histories, money on the ledger, views = replay, notifications delivered', () => {
    expect(report.invariants.failures).to.deep.equal([]);
    expect(report.invariants.figures.acknowledged).to.equal(report.commands);
    expect(report.invariants.figures.orders).to.be.greaterThan(0);
    expect(report.ok).to.equal(true);
  });
});
