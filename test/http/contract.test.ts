import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { checkAnswer, ContractChecker, schemaValidator, type OpenApiDocument } from '../support/contract.ts';
import { request, sharedSystem, type TestSystem } from '../support/system.ts';

/** The checker every answer of the suite goes through (support/contract.ts) catches what it should. */
describe('the OpenAPI contract check', () => {
  let sys: TestSystem;
  let doc: OpenApiDocument;
  let validator: ReturnType<typeof schemaValidator>;
  before(async () => {
    sys = await sharedSystem();
    doc = (await request(sys.baseUrl, 'GET', '/openapi.json')).body;
    validator = schemaValidator(doc);
  });

  const json = 'application/json; charset=utf-8';
  const check = (method: string, path: string, status: number, body: unknown, contentType = json) => checkAnswer(doc, validator, { method, path, status, contentType, body });
  const error = (code: string) => ({ error: { code, message: 'm', details: {} } });

  it('passes the answers the document promises', async () => {
    const p = await sys.newParties();
    const order = await sys.placeOrder(p);
    expect(check('GET', `/orders/${order.id}`, 200, order)).to.equal(undefined);
    expect(check('GET', `/orders/${order.id}`, 404, error('not_found'))).to.equal(undefined);
    expect(check('GET', '/orders/not-a-uuid', 404, error('not_found'))).to.equal(undefined);
    expect(check('GET', '/nowhere', 404, error('not_found'))).to.equal(undefined);
    expect(check('DELETE', '/orders', 405, error('method_not_allowed'))).to.equal(undefined);
    expect(check('PROPFIND', '/orders', 501, error('not_implemented'))).to.equal(undefined);
    expect(check('GET', '/openapi.json', 304, '')).to.equal(undefined);
    expect(check('GET', '/metrics', 200, '# HELP x\n', 'text/plain; version=0.0.4')).to.equal(undefined);
  });

  it('flags a status the operation does not list, a body that does not match, and an error of the wrong code', async () => {
    const p = await sys.newParties();
    const order = await sys.placeOrder(p);
    expect(check('GET', `/orders/${order.id}`, 500 + 18, error('internal'))).to.match(/not among the documented statuses/);
    expect(check('GET', '/healthz', 404, error('not_found'))).to.match(/not among the documented statuses/);
    expect(check('GET', `/orders/${order.id}`, 200, { ...order, status: 'teleported' })).to.match(/body does not match/);
    expect(check('GET', `/orders/${order.id}`, 200, { ...order, extra: 1 })).to.match(/body does not match/);
    expect(check('GET', `/orders/${order.id}`, 404, error('already_picked'))).to.match(/body does not match/);
    expect(check('GET', '/nowhere', 500, error('internal'))).to.match(/not a status the document promises here/);
    expect(check('GET', `/orders/${order.id}`, 200, order, 'text/html')).to.match(/content type/);
    // A notification id in the old shape (an MD5 without version and variant bits) is no RFC 9562 UUID.
    const notification = {
      notificationId: '0cc175b9-c0f1-b6a8-31c3-99e269772661',
      eventId: randomUUID(),
      orderId: order.id,
      seq: 1,
      status: 'awaitingPayment',
      text: 't',
      message: 't',
      at: new Date().toISOString(),
      delivery: { state: 'pending', attempts: 0, deliveredAt: null, transport: null, lastError: null },
    };
    expect(check('GET', '/notifications', 200, [notification])).to.match(/body does not match.*notificationId/);
    expect(check('GET', '/notifications', 200, [{ ...notification, notificationId: '0cc175b9-c0f1-86a8-b1c3-99e269772661' }])).to.equal(undefined);
  });

  it('holds a port to a service only while that service has it: once it closed, what takes the port next is not judged by its document', async () => {
    const checker = new ContractChecker();
    const url = 'http://127.0.0.1:1';
    const gatewayAnswer = { method: 'PUT', path: '/_admin/behaviour', status: 200, contentType: json, body: {} };
    const unregister = checker.registerRoutes(url, sys.routes);
    await checker.check(url, gatewayAnswer);
    expect(checker.violations, 'judged by the service registered there').to.have.length(1);
    // Another service on the same port since: the first one's end leaves the second's registration be.
    const second = checker.registerRoutes(url, sys.routes);
    unregister();
    await checker.check(url, gatewayAnswer);
    expect(checker.violations, 'still the second service').to.have.length(2);
    second();
    await checker.check(url, gatewayAnswer);
    checker.forget(url);
    await checker.check(url, gatewayAnswer);
    expect(checker.violations, 'nothing registered there any more').to.have.length(2);
    expect(checker.checked).to.equal(2);
  });
});
