import { expect } from 'chai';
import { PaymentDeclinedError, PaymentUnavailableError } from '../../src/errors.ts';
import type { PaymentGateway } from '../../src/payment/payment-gateway.ts';
import { createResilientGateway } from '../../src/payment/resilient-gateway.ts';
import { eventually } from '../support/system.ts';

/** The breaker as `pay` sees it: pay fails fast on "open" without calling, so "open" must end by itself. */
describe('payment circuit breaker, as callers read it', () => {
  /** A gateway that fails while `down`, counting the calls that reach it. */
  function flakyGateway() {
    const g = { down: true, calls: 0 };
    const inner: PaymentGateway = {
      async charge(req) {
        g.calls += 1;
        if (g.down) throw new PaymentUnavailableError('gateway answered 503');
        return { chargeId: `ch-${req.idempotencyKey}` };
      },
      async refund() {
        throw new Error('not used');
      },
      async lookup() {
        throw new Error('not used');
      },
    };
    return { g, inner };
  }

  it('reads half-open once the open time is over, with no call made meanwhile, so the next pay is the probe that closes it', async () => {
    const { g, inner } = flakyGateway();
    const gateway = createResilientGateway(inner, { timeoutMs: 1000, retries: 0, breakerFailures: 2, halfOpenAfterMs: 300 });
    for (let i = 0; i < 2; i++) {
      const err = await gateway.charge({ orderId: 'o', amount: 1, idempotencyKey: `k${i}` }).catch((e: unknown) => e);
      expect(err).to.be.instanceOf(PaymentUnavailableError);
    }
    expect(gateway.breakerState()).to.equal('open');
    const callsWhileOpen = g.calls;
    // Like pay: never call while it reads "open".
    await eventually(async () => gateway.breakerState() !== 'open', 'the breaker to read half-open by itself', 3000);
    expect(gateway.breakerState()).to.equal('half-open');
    expect(g.calls, 'no call was needed to get there').to.equal(callsWhileOpen);
    g.down = false;
    expect(await gateway.charge({ orderId: 'o', amount: 1, idempotencyKey: 'probe' })).to.deep.equal({ chargeId: 'ch-probe' });
    expect(gateway.breakerState()).to.equal('closed');
  });

  it('a probe that fails opens it again for another open time', async () => {
    const { inner } = flakyGateway();
    const gateway = createResilientGateway(inner, { timeoutMs: 1000, retries: 0, breakerFailures: 1, halfOpenAfterMs: 300 });
    await gateway.charge({ orderId: 'o', amount: 1, idempotencyKey: 'a' }).catch(() => undefined);
    await eventually(async () => gateway.breakerState() === 'half-open', 'the breaker to read half-open', 3000);
    await gateway.charge({ orderId: 'o', amount: 1, idempotencyKey: 'probe' }).catch(() => undefined);
    expect(gateway.breakerState()).to.equal('open');
    expect(gateway.retryAfterSeconds()).to.equal(1);
  });
});

/** What baedal_payment_duration_seconds is fed: every call's operation and outcome, as the caller saw it. */
describe('payment gateway calls, as the duration histogram classifies them', () => {
  it('ok, declined, rejected (a 4xx), unavailable (after the retries), timeout and breaker-open', async () => {
    let behaviour: 'ok' | 'declined' | 'rejected' | 'unavailable' | 'slow' = 'ok';
    let calls = 0;
    const inner: PaymentGateway = {
      async charge(req, signal) {
        calls += 1;
        if (behaviour === 'declined') throw new PaymentDeclinedError({ orderId: req.orderId });
        if (behaviour === 'rejected') throw new PaymentUnavailableError('unexpected status 400', 5, false);
        if (behaviour === 'unavailable') throw new PaymentUnavailableError('gateway answered 503');
        if (behaviour === 'slow') await new Promise((resolve) => signal?.addEventListener('abort', resolve));
        return { chargeId: 'ch' };
      },
      refund: async () => ({ refundId: 'r' }),
      lookup: async () => null,
    };
    const seen: string[] = [];
    const gateway = createResilientGateway(inner, {
      timeoutMs: 100,
      retries: 1,
      breakerFailures: 2,
      halfOpenAfterMs: 60_000,
      onCall: (operation, outcome, seconds) => {
        expect(seconds).to.be.at.least(0);
        seen.push(`${operation}:${outcome}`);
      },
    });
    const charge = () => gateway.charge({ orderId: 'o', amount: 1, idempotencyKey: 'k' }).catch(() => undefined);
    await charge();
    await gateway.refund({ chargeId: 'ch', amount: 1, idempotencyKey: 'r' });
    await gateway.lookup('k');
    for (const b of ['declined', 'rejected', 'unavailable', 'slow'] as const) {
      behaviour = b;
      await charge();
    }
    const before = calls;
    await charge();
    expect(calls, 'the open breaker made no call').to.equal(before);
    expect(seen).to.deep.equal([
      'charge:ok',
      'refund:ok',
      'lookup:ok',
      'charge:declined',
      'charge:rejected',
      'charge:unavailable',
      'charge:timeout',
      'charge:breaker-open',
    ]);
  });
});

/** The signal each call gets: aborted at its deadline (ending a slow request), never as a call returns. */
describe('payment gateway calls, their deadline signal', () => {
  it('is still live once a call has returned, and aborted when the deadline passes', async () => {
    const signals: AbortSignal[] = [];
    let slow = false;
    const inner: PaymentGateway = {
      async charge(_req, signal) {
        signals.push(signal!);
        if (slow) await new Promise((resolve) => signal?.addEventListener('abort', resolve));
        return { chargeId: 'ch' };
      },
      refund: async () => ({ refundId: 'r' }),
      lookup: async () => null,
    };
    const gateway = createResilientGateway(inner, { timeoutMs: 100, retries: 0, breakerFailures: 5, halfOpenAfterMs: 60_000 });
    expect(await gateway.charge({ orderId: 'o', amount: 1, idempotencyKey: 'a' })).to.deep.equal({ chargeId: 'ch' });
    // Nothing listens any more: aborting it would only make an AbortError for nobody.
    expect(signals[0]!.aborted).to.equal(false);
    slow = true;
    const err = await gateway.charge({ orderId: 'o', amount: 1, idempotencyKey: 'b' }).catch((e: unknown) => e);
    expect(err).to.be.instanceOf(PaymentUnavailableError);
    expect((err as Error).message).to.equal('the payment gateway is unavailable: timed out after 100 ms');
    expect(signals[1]!.aborted, 'the slow call was told to stop').to.equal(true);
  });
});
