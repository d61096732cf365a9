import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setTimeout as delay } from 'node:timers/promises';
import { HttpClient, type HttpResult } from './http-client.ts';
import type { Route } from './route.ts';
import { COMMAND_NAMES, COMMAND_ROLE, LIFECYCLES, MENU, commandBody, pickItems, pickLifecycle, seededRandom, type CommandName, type LifecycleKind } from './scenario.ts';
import { Pacer } from './pacer.ts';
import { Counter, Latencies, type LatencySummary } from './stats.ts';
import { TARGETS, type Call, type TargetName } from './targets.ts';
import { TokenBook, type Party } from './tokens.ts';

export interface LoadOptions {
  urls: string[];
  /** How requests are spread over several URLs (default round-robin). */
  route?: Route;
  target: TargetName;
  concurrency: number;
  /** Commands started a second at most, over all users (open-loop pacing); none: as fast as the users go. */
  rate?: number;
  durationS: number;
  warmupS: number;
  stores: number;
  secret: string;
  seed: number;
  timeoutMs: number;
  /** Seconds between progress lines; 0 for none. */
  progressS: number;
  verify: boolean;
  /** Prefix of every id the run creates (stores, customers, riders), so runs never collide. */
  runId: string;
  log: (line: string) => void;
  /** Called when measuring starts (after the warm-up) and when it ends. */
  onPhase?: (phase: 'measure' | 'drain') => void;
  /** Called with every answer (or network failure) of a lifecycle's request, whatever the phase. */
  onAnswer?: (name: CommandName, call: Call, res: HttpResult) => void;
}

export interface Mismatch {
  orderId: string;
  kind: LifecycleKind;
  expected: string;
  actual: string;
}

export interface LoadSummary {
  target: TargetName;
  urls: string[];
  /** How requests were spread over the URLs. */
  route: Route;
  concurrency: number;
  /** Commands started a second at most (`--rate`), or null: a closed loop. */
  rate: number | null;
  warmupS: number;
  durationS: number;
  /** The measured window as it actually was. */
  measuredS: number;
  stores: number;
  seed: number;
  runId: string;
  /** Commands answered 2xx within the measured window (place counts as a command). */
  commands: number;
  commandsPerS: number;
  /** Commands answered 2xx in every phase (warm-up and drain included), by command: what the run changed. */
  commandsAllPhases: Record<CommandName, number>;
  lifecycles: {
    /** Lifecycles whose last command was answered within the measured window. */
    completed: number;
    perS: number;
    byKind: Record<LifecycleKind, number>;
    /** Every lifecycle that ran to its end, warm-up and drain included (all of them are checked). */
    completedAllPhases: number;
    /** Lifecycles given up after a refused or failed command. */
    abandoned: number;
  };
  /** Latencies of the commands answered 2xx within the measured window. */
  latencyMs: { overall: LatencySummary; byCommand: Record<string, LatencySummary> };
  /** Every refused or failed request of the run, warm-up and drain included. */
  errors: { total: number; byKind: Record<string, number>; byCommand: Record<string, Record<string, number>> };
  /** The final check: each finished lifecycle's order, read back, is in the state its kind ends in. */
  verify: { checked: number; ok: number; mismatches: number; examples: Mismatch[] } | null;
  /** The load generator's own cost over the measured window. */
  client: { cpuSeconds: number; cpuShareOfOneCore: number; cpuMsPerCommand: number; eventLoopDelayP99Ms: number };
  node: string;
}

export class SetupError extends Error {}

interface Finished {
  id: string;
  kind: LifecycleKind;
  customer: Party;
}

type Phase = 'warmup' | 'measure' | 'drain';

/** How long a virtual user waits after a failure before its next lifecycle, so an outage is not a busy loop. */
function backoffMs(res: HttpResult): number {
  if (res.status === 0) return 100;
  if (res.status === 429 || res.status === 503) return Math.min(1000, res.retryAfter !== undefined ? res.retryAfter * 1000 : 100);
  return 0;
}

const describe = (res: HttpResult): string => {
  if (res.status === 0) return `network error ${res.networkError}`;
  const message = res.body?.error?.message ?? res.body?.message;
  return `${res.status}${message ? ` (${String(message)})` : ''}`;
};

/**
 * Closed loop: `concurrency` virtual users, each running lifecycles back to back (with `rate`, their
 * commands start no faster than that many a second in all) (place, then the
 * lifecycle's commands, each by the right party). A warm-up runs first and is not measured; at the
 * end of the measured window each user finishes the lifecycle it is in, and every finished
 * lifecycle's order is read back and checked.
 */
