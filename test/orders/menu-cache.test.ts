import { expect } from 'chai';
import { cachedMenuLookup, type MenuLookup } from '../../src/catalog/pricing.ts';
import type { OrderView } from '../../src/actors/order-view.ts';
import { MENU, withSharedSystem, type AppInstance, type Parties, type TestSystem } from '../support/system.ts';

type Row = Awaited<ReturnType<MenuLookup>>[number];

/** The cache's own rules, over a menu held in memory (pure: the real reads are tested below). */
describe('menu cache: what it answers itself and what it reads again', () => {
  function menuOf(lines: Row[]) {
    const reads: { storeId: string; foodIds: string[] }[] = [];
    const read: MenuLookup = async (storeId, foodIds) => {
      reads.push({ storeId, foodIds: [...foodIds] });
      return lines.filter((l) => foodIds.includes(l.food_id)).map((l) => ({ ...l }));
    };
    return { reads, lines, read };
  }
  const bibimbap: Row = { food_id: 'bibimbap', name: 'Bibimbap', price: 9000, available: true };
  const soup: Row = { food_id: 'soup', name: 'Soup', price: 4000, available: false };

  it('answers a lookup it holds every food of, each served, without reading', async () => {
    const m = menuOf([bibimbap, soup]);
    const menus = cachedMenuLookup(m.read);
    expect(await menus('s1', ['bibimbap'])).to.deep.equal([bibimbap]);
    expect(await menus('s1', ['bibimbap'])).to.deep.equal([bibimbap]);
    expect(m.reads, 'one read for two lookups').to.have.length(1);
  });

  it('reads again whatever it does not hold, or holds as unavailable: a refusal is never answered from the cache', async () => {
    const m = menuOf([bibimbap, soup]);
    const menus = cachedMenuLookup(m.read);
    await menus('s1', ['soup']);
    m.lines[1] = { ...soup, available: true };
    expect(await menus('s1', ['soup']), 'served again since').to.deep.equal([{ ...soup, available: true }]);
    expect(await menus('s1', ['bibimbap', 'unknown'])).to.deep.equal([bibimbap]);
    expect(await menus('s1', ['bibimbap', 'unknown'])).to.deep.equal([bibimbap]);
    expect(m.reads.map((r) => r.foodIds)).to.deep.equal([['soup'], ['soup'], ['bibimbap', 'unknown'], ['bibimbap', 'unknown']]);
  });

  it('fresh reads whatever it holds and keeps what it read; forget drops a store', async () => {
    const m = menuOf([bibimbap]);
    const menus = cachedMenuLookup(m.read);
    await menus('s1', ['bibimbap']);
    m.lines[0] = { ...bibimbap, price: 9500 };
    expect((await menus('s1', ['bibimbap']))[0]!.price, 'the cached line').to.equal(9000);
    expect((await menus.fresh!('s1', ['bibimbap']))[0]!.price).to.equal(9500);
    expect((await menus('s1', ['bibimbap']))[0]!.price, 'kept from the fresh read').to.equal(9500);
    m.lines.pop();
    expect(await menus.fresh!('s1', ['bibimbap']), 'a line gone from the menu').to.deep.equal([]);
    m.lines.push(bibimbap);
    await menus('s1', ['bibimbap']);
    menus.forget!('s1');
    await menus('s1', ['bibimbap']);
    expect(m.reads).to.have.length(5);
  });

  it('keeps the stores used last, at most maxStores', async () => {
    const m = menuOf([bibimbap]);
    const menus = cachedMenuLookup(m.read, { maxStores: 2 });
    for (const s of ['a', 'b', 'a', 'c']) await menus(s, ['bibimbap']);
    expect(m.reads.map((r) => r.storeId), 'b went out, a stayed (used since)').to.deep.equal(['a', 'b', 'c']);
    await menus('a', ['bibimbap']);
    await menus('b', ['bibimbap']);
    expect(m.reads.map((r) => r.storeId)).to.deep.equal(['a', 'b', 'c', 'b']);
  });
});

/**
 * The cache in the service: the menu is read once per store, not per placement, and a change made
 * by another replica (whose cache this one never hears of) still applies to the next order written,
 * because the statement that writes a new order checks the lines it was priced from.
 */
