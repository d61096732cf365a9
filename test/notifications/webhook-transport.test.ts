import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { expect } from 'chai';
import { webhookTransport, type NotificationMessage } from '../../src/notifications/transports.ts';
import { startWebhookReceiver } from '../support/webhook.ts';

/** V8's full collection, reachable without starting node with --expose-gc. */
function collector(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

describe('webhook transport: memory', function () {
  this.timeout(20_000);

  it('holds no message once it is delivered, single or batched (each would live on until the queue was next compacted)', async () => {
    const gc = collector();
    const hook = await startWebhookReceiver({ secrets: null });
    const single = webhookTransport(hook.url, { timeoutMs: 2000, concurrency: 2 });
    const batched = webhookTransport(hook.url, { timeoutMs: 2000, concurrency: 2, batchMax: 8 });
    try {
      const sent: WeakRef<NotificationMessage>[] = [];
      // Built and sent in a scope of their own: once delivered, nothing of the test's holds them.
      await (async () => {
        const deliveries: Promise<void>[] = [];
        for (let n = 0; n < 200; n++) {
          const message: NotificationMessage = {
            notificationId: `00000000-0000-8000-8000-${String(n).padStart(12, '0')}`,
            eventId: '00000000-0000-4000-8000-000000000001',
            orderId: '00000000-0000-4000-8000-000000000002',
            status: 'paid',
            to: { role: 'customer', id: `c-${n}` },
            text: `Your order was paid (${n})`,
          };
          sent.push(new WeakRef(message));
          deliveries.push((n % 2 === 0 ? single : batched).send(message));
        }
        await Promise.all(deliveries);
      })();
      expect(hook.requests.length).to.be.at.least(100 + 100 / 8);
      // A WeakRef's target is kept to the end of the job that made or read it: collect on later turns.
      const deadline = Date.now() + 5000;
      let alive = sent.length;
      while (alive > 0 && Date.now() < deadline) {
        await new Promise((resolve) => setImmediate(resolve));
        gc();
        alive = sent.filter((ref) => ref.deref() !== undefined).length;
      }
      expect(alive, 'messages still reachable after delivery').to.equal(0);
    } finally {
      await Promise.all([single.close?.(), batched.close?.()]);
      await hook.close();
    }
  });
});
