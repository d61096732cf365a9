import { expect } from 'chai';
import { type Parties, type TestSystem, withSharedSystem } from '../support/system.ts';

describe('POST /orders with Idempotency-Key', () => {
  let sys: TestSystem;
  let p: Parties;
  withSharedSystem({ system: (s) => (sys = s), parties: (x) => (p = x), resetGateway: false });

  const body = (p: Parties, qty = 1) => ({ storeId: p.storeId, items: [{ foodId: 'tteokbokki', qty }], address: { area: p.area, line: '2 Gangnam-daero' } });
  const place = (token: string, b: unknown, key?: string) => sys.request('POST', '/orders', { token, body: b, headers: key ? { 'idempotency-key': key } : {} });
  const count = async (token: string) => (await sys.request('GET', '/orders', { token })).body.length as number;

  it('a retried POST returns the same order instead of a second one', async () => {
    const first = await place(p.customer, body(p), 'retry-1');
    const again = await place(p.customer, body(p), 'retry-1');
    expect(first.status).to.equal(201);
    expect(again.status).to.equal(201);
    expect(again.headers.get('idempotent-replayed')).to.equal('true');
    expect(again.body).to.deep.equal(first.body);
    expect(await count(p.customer)).to.equal(1);
  });

  it('10 concurrent POSTs with one key create one order', async () => {
    const results = await Promise.all(Array.from({ length: 10 }, () => place(p.customer, body(p), 'burst')));
    expect(results.map((r) => r.status)).to.deep.equal(Array(10).fill(201));
    expect(new Set(results.map((r) => r.body.id)).size).to.equal(1);
    expect(await count(p.customer)).to.equal(1);
  });

  it('the same key with a different body is refused with 422 and creates nothing', async () => {
    await place(p.customer, body(p, 1), 'k');
    const res = await place(p.customer, body(p, 3), 'k');
    expect(res.status).to.equal(422);
    expect(res.body.error.details).to.deep.equal({ idempotencyKey: 'k' });
    expect(await count(p.customer)).to.equal(1);
  });

  it('keys belong to a customer: another customer with the same key gets their own order', async () => {
    const other = await sys.token('customer', `${p.customerId}-other`);
    const mine = await place(p.customer, body(p), 'shared-key');
    const theirs = await place(other, body(p), 'shared-key');
    expect(theirs.status).to.equal(201);
    expect(theirs.body.id).to.not.equal(mine.body.id);
    expect(theirs.body.customerId).to.equal(`${p.customerId}-other`);
  });

  it('without a key, two POSTs make two orders, priced by the server', async () => {
    const a = await place(p.customer, body(p, 2));
    await place(p.customer, body(p, 2));
    expect(a.body.total).to.equal(13000);
    expect(a.body.items).to.deep.equal([{ foodId: 'tteokbokki', name: 'Tteokbokki', qty: 2, unitPrice: 6500, lineTotal: 13000 }]);
    expect(a.headers.get('location')).to.equal(`/orders/${a.body.id}`);
    expect(await count(p.customer)).to.equal(2);
  });
});
