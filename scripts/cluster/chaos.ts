import { setTimeout as delay } from 'node:timers/promises';
import { runLoad, type LoadSummary } from '../load/runner.ts';
import { seededRandom } from '../load/scenario.ts';
import { Cluster } from './cluster.ts';
import { checkInvariants, nothingOwed, owedKeys, owedNow, type Acknowledged, type InvariantReport, type OwedNow } from './invariants.ts';

export type FaultKind = 'kill -9' | 'redis flush' | 'postgres refuses';

export interface ChaosOptions {
  databaseUrl: string;
  redisUrl: string;
  replicas: number;
  /** Seconds of load with faults. */
  seconds: number;
  /** Seconds between faults. */
  everyS: number;
  /** Seconds PostgreSQL refuses connections in its drill. */
  refuseS: number;
  /** Seconds a killed replica stays down before it is started again. */
  downS: number;
  concurrency: number;
  seed: number;
  /** How long the cluster may take to settle after the load (nothing owed), in seconds. */
  settleS: number;
  /** Settings of every replica, over the chaos defaults. */
  env?: Record<string, string>;
  log: (line: string) => void;
}

export interface Recovery {
  fault: FaultKind;
  target: string;
  atS: number;
  /** Side effects owed when the fault struck. */
  owed: number;
  /** Seconds until every one of them was done; null if not within the settle time. */
  recoveredS: number | null;
}

export interface ChaosReport {
  ok: boolean;
  seconds: number;
  seed: number;
  commands: number;
  commandsPerS: number;
  lifecycles: number;
  errors: number;
  faults: Record<FaultKind, number>;
  restarts: number;
  recoveries: Recovery[];
  /** The slowest recovery of each kind of fault: null if one never recovered, undefined if none struck. */
  worstRecoveryS: Record<FaultKind, number | null | undefined>;
  /** Seconds from the end of the load until nothing was owed. */
  settledS: number | null;
  owedAtEnd: OwedNow;
  /** Exit codes of the replicas' graceful stop at the end. */
  stopExits: (number | null)[];
  load: LoadSummary;
  invariants: InvariantReport;
}

/**
 * The defaults a production replica runs with, except the payment reconciliation: an attempt
 * whose replica died mid-call is asked about after 6 s and given up after 15 s (60 s in production),
 * so that a short run can settle.
 */
export const CHAOS_ENV: Record<string, string> = {
  PAYMENT_RECONCILE_AFTER_MS: '6000',
  PAYMENT_SETTLE_MS: '15000',
};

/**
 * Runs the mixed lifecycle load through a round-robin proxy in front of `replicas` replicas while
 * faults strike every `everyS` seconds, in turn: `kill -9` of a random replica (started again after
 * `downS`), PostgreSQL refusing connections for `refuseS` (its backends terminated), `kill -9`
 * again, and a flush of the queues' Redis state. After each fault it measures how long the side
 * effects owed at that moment took to be done. Then it waits until nothing is owed, stops the
 * replicas and checks the invariants.
 */
