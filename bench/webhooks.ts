// Notification delivery in the benchmark: the webhook receiver (bench/webhook-receiver.ts) in a
// process of its own, the check that every notification the run's commands owe arrived there, and
// the delivery lag (arrival at the receiver − the event's time) over the measured window.
import pg from 'pg';
import type { LoadSummary } from '../scripts/load/runner.ts';
import type { CommandName } from '../scripts/load/scenario.ts';
import { percentile } from '../scripts/load/stats.ts';
import { startStatsServer, type Managed, type ProcessGroup } from './processes.ts';

export interface ReceiverStats {
  /** POSTs answered since the last reset, repeats included. */
  received: number;
  /** Distinct `Idempotency-Key`s among them. */
  distinct: number;
  /** Arrivals while the measured window was open, and how many of them are kept for the lag. */
  inWindow: number;
  sampled: number;
}

/** The receiver process and the benchmark's handle on it. */
export class WebhookReceiver {
  private windowCall: Promise<void> = Promise.resolve();

  private constructor(
    private readonly base: string,
    readonly process: Managed,
  ) {}

  static async start(group: ProcessGroup): Promise<WebhookReceiver> {
    const { base, child } = await startStatsServer(group, 'webhook-receiver', 'bench/webhook-receiver.ts');
    return new WebhookReceiver(base, child);
  }

  /** What the services are given as their webhook (NOTIFY_WEBHOOK_URL). */
  get notifyUrl(): string {
    return `${this.base}/notifications`;
  }

  /** Forgets what arrived: each run counts its own. */
  async reset(): Promise<void> {
    await this.call('POST', '/_bench/reset');
  }

  /**
   * Opens or closes the window whose arrivals are sampled for the lag. Called from the load
   * generator's output handler, which does not wait for it; `arrivals()` does.
   */
  window(phase: 'open' | 'close'): Promise<void> {
    this.windowCall = this.windowCall
      .then(async () => {
        await this.call('POST', `/_bench/window/${phase}`);
      })
      .catch(() => undefined);
    return this.windowCall;
  }

  async stats(): Promise<ReceiverStats> {
    return (await this.call('GET', '/_bench/stats')) as ReceiverStats;
  }

  /** The sampled arrivals of the window: [eventId, arrival in ms since the epoch]. */
  async arrivals(): Promise<[string, number][]> {
    await this.windowCall;
    return (await this.call('GET', '/_bench/arrivals')) as [string, number][];
  }

  private async call(method: 'GET' | 'POST', path: string): Promise<unknown> {
    const res = await fetch(`${this.base}${path}`, { method, signal: AbortSignal.timeout(10_000) });
    if (!res.ok) throw new Error(`the webhook receiver answered ${res.status} to ${method} ${path}`);
    return res.status === 204 ? undefined : res.json();
  }
}

/**
 * The notifications each command of the load's lifecycles owes, by the rule in the README
 * ("Notifications"): the customer hears of every status change, the store of a paid order and of
 * a cancel after payment, the rider of a delivery confirmed. The load cancels only after pay and
 * before pick, and a store that rejects is not told of its own reject.
 */
export const NOTIFICATIONS_PER_COMMAND: Record<CommandName, number> = {
  place: 1,
  pay: 2,
  accept: 1,
  reject: 1,
  'start-cooking': 1,
  'finish-cooking': 1,
  cancel: 2,
  pick: 1,
  'confirm-delivery': 2,
};

/** What the commands a load run had answered 2xx (every phase) owe the receiver. */
export function expectedNotifications(commandsAllPhases: LoadSummary['commandsAllPhases']): number {
  return Object.entries(commandsAllPhases).reduce((sum, [name, n]) => sum + NOTIFICATIONS_PER_COMMAND[name as CommandName] * n, 0);
}

export interface DeliveryLag {
  available: boolean;
  /** Why there is no figure, when there is none. */
  note?: string;
  samples: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** What one load run's notifications did. */
export interface Deliveries {
  expected: number;
  /** POSTs the receiver answered, repeats (same Idempotency-Key) included. */
  received: number;
  distinct: number;
  /** Every expected notification arrived (distinct ≥ expected; more when a command whose answer was lost had been applied). */
  complete: boolean;
  /** Seconds from the load generator's end until the last one arrived (or the deadline). */
  waitedS: number;
  lag: DeliveryLag;
}

/** The time of each event (ms since the epoch) of those asked for; events it cannot find are left out. */
export type EventTimes = (eventIds: readonly string[]) => Promise<Map<string, number>>;

/** Baedal's event times, from the journal (`order_journal.at`, looked up by its unique event id). */
export function journalEventTimes(databaseUrl: string): EventTimes {
  return async (eventIds) => {
    const client = new pg.Client({ connectionString: databaseUrl });
    await client.connect();
    try {
      const { rows } = await client.query<{ id: string; ms: number }>(
        `SELECT event_id::text AS id, (extract(epoch FROM at) * 1000)::float8 AS ms FROM order_journal WHERE event_id = ANY($1::uuid[])`,
        [eventIds],
      );
      return new Map(rows.map((r) => [r.id, r.ms]));
    } finally {
      await client.end();
    }
  };
}

/** The time a UUIDv7 carries (its first 48 bits, ms since the epoch), or undefined for another kind of id. */
export function uuidV7Time(id: string): number | undefined {
  const m = /^([0-9a-f]{8})-([0-9a-f]{4})-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i.exec(id);
  return m ? Number.parseInt(`${m[1]}${m[2]}`, 16) : undefined;
}

/** Event times of ids that carry them (the Restate service's event ids are UUIDv7 stamped with the status change's time). */
export const uuidV7EventTimes: EventTimes = async (eventIds) => {
  const times = new Map<string, number>();
  for (const id of eventIds) {
    const t = uuidV7Time(id);
    if (t !== undefined) times.set(id, t);
  }
  return times;
};

/** p50/p99/max of arrival − event time over the sampled arrivals whose event time is known. */
export function deliveryLag(arrivals: readonly [string, number][], times: ReadonlyMap<string, number>): DeliveryLag {
  const lags = Float64Array.from(arrivals.flatMap(([id, at]) => (times.has(id) ? [at - times.get(id)!] : []))).sort();
  if (lags.length === 0) {
    return { available: false, note: arrivals.length ? 'no event time found for the sampled arrivals' : 'nothing arrived in the measured window', samples: 0, p50Ms: NaN, p99Ms: NaN, maxMs: NaN };
  }
  return { available: true, samples: lags.length, p50Ms: percentile(lags, 50), p99Ms: percentile(lags, 99), maxMs: lags[lags.length - 1]! };
}

/**
 * After a load run: waits (up to `timeoutMs`) until every notification its commands owe has
 * arrived, then reads the window's sampled arrivals and their events' times for the lag.
 */
export async function collectDeliveries(receiver: WebhookReceiver, load: LoadSummary, eventTimes: EventTimes, timeoutMs = 60_000): Promise<Deliveries> {
  const expected = expectedNotifications(load.commandsAllPhases);
  const started = performance.now();
  let stats = await receiver.stats();
  while (stats.distinct < expected && performance.now() - started < timeoutMs) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    stats = await receiver.stats();
  }
  const waitedS = (performance.now() - started) / 1000;
  const arrivals = await receiver.arrivals();
  const times = await eventTimes([...new Set(arrivals.map(([id]) => id))]);
  return { expected, received: stats.received, distinct: stats.distinct, complete: stats.distinct >= expected, waitedS, lag: deliveryLag(arrivals, times) };
}
