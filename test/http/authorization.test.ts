import { readFileSync } from 'node:fs';
import { expect } from 'chai';
import type { Role } from '../../src/actors/principal.ts';
import { commandBody, MENU, sharedSystem, type ApiResponse, type Parties, type TestSystem } from '../support/system.ts';

/**
 * The authorization matrix, generated from the README's table ("Authorization and limits"), so the
 * documentation and the behaviour cannot drift: every cell is one request against the service.
 */

/** `no customer` and `delivery`: served to a rider, without the customer (and, for `delivery`, with the address line). */
type Outcome = 'allowed' | 'no customer' | 'delivery' | '401' | '403' | '404';
type Caller = 'anonymous' | Role;
interface Cell {
  own?: Outcome;
  other?: Outcome;
  /** The same for every caller of the role (or no own/other relation for this route). */
  any?: Outcome;
}
interface Row {
  line: number;
  routes: { method: string; path: string }[];
  state: string | undefined;
  cells: Record<Caller, Cell>;
}

const CALLERS: readonly Caller[] = ['anonymous', 'customer', 'store', 'rider', 'admin'];
const OUTCOME = /^(allowed|no customer|delivery|401|403|404)$/;

function parseCell(text: string, where: string): Cell {
  if (OUTCOME.test(text)) return { any: text as Outcome };
  const match = /^own: (allowed|no customer|delivery|401|403|404), other: (allowed|no customer|delivery|401|403|404)$/.exec(text);
  if (!match) throw new Error(`${where}: cannot read the cell "${text}"`);
  return { own: match[1] as Outcome, other: match[2] as Outcome };
}

