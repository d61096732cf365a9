import { expect } from 'chai';
import { signToken } from '../../src/http/auth.ts';
import { AUTH_SECRET, request, type Parties, type TestSystem, withSharedSystem } from '../support/system.ts';

/** Every error status of the API, each shown to leave the order (or menu) exactly as it was. */
describe('API errors change nothing', () => {
  let sys: TestSystem;
  let p: Parties;
  withSharedSystem({ system: (s) => (sys = s), parties: (x) => (p = x) });

  async function snapshotOf(orderId: string) {
    const order = await sys.request('GET', `/orders/${orderId}`, { token: p.admin });
    const events = await sys.request('GET', `/orders/${orderId}/events`, { token: p.admin });
    expect(order.status).to.equal(200);
    return { order: order.body, events: events.body };
  }

  async function expectUnchanged(orderId: string, before: unknown) {
    expect(await snapshotOf(orderId)).to.deep.equal(before);
  }

  async function orderCount(customer: string) {
    return (await sys.request('GET', '/orders', { token: customer })).body.length as number;
  }

  it('400: names each bad field of an invalid body', async () => {
    const res = await sys.request('POST', '/orders', {
      token: p.customer,
      body: { storeId: '', items: [{ foodId: 'bibimbap', qty: 0 }], address: { area: 'a' } },
    });
    expect(res.status).to.equal(400);
    expect(res.body.error.code).to.equal('invalid_body');
    const fields = res.body.error.details.issues.map((i: { field: string }) => i.field);
    expect(fields).to.include.members(['body.storeId', 'body.items.0.qty', 'body.address.line']);
    expect(await orderCount(p.customer)).to.equal(0);
  });

  it('400: malformed JSON', async () => {
    const res = await sys.request('POST', '/orders', { token: p.customer, rawBody: '{"storeId":', headers: { 'content-type': 'application/json' } });
    expect(res.status).to.equal(400);
    expect(res.body.error.code).to.equal('invalid_body');
    expect(await orderCount(p.customer)).to.equal(0);
  });

  it('400: reject without a reason leaves a paid order paid', async () => {
    const order = await sys.placeOrder(p);
    await sys.drive(p, order.id, ['pay']);
    const before = await snapshotOf(order.id);
    const res = await sys.request('POST', `/orders/${order.id}/reject`, { token: p.store, body: {} });
    expect(res.status).to.equal(400);
    expect(res.body.error.details.issues[0].field).to.equal('body.reason');
    await expectUnchanged(order.id, before);
  });

  it('401: no token, a bad token, a token signed with another secret, an expired token', async () => {
    const order = await sys.placeOrder(p);
    const before = await snapshotOf(order.id);
    const forged = await signToken('some-other-secret-0123456789', { sub: p.customerId, role: 'customer' });
    const expired = await signToken(AUTH_SECRET, { sub: p.customerId, role: 'customer' }, '-2m');
    const attempts: Record<string, string>[] = [{}, { authorization: 'Bearer nonsense' }, { authorization: `Bearer ${forged}` }, { authorization: `Bearer ${expired}` }, { authorization: 'Basic abc' }];
    for (const headers of attempts) {
      const res = await sys.request('POST', `/orders/${order.id}/cancel`, { headers });
      expect(res.status, JSON.stringify(headers)).to.equal(401);
      expect(res.body.error.code).to.equal('unauthenticated');
    }
    await expectUnchanged(order.id, before);
  });

  it('403: the wrong role for a command, a menu or placing an order', async () => {
    const order = await sys.placeOrder(p);
    const before = await snapshotOf(order.id);
    const storePays = await sys.request('POST', `/orders/${order.id}/pay`, { token: p.store });
    expect(storePays.status).to.equal(403);
    expect(storePays.body.error.code).to.equal('forbidden');
    const adminCancels = await sys.request('POST', `/orders/${order.id}/cancel`, { token: p.admin });
    expect(adminCancels.status).to.equal(403);
    await expectUnchanged(order.id, before);

    const other = await sys.token('store', 'someone-else');
    const menu = await sys.request('PUT', `/stores/${p.storeId}/menu`, { token: other, body: [] });
    expect(menu.status).to.equal(403);
    expect((await sys.request('GET', `/stores/${p.storeId}/menu`, { token: p.customer })).body).to.have.length(3);

    const storePlaces = await sys.request('POST', '/orders', {
      token: p.store,
      body: { storeId: p.storeId, items: [{ foodId: 'bibimbap', qty: 1 }], address: { area: 'a', line: 'l' } },
    });
    expect(storePlaces.status).to.equal(403);
    expect(await orderCount(p.admin)).to.be.greaterThan(0);
  });

  it("404: an unknown order, a malformed id, and someone else's order look the same", async () => {
    const order = await sys.placeOrder(p);
    const before = await snapshotOf(order.id);
    const stranger = await sys.token('customer', 'stranger');
    const otherStore = await sys.token('store', 'other-store');
    const cases: [string, string, string][] = [
      ['GET', `/orders/${order.id}`, stranger],
      ['GET', `/orders/${order.id}/events`, stranger],
      ['POST', `/orders/${order.id}/cancel`, stranger],
      ['POST', `/orders/${order.id}/accept`, otherStore],
      ['POST', `/orders/${order.id}/pick`, p.rider],
      ['GET', '/orders/00000000-0000-4000-8000-000000000000', p.customer],
      ['GET', '/orders/not-a-uuid', p.customer],
    ];
    for (const [method, path, token] of cases) {
      const res = await sys.request(method, path, { token });
      expect(res.status, `${method} ${path}`).to.equal(404);
      expect(res.body.error.code).to.equal('not_found');
    }
    await expectUnchanged(order.id, before);
  });

  it('409: an invalid transition names the status and the commands allowed now', async () => {
    const order = await sys.placeOrder(p);
    await sys.drive(p, order.id, ['pay', 'accept', 'start-cooking']);
    const before = await snapshotOf(order.id);
    const res = await sys.request('POST', `/orders/${order.id}/cancel`, { token: p.customer });
    expect(res.status).to.equal(409);
    expect(res.body.error).to.include({ code: 'invalid_transition' });
    expect(res.body.error.details).to.deep.include({ status: 'cooking', allowed: ['finish-cooking'] });
    await expectUnchanged(order.id, before);
  });

  it('412: a command with a stale If-Match; the current ETag works', async () => {
    const order = await sys.placeOrder(p);
    const paid = await sys.request('POST', `/orders/${order.id}/pay`, { token: p.customer, headers: { 'if-match': '"1"' } });
    expect(paid.status).to.equal(200);
    expect(paid.headers.get('etag')).to.equal('"2"');
    const before = await snapshotOf(order.id);
    const stale = await sys.request('POST', `/orders/${order.id}/accept`, { token: p.store, headers: { 'if-match': '"1"' } });
    expect(stale.status).to.equal(412);
    expect(stale.body.error).to.deep.include({ code: 'stale_version', details: { expected: 1, current: 2 } });
    await expectUnchanged(order.id, before);
    const fresh = await sys.request('POST', `/orders/${order.id}/accept`, { token: p.store, headers: { 'if-match': '"2"' } });
    expect(fresh.status).to.equal(200);
  });

  it('413: a body over the limit', async () => {
    const order = await sys.placeOrder(p);
    const before = await snapshotOf(order.id);
    const res = await sys.request('POST', `/orders/${order.id}/cancel`, { token: p.customer, body: { reason: 'x'.repeat(64 * 1024) } });
    expect(res.status).to.equal(413);
    expect(res.body.error.code).to.equal('payload_too_large');
    await expectUnchanged(order.id, before);
  });

  it('415: a body that is not JSON', async () => {
    const order = await sys.placeOrder(p);
    const before = await snapshotOf(order.id);
    const res = await sys.request('POST', `/orders/${order.id}/reject`, { token: p.store, rawBody: 'reason=nope', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    expect(res.status).to.equal(415);
    expect(res.body.error.code).to.equal('unsupported_media_type');
    await expectUnchanged(order.id, before);
  });

  it('422: an unknown or unavailable food creates nothing', async () => {
    for (const foodId of ['naengmyeon', 'pizza']) {
      const res = await sys.request('POST', '/orders', {
        token: p.customer,
        body: { storeId: p.storeId, items: [{ foodId: 'bibimbap', qty: 1 }, { foodId, qty: 1 }], address: { area: 'a', line: 'l' } },
      });
      expect(res.status, foodId).to.equal(422);
      expect(res.body.error.code).to.equal('unprocessable');
    }
    expect(await orderCount(p.customer)).to.equal(0);
  });

  it('402: a declined payment leaves the order awaiting payment and charges nothing', async () => {
    const order = await sys.placeOrder(p);
    const before = await snapshotOf(order.id);
    await sys.setGatewayBehaviour({ decline: true });
    const res = await sys.request('POST', `/orders/${order.id}/pay`, { token: p.customer });
    expect(res.status).to.equal(402);
    expect(res.body.error.code).to.equal('payment_declined');
    await expectUnchanged(order.id, before);
    expect((await sys.ledger()).charges).to.have.length(0);
  });

  it('503: an unreachable or failing gateway answers with Retry-After and leaves the order as it was', async () => {
    const order = await sys.placeOrder(p);
    const before = await snapshotOf(order.id);
    await sys.setGatewayBehaviour({ failRate: 1 });
    const res = await sys.request('POST', `/orders/${order.id}/pay`, { token: p.customer });
    expect(res.status).to.equal(503);
    expect(res.headers.get('retry-after')).to.match(/^\d+$/);
    expect(res.body.error.code).to.equal('payment_unavailable');
    await expectUnchanged(order.id, before);
  });

  it('answers unknown routes with a JSON 404 and health checks without a token', async () => {
    const res = await request(sys.baseUrl, 'GET', '/nowhere');
    expect(res.status).to.equal(404);
    expect(res.body.error.code).to.equal('not_found');
    expect((await request(sys.baseUrl, 'GET', '/healthz')).body).to.deep.equal({ status: 'ok' });
    expect((await request(sys.baseUrl, 'GET', '/readyz')).body).to.deep.equal({
      status: 'ready',
      checks: { postgres: true, redis: true },
      details: { paymentBreaker: 'closed' },
    });
    expect((await request(sys.baseUrl, 'GET', '/metrics')).body).to.include('baedal_http_requests_total');
  });
});
