import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { sign, verify } from '../../src/notifications/signature.ts';
import { webhookTransport, type NotificationMessage } from '../../src/notifications/transports.ts';
import { freePort } from '../support/service-process.ts';
import { eventually, startSystem, type TestSystem } from '../support/system.ts';
import { startWebhookReceiver, type ReceivedNotification, type ReceivedRequest } from '../support/webhook.ts';

const SECRET = 'whsec-unit-0a9f8e7d6c5b4a39';
const OTHER = 'whsec-unit-other-1b2c3d4e5f60';
const BODY = '{"notificationId":"n-1","text":"Your order was paid"}';

/** The v1 value the README tells a receiver to compute, written out here without the module under test. */
const hmacHex = (secret: string, t: number | string, body: string | Buffer) => createHmac('sha256', secret).update(`${t}.`).update(body).digest('hex');

/** The header's parts: its timestamp and its v1 values. */
function parse(header: string): { t: number; v1: string[] } {
  const parts = header.split(',').map((p) => p.split('=') as [string, string]);
  return { t: Number(parts.find(([k]) => k === 't')![1]), v1: parts.filter(([k]) => k === 'v1').map(([, v]) => v) };
}

const at = (unixSeconds: number) => new Date(unixSeconds * 1000);
const T = 1_790_000_000;

describe('webhook signatures: sign and verify', () => {
  it('signs t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">, which the right secret verifies', () => {
    const header = sign(BODY, SECRET, { now: new Date(T * 1000 + 999) });
    expect(header).to.equal(`t=${T},v1=${hmacHex(SECRET, T, BODY)}`);
    expect(verify(header, BODY, SECRET, { now: at(T) })).to.deep.equal({ ok: true, timestamp: T });
    // The raw bytes or the same text: the same signature.
    expect(sign(Buffer.from(BODY), SECRET, { now: at(T) })).to.equal(header);
    expect(verify(header, Buffer.from(BODY), [SECRET], { now: at(T) }).ok).to.equal(true);
  });

  it('refuses another secret, a changed body (re-serialized JSON included) and a changed timestamp', () => {
    const header = sign(BODY, SECRET, { now: at(T) });
    expect(verify(header, BODY, OTHER, { now: at(T) })).to.deep.equal({ ok: false, reason: 'mismatch' });
    expect(verify(header, BODY.replace('paid', 'Paid'), SECRET, { now: at(T) })).to.deep.equal({ ok: false, reason: 'mismatch' });
    expect(verify(header, `${BODY}\n`, SECRET, { now: at(T) })).to.deep.equal({ ok: false, reason: 'mismatch' });
    // The same message, parsed and serialized again with other spacing: not the bytes that were signed.
    expect(verify(header, JSON.stringify(JSON.parse(BODY), null, 1), SECRET, { now: at(T) })).to.deep.equal({ ok: false, reason: 'mismatch' });
    // The timestamp is part of what is signed: moving it forward (to pass the tolerance) breaks the signature.
    const replayed = header.replace(`t=${T}`, `t=${T + 3600}`);
    expect(verify(replayed, BODY, SECRET, { now: at(T + 3600) })).to.deep.equal({ ok: false, reason: 'mismatch' });
  });

  it('refuses a timestamp further than the tolerance from now, in the past or the future', () => {
    const header = sign(BODY, SECRET, { now: at(T) });
    expect(verify(header, BODY, SECRET, { now: at(T + 300) }).ok, 'at the default 300 s').to.equal(true);
    expect(verify(header, BODY, SECRET, { now: at(T - 300) }).ok, 'clock behind by 300 s').to.equal(true);
    expect(verify(header, BODY, SECRET, { now: at(T + 301) })).to.deep.equal({ ok: false, reason: 'expired' });
    expect(verify(header, BODY, SECRET, { now: at(T - 301) })).to.deep.equal({ ok: false, reason: 'expired' });
    expect(verify(header, BODY, SECRET, { now: at(T + 61), toleranceSeconds: 60 })).to.deep.equal({ ok: false, reason: 'expired' });
    expect(verify(header, BODY, SECRET, { now: at(T + 60), toleranceSeconds: 60 }).ok).to.equal(true);
    // Now by default: a header signed a moment ago verifies, one from an hour ago does not.
    expect(verify(sign(BODY, SECRET), BODY, SECRET).ok).to.equal(true);
    expect(verify(sign(BODY, SECRET, { now: new Date(Date.now() - 3600_000) }), BODY, SECRET)).to.deep.equal({ ok: false, reason: 'expired' });
  });

  it('refuses a missing or garbled header', () => {
    const v1 = hmacHex(SECRET, T, BODY);
    expect(verify(undefined, BODY, SECRET, { now: at(T) })).to.deep.equal({ ok: false, reason: 'missing' });
    expect(verify(null, BODY, SECRET, { now: at(T) })).to.deep.equal({ ok: false, reason: 'missing' });
    expect(verify('', BODY, SECRET, { now: at(T) })).to.deep.equal({ ok: false, reason: 'missing' });
    for (const garbled of [
      'garbage',
      v1, // the bare digest
      `v1=${v1}`, // no timestamp
      `t=${T}`, // no signature
      `t=${T},v0=${v1}`, // only a scheme it does not know
      `t=abc,v1=${v1}`,
      `t=-${T},v1=${v1}`,
      `t=${T}.5,v1=${v1}`,
      `t=${T},t=${T},v1=${v1}`,
      `t=${T},v1=${v1.slice(0, 63)}`,
      `t=${T},v1=${v1}00`,
      `t=${T},v1=${v1.toUpperCase()}`,
      `t=${T},v1=${'z'.repeat(64)}`,
      `t=${T},,v1=${v1}`,
      `t=${T};v1=${v1}`,
    ]) {
      expect(verify(garbled, BODY, SECRET, { now: at(T) }), garbled).to.deep.equal({ ok: false, reason: 'malformed' });
    }
  });

  it('with several secrets (a rotation) signs once per secret, the current first, and either secret verifies', () => {
    const header = sign(BODY, [SECRET, OTHER], { now: at(T) });
    expect(header).to.equal(`t=${T},v1=${hmacHex(SECRET, T, BODY)},v1=${hmacHex(OTHER, T, BODY)}`);
    expect(verify(header, BODY, SECRET, { now: at(T) }).ok, 'the new secret').to.equal(true);
    expect(verify(header, BODY, OTHER, { now: at(T) }).ok, 'the old secret').to.equal(true);
    expect(verify(header, BODY, ['whsec-unit-unrelated-00000', OTHER], { now: at(T) }).ok, 'a receiver accepting either').to.equal(true);
    expect(verify(header, BODY, 'whsec-unit-unrelated-00000', { now: at(T) })).to.deep.equal({ ok: false, reason: 'mismatch' });
    // Entries of other schemes are skipped, not trusted.
    expect(verify(`t=${T},v0=${'0'.repeat(64)},v1=${hmacHex(SECRET, T, BODY)}`, BODY, SECRET, { now: at(T) }).ok).to.equal(true);
    expect(() => sign(BODY, [])).to.throw(/at least one secret/);
  });
});

