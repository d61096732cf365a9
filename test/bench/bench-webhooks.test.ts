import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { ProcessGroup } from '../../bench/processes.ts';
import { collectDeliveries, deliveryLag, NOTIFICATIONS_PER_COMMAND, uuidV7Time, WebhookReceiver } from '../../bench/webhooks.ts';
import type { OrderEvent } from '../../src/actors/consumers/types.ts';
import type { OrderDomainEventType } from '../../src/machines/order/contract.ts';
import { fold, recipients, type NotifierState } from '../../src/notifications/notifier.consumer.ts';
import type { LoadSummary } from '../../scripts/load/runner.ts';
import { LIFECYCLES, type CommandName } from '../../scripts/load/scenario.ts';

/** A UUIDv7 stamped with `ms`, as the Restate service makes its event ids. */
function uuidV7(ms: number): string {
  const t = ms.toString(16).padStart(12, '0');
  const r = randomUUID().replaceAll('-', '');
  return `${t.slice(0, 8)}-${t.slice(8, 12)}-7${r.slice(13, 16)}-a${r.slice(17, 20)}-${r.slice(20, 32)}`;
}

const loadWith = (commandsAllPhases: Partial<Record<CommandName, number>>) => ({ commandsAllPhases }) as unknown as LoadSummary;

describe('bench: the webhook receiver (its own process)', function () {
  this.timeout(30_000);
  let logDir: string;
  let group: ProcessGroup;
  let receiver: WebhookReceiver;
  const crashes: string[] = [];

  const post = (body: unknown, key?: string) =>
    fetch(receiver.notifyUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(key && { 'idempotency-key': key }) },
      body: JSON.stringify(body),
    });

  before(async () => {
    logDir = mkdtempSync(join(tmpdir(), 'bench-webhooks-test-'));
    group = new ProcessGroup(logDir, (m, how) => crashes.push(`${m.name} ${how}`));
    receiver = await WebhookReceiver.start(group);
  });
  after(async () => {
    await group.stopAll();
    rmSync(logDir, { recursive: true, force: true });
    expect(crashes).to.deep.equal([]);
  });
  beforeEach(() => receiver.reset());

  it('answers 204 and counts each notification once by its Idempotency-Key, repeats apart', async () => {
    const [a, b] = [randomUUID(), randomUUID()];
    for (const key of [a, b, a]) {
      const res = await post({ notificationId: key, eventId: randomUUID() }, key);
      expect(res.status).to.equal(204);
    }
    expect(await receiver.stats()).to.include({ received: 3, distinct: 2 });
  });

  it('refuses a notification without an Idempotency-Key (400) and does not count it', async () => {
    const res = await post({ eventId: randomUUID() });
    expect(res.status).to.equal(400);
    expect(((await res.json()) as { error: { code: string } }).error.code).to.equal('invalid_request');
    expect(await receiver.stats()).to.include({ received: 0, distinct: 0 });
  });

  it('counts each message of a NOTIFY_BATCH=1 array by its notificationId, and samples each in the window', async () => {
    const [a, b, c] = [randomUUID(), randomUUID(), randomUUID()];
    const [ea, eb, ec] = [randomUUID(), randomUUID(), randomUUID()];
    await receiver.window('open');
    const first = await post([{ notificationId: a, eventId: ea }, { notificationId: b, eventId: eb }], 'batch-1');
    const again = await post([{ notificationId: b, eventId: eb }, { notificationId: c, eventId: ec }], 'batch-2');
    await receiver.window('close');
    expect([first.status, again.status]).to.deep.equal([204, 204]);
    expect(await receiver.stats()).to.include({ received: 4, distinct: 3, inWindow: 4, sampled: 4 });
    expect((await receiver.arrivals()).map(([id]) => id).sort()).to.deep.equal([ea, eb, eb, ec].sort());
  });

  it('refuses a batch- key whose body is not an array of notifications (400) and counts nothing of it', async () => {
    for (const body of [{ notificationId: randomUUID() }, [{ eventId: randomUUID() }], 'nope']) {
      const res = await post(body, 'batch-x');
      expect(res.status).to.equal(400);
      expect(((await res.json()) as { error: { code: string } }).error.code).to.equal('invalid_request');
    }
    expect(await receiver.stats()).to.include({ received: 0, distinct: 0 });
  });

  it('samples arrival times by event id only while the measured window is open', async () => {
    const [early, inside1, inside2, late] = [randomUUID(), randomUUID(), randomUUID(), randomUUID()];
    await post({ eventId: early }, randomUUID());
    await receiver.window('open');
    const from = Date.now();
    await post({ eventId: inside1 }, randomUUID());
    await post({ eventId: inside2 }, randomUUID());
    const to = Date.now();
    await receiver.window('close');
    await post({ eventId: late }, randomUUID());
    const arrivals = await receiver.arrivals();
    expect(arrivals.map(([id]) => id)).to.deep.equal([inside1, inside2]);
    for (const [, at] of arrivals) expect(at).to.be.within(from, to);
    expect(await receiver.stats()).to.include({ received: 4, inWindow: 2, sampled: 2 });
  });

  it('after a run: every notification owed arrived, and the lag is arrival minus the event time', async () => {
    const occurred = Date.now() - 40;
    await receiver.window('open');
    const ids = [uuidV7(occurred), uuidV7(occurred)];
    for (const eventId of ids) await post({ eventId }, randomUUID());
    await receiver.window('close');
    // One place (1 notification) and one pay (2): three owed, three arrive.
    await post({ eventId: ids[0] }, randomUUID());
    const times = async (eventIds: readonly string[]) => new Map(eventIds.map((id) => [id, uuidV7Time(id)!]));
    const d = await collectDeliveries(receiver, loadWith({ place: 1, pay: 1 }), times, 5_000);
    expect(d).to.include({ expected: 3, received: 3, distinct: 3, complete: true });
    expect(d.lag).to.include({ available: true, samples: 2 });
    expect(d.lag.p99Ms).to.be.within(40, 40 + 5_000);
  });

  it('reports the notifications that never arrived once its deadline passes', async () => {
    await post({ eventId: randomUUID() }, randomUUID());
    const d = await collectDeliveries(receiver, loadWith({ place: 1, 'confirm-delivery': 1 }), async () => new Map(), 300);
    expect(d).to.include({ expected: 3, distinct: 1, complete: false });
    expect(d.waitedS).to.be.at.least(0.3);
    expect(d.lag).to.include({ available: false, note: 'nothing arrived in the measured window' });
  });
});