/** The rows of the first table under "## Authorization and limits" in README.md. */
function readAuthorizationTable(markdown: string): Row[] {
  const lines = markdown.split('\n');
  const start = lines.findIndex((l) => l.trim() === '## Authorization and limits');
  if (start < 0) throw new Error('README.md has no "## Authorization and limits" section');
  const header = lines.findIndex((l, i) => i > start && l.startsWith('| route |'));
  if (header < 0 || lines.slice(start + 1, header).some((l) => l.startsWith('## '))) throw new Error('the section has no table');
  const columns = lines[header]!.split('|').slice(1, -1).map((c) => c.trim());
  expect(columns, 'the table columns').to.deep.equal(['route', 'order is', ...CALLERS]);
  const rows: Row[] = [];
  for (let i = header + 2; i < lines.length && lines[i]!.startsWith('|'); i += 1) {
    const cells = lines[i]!.split('|').slice(1, -1).map((c) => c.trim());
    const where = `README.md line ${i + 1}`;
    if (cells.length !== columns.length) throw new Error(`${where}: ${cells.length} cells, not ${columns.length}`);
    const routes = [...cells[0]!.matchAll(/`(GET|POST|PUT) (\/[^`]*)`/g)].map((m) => ({ method: m[1]!, path: m[2]! }));
    if (routes.length === 0) throw new Error(`${where}: no route in "${cells[0]}"`);
    const state = /^`(\w+)`$/.exec(cells[1]!)?.[1];
    if (!state && cells[1] !== '—') throw new Error(`${where}: "order is" must be a state in backticks or —`);
    const byCaller = Object.fromEntries(CALLERS.map((c, k) => [c, parseCell(cells[k + 2]!, `${where}, ${c}`)])) as Record<Caller, Cell>;
    rows.push({ line: i + 1, routes, state, cells: byCaller });
  }
  return rows;
}

const README = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
const ROWS = readAuthorizationTable(README);

interface Graph {
  initial: string;
  transitions: { source: string; target: string; command: string }[];
}

/** The commands that take a new order to `state`, by breadth-first search over the machine's graph. */
function pathTo(graph: Graph, state: string): string[] {
  const queue: [string, string[]][] = [[graph.initial, []]];
  const seen = new Set([graph.initial]);
  while (queue.length > 0) {
    const [at, path] = queue.shift()!;
    if (at === state) return path;
    for (const t of graph.transitions.filter((t) => t.source === at && !seen.has(t.target))) {
      seen.add(t.target);
      queue.push([t.target, [...path, t.command]]);
    }
  }
  throw new Error(`the order machine has no state ${state}`);
}

describe('authorization matrix (README.md "Authorization and limits")', () => {
  let sys: TestSystem;
  let graph: Graph;
  let p: Parties;
  /** Callers of each role who are not the parties of `p`. */
  let strangers: Record<Role, string>;
  /** The customers of the orders the matrix makes: no answer to a rider may name them. */
  let customerIds: string[];

  before(async () => {
    sys = await sharedSystem();
    graph = (await sys.request<Graph>('GET', '/machines/order')).body;
    p = await sys.newParties();
    const other = await sys.newParties();
    strangers = { customer: other.customer, store: other.store, rider: other.rider, admin: other.admin };
    customerIds = [p.customerId, other.customerId];
    // Orders of the parties in the states a rider can see, so the lists a rider reads hold them.
    for (const state of ['cooked', 'pickedUp', 'delivered']) await newOrderIn(state);
  });

  it('covers every route of the app, and every route it names exists', () => {
    const documented = new Set(ROWS.flatMap((r) => r.routes.map((x) => `${x.method} ${x.path}`)));
    const served = new Set(sys.routes.map((r) => `${r.method.toUpperCase()} ${r.path}`));
    expect([...served].filter((r) => !documented.has(r)), 'routes missing from the table').to.deep.equal([]);
    expect([...documented].filter((r) => !served.has(r)), 'routes in the table the app does not serve').to.deep.equal([]);
  });

  /** Whose token a caller presents: the resource's own party, a stranger of that role, or none. */
  function tokenOf(caller: Caller, relation: 'own' | 'other'): string | undefined {
    if (caller === 'anonymous') return undefined;
    if (caller === 'admin') return p.admin;
    return relation === 'own' ? p[caller] : strangers[caller];
  }

  async function newOrderIn(state: string): Promise<string> {
    const order = await sys.placeOrder(p);
    const path = pathTo(graph, state);
    if (path.length > 0) await sys.drive(p, order.id, path);
    return order.id;
  }

  async function call(method: string, path: string, token: string | undefined, orderId: string | undefined): Promise<ApiResponse> {
    let concrete = path.replace(':storeId', p.storeId).replace(':customerId', p.customerId).replace(':riderId', p.riderId).replace(':id', orderId ?? ':id');
    if (path === '/deliveries') concrete += `?area=${p.area}`;
    let body: unknown;
    if (method === 'POST' && path.startsWith('/admin/')) body = {};
    if (method === 'PUT') body = MENU;
    if (method === 'POST' && path === '/orders') body = { storeId: p.storeId, items: [{ foodId: 'bibimbap', qty: 1 }], address: { area: p.area, line: '1 Teheran-ro' } };
    if (method === 'POST' && path.startsWith('/orders/:id/')) body = commandBody(path.slice('/orders/:id/'.length));
    return sys.request(method, concrete, { token, body });
  }

  /** What a rider is served of an order (`GET /orders/:id`) or of its journal (`/events`). */
  function expectRiderView(path: string, body: any, outcome: 'no customer' | 'delivery', what: string): void {
    const line = outcome === 'delivery' ? '1 Teheran-ro' : null;
    if (path.endsWith('/events')) {
      const placed = (body as { type: string; data: any; actor: { sub: string | null; role: string } }[]).find((e) => e.type === 'OrderPlaced')!;
      expect(placed.data, what).to.deep.include({ storeId: p.storeId, address: { area: p.area, line } });
      expect(placed.data.items, what).to.have.length.greaterThan(0);
      expect(placed.data, what).not.to.have.property('customerId');
      expect(placed.actor, what).to.deep.equal({ sub: null, role: 'customer' });
      const paid = (body as { type: string; data: any }[]).find((e) => e.type === 'OrderPaid')!;
      expect(paid.data, what).not.to.have.property('chargeId');
    } else {
      expect(body, what).to.deep.include({ customerId: null, address: { area: p.area, line }, chargeId: null, refund: null, reason: null });
      expect(body.items, what).to.have.length.greaterThan(0);
    }
  }

  function expectOutcome(res: ApiResponse, outcome: Outcome, what: string, path: string): void {
    if (outcome === 'allowed' || outcome === 'no customer' || outcome === 'delivery') {
      expect(res.status, `${what}: ${JSON.stringify(res.body).slice(0, 300)}`).to.be.within(200, 299);
      if (outcome !== 'allowed') expectRiderView(path, res.body, outcome, what);
      return;
    }
    expect(res.status, `${what}: ${JSON.stringify(res.body).slice(0, 300)}`).to.equal(Number(outcome));
    const code = { '401': 'unauthenticated', '403': 'forbidden', '404': 'not_found' }[outcome];
    expect(res.body.error.code, what).to.equal(code);
  }

  for (const row of ROWS) {
    for (const route of row.routes) {
      const title = `${route.method} ${route.path}${row.state ? ` on an order that is ${row.state}` : ''} (README line ${row.line})`;
      it(title, async () => {
        const ownsOrder = route.path.includes(':id');
        if (ownsOrder && !row.state) throw new Error(`README line ${row.line}: an order route needs "order is"`);
        for (const caller of CALLERS) {
          const cell = row.cells[caller];
          const cases: ['own' | 'other', Outcome][] = [];
          if (cell.any) {
            cases.push(['own', cell.any]);
            // A stranger of the role is a different caller only where the route has an owner.
            const owned = ownsOrder || /:(storeId|customerId|riderId)\b/.test(route.path);
            if (owned && caller !== 'anonymous' && caller !== 'admin') cases.push(['other', cell.any]);
          } else {
            cases.push(['own', cell.own!], ['other', cell.other!]);
          }
          for (const [relation, outcome] of cases) {
            const orderId = ownsOrder ? await newOrderIn(row.state!) : undefined;
            if (orderId && caller === 'rider' && relation === 'own' && cell.own) {
              const order = (await sys.request('GET', `/orders/${orderId}`, { token: p.admin })).body as { riderId: string | null };
              expect(order.riderId, `README line ${row.line}: "rider own" needs an order a rider picked`).to.equal(p.riderId);
            }
            const res = await call(route.method, route.path, tokenOf(caller, relation), orderId);
            const what = `${title}: ${caller}${caller === 'anonymous' || caller === 'admin' ? '' : ` (${relation})`}`;
            expectOutcome(res, outcome, what, route.path);
            if (caller === 'rider') {
              const text = typeof res.body === 'string' ? res.body : JSON.stringify(res.body);
              for (const id of customerIds) expect(text, `${what}: an answer to a rider names a customer`).not.to.include(id);
            }
          }
        }
      });
    }
  }
});