describe('webhook transport: the signature header', function () {
  this.timeout(20_000);
  const message = (n: number): NotificationMessage => ({
    notificationId: `00000000-0000-8000-8000-00000000000${n}`,
    eventId: '00000000-0000-4000-8000-000000000001',
    orderId: '00000000-0000-4000-8000-000000000002',
    status: 'paid',
    to: { role: 'customer', id: 'c-1' },
    text: 'Your order was paid — 결제 완료',
  });

  it('is absent without secrets, and signs the exact bytes of one message or of a batch with them', async () => {
    const hook = await startWebhookReceiver({ secrets: null });
    const plain = webhookTransport(hook.url, { timeoutMs: 2000, concurrency: 1 });
    const signed = webhookTransport(hook.url, { timeoutMs: 2000, concurrency: 1, secrets: [SECRET, OTHER] });
    const batched = webhookTransport(hook.url, { timeoutMs: 2000, concurrency: 1, secrets: [SECRET], batchMax: 10 });
    try {
      await plain.send(message(1));
      await signed.send(message(2));
      await Promise.all([batched.send(message(3)), batched.send(message(4))]);
      expect(hook.requests).to.have.length(3);
      const [unsigned, one, batch] = hook.requests as [ReceivedRequest, ReceivedRequest, ReceivedRequest];
      expect(unsigned.signature).to.equal(undefined);
      expect(one.signature).to.match(/^t=\d+,v1=[0-9a-f]{64},v1=[0-9a-f]{64}$/);
      const { t, v1 } = parse(one.signature!);
      expect(v1).to.deep.equal([hmacHex(SECRET, t, one.raw), hmacHex(OTHER, t, one.raw)]);
      expect(Math.abs(one.at.getTime() / 1000 - t)).to.be.below(2);
      expect(verify(one.signature, one.raw, OTHER, { now: one.at }).ok).to.equal(true);
      expect(batch.body).to.have.length(2);
      expect(batch.signature).to.match(/^t=\d+,v1=[0-9a-f]{64}$/);
      expect(verify(batch.signature, batch.raw, SECRET, { now: batch.at }).ok).to.equal(true);
    } finally {
      await Promise.all([plain.close?.(), signed.close?.(), batched.close?.()]);
      await hook.close();
    }
  });
});