export async function runLoad(o: LoadOptions): Promise<LoadSummary> {
  const target = TARGETS[o.target];
  const client = new HttpClient(o.urls, { maxSockets: Math.max(o.concurrency, 8), timeoutMs: o.timeoutMs, route: o.route ?? 'round-robin' });
  const book = new TokenBook(o.secret);
  try {
    const stores = await Promise.all(Array.from({ length: o.stores }, (_, i) => book.party('store', `${o.runId}-store-${i + 1}`)));
    const customers = await Promise.all(Array.from({ length: o.concurrency }, (_, i) => book.party('customer', `${o.runId}-customer-${i + 1}`)));
    const riders = await Promise.all(Array.from({ length: o.concurrency }, (_, i) => book.party('rider', `${o.runId}-rider-${i + 1}`)));
    book.startRefreshing();

    for (const store of stores) {
      const call = target.publishMenu(store.sub, MENU);
      const res = await client.request(call.method, call.path, store.token, call.body);
      if (res.status < 200 || res.status >= 300) {
        throw new SetupError(`publishing the menu of ${store.sub} (${call.method} ${o.urls[0]}${call.path}) answered ${describe(res)}`);
      }
    }

    let phase: Phase = o.warmupS > 0 ? 'warmup' : 'measure';
    const latencies = new Latencies();
    const errors = new Counter();
    const errorsByCommand = new Map<CommandName, Counter>();
    const finishedByKind: Record<LifecycleKind, number> = { full: 0, cancel: 0, reject: 0 };
    const finished: Finished[] = [];
    let measuredCommands = 0;
    const okByCommand = Object.fromEntries(COMMAND_NAMES.map((name) => [name, 0])) as Record<CommandName, number>;
    let measuredLifecycles = 0;
    let abandoned = 0;
    // For the progress line: everything answered, whatever the phase.
    let answered = 0;
    let lifecyclesDone = 0;

    const loopDelay = monitorEventLoopDelay({ resolution: 10 });
    let cpuAtStart = process.cpuUsage();
    let cpuInWindow: NodeJS.CpuUsage = { user: 0, system: 0 };
    const started = performance.now();
    let measureStart = started;
    let measureEnd = started;
    const beginMeasuring = () => {
      phase = 'measure';
      measureStart = performance.now();
      cpuAtStart = process.cpuUsage();
      loopDelay.enable();
      o.onPhase?.('measure');
    };
    const endMeasuring = () => {
      measureEnd = performance.now();
      cpuInWindow = process.cpuUsage(cpuAtStart);
      loopDelay.disable();
      phase = 'drain';
      o.onPhase?.('drain');
    };
    if (phase === 'measure') beginMeasuring();
    const warmupTimer = o.warmupS > 0 ? setTimeout(beginMeasuring, o.warmupS * 1000) : undefined;
    const endTimer = setTimeout(endMeasuring, (o.warmupS + o.durationS) * 1000);

    let lastTick = { at: started, answered: 0, lifecycles: 0, errors: 0 };
    const progress =
      o.progressS > 0
        ? setInterval(() => {
            const now = performance.now();
            const s = (now - lastTick.at) / 1000;
            o.log(
              `[${((now - started) / 1000).toFixed(0).padStart(4)}s] ${phase.padEnd(7)} ${((answered - lastTick.answered) / s).toFixed(0).padStart(6)} commands/s ${((lifecyclesDone - lastTick.lifecycles) / s).toFixed(1).padStart(7)} lifecycles/s   errors ${errors.total - lastTick.errors} (run total ${errors.total})`,
            );
            lastTick = { at: now, answered, lifecycles: lifecyclesDone, errors: errors.total };
          }, o.progressS * 1000)
        : undefined;

    const pacer = o.rate ? new Pacer(o.rate) : undefined;
    /** Sends one timed command (at its slot, when paced: the wait is not its latency); answers whether it succeeded. */
    const send = async (name: CommandName, call: Call, party: Party): Promise<HttpResult & { ok: boolean }> => {
      const wait = pacer?.book() ?? 0;
      if (wait > 0) await delay(wait);
      const t0 = performance.now();
      const res = await client.request(call.method, call.path, party.token, call.body);
      const ms = performance.now() - t0;
      answered++;
      o.onAnswer?.(name, call, res);
      const ok = res.status >= 200 && res.status < 300;
      if (ok) {
        okByCommand[name]++;
        if (phase === 'measure') {
          latencies.record(name, ms);
          measuredCommands++;
        }
      } else {
        const kind = target.errorKind(res);
        errors.add(kind);
        let perCommand = errorsByCommand.get(name);
        if (!perCommand) errorsByCommand.set(name, (perCommand = new Counter()));
        perCommand.add(kind);
      }
      return { ...res, ok };
    };

    const virtualUser = async (i: number) => {
      const random = seededRandom(o.seed + i * 7919);
      const customer = customers[i]!;
      const rider = riders[i]!;
      while (phase !== 'drain') {
        const kind = pickLifecycle(random);
        const storeIndex = Math.floor(random() * stores.length);
        const store = stores[storeIndex]!;
        const requested = target.newOrderId();
        const placeCall = target.place(requested, {
          storeId: store.sub,
          items: pickItems(random),
          address: { area: `${o.runId}-area-${(storeIndex % 5) + 1}`, line: '1 Teheran-ro' },
        });
        const placed = await send('place', placeCall, customer);
        const id = placed.ok ? target.placedId(placed, requested) : undefined;
        if (!id) {
          abandoned++;
          if (placed.ok) errors.add('2xx without an order id');
          await delay(backoffMs(placed));
          continue;
        }
        let failed: HttpResult | undefined;
        for (const command of LIFECYCLES[kind].steps) {
          const role = COMMAND_ROLE[command];
          const party = role === 'store' ? store : role === 'rider' ? rider : customer;
          const res = await send(command, target.command(id, command, commandBody(command)), party);
          if (!res.ok) {
            failed = res;
            break;
          }
        }
        if (failed) {
          abandoned++;
          await delay(backoffMs(failed));
          continue;
        }
        lifecyclesDone++;
        finished.push({ id, kind, customer });
        if (phase === 'measure') {
          measuredLifecycles++;
          finishedByKind[kind]++;
        }
      }
    };

    await Promise.all(Array.from({ length: o.concurrency }, (_, i) => virtualUser(i)));
    clearTimeout(warmupTimer);
    clearTimeout(endTimer);
    if (progress) clearInterval(progress);
    if ((phase as Phase) !== 'drain') endMeasuring(); // every user stopped before the end: close the window now

    const verify = o.verify && target.verifiable ? await verifyAll(finished) : null;

    const measuredS = (measureEnd - measureStart) / 1000;
    const cpuSeconds = (cpuInWindow.user + cpuInWindow.system) / 1e6;
    return {
      target: o.target,
      urls: o.urls,
      route: o.route ?? 'round-robin',
      concurrency: o.concurrency,
      rate: o.rate ?? null,
      warmupS: o.warmupS,
      durationS: o.durationS,
      measuredS,
      stores: o.stores,
      seed: o.seed,
      runId: o.runId,
      commands: measuredCommands,
      commandsPerS: measuredCommands / measuredS,
      commandsAllPhases: okByCommand,
      lifecycles: {
        completed: measuredLifecycles,
        perS: measuredLifecycles / measuredS,
        byKind: finishedByKind,
        completedAllPhases: finished.length,
        abandoned,
      },
      latencyMs: latencies.summary(COMMAND_NAMES),
      errors: {
        total: errors.total,
        byKind: errors.toJSON(),
        byCommand: Object.fromEntries([...errorsByCommand].map(([name, c]) => [name, c.toJSON()])),
      },
      verify,
      client: {
        cpuSeconds,
        cpuShareOfOneCore: cpuSeconds / measuredS,
        cpuMsPerCommand: measuredCommands ? (cpuSeconds * 1000) / measuredCommands : NaN,
        eventLoopDelayP99Ms: loopDelay.count ? loopDelay.percentile(99) / 1e6 : NaN,
      },
      node: process.version,
    };
  } finally {
    book.stop();
    client.close();
  }

  /** Reads every finished order back, with as many requests in flight as there were users. */
  async function verifyAll(list: Finished[]): Promise<NonNullable<LoadSummary['verify']>> {
    const examples: Mismatch[] = [];
    let ok = 0;
    let mismatches = 0;
    let next = 0;
    const worker = async () => {
      while (next < list.length) {
        const f = list[next++]!;
        const call = target.get(f.id);
        const res = await client.request(call.method, call.path, f.customer.token, call.body);
        const expected = LIFECYCLES[f.kind].finalStatus;
        const actual = res.status === 200 ? (target.statusOf(res) ?? 'no status in the answer') : `GET answered ${target.errorKind(res)}`;
        if (actual === expected) ok++;
        else {
          mismatches++;
          if (examples.length < 10) examples.push({ orderId: f.id, kind: f.kind, expected, actual });
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(64, Math.max(4, o.concurrency)) }, worker));
    return { checked: list.length, ok, mismatches, examples };
  }
}
