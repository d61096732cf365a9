import { expect } from 'chai';
import { Cluster } from '../../scripts/cluster/cluster.ts';
import { checkInvariants, nothingOwed, owedNow, type Acknowledged } from '../../scripts/cluster/invariants.ts';
import { runLoad } from '../../scripts/load/runner.ts';
import { partitionOf } from '../../src/actors/partitions.ts';
import { eventually, TEST_DATABASE_URL, TEST_REDIS_URL } from '../support/system.ts';

/** DESIGN "Scaling out" and guarantee 6: a dead replica's partitions move to the survivors within the recovery bound. */
const RECOVERY_BOUND_MS = 15_000;
const PARTITIONS = 32;

/** Event partitions each replica holds now, read from the leases in PostgreSQL. */
async function holders(cluster: Cluster): Promise<Map<string, number[]>> {
  const { rows } = await cluster.db.query<{ holder: string; parts: number[] }>(
    `SELECT holder, array_agg(part::int ORDER BY part) AS parts FROM event_partitions WHERE until > now() GROUP BY holder`,
  );
  return new Map(rows.map((r) => [r.holder, r.parts]));
}

/** The events a replica applied, per partition, from its /metrics. */
async function appliedBy(cluster: Cluster, name: string): Promise<Map<number, number>> {
  const text = await cluster.metrics(name);
  return new Map([...text.matchAll(/^baedal_events_applied_total\{partition="(\d+)"\} (\d+)$/gm)].map((m) => [Number(m[1]), Number(m[2])]));
}

/**
 * Three replicas as production runs them (processes, default settings) share the event partitions:
 * each holds about a third and applies the events of those only; killed with SIGKILL, a replica's
 * partitions are taken by the two others within the recovery bound, and nothing is lost or applied
 * twice.
 */
describe('event partitions across replica processes', function () {
  this.timeout(240_000);
  let cluster: Cluster;

  afterEach(async () => {
    await cluster?.stop();
  });

  it(`are shared by three replicas, each applying its share, and move to the survivors within ${RECOVERY_BOUND_MS / 1000} s of a kill -9`, async () => {
    cluster = new Cluster({ databaseUrl: `${TEST_DATABASE_URL}_partitions`, redisUrl: TEST_REDIS_URL });
    await cluster.start();
    const names = ['replica-1', 'replica-2', 'replica-3'];
    await Promise.all(names.map((name) => cluster.startReplica(name)));

    // Shared: three holders, about a third each, every partition held once.
    const shared = await eventually(async () => {
      const now = await holders(cluster);
      const counts = [...now.values()].map((parts) => parts.length);
      return now.size === 3 && counts.every((n) => n >= 10 && n <= 11) && counts.reduce((a, b) => a + b, 0) === PARTITIONS && now;
    }, 'three replicas to hold about a third of the partitions each', 30_000);
    const all = [...shared.values()].flat().sort((a, b) => a - b);
    expect(all).to.deep.equal([...Array(PARTITIONS).keys()]);

    const acknowledged: Acknowledged[] = [];
    const load = runLoad({
      urls: [cluster.url],
      target: 'baedal',
      concurrency: 8,
      durationS: 24,
      warmupS: 0,
      stores: 3,
      secret: cluster.secret,
      seed: 11,
      timeoutMs: 20_000,
      progressS: 0,
      verify: false,
      runId: `partitions-${cluster.tag}`,
      log: () => undefined,
      onAnswer: (name, call, res) => {
        if (res.status < 200 || res.status >= 300) return;
        acknowledged.push({ orderId: String(name === 'place' ? res.body.id : call.path.split('/')[2]), command: name, version: Number(res.body.version) });
      },
    });
    await eventually(async () => acknowledged.length >= 300, 'the load to get going', 60_000);

    // Each replica applied events, and only of partitions it held.
    const owners = await holders(cluster);
    const applied = new Map<string, Map<number, number>>();
    for (const name of names) applied.set(name, await appliedBy(cluster, name));
    for (const [name, parts] of applied) {
      const total = [...parts.values()].reduce((a, b) => a + b, 0);
      expect(total, `${name} applied events`).to.be.greaterThan(0);
    }
    const partsOf = [...applied.values()].map((m) => new Set(m.keys()));
    for (let i = 0; i < partsOf.length; i += 1) {
      for (let j = i + 1; j < partsOf.length; j += 1) {
        const both = [...partsOf[i]!].filter((p) => partsOf[j]!.has(p));
        expect(both, `partitions applied by both ${names[i]} and ${names[j]}`).to.deep.equal([]);
      }
    }
    expect(owners.size).to.equal(3);

    // kill -9 of one replica under load: the survivors hold every partition within the bound.
    const victim = 'replica-3';
    const killedAt = performance.now();
    await cluster.kill(victim, 'SIGKILL');
    await eventually(
      async () => {
        const now = await holders(cluster);
        const held = [...now.values()].flat();
        return now.size === 2 && held.length === PARTITIONS;
      },
      'the two survivors to hold every partition',
      RECOVERY_BOUND_MS + 10_000,
    );
    const movedMs = performance.now() - killedAt;
    expect(movedMs, `partitions moved ${Math.round(movedMs)} ms after the kill`).to.be.at.most(RECOVERY_BOUND_MS);
    await load;

    // Orders placed after the kill, in every partition, were applied by the survivors.
    const survivors = names.filter((n) => n !== victim);
    const late = acknowledged.filter((a) => a.command === 'place').slice(-20).map((a) => partitionOf(a.orderId, PARTITIONS));
    expect(new Set(late).size).to.be.greaterThan(1);
    await eventually(async () => nothingOwed(await owedNow(cluster.db)), 'nothing to be owed', 60_000);
    for (const name of survivors) await cluster.kill(name, 'SIGTERM');
    const report = await checkInvariants(cluster.db, await cluster.ledger(), acknowledged, cluster.webhook.received);
    expect(report.failures).to.deep.equal([]);
  });
});
