import { expect } from 'chai';
import { eventually, type Parties, type TestSystem, withSharedSystem } from '../support/system.ts';

/** Riders see cooked orders by area, without customer data; exactly one wins a pick race. */
describe('saga: delivery dispatch', function () {
  this.timeout(30_000);
  let sys: TestSystem;
  let p: Parties;
  withSharedSystem({ system: (s) => (sys = s), parties: (x) => (p = x) });

  const deliveries = async (area: string, token = p.rider) => sys.request('GET', `/deliveries?area=${encodeURIComponent(area)}`, { token });

  it('lists cooked orders of the area with what a rider needs and no customer data; a picked order leaves the list', async () => {
    const order = await sys.placeOrder(p, [{ foodId: 'bibimbap', qty: 2 }, { foodId: 'tteokbokki', qty: 1 }]);
    const other = await sys.placeOrder(p);
    await sys.drive(p, order.id, ['pay', 'accept', 'start-cooking']);
    await sys.drive(p, other.id, ['pay', 'accept']);
    expect((await deliveries(p.area)).body).to.deep.equal([]);
    const cooked = await sys.drive(p, order.id, ['finish-cooking']);
    const list = await eventually(async () => {
      const res = await deliveries(p.area);
      return res.body.length === 1 && res.body;
    }, 'the cooked order to be offered');
    expect(list[0]).to.deep.equal({ orderId: order.id, storeId: p.storeId, area: p.area, itemsCount: 3, cookedAt: cooked.updatedAt });
    expect(JSON.stringify(list)).not.to.include(p.customerId);
    expect((await deliveries('somewhere-else')).body).to.deep.equal([]);

    await sys.drive(p, order.id, ['pick']);
    await eventually(async () => (await deliveries(p.area)).body.length === 0, 'the picked order to leave the list');
  });

  it('is for riders: a customer or a store gets 403, a missing area 400', async () => {
    expect((await deliveries(p.area, p.customer)).status).to.equal(403);
    expect((await deliveries(p.area, p.store)).status).to.equal(403);
    const res = await sys.request('GET', '/deliveries', { token: p.rider });
    expect(res.status).to.equal(400);
    expect(res.body.error.details.issues[0].field).to.equal('query.area');
  });

  it('10 riders race to pick one order: one 200, nine 409 already_picked, one rider recorded', async () => {
    const order = await sys.placeOrder(p);
    await sys.drive(p, order.id, ['pay', 'accept', 'start-cooking', 'finish-cooking']);
    const riders = await Promise.all(Array.from({ length: 10 }, (_, i) => sys.token('rider', `${p.riderId}-${i}`)));
    const results = await Promise.all(riders.map((token) => sys.request('POST', `/orders/${order.id}/pick`, { token })));
    const winners = results.filter((r) => r.status === 200);
    expect(winners).to.have.length(1);
    const losers = results.filter((r) => r.status !== 200);
    expect(losers.map((r) => r.status)).to.deep.equal(Array(9).fill(409));
    for (const l of losers) expect(l.body.error.code).to.equal('already_picked');
    const journal = (await sys.request('GET', `/orders/${order.id}/events`, { token: p.customer })).body as { type: string; data: { riderId?: string } }[];
    expect(journal.filter((e) => e.type === 'OrderPickedUp')).to.have.length(1);
    expect(journal.at(-1)!.data.riderId).to.equal(winners[0]!.body.riderId);
  });

  it('a rider asking to pick an order that was never offered still gets 404 (ids cannot be probed)', async () => {
    const order = await sys.placeOrder(p);
    const res = await sys.request('POST', `/orders/${order.id}/pick`, { token: p.rider });
    expect(res.status).to.equal(404);
  });
});