describe('menu cache: a price change on another replica applies to the next order', function () {
  this.timeout(30_000);
  let sys: TestSystem;
  let p: Parties;
  let other: AppInstance | undefined;
  withSharedSystem({ system: (s) => (sys = s), parties: (x) => (p = x) });
  afterEach(async () => {
    await other?.close();
    other = undefined;
  });

  /** Statements this replica sends while `fn` runs, by kind. */
  async function counting<T>(fn: () => Promise<T>): Promise<{ result: T; menuReads: number; orderWrites: number }> {
    const db = sys.runtime.pg;
    const texts: string[] = [];
    const previous = db.onStatement;
    db.onStatement = (text, params) => {
      texts.push(text);
      previous?.(text, params);
    };
    try {
      const result = await fn();
      return {
        result,
        menuReads: texts.filter((t) => /FROM menu_items m JOIN unnest/.test(t)).length,
        orderWrites: texts.filter((t) => /INSERT INTO orders/.test(t)).length,
      };
    } finally {
      db.onStatement = previous;
    }
  }
  const menuWith = (changes: Partial<(typeof MENU)[number]>) => MENU.map((m) => (m.foodId === 'bibimbap' ? { ...m, ...changes } : m));

  it('reads a store\'s menu once for the orders placed at it', async () => {
    await sys.placeOrder(p);
    const again = await counting(() => sys.placeOrder(p));
    expect(again.menuReads, 'menu reads of the second placement').to.equal(0);
    expect(again.result.total).to.equal(18_000);
  });

  it('writes the next order at the new price after another replica changed it, and prices it again only once', async () => {
    const first = await sys.placeOrder(p);
    expect(first.total).to.equal(18_000);
    other = await sys.startReplica();
    const put = await other.request('PUT', `/stores/${p.storeId}/menu`, { token: p.store, body: menuWith({ price: 9500 }) });
    expect(put.status).to.equal(200);

    const next = await counting(() => sys.placeOrder(p));
    expect(next.result.total, 'priced from the menu as it is now').to.equal(19_000);
    expect(next.result.items[0]).to.include({ foodId: 'bibimbap', unitPrice: 9500, lineTotal: 19_000 });
    expect(next.menuReads, 'the menu read again once').to.equal(1);
    expect(next.orderWrites, 'a statement that refused the stale price, then the one that wrote').to.equal(2);
    const read = await other.request<OrderView>('GET', `/orders/${next.result.id}`, { token: p.customer });
    expect(read.body.total, 'as stored, read on the other replica').to.equal(19_000);
    const [count] = await sys.runtime.pg.query<{ n: number }>('SELECT count(*)::int AS n FROM orders WHERE customer_id = $1', [p.customerId]);
    expect(count!.n, 'no order written at the old price').to.equal(2);
  });

  it('refuses a food another replica made unavailable, though this one held it as served', async () => {
    await sys.placeOrder(p);
    other = await sys.startReplica();
    expect((await other.request('PUT', `/stores/${p.storeId}/menu`, { token: p.store, body: menuWith({ available: false }) })).status).to.equal(200);
    const res = await sys.request<{ error: { code: string; details: { unavailable: string[] } } }>('POST', '/orders', {
      token: p.customer,
      body: { storeId: p.storeId, items: [{ foodId: 'bibimbap', qty: 1 }], address: { area: p.area, line: '1 Teheran-ro' } },
    });
    expect(res.status).to.equal(422);
    expect(res.body.error.code).to.equal('unprocessable');
    expect(res.body.error.details.unavailable).to.deep.equal(['bibimbap']);
    const [count] = await sys.runtime.pg.query<{ n: number }>('SELECT count(*)::int AS n FROM orders WHERE customer_id = $1', [p.customerId]);
    expect(count!.n, 'only the first order').to.equal(1);
  });

  it('a menu replaced on this replica is read again at once', async () => {
    await sys.placeOrder(p);
    expect((await sys.request('PUT', `/stores/${p.storeId}/menu`, { token: p.store, body: menuWith({ name: 'Dolsot bibimbap' }) })).status).to.equal(200);
    const next = await counting(() => sys.placeOrder(p));
    expect(next.result.items[0]!.name).to.equal('Dolsot bibimbap');
    expect(next.orderWrites, 'written by its first statement').to.equal(1);
  });
});
