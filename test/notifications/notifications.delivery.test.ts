import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { runClaimed, type WorkKind } from '../../src/actors/work.ts';
import { createLogger } from '../../src/log.ts';
import type { NotificationRow } from '../../src/notifications/delivery.work.ts';
import { eventually, startSystem, type Parties, type TestSystem } from '../support/system.ts';
import { startWebhookReceiver, type ReceivedNotification } from '../support/webhook.ts';

type Receiver = Awaited<ReturnType<typeof startWebhookReceiver>>;

/** Places `n` orders at once and pays them at once: 3 notifications each (placed, paid to the customer and the store). */
async function burst(sys: TestSystem, p: Parties, n: number): Promise<string[]> {
  const orders = await Promise.all(Array.from({ length: n }, () => sys.placeOrder(p)));
  await Promise.all(orders.map((o) => sys.drive(p, o.id, ['pay'])));
  return orders.map((o) => o.id);
}

/** The ids of the orders' notifications, once there are `count` of them (the notifier writes them a moment after each command). */
async function owedIds(sys: TestSystem, orderIds: string[], count: number): Promise<string[]> {
  return eventually(async () => {
    const rows = await sys.runtime.pg.query<{ id: string }>('SELECT id FROM notifications WHERE order_id = ANY($1::uuid[])', [orderIds]);
    return rows.length === count && rows.map((r) => r.id).sort();
  }, `${count} notifications written`);
}

const idsOf = (messages: ReceivedNotification[]) => messages.map((m) => m.notificationId).sort();