export async function runChaos(o: ChaosOptions): Promise<ChaosReport> {
  const crashes: string[] = [];
  const cluster = new Cluster({
    databaseUrl: o.databaseUrl,
    redisUrl: o.redisUrl,
    env: { ...CHAOS_ENV, ...o.env },
    onCrash: (name, how, tail) => crashes.push(`${name} ${how}:\n${tail}`),
  });
  const onExit = () => cluster.killAllNow();
  process.once('exit', onExit);
  let started = performance.now();
  const at = () => (performance.now() - started) / 1000;
  const say = (line: string) => o.log(`[${at().toFixed(0).padStart(4)}s] ${line}`);
  let keepLogs = true;
  try {
    await cluster.start();
    // Started together, as pods of a rollout are: migrations run once, under their lock.
    await Promise.all(Array.from({ length: o.replicas }, (_, i) => cluster.startReplica(`replica-${i + 1}`)));
    say(`${o.replicas} replicas ready behind ${cluster.url}; faults every ${o.everyS} s for ${o.seconds} s`);

    const acknowledged: Acknowledged[] = [];
    const random = seededRandom(o.seed);
    const faults: Record<FaultKind, number> = { 'kill -9': 0, 'redis flush': 0, 'postgres refuses': 0 };
    const recoveries: Recovery[] = [];
    const tracking: Promise<void>[] = [];
    const restarting: Promise<unknown>[] = [];
    let restarts = 0;
    let loadDone = false;

    /** Follows what was owed when a fault struck until all of it is done. */
    const track = (fault: FaultKind, target: string, atS: number, owed: Set<string>) => {
      const r: Recovery = { fault, target, atS, owed: owed.size, recoveredS: null };
      recoveries.push(r);
      tracking.push(
        (async () => {
          const deadline = performance.now() + (o.seconds + o.settleS) * 1000;
          while (performance.now() < deadline) {
            const now = await owedKeys(cluster.db).catch(() => undefined);
            if (now && ![...owed].some((k) => now.has(k))) {
              r.recoveredS = Math.round((at() - atS) * 10) / 10;
              say(`recovered from ${fault} (${target}): ${owed.size} side effects owed then, all done ${r.recoveredS} s after`);
              return;
            }
            await delay(250);
          }
        })(),
      );
    };
    const snapshot = async () => {
      for (;;) {
        const keys = await owedKeys(cluster.db).catch(() => undefined);
        if (keys) return keys;
        await delay(200);
      }
    };

    const schedule: FaultKind[] = ['kill -9', 'postgres refuses', 'kill -9', 'redis flush'];
    started = performance.now(); // the clock of the load's progress lines too
    const chaos = (async () => {
      for (let n = 0; !loadDone; n += 1) {
        await delay(o.everyS * 1000);
        if (loadDone) return;
        const fault = schedule[n % schedule.length]!;
        const atS = at();
        faults[fault] += 1;
        if (fault === 'kill -9') {
          const up = [...cluster.replicas.values()].filter((r) => r.process.running());
          if (up.length < 2) {
            faults[fault] -= 1;
            continue;
          }
          const victim = up[Math.floor(random() * up.length)]!;
          await cluster.kill(victim.name, 'SIGKILL');
          say(`kill -9 ${victim.name} (pid ${victim.process.pid})`);
          track(fault, victim.name, atS, await snapshot());
          restarting.push(
            (async () => {
              await delay(o.downS * 1000);
              const t0 = performance.now();
              await cluster.startReplica(victim.name);
              restarts += 1;
              say(`${victim.name} started again (ready in ${((performance.now() - t0) / 1000).toFixed(1)} s)`);
            })(),
          );
        } else if (fault === 'redis flush') {
          const owed = await snapshot();
          const deleted = await cluster.flushQueues();
          say(`Redis: the queues' state flushed (${deleted} keys deleted)`);
          track(fault, 'redis', atS, owed);
        } else {
          const owed = await snapshot();
          say(`PostgreSQL refuses connections for ${o.refuseS} s`);
          const terminated = await cluster.refuseDatabase(o.refuseS * 1000);
          say(`PostgreSQL accepts connections again (${terminated} backends had been terminated)`);
          track(fault, 'postgres', atS, owed);
        }
      }
    })();

    const load = await runLoad({
      urls: [cluster.url],
      target: 'baedal',
      concurrency: o.concurrency,
      durationS: o.seconds,
      warmupS: 0,
      stores: 5,
      secret: cluster.secret,
      seed: o.seed,
      timeoutMs: 20_000,
      progressS: 5,
      // The invariants check every order once the cluster has settled; a read-back at the end of
      // the load could meet a fault still in progress.
      verify: false,
      runId: `chaos-${cluster.tag}`,
      log: o.log,
      onAnswer: (name, call, res) => {
        if (res.status < 200 || res.status >= 300) return;
        const orderId = name === 'place' ? res.body?.id : call.path.split('/')[2];
        acknowledged.push({ orderId: String(orderId), command: name, version: Number(res.body?.version) });
      },
    });
    loadDone = true;
    await chaos;
    await Promise.all(restarting);
    const loadEnd = at();
    say(`load over: ${acknowledged.length} commands answered 2xx; waiting until nothing is owed`);

    let settledS: number | null = null;
    let owedAtEnd = await owedNow(cluster.db);
    const deadline = performance.now() + o.settleS * 1000;
    while (performance.now() < deadline) {
      owedAtEnd = await owedNow(cluster.db);
      if (nothingOwed(owedAtEnd)) {
        settledS = Math.round((at() - loadEnd) * 10) / 10;
        break;
      }
      await delay(250);
    }
    await Promise.all(tracking);
    say(settledS === null ? `still owed after ${o.settleS} s: ${JSON.stringify(owedAtEnd)}` : `nothing owed ${settledS} s after the load`);

    // A graceful stop of every replica, then the checks on a cluster at rest.
    const stopExits = await Promise.all([...cluster.replicas.keys()].map(async (name) => (await cluster.kill(name, 'SIGTERM')).code));
    const invariants = await checkInvariants(cluster.db, await cluster.ledger(), acknowledged, cluster.webhook.received);
    const worst = (fault: FaultKind) => {
      const times = recoveries.filter((r) => r.fault === fault).map((r) => r.recoveredS);
      if (times.length === 0) return undefined;
      return times.includes(null) ? null : Math.max(...(times as number[]));
    };
    const ok = invariants.ok && settledS !== null && crashes.length === 0 && stopExits.every((c) => c === 0) && recoveries.every((r) => r.recoveredS !== null);
    keepLogs = !ok;
    if (crashes.length > 0) o.log(`processes that died unasked:\n${crashes.join('\n')}`);
    return {
      ok,
      seconds: o.seconds,
      seed: o.seed,
      commands: acknowledged.length,
      commandsPerS: acknowledged.length / load.measuredS,
      lifecycles: load.lifecycles.completedAllPhases,
      errors: load.errors.total,
      faults,
      restarts,
      recoveries,
      worstRecoveryS: { 'kill -9': worst('kill -9'), 'redis flush': worst('redis flush'), 'postgres refuses': worst('postgres refuses') },
      settledS,
      owedAtEnd,
      stopExits,
      load,
      invariants,
    };
  } finally {
    if (keepLogs) o.log(`the processes' logs are in ${cluster.logDir}`);
    await cluster.stop(keepLogs);
    process.removeListener('exit', onExit);
  }
}