describe('signed webhook deliveries, end to end', function () {
  this.timeout(60_000);
  // A rotation under way: the service signs with the new secret and the old one.
  const CURRENT = 'whsec-e2e-current-7f3a9c1d5e2b8046';
  const PREVIOUS = 'whsec-e2e-previous-2c8e4a6f0b1d3957';
  let hook: Awaited<ReturnType<typeof startWebhookReceiver>>;
  let sys: TestSystem;

  before(async () => {
    hook = await startWebhookReceiver({ secrets: CURRENT });
    sys = await startSystem({ name: 'notify_signed', env: { NOTIFY_WEBHOOK_URL: hook.url, NOTIFY_WEBHOOK_SECRET: `${CURRENT}, ${PREVIOUS}` } });
  });
  after(async () => {
    await sys?.close();
    await hook?.close();
  });

  const notificationIds = async (orderId: string) =>
    (await sys.runtime.pg.query<{ id: string }>('SELECT id FROM notifications WHERE order_id = $1', [orderId])).map((r) => r.id).sort();
  const requestsFor = (id: string) => hook.requests.filter((r) => (r.body as ReceivedNotification).notificationId === id);

  it("signs every delivery of an order's life with both secrets of the rotation; the receiver verifies each", async () => {
    const p = await sys.newParties();
    const order = await sys.placeOrder(p);
    await sys.drive(p, order.id, ['pay', 'accept', 'start-cooking', 'finish-cooking', 'pick', 'confirm-delivery']);
    const ids = await eventually(async () => {
      const all = await notificationIds(order.id);
      return all.length === 9 && all.every((id) => hook.accepted.some((m) => m.notificationId === id)) && all;
    }, "every notification of the order's life at the receiver", 20_000);

    const requests = ids.flatMap(requestsFor);
    expect(requests.length).to.be.at.least(ids.length);
    for (const r of requests) {
      const id = (r.body as ReceivedNotification).notificationId;
      expect(r.verification, id).to.deep.include({ ok: true });
      expect(r.answered, id).to.equal(204);
      const { t, v1 } = parse(r.signature!);
      // Computed here, apart from the module that signs: one v1 per secret, the current one first.
      expect(v1, id).to.deep.equal([hmacHex(CURRENT, t, r.raw), hmacHex(PREVIOUS, t, r.raw)]);
      expect(verify(r.signature, r.raw, PREVIOUS, { now: r.at }).ok, `${id} with the previous secret`).to.equal(true);
    }
    // Only verified requests were taken: each notification of the order arrived, verified.
    expect(ids.filter((id) => !requestsFor(id).some((r) => r.verification?.ok))).to.deep.equal([]);
  });

  it('a receiver with another secret refuses every delivery (401); each retry is signed afresh, the failure is listed, and it is delivered once the secret is right', async () => {
    const p = await sys.newParties();
    hook.setSecrets('whsec-e2e-not-the-service-secret-0');
    try {
      const order = await sys.placeOrder(p);
      const [id] = await eventually(async () => {
        const all = await notificationIds(order.id);
        return all.length === 1 && all;
      }, 'the notification of the placed order');
      type Failed = { work: { kind: string; key: string; attempts: number; lastError: string }[] };
      const failed = async () => ((await sys.request<Failed>('GET', '/admin/failed-events', { token: p.admin })).body.work.find((w) => w.key === id));
      const listed = await eventually(async () => ((await failed())?.attempts ?? 0) >= 3 && failed(), 'the notification listed as failing', 20_000);
      expect(listed).to.include({ kind: 'notification', lastError: 'webhook answered 401' });

      const attempts = requestsFor(id!);
      expect(attempts.length).to.be.at.least(3);
      for (const r of attempts) {
        expect(r.answered).to.equal(401);
        expect(r.verification).to.deep.equal({ ok: false, reason: 'mismatch' });
        // Signed when it was sent, not when the message was first tried.
        const { t } = parse(r.signature!);
        expect(Math.abs(r.at.getTime() / 1000 - t)).to.be.below(2);
        expect(verify(r.signature, r.raw, CURRENT, { now: r.at }).ok).to.equal(true);
      }
      // The backoff spreads three attempts over more than a second: their timestamps differ.
      expect(new Set(attempts.map((r) => parse(r.signature!).t)).size).to.be.greaterThan(1);
      expect(hook.accepted.some((m) => m.notificationId === id)).to.equal(false);

      hook.setSecrets(PREVIOUS);
      await eventually(async () => hook.accepted.some((m) => m.notificationId === id), 'the notification delivered once the receiver has a secret of the service', 20_000);
      await eventually(async () => (await failed()) === undefined, 'the notification gone from the failing list');
    } finally {
      hook.setSecrets(CURRENT);
    }
  });
});