describe('notification delivery: pooled connections, bounded concurrency, batched bookkeeping', function () {
  this.timeout(60_000);

  describe('one notification per POST (the default)', () => {
    let hook: Receiver;
    let sys: TestSystem;
    before(async () => {
      // Each answer held 25 ms, so requests overlap and the bound shows.
      hook = await startWebhookReceiver({ holdMs: 25 });
      sys = await startSystem({ name: 'notify_pool', env: { NOTIFY_WEBHOOK_URL: hook.url, NOTIFY_CONCURRENCY: '2' } });
    });
    after(async () => {
      await sys?.close();
      await hook?.close();
    });

    it('sends each on kept-alive connections, at most NOTIFY_CONCURRENCY at once, with its id as Idempotency-Key', async () => {
      const p = await sys.newParties();
      const orderIds = await burst(sys, p, 10);
      const expected = await owedIds(sys, orderIds, 30);
      await eventually(async () => hook.accepted.length >= 30, 'the 30 notifications at the webhook');

      expect(idsOf(hook.accepted), 'each once').to.deep.equal(expected);
      expect(hook.maxInFlight(), 'requests in flight at once').to.be.at.most(2);
      expect(hook.sockets(), 'connections opened').to.be.at.most(2);
      expect(hook.requests).to.have.length(30);
      for (const r of hook.requests) {
        expect(Array.isArray(r.body), 'one message per POST').to.equal(false);
        expect(r.idempotencyKey).to.equal((r.body as ReceivedNotification).notificationId);
        expect(r.contentType).to.equal('application/json');
        expect(Object.keys(r.body).sort()).to.deep.equal(['eventId', 'notificationId', 'orderId', 'status', 'text', 'to']);
      }
    });

    it('records the deliveries of a run in one statement, and its retries in one', async () => {
      const kind = sys.runtime.kinds.find((k) => k.name === 'notification') as WorkKind<NotificationRow>;
      const log = createLogger('silent');
      const insertLeased = (n: number) =>
        sys.runtime.pg.query<NotificationRow>(
          `INSERT INTO notifications (id, event_id, order_id, seq, to_role, to_id, status, text, created_at, due_at, lease_until, attempts)
           SELECT gen_random_uuid(), gen_random_uuid(), $1::uuid, i, 'customer', 'customer-bookkeeping', 'paid', 'bookkeeping ' || i, now(), now(),
                  now() + interval '1 minute', 1
           FROM generate_series(1, $2::int) AS i RETURNING *`,
          [randomUUID(), n],
        );
      const statements: { text: string; params: readonly unknown[] }[] = [];
      const previous = sys.runtime.pg.onStatement;
      sys.runtime.pg.onStatement = (text, params) => {
        statements.push({ text, params });
        previous?.(text, params);
      };
      // The statements that touched these rows (whatever else the runtime does meanwhile).
      let ours = new Set<string>();
      // On their own, or carried by an event batch's statement (see DeliveredMarks).
      const notificationUpdates = () =>
        statements.filter((s) => /UPDATE notifications/.test(s.text) && s.params.some((v) => Array.isArray(v) && (v as string[]).some((id) => ours.has(id))));
      try {
        const delivered = await insertLeased(30);
        ours = new Set(delivered.map((r) => r.id));
        await runClaimed(kind, delivered, { prompt: sys.runtime.work, log });
        expect(notificationUpdates(), 'one statement records 30 deliveries').to.have.length(1);
        const [done] = await sys.runtime.pg.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM notifications WHERE id = ANY($1::uuid[]) AND delivered_at IS NOT NULL AND due_at IS NULL AND transport = 'webhook'`,
          [delivered.map((r) => r.id)],
        );
        expect(done!.n).to.equal(30);

        hook.setDown(true);
        const failing = await insertLeased(30);
        ours = new Set(failing.map((r) => r.id));
        await runClaimed(kind, failing, { prompt: sys.runtime.work, log });
        expect(notificationUpdates(), 'one statement records 30 retries').to.have.length(1);
        const [retried] = await sys.runtime.pg.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM notifications WHERE id = ANY($1::uuid[])
             AND delivered_at IS NULL AND due_at > now() AND lease_until IS NULL AND last_error = 'webhook answered 503'`,
          [failing.map((r) => r.id)],
        );
        expect(retried!.n).to.equal(30);
        hook.setDown(false);
        // Still owed, so the retries deliver them.
        await eventually(async () => {
          const [left] = await sys.runtime.pg.query<{ n: number }>('SELECT count(*)::int AS n FROM notifications WHERE id = ANY($1::uuid[]) AND due_at IS NOT NULL', [
            failing.map((r) => r.id),
          ]);
          return left!.n === 0;
        }, 'the retried notifications delivered');
      } finally {
        hook.setDown(false);
        sys.runtime.pg.onStatement = previous;
      }
    });
  });

  describe('NOTIFY_BATCH=1', () => {
    let hook: Receiver;
    let sys: TestSystem;
    before(async () => {
      hook = await startWebhookReceiver({ holdMs: 25 });
      sys = await startSystem({
        name: 'notify_batch',
        env: { NOTIFY_WEBHOOK_URL: hook.url, NOTIFY_BATCH: '1', NOTIFY_BATCH_MAX: '4', NOTIFY_CONCURRENCY: '1' },
      });
    });
    after(async () => {
      await sys?.close();
      await hook?.close();
    });

    it('one POST carries a JSON array of the notifications waiting (at most NOTIFY_BATCH_MAX), each delivered once', async () => {
      const p = await sys.newParties();
      const orderIds = await burst(sys, p, 10);
      const expected = await owedIds(sys, orderIds, 30);
      await eventually(async () => hook.accepted.length >= expected.length, 'every notification at the webhook');

      expect(idsOf(hook.accepted), 'each once').to.deep.equal(expected);
      const sizes = hook.requests.map((r) => (Array.isArray(r.body) ? r.body.length : 0));
      expect(sizes.every((n) => n >= 1 && n <= 4), `batch sizes ${sizes.join(',')}`).to.equal(true);
      expect(Math.max(...sizes), 'notifications that waited together travel together').to.be.greaterThan(1);
      expect(hook.requests.length).to.be.lessThan(expected.length);
      expect(hook.maxInFlight()).to.equal(1);
      for (const r of hook.requests) {
        expect(r.idempotencyKey).to.match(/^batch-[0-9a-f]{32}$/);
        // The whole array is signed, as sent (the receiver checked it against the raw bytes).
        expect(r.signature).to.match(/^t=\d+,v1=[0-9a-f]{64}$/);
        expect(r.verification).to.deep.include({ ok: true });
        for (const m of r.body as ReceivedNotification[]) expect(Object.keys(m).sort()).to.deep.equal(['eventId', 'notificationId', 'orderId', 'status', 'text', 'to']);
      }
      const feed = await eventually(async () => {
        const all = (await sys.request('GET', '/notifications', { token: p.store })).body as { delivery: { state: string; transport: string } }[];
        return all.length === 10 && all.every((n) => n.delivery.state === 'delivered') && all;
      }, "the store's deliveries recorded");
      expect(feed.every((n) => n.delivery.transport === 'webhook')).to.equal(true);
    });
  });

  describe('a webhook that keeps failing', () => {
    let hook: Receiver;
    let sys: TestSystem;
    before(async () => {
      hook = await startWebhookReceiver();
      sys = await startSystem({ name: 'notify_failing', env: { NOTIFY_WEBHOOK_URL: hook.url, NOTIFY_RETRY_MAX_MS: '300' } });
    });
    after(async () => {
      await sys?.close();
      await hook?.close();
    });

    it('is retried with the same Idempotency-Key, shows in GET /admin/failed-events, and delivers once it is back', async () => {
      const p = await sys.newParties();
      hook.setDown(true);
      const order = await sys.placeOrder(p);
      const [id] = await owedIds(sys, [order.id], 1);
      type Failed = { work: { kind: string; key: string; attempts: number; lastError: string }[] };
      const failed = async () => ((await sys.request('GET', '/admin/failed-events', { token: p.admin })).body as Failed).work.find((w) => w.key === id);
      const listed = await eventually(async () => ((await failed())?.attempts ?? 0) >= 3 && failed(), 'the notification listed as failing', 20_000);
      expect(listed).to.include({ kind: 'notification', key: id });
      expect(listed!.lastError).to.equal('webhook answered 503');
      const attempts = hook.requests.filter((r) => (r.body as ReceivedNotification).notificationId === id);
      expect(attempts.length).to.be.at.least(3);
      expect(new Set(attempts.map((r) => r.idempotencyKey))).to.deep.equal(new Set([id]));

      hook.setDown(false);
      await eventually(async () => hook.accepted.some((m) => m.notificationId === id), 'the notification delivered once the webhook is back', 20_000);
      await eventually(async () => (await failed()) === undefined, 'the notification gone from the failing list');
      expect(hook.accepted.filter((m) => m.notificationId === id)).to.have.length(1);
    });
  });

  describe('a webhook that answers too late', () => {
    let hook: Receiver;
    let sys: TestSystem;
    before(async () => {
      // Answers after 3 s; the service gives each request 400 ms.
      hook = await startWebhookReceiver({ holdMs: 3000 });
      sys = await startSystem({ name: 'notify_slow', env: { NOTIFY_WEBHOOK_URL: hook.url, NOTIFY_TIMEOUT_MS: '400', NOTIFY_RETRY_MAX_MS: '300' } });
    });
    after(async () => {
      await sys?.close();
      await hook?.close();
    });

    it('abandons a request at NOTIFY_TIMEOUT_MS, times it as a timeout, and tries again', async () => {
      const p = await sys.newParties();
      const order = await sys.placeOrder(p);
      const [id] = await owedIds(sys, [order.id], 1);
      const row = await eventually(async () => {
        const [r] = await sys.runtime.pg.query<{ attempts: number; last_error: string | null; delivered_at: Date | null }>(
          'SELECT attempts, last_error, delivered_at FROM notifications WHERE id = $1',
          [id],
        );
        return r && r.attempts >= 2 && r;
      }, 'a second attempt after the first timed out');
      expect(row.last_error).to.equal('webhook did not answer within 400 ms');
      expect(row.delivered_at).to.equal(null);
      const text = (await sys.request<string>('GET', '/metrics')).body;
      const series = (name: string) => Number(new RegExp(`^${name}\\{outcome="timeout"\\} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);
      const count = series('baedal_notification_delivery_duration_seconds_count');
      expect(count).to.be.at.least(1);
      // Each abandoned at 400–500 ms (deadlines are shared per tenth of a second), not at the receiver's 3 s.
      const mean = series('baedal_notification_delivery_duration_seconds_sum') / count;
      expect(mean).to.be.within(0.38, 1.5);
    });
  });
});
