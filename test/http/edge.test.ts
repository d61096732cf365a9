import { expect } from 'chai';
import { MAX_ORDER_TOTAL } from '../../src/catalog/pricing.ts';
import { duplicateKeyPath, mediaTypeProblem } from '../../src/http/json-body.ts';
import { text } from '../../src/http/schemas.ts';
import { captureLog } from '../support/capture-log.ts';
import { MENU, request, serveApp, type ApiResponse, type Parties, type TestSystem, withSharedSystem } from '../support/system.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The JSON error shape every refusal has, with its request id. */
function expectError(res: ApiResponse, status: number, code: string): void {
  expect(res.status, JSON.stringify(res.body)).to.equal(status);
  expect(res.headers.get('content-type')).to.match(/^application\/json/);
  expect(res.body).to.have.all.keys('error');
  expect(res.body.error).to.have.all.keys('code', 'message', 'details');
  expect(res.body.error.code).to.equal(code);
  expect(res.body.error.message).to.be.a('string');
  expect(res.body.error.details).to.be.an('object');
  expect(res.headers.get('x-request-id')).to.match(/^[A-Za-z0-9._:@-]{1,128}$/);
}

describe('the HTTP edge', () => {
  let sys: TestSystem;
  let p: Parties;
  withSharedSystem({ system: (s) => (sys = s), parties: (x) => (p = x), resetGateway: false });

  const placeBody = (over: Record<string, unknown> = {}) => ({
    storeId: p.storeId,
    items: [{ foodId: 'bibimbap', qty: 1 }],
    address: { area: p.area, line: '1 Teheran-ro' },
    ...over,
  });
  const myOrders = async () => (await sys.request('GET', '/orders', { token: p.customer })).body.length as number;

  describe('X-Request-Id', () => {
    it('is generated for every answer, success or error, and differs between requests', async () => {
      const ok = await request(sys.baseUrl, 'GET', '/healthz');
      const missing = await request(sys.baseUrl, 'GET', '/nowhere');
      const refused = await sys.request('GET', '/orders');
      const ids = [ok, missing, refused].map((r) => r.headers.get('x-request-id'));
      for (const id of ids) expect(id).to.match(UUID);
      expect(new Set(ids).size).to.equal(3);
    });

    it("answers the service's own id, never the client's, whatever the client sends", async () => {
      const sent = await sys.request('GET', `/stores/${p.storeId}/menu`, { token: p.customer, headers: { 'x-request-id': 'edge-req_1:a@b.c' } });
      expect(sent.headers.get('x-request-id')).to.match(UUID);
      for (const insane of ['x'.repeat(129), 'a b', 'id;drop', '<script>', 'é']) {
        const res = await request(sys.baseUrl, 'GET', '/healthz', { headers: { 'x-request-id': insane } });
        expect(res.status).to.equal(200);
        expect(res.headers.get('x-request-id'), insane).to.match(UUID);
      }
    });
  });

  describe('every error has the JSON shape', () => {
    it('405 with Allow for a method the route does not take, 501 for an unknown method, 404 for no route', async () => {
      const wrong = await sys.request('DELETE', '/orders', { token: p.customer });
      expectError(wrong, 405, 'method_not_allowed');
      expect(wrong.headers.get('allow')).to.include('GET').and.include('POST');
      expectError(await request(sys.baseUrl, 'PATCH', '/healthz'), 405, 'method_not_allowed');
      expectError(await request(sys.baseUrl, 'PROPFIND', '/healthz'), 501, 'not_implemented');
      expectError(await request(sys.baseUrl, 'GET', '/nowhere'), 404, 'not_found');
      expectError(await request(sys.baseUrl, 'GET', '/statechart/assets/nope.js'), 404, 'not_found');
    });

    it('matches paths case-sensitively and strictly: another spelling of a route is no route (404)', async () => {
      const order = await sys.placeOrder(p);
      const spellings: [string, string | undefined][] = [
        ['/ADMIN/FAILED-EVENTS', p.admin],
        ['/Admin/failed-events', p.admin],
        ['/admin/failed-events/', p.admin],
        ['/ORDERS', p.customer],
        ['/orders/', p.customer],
        [`/orders/${order.id}/`, p.customer],
        [`/orders/${order.id}/EVENTS`, p.customer],
        ['/HEALTHZ', undefined],
        ['/readyz/', undefined],
        ['/OpenAPI.json', undefined],
        ['/statechart/', undefined],
        ['/statechart/assets/PAGE.JS', undefined],
        [`/Stores/${p.storeId}/menu`, p.customer],
      ];
      for (const [path, token] of spellings) expectError(await sys.request('GET', path, { token }), 404, 'not_found');
      // A command under another spelling does nothing either.
      expectError(await sys.request('POST', `/orders/${order.id}/PAY`, { token: p.customer }), 404, 'not_found');
      expectError(await sys.request('POST', `/orders/${order.id}/pay/`, { token: p.customer }), 404, 'not_found');
      expect((await sys.request('GET', `/orders/${order.id}`, { token: p.customer })).body.status).to.equal('awaitingPayment');
      // The spellings of the table answer.
      expect((await sys.request('GET', '/admin/failed-events', { token: p.admin })).status).to.equal(200);
      expect((await request(sys.baseUrl, 'GET', '/healthz')).status).to.equal(200);
    });

    it('JSON answers carry Cache-Control: no-store and nosniff', async () => {
      for (const res of [
        await sys.request('GET', `/stores/${p.storeId}/menu`, { token: p.customer }),
        await sys.request('GET', '/orders', { token: p.customer }),
        await request(sys.baseUrl, 'GET', '/nowhere'),
        await sys.request('GET', '/orders'),
      ]) {
        expect(res.headers.get('cache-control')).to.equal('no-store');
        expect(res.headers.get('x-content-type-options')).to.equal('nosniff');
      }
    });

    it('refuses query parameters a route does not take', async () => {
      expectError(await request(sys.baseUrl, 'GET', '/healthz?verbose=1'), 400, 'invalid_body');
      const res = await sys.request('GET', '/orders?mine=all', { token: p.customer });
      expectError(res, 400, 'invalid_body');
      expect(res.body.error.details.issues[0].field).to.equal('query');
      expectError(await sys.request('GET', '/orders?area=a&area=b', { token: p.customer }), 400, 'invalid_body');
    });
  });

  describe('media types', () => {
    it('takes only application/json in UTF-8, uncompressed; refuses the rest with 415 and creates nothing', async () => {
      const raw = JSON.stringify(placeBody());
      for (const contentType of [
        'application/vnd.x+json',
        'application/merge-patch+json',
        'application/json-patch+json',
        'text/plain',
        'application/json; charset=utf-16',
        'application/json; charset=latin1',
        'application/json; charset="iso-8859-1"',
        'application/json; charset',
      ]) {
        const res = await sys.request('POST', '/orders', { token: p.customer, rawBody: raw, headers: { 'content-type': contentType } });
        expectError(res, 415, 'unsupported_media_type');
      }
      const gzip = await sys.request('POST', '/orders', {
        token: p.customer,
        rawBody: raw,
        headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' },
      });
      expectError(gzip, 415, 'unsupported_media_type');
      // A UTF-16 body declared as such: read as UTF-8 it would have been misread, not refused.
      const utf16 = await fetch(`${sys.baseUrl}/orders`, {
        method: 'POST',
        headers: { authorization: `Bearer ${p.customer}`, 'content-type': 'application/json; charset=utf-16le' },
        body: Buffer.from(raw, 'utf16le'),
      });
      expect(utf16.status).to.equal(415);
      expect(await myOrders()).to.equal(0);
      for (const contentType of ['application/json', 'application/json; charset=utf-8', 'Application/JSON; Charset="UTF-8"']) {
        const res = await sys.request('POST', '/orders', { token: p.customer, rawBody: raw, headers: { 'content-type': contentType } });
        expect(res.status, contentType).to.equal(201);
      }
    });

    it('refuses bytes that are not UTF-8 and JSON that is not an object or array (400), rather than guessing', async () => {
      const latin1 = Buffer.concat([Buffer.from(JSON.stringify(placeBody()).slice(0, -2)), Buffer.from(',"x":"caf'), Buffer.from([0xe9]), Buffer.from('"}')]);
      const res = await fetch(`${sys.baseUrl}/orders`, {
        method: 'POST',
        headers: { authorization: `Bearer ${p.customer}`, 'content-type': 'application/json' },
        body: latin1,
      });
      expect(res.status).to.equal(400);
      expect(((await res.json()) as { error: { message: string } }).error.message).to.match(/UTF-8/);
      for (const rawBody of ['"a string"', '42', 'null', 'true', '{"storeId":', '\u0000{}']) {
        const scalar = await sys.request('POST', '/orders', { token: p.customer, rawBody, headers: { 'content-type': 'application/json' } });
        expectError(scalar, 400, 'invalid_body');
      }
      expect(await myOrders()).to.equal(0);
    });

    it('names the media type problems precisely', () => {
      expect(mediaTypeProblem('application/json')).to.equal(undefined);
      expect(mediaTypeProblem('application/json;')).to.equal(undefined);
      expect(mediaTypeProblem('application/json; charset=UTF-8')).to.equal(undefined);
      expect(mediaTypeProblem('application/problem+json')).to.match(/application\/json/);
      expect(mediaTypeProblem('application/json; charset=utf-16')).to.match(/UTF-8/);
      expect(mediaTypeProblem('application/json; =x')).to.match(/malformed/);
    });
  });

  describe('JSON with a key twice', () => {
    it('is refused with 400 naming the key, wherever it is', async () => {
      const cases: [string, string][] = [
        [`{"storeId":"${p.storeId}","storeId":"${p.storeId}","items":[{"foodId":"bibimbap","qty":1}],"address":{"area":"a","line":"l"}}`, 'body.storeId'],
        [`{"storeId":"${p.storeId}","items":[{"foodId":"bibimbap","qty":1,"qty":2}],"address":{"area":"a","line":"l"}}`, 'body.items.0.qty'],
        [`{"storeId":"${p.storeId}","items":[{"foodId":"bibimbap","qty":1}],"address":{"area":"a","line":"l","\\u0061rea":"b"}}`, 'body.address.area'],
      ];
      for (const [raw, field] of cases) {
        const res = await sys.request('POST', '/orders', { token: p.customer, rawBody: raw, headers: { 'content-type': 'application/json' } });
        expectError(res, 400, 'invalid_body');
        expect(res.body.error.details.issues[0].field).to.equal(field);
      }
      expect(await myOrders()).to.equal(0);
    });

    it('finds duplicates only within one object, through strings that look like JSON', () => {
      expect(duplicateKeyPath('{"a":1,"b":{"a":2},"c":[{"a":1},{"a":2}]}')).to.equal(undefined);
      expect(duplicateKeyPath('{"a":"\\",\\"a\\":","b":1}')).to.equal(undefined);
      expect(duplicateKeyPath('[{"x":1},{"x":1,"y":[1,{"z":1,"z":2}]}]')).to.deep.equal([1, 'y', 1, 'z']);
    });
  });

  describe('strings that used to reach PostgreSQL', () => {
    const NUL = 'a\u0000b';
    const LONE = 'a\ud800b';

    it('refuses NUL and lone surrogates in every string of an order, creating nothing', async () => {
      for (const bad of [NUL, LONE]) {
        const bodies = [
          placeBody({ storeId: bad }),
          placeBody({ items: [{ foodId: bad, qty: 1 }] }),
          placeBody({ address: { area: bad, line: 'l' } }),
          placeBody({ address: { area: 'a', line: bad } }),
        ];
        for (const body of bodies) expectError(await sys.request('POST', '/orders', { token: p.customer, body }), 400, 'invalid_body');
      }
      expect(await myOrders()).to.equal(0);
    });

    it('refuses them in a reason, a menu, a query and a path id, changing nothing', async () => {
      const order = await sys.placeOrder(p);
      await sys.drive(p, order.id, ['pay']);
      for (const reason of [NUL, LONE, 'line\nbreak', ' ', 'x'.repeat(501)]) {
        expectError(await sys.request('POST', `/orders/${order.id}/reject`, { token: p.store, body: { reason } }), 400, 'invalid_body');
      }
      for (const name of [NUL, LONE]) {
        const menu = [{ foodId: 'bibimbap', name, price: 1, available: true }];
        expectError(await sys.request('PUT', `/stores/${p.storeId}/menu`, { token: p.store, body: menu }), 400, 'invalid_body');
      }
      expect((await sys.request('GET', `/stores/${p.storeId}/menu`, { token: p.store })).body).to.deep.equal(
        [...MENU].sort((a, b) => a.foodId.localeCompare(b.foodId)),
      );
      expectError(await sys.request('GET', '/orders?area=a%00b', { token: p.rider }), 400, 'invalid_body');
      expectError(await sys.request('GET', '/orders?area=a%ED%A0%80b', { token: p.rider }), 400, 'invalid_body');
      expectError(await sys.request('GET', '/stores/a%00b/menu', { token: p.customer }), 404, 'not_found');
      expectError(await sys.request('GET', '/stores/a%ED%A0%80b/menu', { token: p.customer }), 404, 'not_found');
      expectError(await sys.request('GET', '/orders/%00', { token: p.customer }), 404, 'not_found');
      expect((await sys.request('GET', `/orders/${order.id}`, { token: p.customer })).body.status).to.equal('paid');
    });

    it('keeps ids to their charset, and text to its length after trimming', async () => {
      for (const storeId of ['a b', 'a/b', 'ä', 'x'.repeat(101), '', '.', '..']) {
        expectError(await sys.request('POST', '/orders', { token: p.customer, body: placeBody({ storeId }) }), 400, 'invalid_body');
      }
      const res = await sys.request('POST', '/orders', { token: p.customer, body: placeBody({ address: { area: p.area, line: '  2 Gangnam-daero  ' } }) });
      expect(res.status).to.equal(201);
      expect(res.body.address.line).to.equal('2 Gangnam-daero');
    });
  });

  describe('invisible and direction-changing characters in free text', () => {
    /** Each reads as nothing, or changes how the text around it reads, or breaks a line in a log. */
    const HIDDEN: Record<string, string> = {
      'U+0085 (next line, C1)': '\u0085',
      'U+009B (control sequence introducer, C1)': '\u009b',
      'U+2028 (line separator)': '\u2028',
      'U+2029 (paragraph separator)': '\u2029',
      'U+202A (left-to-right embedding)': '\u202a',
      'U+202E (right-to-left override)': '\u202e',
      'U+2066 (left-to-right isolate)': '\u2066',
      'U+2069 (pop directional isolate)': '\u2069',
      'U+200F (right-to-left mark)': '\u200f',
      'U+200B (zero-width space)': '\u200b',
      'U+00AD (soft hyphen)': '\u00ad',
      'U+FEFF (byte order mark)': '\ufeff',
      'U+E0041 (tag character)': '\u{e0041}',
    };

    it('the one text rule refuses each, anywhere in the text, and normalises what it accepts to NFC', () => {
      const rule = text(50);
      for (const [name, c] of Object.entries(HIDDEN)) {
        for (const value of [`a${c}b`, `${c}ab`, `ab${c}`]) expect(rule.safeParse(value).success, `${name} in ${JSON.stringify(value)}`).to.equal(false);
      }
      // Decomposed "é" (e + combining acute) is stored as the one code point that reads the same.
      expect(rule.parse(' Cafe\u0301 ')).to.equal('Caf\u00e9');
      expect(rule.parse('\u1100\u1161')).to.equal('\uac00'); // Hangul jamo composed into a syllable
      expect(rule.parse('Bibimbap 🍚 비빔밥')).to.equal('Bibimbap 🍚 비빔밥');
    });

    it('refuses each in a menu name, an address line and a reason with 400 naming the field, and changes nothing', async () => {
      const order = await sys.placeOrder(p);
      await sys.drive(p, order.id, ['pay']);
      for (const [name, c] of Object.entries(HIDDEN)) {
        const menu = await sys.request('PUT', `/stores/${p.storeId}/menu`, { token: p.store, body: [{ foodId: 'bibimbap', name: `Bibim${c}bap`, price: 1, available: true }] });
        expectError(menu, 400, 'invalid_body');
        expect(menu.body.error.details.issues.map((i: { field: string }) => i.field), name).to.deep.equal(['body.0.name']);
        const placed = await sys.request('POST', '/orders', { token: p.customer, body: placeBody({ address: { area: p.area, line: `1 Teheran${c}-ro` } }) });
        expectError(placed, 400, 'invalid_body');
        expect(placed.body.error.details.issues.map((i: { field: string }) => i.field), name).to.deep.equal(['body.address.line']);
        expectError(await sys.request('POST', `/orders/${order.id}/reject`, { token: p.store, body: { reason: `out of${c} rice` } }), 400, 'invalid_body');
        expectError(await sys.request('POST', `/orders/${order.id}/cancel`, { token: p.customer, body: { reason: `changed${c} my mind` } }), 400, 'invalid_body');
      }
      expect((await sys.request('GET', `/stores/${p.storeId}/menu`, { token: p.store })).body).to.deep.equal([...MENU].sort((a, b) => a.foodId.localeCompare(b.foodId)));
      expect(await myOrders()).to.equal(1);
      expect((await sys.request('GET', `/orders/${order.id}`, { token: p.customer })).body).to.deep.include({ status: 'paid', reason: null });
    });

    it('stores menu names, address lines and reasons NFC-normalised', async () => {
      const menu = await sys.request('PUT', `/stores/${p.storeId}/menu`, { token: p.store, body: [{ foodId: 'creme', name: 'Cre\u0300me bru\u0302le\u0301e', price: 1000, available: true }] });
      expect(menu.status).to.equal(200);
      expect((await sys.request('GET', `/stores/${p.storeId}/menu`, { token: p.customer })).body[0].name).to.equal('Cr\u00e8me br\u00fbl\u00e9e');
      const placed = await sys.request('POST', '/orders', {
        token: p.customer,
        body: placeBody({ items: [{ foodId: 'creme', qty: 1 }], address: { area: p.area, line: '3 Rue de l\u2019E\u0301glise' } }),
      });
      expect(placed.status, JSON.stringify(placed.body)).to.equal(201);
      expect(placed.body.address.line).to.equal('3 Rue de l\u2019\u00c9glise');
      expect(placed.body.items[0].name).to.equal('Cr\u00e8me br\u00fbl\u00e9e');
      const cancelled = await sys.request('POST', `/orders/${placed.body.id}/cancel`, { token: p.customer, body: { reason: 'de\u0301ja\u0300 vu' } });
      expect(cancelled.status).to.equal(200);
      expect((await sys.request('GET', `/orders/${placed.body.id}`, { token: p.customer })).body.reason).to.equal('d\u00e9j\u00e0 vu');
      const events = (await sys.request('GET', `/orders/${placed.body.id}/events`, { token: p.customer })).body as { type: string; data: any }[];
      expect(events.find((e) => e.type === 'OrderCancelled')!.data.reason).to.equal('d\u00e9j\u00e0 vu');
    });
  });

  describe('amounts and lines', () => {
    it('bounds menu prices to 0..10,000,000 integers', async () => {
      for (const price of [2 ** 31, 10_000_001, -1, 1.5, 1e308]) {
        const menu = [{ foodId: 'x', name: 'X', price, available: true }];
        expectError(await sys.request('PUT', `/stores/${p.storeId}/menu`, { token: p.store, body: menu }), 400, 'invalid_body');
      }
      const top = [{ foodId: 'caviar', name: 'Caviar', price: 10_000_000, available: true }];
      expect((await sys.request('PUT', `/stores/${p.storeId}/menu`, { token: p.store, body: top })).status).to.equal(200);
    });

    it('replaces one menu from many requests at once without a 500: the last replacement wins whole', async () => {
      const menus = Array.from({ length: 8 }, (_, i) => [
        { foodId: `dish-${i}`, name: `Dish ${i}`, price: 1000 + i, available: true },
        { foodId: 'bibimbap', name: `Bibimbap ${i}`, price: 9000 + i, available: true },
      ]);
      const answers = await Promise.all(menus.map((body) => sys.request('PUT', `/stores/${p.storeId}/menu`, { token: p.store, body })));
      expect(answers.map((r) => r.status)).to.deep.equal(menus.map(() => 200));
      const stored = (await sys.request('GET', `/stores/${p.storeId}/menu`, { token: p.store })).body as { foodId: string; name: string }[];
      const sorted = (m: { foodId: string }[]) => [...m].sort((a, b) => a.foodId.localeCompare(b.foodId));
      expect(menus.map(sorted)).to.deep.include(stored);
    });

    it('refuses a food on two lines instead of merging them past the per-line limit', async () => {
      const items = [
        { foodId: 'bibimbap', qty: 100 },
        { foodId: 'bibimbap', qty: 100 },
      ];
      const res = await sys.request('POST', '/orders', { token: p.customer, body: placeBody({ items }) });
      expectError(res, 400, 'invalid_body');
      expect(res.body.error.details.issues[0].field).to.equal('body.items.1.foodId');
      expectError(await sys.request('POST', '/orders', { token: p.customer, body: placeBody({ items: [{ foodId: 'bibimbap', qty: 101 }] }) }), 400, 'invalid_body');
      const lines = Array.from({ length: 51 }, (_, i) => ({ foodId: `f${i}`, qty: 1 }));
      expectError(await sys.request('POST', '/orders', { token: p.customer, body: placeBody({ items: lines }) }), 400, 'invalid_body');
      expect(await myOrders()).to.equal(0);
    });

    it('answers 404 store_not_found for a store without a menu, and 422 for a food it lacks', async () => {
      const res = await sys.request('POST', '/orders', { token: p.customer, body: placeBody({ storeId: `no-such-store-${p.storeId}` }) });
      expectError(res, 404, 'store_not_found');
      expect(res.body.error.details).to.deep.equal({ storeId: `no-such-store-${p.storeId}` });
      expectError(await sys.request('POST', '/orders', { token: p.customer, body: placeBody({ items: [{ foodId: 'pizza', qty: 1 }] }) }), 422, 'unprocessable');
      expect(await myOrders()).to.equal(0);
    });

    it('refuses a free order at placement (never a retryable 503 at payment), and a total above the bound', async () => {
      const menu = [
        { foodId: 'water', name: 'Water', price: 0, available: true },
        { foodId: 'caviar', name: 'Caviar', price: 10_000_000, available: true },
        { foodId: 'truffle', name: 'Truffle', price: 10_000_000, available: true },
      ];
      expect((await sys.request('PUT', `/stores/${p.storeId}/menu`, { token: p.store, body: menu })).status).to.equal(200);
      const ledger = await sys.ledger();
      const free = await sys.request('POST', '/orders', { token: p.customer, body: placeBody({ items: [{ foodId: 'water', qty: 3 }] }) });
      expectError(free, 422, 'free_order');
      expect(free.headers.get('retry-after')).to.equal(null);
      const over = await sys.request('POST', '/orders', {
        token: p.customer,
        body: placeBody({ items: [{ foodId: 'caviar', qty: 100 }, { foodId: 'truffle', qty: 1 }] }),
      });
      expectError(over, 422, 'total_too_large');
      expect(over.body.error.details).to.deep.equal({ total: MAX_ORDER_TOTAL + 10_000_000, max: MAX_ORDER_TOTAL });
      expect(await myOrders()).to.equal(0);
      expect(await sys.ledger()).to.deep.equal(ledger);
      // The bound itself is accepted and fits a 32-bit column (checked by PostgreSQL when it is stored).
      const top = await sys.request('POST', '/orders', { token: p.customer, body: placeBody({ items: [{ foodId: 'caviar', qty: 100 }] }) });
      expect(top.status).to.equal(201);
      expect(top.body.total).to.equal(MAX_ORDER_TOTAL);
    });
  });

  describe('headers', () => {
    it('refuses an Idempotency-Key that is too long or not visible ASCII, and a malformed If-Match', async () => {
      for (const key of ['k'.repeat(201), 'a b', 'caf\u00e9']) {
        const res = await sys.request('POST', '/orders', { token: p.customer, body: placeBody(), headers: { 'idempotency-key': key } });
        expectError(res, 400, 'invalid_body');
        expect(res.body.error.details.issues[0].field).to.equal('header.idempotency-key');
      }
      const order = await sys.placeOrder(p);
      expectError(await sys.request('POST', `/orders/${order.id}/pay`, { token: p.customer, headers: { 'if-match': 'W/"x"' } }), 400, 'invalid_body');
      expect(await myOrders()).to.equal(1);
    });
  });

  describe('a 500', () => {
    it('says only "internal error" and the request id; its log line holds no SQL and no parameters', async () => {
      const captured = captureLog();
      const secret = 'Apt 1201, 77 Secret-ro, Seocho-gu';
      const app = await serveApp(sys.runtime, {}, {
        log: captured.log,
        prepare: (koa) =>
          koa.use(async (ctx, next) => {
            if (ctx.path !== '/test-only/failing-query') return next();
            await sys.runtime.db.query('SELECT $1::int AS n', [secret]);
          }),
      });
      try {
        const res = await app.request('GET', '/test-only/failing-query', { headers: { 'x-request-id': 'trace-500' } });
        expect(res.status).to.equal(500);
        const requestId = res.headers.get('x-request-id');
        expect(requestId).to.match(UUID);
        expect(res.body).to.deep.equal({ error: { code: 'internal', message: 'internal error', details: { requestId } } });
        const failures = captured.lines().filter((l) => l.msg === 'request failed');
        expect(failures).to.have.length(1);
        // The log line is found by the service's id, and by the client's beside it.
        expect(failures[0]).to.deep.include({ requestId, clientRequestId: 'trace-500', level: 50 });
        expect(failures[0]!.err).to.deep.include({ type: 'QueryFailedError', code: '22P02' });
        const text = captured.text();
        expect(text).not.to.include('Secret-ro');
        expect(text).not.to.include('SELECT');
        expect(text).not.to.include('parameters');
      } finally {
        await app.close();
      }
    });
  });

  describe('the log', () => {
    it('keeps database errors to their SQLSTATE wherever they appear, and redacts bodies, tokens and addresses', async () => {
      const captured = captureLog();
      const secret = 'Apt 1201, 77 Secret-ro';
      const failed = await sys.runtime.db.query('INSERT INTO refunds (order_id, charge_id, refund_id, amount) VALUES ($1, $2, $3, $4)', [
        '00000000-0000-4000-8000-000000000000',
        secret,
        'r',
        2 ** 31,
      ]).then(
        () => expect.fail('the insert succeeded'),
        (err: Error) => err,
      );
      captured.log.error({ err: new Error('placing failed', { cause: failed }) }, 'wrapped');
      captured.log.warn({ error: failed, body: { address: { line: secret } }, headers: { authorization: 'Bearer abc.def.ghi' } }, 'direct');
      captured.log.info({ order: { address: { line: secret } }, request: { body: secret } }, 'nested');
      const text = captured.text();
      expect(text).not.to.include('Secret-ro');
      expect(text).not.to.include('2147483648');
      expect(text).not.to.include('INSERT');
      expect(text).not.to.include('abc.def.ghi');
      const [wrapped, direct] = captured.lines();
      expect((wrapped!.err as { cause: unknown }).cause).to.deep.include({ type: 'QueryFailedError', code: '22003' });
      expect(direct!.error).to.deep.include({ code: '22003' });
      expect((direct!.error as { message: string }).message).to.match(/^database error 22003/);
    });
  });

  describe('/metrics with METRICS_TOKEN', () => {
    it('needs the token as a Bearer when one is configured', async () => {
      const token = 'metrics-token-0123456789';
      const app = await serveApp(sys.runtime, { metricsToken: token });
      try {
        expectError(await app.request('GET', '/metrics'), 401, 'unauthenticated');
        expectError(await app.request('GET', '/metrics', { token: `${token}x` }), 401, 'unauthenticated');
        expectError(await app.request('GET', '/metrics', { token: p.admin }), 401, 'unauthenticated');
        const ok = await app.request('GET', '/metrics', { token });
        expect(ok.status).to.equal(200);
        expect(ok.body).to.include('baedal_http_requests_total');
        expect((await app.request('GET', '/healthz')).status).to.equal(200);
      } finally {
        await app.close();
      }
    });
  });
});