/** The report as lines for a terminal. */
export function formatChaos(r: ChaosReport): string {
  const s = (v: number | null | undefined) => (v === undefined ? '—' : v === null ? 'NOT recovered' : `${v.toFixed(1)} s`);
  const lines = [
    `chaos: ${r.ok ? 'PASSED' : 'FAILED'} (seed ${r.seed})`,
    `  load           ${r.commands} commands answered 2xx in ${r.seconds} s (${r.commandsPerS.toFixed(0)}/s), ${r.lifecycles} lifecycles finished, ${r.errors} refused or failed requests`,
    `  faults         ${r.faults['kill -9']} × kill -9 (${r.restarts} restarts), ${r.faults['redis flush']} × Redis flush, ${r.faults['postgres refuses']} × PostgreSQL refusing connections`,
    `  recovery       worst: kill -9 ${s(r.worstRecoveryS['kill -9'])}, Redis flush ${s(r.worstRecoveryS['redis flush'])}, PostgreSQL ${s(r.worstRecoveryS['postgres refuses'])}  (until every side effect owed at the fault was done)`,
    `  settled        ${r.settledS === null ? `NOT settled: ${JSON.stringify(r.owedAtEnd)}` : `nothing owed ${r.settledS} s after the load`}; replicas stopped with exit codes ${r.stopExits.join(', ')}`,
    `  checked        ${r.invariants.figures.orders} orders, ${r.invariants.figures.journalEvents} journal events, ${r.invariants.figures.acknowledged} acknowledged commands, ${r.invariants.figures.charges} charges, ${r.invariants.figures.refunds} refunds, ${r.invariants.figures.notifications} notifications (${r.invariants.figures.notificationRepeats} received twice, same Idempotency-Key), ${r.invariants.figures.viewRows} view rows`,
  ];
  if (r.invariants.failures.length > 0) lines.push('  violations', ...r.invariants.failures.map((f) => `    - ${f}`));
  else lines.push('  invariants     every acknowledged command journaled once; consecutive seqs; histories the machine allows; one charge kept per paid order, one refund per other charge; views = replay; every notification delivered');
  return lines.join('\n');
}