describe('bench: notification figures', () => {
  it('reads the time a UUIDv7 carries (RFC 9562 example), and none from a random UUID', () => {
    expect(uuidV7Time('017F22E2-79B0-7CC3-98C4-DC0C0C07398F')).to.equal(0x017f22e279b0);
    expect(uuidV7Time(uuidV7(1_764_000_000_123))).to.equal(1_764_000_000_123);
    expect(uuidV7Time(randomUUID())).to.equal(undefined);
  });

  it('takes the lag over the arrivals whose event time is known', () => {
    const arrivals: [string, number][] = Array.from({ length: 100 }, (_, i) => [`e${i}`, 1000 + i]);
    const times = new Map(arrivals.slice(0, 99).map(([id]) => [id, 1000]));
    expect(deliveryLag(arrivals, times)).to.deep.equal({ available: true, samples: 99, p50Ms: 49, p99Ms: 98, maxMs: 98 });
    expect(deliveryLag(arrivals, new Map())).to.include({ available: false, note: 'no event time found for the sampled arrivals' });
  });

  it("counts per command the notifications Baedal's notifier sends for the load's lifecycles", () => {
    const EVENT: Record<CommandName, OrderDomainEventType> = {
      place: 'OrderPlaced',
      pay: 'OrderPaid',
      accept: 'OrderAccepted',
      reject: 'OrderRejected',
      'start-cooking': 'CookingStarted',
      'finish-cooking': 'CookingFinished',
      cancel: 'OrderCancelled',
      pick: 'OrderPickedUp',
      'confirm-delivery': 'OrderDelivered',
    };
    const seen = new Set<CommandName>();
    for (const [kind, spec] of Object.entries(LIFECYCLES)) {
      let state: NotifierState | null = null;
      (['place', ...spec.steps] as CommandName[]).forEach((command, i) => {
        const event = {
          orderId: randomUUID(),
          eventId: randomUUID(),
          seq: i + 1,
          type: EVENT[command],
          data: command === 'place' ? { customerId: 'c', storeId: 's', items: [{ foodId: 'f', name: 'F', qty: 2, price: 1000 }] } : command === 'pick' ? { riderId: 'r' } : {},
          occurredAt: new Date().toISOString(),
          at: new Date().toISOString(),
          causationId: null,
          actor: { sub: 'x', role: 'customer' },
        } as unknown as OrderEvent;
        const before: NotifierState = command === 'place' ? fold(null, event) : state!;
        expect(recipients(event, before), `${command} in a ${kind} lifecycle`).to.have.length(NOTIFICATIONS_PER_COMMAND[command]);
        state = fold(state, event);
        seen.add(command);
      });
    }
    expect([...seen].sort()).to.deep.equal(Object.keys(NOTIFICATIONS_PER_COMMAND).sort());
  });
});