/** The README's receiver: the `js` block of its section "Signed webhooks". */
function readmeReceiver(): string {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const section = readme.slice(readme.indexOf('### Signed webhooks'));
  const block = /```js\n([\s\S]*?)```/.exec(section)?.[1];
  if (!block) throw new Error('README.md has no js block under "Signed webhooks"');
  return block;
}

describe("the README's webhook receiver, run as written", function () {
  this.timeout(20_000);
  const NEW = 'whsec-readme-new-4d2f8a1c9e7b3056';
  const OLD = 'whsec-readme-old-8b6e0d2a4c1f7593';
  let dir: string;
  let url: string;
  let child: ReturnType<typeof spawn> | undefined;
  let output = '';

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'baedal-readme-receiver-'));
    writeFileSync(join(dir, 'receiver.mjs'), readmeReceiver());
    const port = await freePort();
    url = `http://127.0.0.1:${port}/hook`;
    // The receiver holds the old secret only: the service in the middle of a rotation signs with both.
    child = spawn(process.execPath, [join(dir, 'receiver.mjs')], { env: { ...process.env, PORT: String(port), BAEDAL_WEBHOOK_SECRETS: OLD }, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    await eventually(async () => {
      if (child!.exitCode !== null) throw new Error(`the receiver exited: ${output}`);
      return (await fetch(url, { method: 'POST', body: '{}' })).status === 401;
    }, 'the README receiver to listen');
  });
  after(() => {
    child?.kill();
    rmSync(dir, { recursive: true, force: true });
  });

  const message: NotificationMessage = {
    notificationId: '00000000-0000-8000-8000-000000000009',
    eventId: '00000000-0000-4000-8000-000000000001',
    orderId: '00000000-0000-4000-8000-000000000002',
    status: 'paid',
    to: { role: 'store', id: 's-1' },
    text: 'Order paid — 주문 결제됨',
  };
  const post = (body: string, signature?: string) =>
    fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...(signature && { 'baedal-signature': signature }) }, body }).then((r) => r.status);

  it("takes the service's signed requests, one message or a batch, and refuses unsigned, forged, altered and replayed ones", async () => {
    const transports = {
      rotating: webhookTransport(url, { timeoutMs: 2000, concurrency: 1, secrets: [NEW, OLD] }),
      batch: webhookTransport(url, { timeoutMs: 2000, concurrency: 1, secrets: [NEW, OLD], batchMax: 10 }),
      otherSecret: webhookTransport(url, { timeoutMs: 2000, concurrency: 1, secrets: [NEW] }),
      unsigned: webhookTransport(url, { timeoutMs: 2000, concurrency: 1 }),
    };
    try {
      await transports.rotating.send(message);
      await Promise.all([transports.batch.send(message), transports.batch.send({ ...message, notificationId: '00000000-0000-8000-8000-00000000000a' })]);
      let refused = await transports.otherSecret.send(message).then(() => 'delivered', (err: Error) => err.message);
      expect(refused, 'signed with a secret the receiver does not hold').to.equal('webhook answered 401');
      refused = await transports.unsigned.send(message).then(() => 'delivered', (err: Error) => err.message);
      expect(refused, 'unsigned').to.equal('webhook answered 401');
    } finally {
      await Promise.all(Object.values(transports).map((t) => t.close?.()));
    }
    const body = JSON.stringify(message);
    expect(await post(body, sign(body, OLD)), 'signed now').to.equal(204);
    expect(await post(JSON.stringify(message, null, 2), sign(body, OLD)), 're-serialized').to.equal(401);
    expect(await post(body.replace('paid', 'cancelled'), sign(body, OLD)), 'altered').to.equal(401);
    expect(await post(body, sign(body, OLD, { now: new Date(Date.now() - 301_000) })), 'sent again 5 minutes later').to.equal(401);
    expect(await post(body, sign(body, OLD, { now: new Date(Date.now() + 301_000) })), 'from a clock 5 minutes ahead').to.equal(401);
    expect(await post(body, sign(body, OLD, { now: new Date(Date.now() - 60_000) })), 'a clock a minute behind').to.equal(204);
    expect(await post(body, 'garbage'), 'garbled').to.equal(401);
    expect(output, 'nothing on its stderr or stdout').to.equal('');
  });
});
