import { expect } from 'chai';
import { request, sharedSystem, type TestSystem } from '../support/system.ts';

interface Operation {
  security: unknown[];
  parameters?: { name: string; in: string; required: boolean }[];
  requestBody?: { content: Record<string, { schema: { required?: string[] } }> };
  responses: Record<string, unknown>;
}

describe('GET /openapi.json', () => {
  let sys: TestSystem;
  let doc: { openapi: string; paths: Record<string, Record<string, Operation>> };
  before(async () => {
    sys = await sharedSystem();
    const res = await request(sys.baseUrl, 'GET', '/openapi.json');
    expect(res.status).to.equal(200);
    doc = res.body;
  });

  const operations = () => Object.entries(doc.paths).flatMap(([path, ops]) => Object.entries(ops).map(([method, op]) => ({ path, method, op })));

  it('is OpenAPI 3.1 and covers every route of the app', () => {
    expect(doc.openapi).to.equal('3.1.0');
    const documented = operations().map((o) => `${o.method.toUpperCase()} ${o.path}`);
    for (const command of ['pay', 'accept', 'reject', 'start-cooking', 'finish-cooking', 'cancel', 'pick', 'confirm-delivery']) {
      expect(documented).to.include(`POST /orders/{id}/${command}`);
    }
    expect(documented).to.include.members([
      'POST /orders',
      'GET /orders',
      'GET /orders/{id}',
      'GET /orders/{id}/events',
      'PUT /stores/{storeId}/menu',
      'GET /stores/{storeId}/menu',
      'GET /healthz',
      'GET /readyz',
      'GET /openapi.json',
      'GET /metrics',
      'GET /notifications',
      'GET /machines/order',
      'GET /statechart',
    ]);
  });

  it('describes only routes that exist: each answers something other than 404 for its own path', async () => {
    for (const { path, method } of operations()) {
      const concrete = path.replace('{id}', '00000000-0000-4000-8000-000000000000').replace('{storeId}', 'some-store');
      const res = await request(sys.baseUrl, method.toUpperCase(), concrete, {});
      const unknownOrder = res.status === 404 && res.body?.error?.message?.startsWith('order ');
      expect(res.status === 404 && !unknownOrder, `${method} ${path} → ${res.status}`).to.equal(false);
    }
  });

  it('declares path parameters, bodies generated from the validating schemas, and the error responses', () => {
    const place = doc.paths['/orders']!.post!;
    expect(place.requestBody!.content['application/json']!.schema.required).to.have.members(['storeId', 'items', 'address']);
    expect(Object.keys(place.responses)).to.include.members(['201', '400', '401', '403', '413', '415', '422']);
    const pay = doc.paths['/orders/{id}/pay']!.post!;
    expect(pay.parameters!.find((p) => p.in === 'path')).to.deep.include({ name: 'id', required: true });
    expect(Object.keys(pay.responses)).to.include.members(['200', '402', '404', '409', '412', '503']);
    const reject = doc.paths['/orders/{id}/reject']!.post!;
    expect(reject.requestBody!.content['application/json']!.schema.required).to.deep.equal(['reason']);
    for (const { path, op } of operations()) {
      for (const param of path.match(/\{(\w+)\}/g) ?? []) {
        expect(op.parameters?.map((p) => `{${p.name}}`), path).to.include(param);
      }
    }
  });

  it('marks which routes need a token', () => {
    expect(doc.paths['/healthz']!.get!.security).to.deep.equal([]);
    expect(doc.paths['/orders/{id}']!.get!.security).to.deep.equal([{ bearerAuth: [] }]);
  });
});
