import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type AddressInfo } from 'node:net';
import { setTimeout as pause } from 'node:timers/promises';
import { expect } from 'chai';
import { PaymentDeclinedError, PaymentUnavailableError } from '../../src/errors.ts';
import { createFakeGateway, type FakeGateway } from '../../dev/fake-gateway.ts';
import { createHttpPaymentGateway, type PaymentGateway } from '../../src/payment/payment-gateway.ts';

const CLIENT_TIMEOUT_MS = 1_000;

interface Ledger {
  charges: { chargeId: string; orderId: string; amount: number; idempotencyKey: string; at: string }[];
  refunds: { refundId: string; chargeId: string; amount: number; idempotencyKey: string; at: string }[];
}

async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error('expected the promise to reject, but it resolved');
}

async function freePort(): Promise<number> {
  const probe = createServer().listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const { port } = probe.address() as AddressInfo;
  probe.close();
  await once(probe, 'close');
  return port;
}

async function waitFor(what: string, check: () => Promise<boolean>, deadlineMs = 10_000): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${deadlineMs} ms waiting for ${what}`);
    await pause(50); // poll interval, not a wait for the result
  }
}

describe('fake payment gateway and its HTTP client', () => {
  let gateway: FakeGateway;
  let client: PaymentGateway;

  const send = (method: string, path: string, body?: unknown) =>
    fetch(`${gateway.url}${path}`, {
      method,
      headers: { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  const ledger = async () => (await (await send('GET', '/_admin/ledger')).json()) as Ledger;
  const behave = async (patch: Record<string, unknown>) => {
    const res = await send('PUT', '/_admin/behaviour', patch);
    expect(res.status, await res.clone().text()).to.equal(200);
    return res.json();
  };
  const newCharge = () => ({
    orderId: `order-${randomUUID()}`,
    amount: 12_500,
    idempotencyKey: `charge-${randomUUID()}`,
  });

  before(async () => {
    gateway = await createFakeGateway({ port: 0 });
    client = createHttpPaymentGateway({ baseUrl: gateway.url, timeoutMs: CLIENT_TIMEOUT_MS });
  });
  after(() => gateway.close());
  beforeEach(async () => {
    expect((await send('DELETE', '/_admin/ledger')).status).to.equal(204);
  });

  describe('charges', () => {
    it('returns the same charge id for the same idempotency key and records it once', async () => {
      const req = newCharge();
      const first = await send('POST', '/charges', req);
      const again = await send('POST', '/charges', req);

      expect(first.status).to.equal(201);
      expect(again.status).to.equal(201);
      const { chargeId } = (await first.json()) as { chargeId: string };
      expect(await again.json()).to.deep.equal({ chargeId });
      expect(await client.charge(req)).to.deep.equal({ chargeId });

      const { charges } = await ledger();
      expect(charges).to.have.length(1);
      expect(charges[0]).to.include({ chargeId, ...req });
      expect(new Date(charges[0]!.at).toISOString()).to.equal(charges[0]!.at);
    });

    it('refuses an idempotency key reused with a different amount or order (409)', async () => {
      const req = newCharge();
      await client.charge(req);

      for (const changed of [{ ...req, amount: req.amount + 1 }, { ...req, orderId: 'another-order' }]) {
        const res = await send('POST', '/charges', changed);
        expect(res.status).to.equal(409);
        expect(((await res.json()) as { error: { code: string } }).error.code).to.equal('idempotency_key_reused');
      }
      expect((await ledger()).charges).to.have.length(1);
    });

    it('declines with 402 when told to, and the client throws PaymentDeclinedError', async () => {
      expect(await behave({ decline: true })).to.deep.equal({ latencyMs: 0, failRate: 0, decline: true, answerDelayMs: 0, failNextRefunds: 0 });

      const res = await send('POST', '/charges', newCharge());
      expect(res.status).to.equal(402);
      expect(((await res.json()) as { error: { code: string } }).error.code).to.equal('payment_declined');

      const req = newCharge();
      const err = await rejectionOf(client.charge(req));
      expect(err).to.be.instanceOf(PaymentDeclinedError);
      expect((err as PaymentDeclinedError).details).to.deep.equal({ orderId: req.orderId });
      expect((await ledger()).charges).to.deep.equal([]);
    });

    it('answers 503 when failRate is 1, and the client throws PaymentUnavailableError', async () => {
      await behave({ failRate: 1 });

      const res = await send('POST', '/charges', newCharge());
      expect(res.status).to.equal(503);
      expect(res.headers.get('retry-after')).to.equal('1');

      const err = await rejectionOf(client.charge(newCharge()));
      expect(err).to.be.instanceOf(PaymentUnavailableError);
      expect((err as PaymentUnavailableError).details).to.deep.equal({ reason: 'gateway answered 503' });
      expect((err as PaymentUnavailableError).retryAfterSeconds).to.equal(1);
      expect((await ledger()).charges).to.deep.equal([]);
    });

    it('times out when latency exceeds the client timeout; a retry with the same key is charged once', async () => {
      const impatient = createHttpPaymentGateway({ baseUrl: gateway.url, timeoutMs: 100 });
      await behave({ latencyMs: 2_000 });
      const req = newCharge();

      const startedAt = Date.now();
      const err = await rejectionOf(impatient.charge(req));
      expect(err).to.be.instanceOf(PaymentUnavailableError);
      expect((err as PaymentUnavailableError).details).to.deep.equal({ reason: 'timed out after 100 ms' });
      expect(Date.now() - startedAt).to.be.below(1_500);

      await behave({ latencyMs: 0 });
      const { chargeId } = await client.charge(req);
      expect((await ledger()).charges.map((c) => c.chargeId)).to.deep.equal([chargeId]);
    });

    it('answers 400 naming the offending field', async () => {
      const res = await send('POST', '/charges', { ...newCharge(), amount: -5 });
      expect(res.status).to.equal(400);
      const { error } = (await res.json()) as { error: { code: string; message: string; details: { issues: { path: string }[] } } };
      expect(error.code).to.equal('invalid_body');
      expect(error.message).to.match(/^amount: /);
      expect(error.details.issues.map((i) => i.path)).to.deep.equal(['amount']);

      const notJson = await fetch(`${gateway.url}/charges`, { method: 'POST', body: '{"orderId":' });
      expect(notJson.status).to.equal(400);
      expect((await ledger()).charges).to.deep.equal([]);
    });
  });

  describe('refunds', () => {
    it('returns the same refund id for the same idempotency key and records it once', async () => {
      const { chargeId } = await client.charge(newCharge());
      const req = { chargeId, amount: 12_500, idempotencyKey: `refund-${randomUUID()}` };

      const first = await client.refund(req);
      const again = await client.refund(req);

      expect(again).to.deep.equal(first);
      const { refunds } = await ledger();
      expect(refunds).to.have.length(1);
      expect(refunds[0]).to.include({ ...first, ...req });
    });

    it('answers 404 for an unknown charge, which the client reports as unavailable with the status', async () => {
      const req = { chargeId: `ch_${randomUUID()}`, amount: 100, idempotencyKey: `refund-${randomUUID()}` };

      const res = await send('POST', '/refunds', req);
      expect(res.status).to.equal(404);

      const err = await rejectionOf(client.refund(req));
      expect(err).to.be.instanceOf(PaymentUnavailableError);
      expect((err as PaymentUnavailableError).details).to.deep.equal({
        reason: 'unexpected status 404 (charge_not_found)',
      });
    });

    it('fails the next refunds of its own charges only when told to, and counts refund calls by charge', async () => {
      const { chargeId } = await client.charge(newCharge());
      const stranger = { chargeId: `ch_${randomUUID()}`, amount: 100, idempotencyKey: `refund-${randomUUID()}` };
      await behave({ failNextRefunds: 2 });
      try {
        // A refund of a charge it never made (one owed since before a reset) is 404, and uses none of the failures.
        expect((await send('POST', '/refunds', stranger)).status).to.equal(404);
        const req = { chargeId, amount: 12_500, idempotencyKey: `refund-${randomUUID()}` };
        expect((await send('POST', '/refunds', req)).status).to.equal(503);
        expect((await send('POST', '/refunds', req)).status).to.equal(503);
        expect((await send('POST', '/refunds', req)).status).to.equal(201);
        expect((await ledger()).refunds.map((r) => r.idempotencyKey)).to.deep.equal([req.idempotencyKey]);
        const stats = (await (await send('GET', '/_admin/stats')).json()) as { refunds: number; refundsByCharge: Record<string, number> };
        expect(stats.refunds).to.equal(4);
        expect(stats.refundsByCharge).to.deep.equal({ [chargeId]: 3, [stranger.chargeId]: 1 });
      } finally {
        await behave({ failNextRefunds: 0 });
      }
    });

    it('answers 422 for a refund larger than what is left of the charge', async () => {
      const { chargeId } = await client.charge(newCharge());
      await client.refund({ chargeId, amount: 10_000, idempotencyKey: `refund-${randomUUID()}` });

      const res = await send('POST', '/refunds', { chargeId, amount: 2_501, idempotencyKey: `refund-${randomUUID()}` });
      expect(res.status).to.equal(422);
      expect(await res.json()).to.deep.include({
        error: {
          code: 'refund_exceeds_charge',
          message: 'only 2500 can still be refunded',
          details: { chargeId, refundable: 2_500 },
        },
      });
      expect((await ledger()).refunds).to.have.length(1);
    });
  });

  describe('admin', () => {
    it('rejects a behaviour outside its bounds and keeps the current one', async () => {
      await behave({ latencyMs: 5 });
      const res = await send('PUT', '/_admin/behaviour', { failRate: 1.5 });
      expect(res.status).to.equal(400);
      expect(((await res.json()) as { error: { message: string } }).error.message).to.match(/^failRate: /);
      expect(await behave({})).to.deep.equal({ latencyMs: 5, failRate: 0, decline: false, answerDelayMs: 0, failNextRefunds: 0 });
    });
  });

  describe('client transport', () => {
    it('reports a refused connection as unavailable', async () => {
      const nobody = createHttpPaymentGateway({ baseUrl: `http://127.0.0.1:${await freePort()}`, timeoutMs: 1_000 });
      const err = await rejectionOf(nobody.charge(newCharge()));
      expect(err).to.be.instanceOf(PaymentUnavailableError);
      expect((err as PaymentUnavailableError).details).to.deep.equal({ reason: 'network error (ECONNREFUSED)' });
    });
  });

  describe('npm run payment-gateway', () => {
    let child: ChildProcess | undefined;
    afterEach(() => {
      if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      child = undefined;
    });

    const start = (port: string) => {
      const proc = spawn(process.execPath, ['--import', 'tsx', 'scripts/payment-gateway.ts'], {
        env: { ...process.env, PAYMENT_GATEWAY_PORT: port },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      proc.stdout.on('data', (chunk) => (output += chunk));
      proc.stderr.on('data', (chunk) => (output += chunk));
      const exited = once(proc, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
      child = proc;
      return { proc, exited, output: () => output };
    };

    it('serves on PAYMENT_GATEWAY_PORT and exits 0 on SIGTERM', async () => {
      const port = await freePort();
      const { proc, exited, output } = start(String(port));

      await waitFor(`the gateway on port ${port}`, async () => {
        if (proc.exitCode !== null) throw new Error(`gateway exited early (${proc.exitCode})`);
        const res = await fetch(`http://127.0.0.1:${port}/_admin/ledger`).catch(() => undefined);
        return res?.status === 200;
      }).catch((err: Error) => {
        throw new Error(`${err.message}; output:\n${output()}`);
      });
      const listening = output()
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as { port?: number });
      expect(listening.some((l) => l.port === port), output()).to.equal(true);

      proc.kill('SIGTERM');
      const [code, signal] = await exited;
      expect({ code, signal }, output()).to.deep.equal({ code: 0, signal: null });
    });

    it('refuses an invalid PAYMENT_GATEWAY_PORT with a clear message and exit code 1', async () => {
      const { exited, output } = start('70000');
      const [code] = await exited;
      expect(code).to.equal(1);
      expect(output()).to.include('PAYMENT_GATEWAY_PORT must be at most 65535');
    });
  });
});
