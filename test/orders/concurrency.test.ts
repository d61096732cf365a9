import { expect } from 'chai';
import { initialTransition, transition } from 'xstate';
import type { OrderRow } from '../../src/actors/order-repository.ts';
import { orderMachine, sampleEvent, statusOf } from '../../src/machines/order/v1.ts';
import { type OrderCommand } from '../../src/machines/order/contract.ts';
import { commandRequest, sharedSystem, type AppInstance, type Parties, type TestSystem } from '../support/system.ts';


/** Two replicas share PostgreSQL and Redis; PostgreSQL alone decides who writes an order. */
describe('concurrency: two app instances, one order', () => {
  let sys: TestSystem;
  let replica: AppInstance;
  let p: Parties;

  before(async () => {
    sys = await sharedSystem();
    replica = await sys.startReplica();
  });
  beforeEach(async () => {
    await sys.resetGateway();
    p = await sys.newParties();
  });

  async function fire(orderId: string, commands: string[]) {
    return Promise.all(
      commands.map((command, i) =>
        (i % 2 === 0 ? sys : replica)
          .request('POST', `/orders/${orderId}/${command}`, commandRequest(p, command))
          .then((res) => ({ command, ...res })),
      ),
    );
  }

  async function journalSeqs(orderId: string): Promise<number[]> {
    const journal = await sys.request('GET', `/orders/${orderId}/events`, { token: p.customer });
    return journal.body.map((e: { seq: number }) => e.seq);
  }

  it('20 concurrent pays: one succeeds, one charge, 19 refused with 409', async () => {
    const order = await sys.placeOrder(p);
    await sys.setGatewayBehaviour({ latencyMs: 20 });
    const results = await fire(order.id, Array(20).fill('pay'));
    expect(results.filter((r) => r.status === 200)).to.have.length(1);
    expect(results.filter((r) => r.status === 409)).to.have.length(19);
    expect((await sys.ledger()).charges.filter((c) => c.orderId === order.id)).to.have.length(1);
    expect(await journalSeqs(order.id)).to.deep.equal([1, 2]);
  });

  it('20 concurrent mixed commands: the successes form a valid path, the rest get 409, the journal has no gaps', async () => {
    const order = await sys.placeOrder(p);
    await sys.drive(p, order.id, ['pay']);
    const commands = ['accept', 'reject', 'cancel', 'start-cooking', 'finish-cooking'].flatMap((c) => Array(4).fill(c) as string[]);
    const results = await fire(order.id, commands);

    for (const r of results) expect([200, 409], `${r.command}: ${JSON.stringify(r.body)}`).to.include(r.status);
    const successes = results.filter((r) => r.status === 200).sort((a, b) => a.body.version - b.body.version);
    expect(successes.length).to.be.greaterThan(0);
    expect(successes.map((r) => r.body.version)).to.deep.equal(successes.map((_, i) => i + 3));

    // Replaying the winners in version order through the machine is valid at every step.
    const [row] = (await sys.runtime.db.query('SELECT o.*, NULL AS refund_id, NULL AS refund_amount FROM orders o WHERE id = $1', [order.id])) as OrderRow[];
    const stored = orderMachine.resolveState(row!.snapshot as Parameters<typeof orderMachine.resolveState>[0]);
    let [replay] = initialTransition(orderMachine, stored.context);
    [replay] = transition(orderMachine, replay, { type: 'pay', chargeId: stored.context.chargeId ?? '' });
    for (const win of successes) {
      expect(replay.can(sampleEvent(win.command as OrderCommand)), `${win.command} from ${statusOf(replay)}`).to.equal(true);
      [replay] = transition(orderMachine, replay, sampleEvent(win.command as OrderCommand));
      expect(win.body.status).to.equal(statusOf(replay));
    }
    // A refused command really was not allowed once the winners had run.
    expect(statusOf(stored)).to.equal(statusOf(replay));
    expect(await journalSeqs(order.id)).to.deep.equal(Array.from({ length: successes.length + 2 }, (_, i) => i + 1));
    expect(row!.version).to.equal(successes.length + 2);
  });

  it('a replica sees at once what the other wrote', async () => {
    const order = await sys.placeOrder(p);
    const viaReplica = await replica.request('POST', `/orders/${order.id}/pay`, { token: p.customer });
    expect(viaReplica.status).to.equal(200);
    const viaMain = await sys.request('GET', `/orders/${order.id}`, { token: p.customer });
    expect(viaMain.body).to.deep.equal(viaReplica.body);
  });
});
