import { expect } from 'chai';
import { dispatch } from '../src/actors/consumers.ts';
import type { OrderEventMessage } from '../src/actors/messages.ts';
import { eventually, sharedSystem, type Parties, type TestSystem } from './support/system.ts';

/** The outbox and the consumers: nothing committed is lost, nothing is applied twice. */
describe('outbox relay and consumers', () => {
  let sys: TestSystem;
  let p: Parties;
  before(async () => {
    sys = await sharedSystem();
  });
  beforeEach(async () => {
    await sys.resetGateway();
    p = await sys.newParties();
  });
  afterEach(() => sys.runtime.relay.start());

  const outboxRows = async (orderId: string) =>
    (await sys.runtime.db.query('SELECT event_id, type, seq, published_at FROM outbox WHERE order_id = $1 ORDER BY seq', [orderId])) as {
      event_id: string;
      type: string;
      seq: number;
      published_at: Date | null;
    }[];

  const notifications = async () => (await sys.request('GET', '/notifications', { token: p.customer })).body as { seq: number }[];

  it('writes one outbox row per journaled event, in the same transaction, and the relay publishes it', async () => {
    const order = await sys.placeOrder(p);
    await sys.drive(p, order.id, ['pay', 'accept']);
    const journal = (await sys.request('GET', `/orders/${order.id}/events`, { token: p.customer })).body as { seq: number; type: string }[];
    const rows = await eventually(async () => {
      const r = await outboxRows(order.id);
      return r.every((row) => row.published_at !== null) && r;
    }, 'the relay to publish');
    expect(rows.map((r) => [r.seq, r.type])).to.deep.equal(journal.map((e) => [e.seq, e.type]));
    const job = await sys.runtime.queue.getJob(rows[0]!.event_id);
    expect(job?.data.orderId).to.equal(order.id);
  });

  it('an event committed while no relay runs (a crash before enqueue) is published later, not lost', async () => {
    await sys.runtime.relay.stop();
    const order = await sys.placeOrder(p);
    const [row] = await outboxRows(order.id);
    expect(row?.published_at).to.equal(null);
    expect(await sys.runtime.queue.getJob(row!.event_id)).to.equal(undefined);
    sys.runtime.relay.start();
    await eventually(async () => (await notifications()).length === 1, 'the notification of the late event');
  });

  it('re-publishing an already published row adds no second job (job id = event id)', async () => {
    const order = await sys.placeOrder(p);
    await eventually(async () => (await notifications()).length === 1, 'first delivery');
    await sys.runtime.relay.stop();
    await sys.runtime.db.query('UPDATE outbox SET published_at = NULL WHERE order_id = $1', [order.id]);
    const before = await sys.runtime.queue.getJobCounts('completed', 'waiting', 'active', 'delayed');
    expect(await sys.runtime.relay.publishBatch()).to.be.greaterThan(0);
    const after = await sys.runtime.queue.getJobCounts('completed', 'waiting', 'active', 'delayed');
    expect(after).to.deep.equal(before);
    expect(await notifications()).to.have.length(1);
  });

  it('a refund delivered twice is refunded once and notified once', async () => {
    const order = await sys.placeOrder(p);
    await sys.drive(p, order.id, ['pay', 'cancel']);
    await eventually(async () => (await sys.ledger()).refunds.length === 1, 'the refund');
    const [, , cancelled] = await outboxRows(order.id);
    const job = await sys.runtime.queue.getJob(cancelled!.event_id);
    const message = job!.data as OrderEventMessage;
    expect(message.refund).to.deep.include({ amount: order.total });

    // Redeliver as a stalled job would: straight to the consumers, twice, concurrently.
    const applied = await Promise.all([dispatch(sys.runtime.db, sys.runtime.consumers, message), dispatch(sys.runtime.db, sys.runtime.consumers, message)]);
    expect(applied).to.deep.equal([[], []]);
    expect((await sys.ledger()).refunds).to.have.length(1);
    expect((await notifications()).filter((n) => n.seq === message.seq)).to.have.length(1);
  });

  it('a refund that fails at first is retried until the gateway takes it', async () => {
    const order = await sys.placeOrder(p);
    await sys.drive(p, order.id, ['pay']);
    await sys.setGatewayBehaviour({ failRate: 1 });
    await sys.drive(p, order.id, ['cancel']);
    const [, , cancelled] = await eventually(async () => {
      const rows = await outboxRows(order.id);
      return rows.length === 3 && rows[2]!.published_at !== null && rows;
    }, 'the cancel event to be published');
    await eventually(async () => ((await sys.runtime.queue.getJob(cancelled!.event_id))?.attemptsMade ?? 0) >= 1, 'a failed refund attempt');
    expect((await sys.ledger()).refunds).to.have.length(0);
    await sys.setGatewayBehaviour({ failRate: 0 });
    const refund = await eventually(async () => (await sys.request('GET', `/orders/${order.id}`, { token: p.customer })).body.refund ?? undefined, 'the retried refund', 15_000);
    expect((await sys.ledger()).refunds.map((r) => r.refundId)).to.deep.equal([refund.refundId]);
  });
});
