import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import fc from 'fast-check';
import { COMMAND_ROLE } from '../../src/actors/order-actor.ts';
import type { Role } from '../../src/actors/principal.ts';
import { signToken } from '../../src/http/auth.ts';
import type { Route } from '../../src/http/route.ts';
import type { OrderCommand } from '../../src/machines/order/contract.ts';
import { AUTH_SECRET, MENU, sharedSystem, type Parties, type TestSystem } from '../support/system.ts';

/**
 * Property-based fuzzing of every route in the app's route table with hostile input: a valid
 * request for the route with one to three things made invalid (path ids, query, headers, body),
 * and wholly random requests. Every answer must be a 4xx (random ones: anything but a 5xx) with
 * the JSON error shape and an X-Request-Id, and nothing may change: no order created, no order's
 * state or journal moved, no charge or refund, no menu replaced.
 *
 * Bounded for CI: FUZZ_RUNS requests per route (default 40). A failure prints fast-check's seed
 * and path; FUZZ_SEED=<seed> replays the run.
 */
const RUNS_PER_ROUTE = Number(process.env.FUZZ_RUNS ?? 40);
const RANDOM_RUNS = RUNS_PER_ROUTE * 6;
const SEED = process.env.FUZZ_SEED !== undefined ? Number(process.env.FUZZ_SEED) : Math.floor(Math.random() * 2 ** 31);
const BODY_LIMIT_BYTES = 16 * 1024; // the harness's BODY_LIMIT

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Path = (string | number)[];

// ---------------------------------------------------------------------------------------------
// Hostile values
// ---------------------------------------------------------------------------------------------

/** The strings that used to reach PostgreSQL and fail there (500): NUL and lone UTF-16 surrogates. */
const NUL_AND_SURROGATES = ['a\u0000b', '\u0000', 'a\ud800', '\udfff', 'x\ud83dy', '\udc00\ud800'];

/** Strings that are neither a valid id nor valid free text; mostly NUL and lone surrogates. */
const poisonString: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.oneof(fc.constantFrom(...NUL_AND_SURROGATES), fc.string({ maxLength: 12 }).map((s) => `${s}\u0000${s}`)) },
  { weight: 3, arbitrary: fc.string({ maxLength: 12 }).map((s) => `${s}\udc00${s}`) },
  { weight: 2, arbitrary: fc.constantFrom('line\nbreak', 'tab\there', 'del\u007f', 'esc\u001b[31m', '', '   ', 'x'.repeat(601), '\r\n') },
);

/** Strings outside the id charset (a path id or a query id). */
const poisonId: fc.Arbitrary<string> = fc.oneof(
  poisonString,
  fc.constantFrom('a b', 'a/b', 'é', '비빔밥', '%', '%zz', '#frag', '?q=1', 'x'.repeat(101), '<script>', 'a;b', "a'b", 'a"b', '\\', '*', '~x'),
);

const notAString: fc.Arbitrary<Json> = fc.oneof(fc.integer(), fc.constant(null), fc.boolean(), fc.constant({}), fc.constant([]), fc.constant([''])) as fc.Arbitrary<Json>;
const badForString: fc.Arbitrary<Json> = fc.oneof(poisonString, notAString);
const badForNumber: fc.Arbitrary<Json> = fc.oneof(
  fc.constantFrom(-1, 0.5, 2 ** 31, 2 ** 53 + 2, 1e308, 10_000_001, -(2 ** 31), 1.0000001),
  fc.double({ noNaN: true, noDefaultInfinity: true }).filter((d) => !Number.isInteger(d)),
  fc.string({ maxLength: 5 }),
  fc.constantFrom<Json>(null, true, {}, [], ['1'], '1'),
);
const badForBoolean: fc.Arbitrary<Json> = fc.oneof(fc.string({ maxLength: 5 }), fc.integer(), fc.constantFrom<Json>(null, {}, [], 'true', 'false', 0, 1));
/** Keys no schema has, with the classic prototype-pollution names. */
const strangeKey: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', 'valueOf', 'hasOwnProperty', 'isAdmin', 'role', 'total', 'status', 'customerId', ''),
  fc.string({ minLength: 1, maxLength: 12 }),
);
/** Any JSON value, including deep ones. */
const anyJson: fc.Arbitrary<Json> = fc.json({ maxDepth: 4 }).map((text) => JSON.parse(text) as Json);

// ---------------------------------------------------------------------------------------------
// Mutations: each one alone makes a valid request invalid
// ---------------------------------------------------------------------------------------------

type Mutation =
  | { kind: 'param'; value: string }
  | { kind: 'query-unknown'; key: string; value: string }
  | { kind: 'query-bad'; key: string; value: string }
  | { kind: 'query-twice'; key: string }
  | { kind: 'leaf'; pick: number; value: Json }
  | { kind: 'extra-key'; pick: number; key: string; value: Json }
  | { kind: 'duplicate-key'; pick: number }
  | { kind: 'root'; text: string }
  | { kind: 'not-utf8'; at: number }
  | { kind: 'content-type'; value: string }
  | { kind: 'content-encoding'; value: string }
  | { kind: 'oversize' }
  | { kind: 'header'; name: 'idempotency-key' | 'if-match' | 'authorization'; value: string };

/** What a single mutation of each kind must be answered with. */
const EXPECTED: Record<Mutation['kind'], number[]> = {
  param: [404, 405],
  'query-unknown': [400],
  'query-bad': [400],
  'query-twice': [400],
  leaf: [400],
  'extra-key': [400],
  'duplicate-key': [400],
  root: [400],
  'not-utf8': [400],
  'content-type': [415],
  'content-encoding': [415],
  oversize: [413],
  header: [400, 401],
};

/** Query keys a route takes, with a valid value and values that are not. */
const QUERY_KEYS: Record<string, { valid: string; bad: fc.Arbitrary<string> }> = {
  status: { valid: 'paid', bad: fc.oneof(poisonId, fc.constantFrom('PAID', 'paid ', 'unknown', 'cooked,paid')) },
  area: { valid: 'gangnam', bad: poisonId },
  orderId: { valid: 'anything', bad: poisonId },
  version: { valid: '1', bad: fc.constantFrom('0', '-1', '1.5', 'abc', '', ' 1', '1 ', '01', '9999999', 'NaN', '0x1', '1e0') },
  limit: { valid: '5', bad: fc.constantFrom('0', '201', '-1', '1.5', 'abc', '', 'NaN', 'Infinity', '1e2', '0x10', ' 5', '5 ', '0005', '99999999999999999999') },
};

function queryKeysOf(route: Route): string[] {
  const shape = (route.query as { shape?: Record<string, unknown> } | undefined)?.shape;
  const keys = Object.keys(shape ?? {});
  for (const key of keys) if (!QUERY_KEYS[key]) throw new Error(`the fuzz suite does not know query parameter ${key} of ${route.path}: add it to QUERY_KEYS`);
  return keys;
}

// ---------------------------------------------------------------------------------------------
// JSON helpers
// ---------------------------------------------------------------------------------------------

function walk(value: Json, at: Path, visit: (v: Json, at: Path) => void): void {
  visit(value, at);
  if (Array.isArray(value)) value.forEach((v, i) => walk(v, [...at, i], visit));
  else if (value !== null && typeof value === 'object') for (const [k, v] of Object.entries(value)) walk(v, [...at, k], visit);
}

function leavesOf(body: Json): { at: Path; type: 'string' | 'number' | 'boolean' }[] {
  const leaves: { at: Path; type: 'string' | 'number' | 'boolean' }[] = [];
  walk(body, [], (v, at) => {
    if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') leaves.push({ at, type: typeof v as 'string' | 'number' | 'boolean' });
  });
  return leaves;
}

function objectsOf(body: Json): Path[] {
  const paths: Path[] = [];
  walk(body, [], (v, at) => {
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) paths.push(at);
  });
  return paths;
}

function at(body: Json, path: Path): Json {
  return path.reduce<Json>((v, k) => (v as Record<string | number, Json>)[k]!, body);
}

function replaced(body: Json, path: Path, value: Json): Json {
  if (path.length === 0) return value;
  const copy = structuredClone(body) as Record<string | number, Json>;
  const parent = at(copy as Json, path.slice(0, -1)) as Record<string | number, Json>;
  parent[path[path.length - 1]!] = value;
  return copy as Json;
}

/** JSON text of `value` with `extra` (raw `"key":value` text) added to the object at `target`. */
function serialize(value: Json, target: Path, extra: string, here: Path = []): string {
  const isTarget = here.length === target.length && here.every((k, i) => k === target[i]);
  if (Array.isArray(value)) return `[${value.map((v, i) => serialize(v, target, extra, [...here, i])).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}:${serialize(v, target, extra, [...here, k])}`);
    if (isTarget) entries.push(extra);
    return `{${entries.join(',')}}`;
  }
  return JSON.stringify(value);
}

/** Percent-encodes everything but unreserved characters; a lone surrogate becomes bytes that are not UTF-8. */
function pct(text: string): string {
  let out = '';
  for (const ch of text) {
    const code = ch.codePointAt(0)!;
    if (/^[A-Za-z0-9_.~-]$/.test(ch)) out += ch;
    else if (code >= 0xd800 && code <= 0xdfff) out += '%ED%A0%80';
    else for (const byte of Buffer.from(ch, 'utf8')) out += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

interface Baseline {
  route: Route;
  params: Record<string, string>;
  token: string | undefined;
  body: Json | undefined;
}

interface Wire {
  method: string;
  url: string;
  headers: Record<string, string>;
  body: string | Buffer | undefined;
}

function build(base: string, b: Baseline, mutations: Mutation[], noise: Record<string, string>): Wire {
  const method = b.route.method.toUpperCase();
  const params = { ...b.params };
  let extraSegment = '';
  const query: string[] = [];
  const headers: Record<string, string> = { ...noise };
  if (b.token) headers.authorization = `Bearer ${b.token}`;
  let body: Json | undefined = b.body;
  let text: string | undefined;
  let bytes: Buffer | undefined;
  for (const m of mutations) {
    switch (m.kind) {
      case 'param': {
        const names = Object.keys(params);
        if (names.length > 0) params[names[0]!] = m.value;
        else extraSegment = `/${pct(m.value)}`;
        break;
      }
      case 'query-unknown':
      case 'query-bad':
        query.push(`${pct(m.key)}=${pct(m.value)}`);
        break;
      case 'query-twice':
        query.push(`${m.key}=${pct(QUERY_KEYS[m.key]!.valid)}`, `${m.key}=${pct(QUERY_KEYS[m.key]!.valid)}`);
        break;
      // Leaves and objects are those of the valid body: an earlier mutation may have changed a leaf.
      case 'leaf': {
        const leaves = leavesOf(b.body!);
        body = replaced(body!, leaves[m.pick % leaves.length]!.at, m.value);
        break;
      }
      case 'extra-key': {
        const objects = objectsOf(b.body!);
        text = serialize(body!, objects[m.pick % objects.length]!, `${JSON.stringify(m.key)}:${JSON.stringify(m.value)}`);
        break;
      }
      case 'duplicate-key': {
        const objects = objectsOf(b.body!).filter((o) => Object.keys(at(b.body!, o) as object).length > 0);
        const target = objects[m.pick % objects.length]!;
        const node = at(body!, target) as Record<string, Json>;
        const key = Object.keys(node)[m.pick % Object.keys(node).length]!;
        text = serialize(body!, target, `${JSON.stringify(key)}:${JSON.stringify(node[key])}`);
        break;
      }
      case 'root':
        text = m.text;
        break;
      case 'not-utf8': {
        const valid = Buffer.from(text ?? JSON.stringify(body));
        const quote = valid.indexOf('"', m.at % valid.length);
        const cut = quote < 0 ? valid.indexOf('"') : quote;
        bytes = Buffer.concat([valid.subarray(0, cut + 1), Buffer.from([0xc3, 0x28, 0xff]), valid.subarray(cut + 1)]);
        break;
      }
      case 'content-type':
        headers['content-type'] = m.value;
        break;
      case 'content-encoding':
        headers['content-encoding'] = m.value;
        break;
      case 'oversize':
        text = `${text ?? JSON.stringify(body)}${' '.repeat(BODY_LIMIT_BYTES + 1)}`;
        break;
      case 'header':
        headers[m.name] = m.value;
        break;
      default: {
        const exhaustive: never = m;
        throw new Error(`unknown mutation ${JSON.stringify(exhaustive)}`);
      }
    }
  }
  const path = b.route.path.replace(/:(\w+)/g, (_, name: string) => pct(params[name]!)) + extraSegment;
  let payload: string | Buffer | undefined;
  if (method !== 'GET') {
    payload = bytes ?? text ?? (body === undefined ? undefined : JSON.stringify(body));
    if (payload !== undefined && !('content-type' in headers)) headers['content-type'] = 'application/json';
    if (headers['content-type'] === '') delete headers['content-type'];
  }
  return { method, url: `${base}${path}${query.length > 0 ? `?${query.join('&')}` : ''}`, headers, body: payload };
}

interface Answer {
  status: number;
  contentType: string;
  requestId: string | null;
  body: unknown;
}

async function send(w: Wire): Promise<Answer> {
  const payload = typeof w.body === 'string' || w.body === undefined ? w.body : new Uint8Array(w.body);
  const res = await fetch(w.url, { method: w.method, headers: w.headers, body: payload, redirect: 'manual' });
  const text = await res.text();
  const contentType = res.headers.get('content-type') ?? '';
  let body: unknown = text;
  if (contentType.includes('json') && text !== '') body = JSON.parse(text);
  return { status: res.status, contentType, requestId: res.headers.get('x-request-id'), body };
}

function expectErrorShape(a: Answer, what: string): void {
  expect(a.contentType, what).to.match(/^application\/json/);
  const body = a.body as { error?: { code?: unknown; message?: unknown; details?: unknown } };
  expect(Object.keys(body), what).to.deep.equal(['error']);
  expect(Object.keys(body.error!).sort(), what).to.deep.equal(['code', 'details', 'message']);
  expect(body.error!.code, what).to.be.a('string');
  expect(body.error!.message, what).to.be.a('string');
  expect(body.error!.details, what).to.be.an('object');
}

/** A short, printable account of a request for failure messages. */
const describeWire = (w: Wire) =>
  JSON.stringify({ method: w.method, url: w.url.replace(/^http:\/\/[^/]+/, ''), headers: { ...w.headers, authorization: w.headers.authorization ? '…' : undefined }, body: typeof w.body === 'string' ? w.body.slice(0, 300) : w.body ? `<${w.body.length} bytes>` : undefined });

// ---------------------------------------------------------------------------------------------

describe('fuzz: hostile input on every route', function () {
  this.timeout(120_000);
  let sys: TestSystem;
  let p: Parties;
  let forged: string;
  let expired: string;
  /** One order per command, in the state that accepts it: a mutation that slipped through would move it. */
  const orderFor = new Map<string, string>();
  let readOrder: string;

  before(async () => {
    sys = await sharedSystem();
    p = await sys.newParties();
    forged = await signToken('some-other-secret-0123456789', { sub: p.customerId, role: 'customer' });
    expired = await signToken(AUTH_SECRET, { sub: p.customerId, role: 'customer' }, '-1h');
    const graph = (await sys.request('GET', '/machines/order')).body as { initial: string; transitions: { source: string; target: string; command: string }[] };
    const pathTo = (command: string): string[] => {
      // Breadth-first: the shortest command path from a new order to a state that accepts `command`.
      const queue: [string, string[]][] = [[graph.initial, []]];
      const seen = new Set([graph.initial]);
      while (queue.length > 0) {
        const [state, path] = queue.shift()!;
        if (graph.transitions.some((t) => t.source === state && t.command === command)) return path;
        for (const t of graph.transitions.filter((t) => t.source === state && !seen.has(t.target))) {
          seen.add(t.target);
          queue.push([t.target, [...path, t.command]]);
        }
      }
      throw new Error(`no state accepts ${command}`);
    };
    for (const command of Object.keys(COMMAND_ROLE)) {
      const order = await sys.placeOrder(p);
      const path = pathTo(command);
      if (path.length > 0) await sys.drive(p, order.id, path);
      orderFor.set(command, order.id);
    }
    readOrder = orderFor.get('pay')!;
  });

  /** The valid request each route's mutations start from, sent by a caller who may make it. */
  function baseline(route: Route): Baseline {
    const last = /^\/orders\/:id\/([a-z-]+)$/.exec(route.path)?.[1];
    const command = last !== undefined && last in COMMAND_ROLE ? last : undefined;
    const params: Record<string, string> = {};
    const partyIds: Record<string, string> = { storeId: p.storeId, customerId: p.customerId, riderId: p.riderId };
    for (const [, name] of route.path.matchAll(/:(\w+)/g)) params[name!] = partyIds[name!] ?? orderFor.get(command ?? '') ?? readOrder;
    let role: Role = 'customer';
    if (command) role = COMMAND_ROLE[command as OrderCommand];
    if (route.path.startsWith('/stores/') && route.method === 'put') role = 'store';
    if (route.path === '/deliveries' || route.path.startsWith('/views/riders/')) role = 'rider';
    if (route.path.startsWith('/views/stores/')) role = 'store';
    if (route.path.startsWith('/admin/') || route.path === '/views/_status') role = 'admin';
    let body: Json | undefined;
    if (route.body) {
      if (route.path === '/orders') body = { storeId: p.storeId, items: [{ foodId: 'bibimbap', qty: 1 }], address: { area: p.area, line: '1 Teheran-ro' } };
      else if (route.path.startsWith('/stores/')) body = MENU as Json;
      else if (command === 'reject' || command === 'cancel') body = { reason: 'out of rice' };
      else if (route.path === '/admin/failed-events/replay') body = {};
      else if (command) body = {};
      else throw new Error(`the fuzz suite has no valid body for ${route.method} ${route.path}`);
    }
    return { route, params, token: route.auth ? p[role === 'admin' ? 'admin' : role] : undefined, body };
  }

  function mutationsFor(b: Baseline): fc.Arbitrary<Mutation> {
    const { route } = b;
    // Never empty: an empty appended segment would be the route itself (`/orders/` is `/orders`).
    const choices: fc.Arbitrary<Mutation>[] = [poisonId.filter((v) => v !== '').map((value) => ({ kind: 'param' as const, value }))];
    const known = queryKeysOf(route);
    choices.push(
      fc
        .tuple(strangeKey.filter((k) => !known.includes(k) && k !== ''), fc.string({ maxLength: 8 }))
        .map(([key, value]) => ({ kind: 'query-unknown' as const, key, value })),
    );
    if (known.length > 0) {
      choices.push(fc.constantFrom(...known).chain((key) => QUERY_KEYS[key]!.bad.map((value) => ({ kind: 'query-bad' as const, key, value }))));
      choices.push(fc.constantFrom(...known).map((key) => ({ kind: 'query-twice' as const, key })));
    }
    if (route.auth) {
      choices.push(
        fc
          .constantFrom('Bearer', 'Bearer ', 'Basic dXNlcjpwYXNz', 'Bearer a.b.c', `Bearer ${forged}`, `Bearer ${expired}`, `Bearer ${b.token}x`, `Bearer ${'a'.repeat(5000)}`, `Token ${b.token}`)
          .map((value) => ({ kind: 'header' as const, name: 'authorization' as const, value })),
      );
    }
    const declared = Object.keys(route.requestHeaders ?? {}).map((h) => h.toLowerCase());
    if (declared.includes('idempotency-key')) {
      choices.push(
        fc
          .oneof(fc.constantFrom('k'.repeat(201), 'a b', 'caf\u00e9', 'a\tb', '\u00ff'), fc.string({ minLength: 201, maxLength: 300 }).filter((s) => /^[\x21-\x7e]+$/.test(s)))
          .map((value) => ({ kind: 'header' as const, name: 'idempotency-key' as const, value })),
      );
    }
    if (declared.includes('if-match')) {
      choices.push(
        fc
          .constantFrom('abc', '"x"', '"1234567890"', 'W/"', ',', '"1", "2"', '*,*', '"-1"', '1.0')
          .map((value) => ({ kind: 'header' as const, name: 'if-match' as const, value })),
      );
    }
    if (b.body !== undefined) {
      const leaves = leavesOf(b.body);
      if (leaves.length > 0) {
        const leaf = fc.nat(leaves.length - 1).chain((pick) => {
          const bad = { string: badForString, number: badForNumber, boolean: badForBoolean }[leaves[pick]!.type];
          return bad.map((value) => ({ kind: 'leaf' as const, pick, value }));
        });
        // The fields are where hostile values do harm: weigh them as several choices.
        choices.push(leaf, leaf, leaf, leaf);
      }
      choices.push(
        fc.tuple(fc.nat(), strangeKey, anyJson).chain(([pick, key, value]) => {
          const objects = objectsOf(b.body!);
          const node = at(b.body!, objects[pick % objects.length]!) as Record<string, Json> | undefined;
          // A key the node already has is a duplicate, not an unknown key: still invalid, but say which.
          return fc.constant(node && Object.hasOwn(node, key) ? ({ kind: 'duplicate-key' as const, pick } as Mutation) : ({ kind: 'extra-key' as const, pick, key, value } as Mutation));
        }),
      );
      if (objectsOf(b.body).some((o) => Object.keys(at(b.body!, o) as object).length > 0)) {
        choices.push(fc.nat().map((pick) => ({ kind: 'duplicate-key' as const, pick })));
      }
      const wrongRoot = Array.isArray(b.body) ? ['{}', '{"a":1}', '[1]', '[null]'] : ['[]', '[{}]', '{"":{}}'];
      const deep = (n: number) => `${'['.repeat(n)}${']'.repeat(n)}`;
      choices.push(
        fc
          .constantFrom('null', '1', '"x"', 'true', '-0', '1e999', '{', '[', '{"a":1,}', "{'a':1}", '{"a":NaN}', '/*c*/{}', '{}x', '\u0000', '\ufeff\ufeff{}', deep(3000), deep(8000), ...wrongRoot)
          .map((text) => ({ kind: 'root' as const, text })),
      );
      choices.push(fc.nat().map((at) => ({ kind: 'not-utf8' as const, at })));
      choices.push(
        fc
          .constantFrom('application/vnd.x+json', 'application/merge-patch+json', 'text/plain', 'text/json', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/json; charset=utf-16', 'application/json; charset=latin1', 'application/json; charset=', 'application/jsonx', '')
          .map((value) => ({ kind: 'content-type' as const, value })),
      );
      choices.push(fc.constantFrom('gzip', 'deflate', 'br', 'x-unknown').map((value) => ({ kind: 'content-encoding' as const, value })));
      choices.push(fc.constant({ kind: 'oversize' as const }));
    }
    return fc.oneof(...choices);
  }

  /** Mostly one mutation (its answer must be the precise status), sometimes two or three together. */
  const mutationList = (b: Baseline) =>
    fc.oneof({ weight: 2, arbitrary: mutationsFor(b).map((m) => [m]) }, { weight: 1, arbitrary: fc.array(mutationsFor(b), { minLength: 2, maxLength: 3 }) });

  /** Headers a client or proxy might add that change nothing: they must not break anything either. */
  const noise: fc.Arbitrary<Record<string, string>> = fc.dictionary(
    fc.stringMatching(/^x-fuzz-[a-z0-9-]{1,10}$/),
    fc.stringMatching(/^[\x21-\x7e\xa0-\xff][\x20-\x7e\xa0-\xff]{0,40}$/),
    { maxKeys: 3 },
  ).chain((headers) =>
    fc.oneof(
      fc.constant(headers),
      fc.oneof(fc.stringMatching(/^[\x21-\x7e]{1,200}$/), fc.constantFrom('trace-1', 'a'.repeat(128), 'a'.repeat(129))).map((id) => ({ ...headers, 'x-request-id': id })),
    ),
  );

  /** What must not change: every order count, the fuzz orders and their journals, their ledger entries, the menu. */
  async function state() {
    const [row] = (await sys.runtime.db.query('SELECT count(*)::int AS n FROM orders')) as { n: number }[];
    const ids = [...orderFor.values()];
    const orders = await Promise.all(ids.map(async (id) => (await sys.request('GET', `/orders/${id}`, { token: p.admin })).body));
    const journals = await Promise.all(ids.map(async (id) => (await sys.request('GET', `/orders/${id}/events`, { token: p.admin })).body));
    const ledger = await sys.ledger();
    const charges = ledger.charges.filter((c) => ids.includes(c.orderId));
    const refunds = ledger.refunds.filter((r) => charges.some((c) => c.chargeId === r.chargeId));
    const menu = (await sys.request('GET', `/stores/${p.storeId}/menu`, { token: p.admin })).body;
    return { orderCount: row!.n, orders, journals, charges, refunds, menu };
  }

  it(`answers hostile variants of a valid request with a 4xx, on every route (${RUNS_PER_ROUTE} runs each, seed ${SEED})`, async () => {
    const before = await state();
    expect(sys.routes.length).to.be.greaterThan(15);
    for (const route of sys.routes) {
      const base = baseline(route);
      await fc.assert(
        fc.asyncProperty(mutationList(base), noise, async (mutations, extra) => {
          const wire = build(sys.baseUrl, base, mutations, extra);
          const answer = await send(wire);
          const what = `${route.method.toUpperCase()} ${route.path} ${JSON.stringify(mutations).slice(0, 400)}\n${describeWire(wire)}\n→ ${answer.status} ${JSON.stringify(answer.body).slice(0, 300)}`;
          expect(answer.status, what).to.be.within(400, 499);
          if (mutations.length === 1) expect(EXPECTED[mutations[0]!.kind], what).to.include(answer.status);
          expectErrorShape(answer, what);
          expect(answer.requestId, what).to.match(/^[A-Za-z0-9._:@-]{1,128}$/);
          // The answer names the request by the service's own id, never by the one the client sent.
          expect(answer.requestId, what).to.match(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
        }),
        { numRuns: RUNS_PER_ROUTE, seed: SEED, endOnFailure: true },
      );
    }
    expect(await state()).to.deep.equal(before);
  });

  it('refuses NUL and lone surrogates in every string field, path id and query value of every route', async () => {
    const before = await state();
    let tried = 0;
    for (const route of sys.routes) {
      const base = baseline(route);
      const cases: Mutation[] = [];
      for (const value of NUL_AND_SURROGATES) {
        if (route.path.includes(':')) cases.push({ kind: 'param', value });
        for (const key of queryKeysOf(route)) cases.push({ kind: 'query-bad', key, value });
        if (base.body !== undefined) {
          leavesOf(base.body).forEach((leaf, pick) => {
            if (leaf.type === 'string') cases.push({ kind: 'leaf', pick, value });
          });
        }
      }
      for (const mutation of cases) {
        const wire = build(sys.baseUrl, base, [mutation], {});
        const answer = await send(wire);
        const what = `${route.method.toUpperCase()} ${route.path} ${JSON.stringify(mutation)} → ${answer.status} ${JSON.stringify(answer.body).slice(0, 300)}`;
        expect(EXPECTED[mutation.kind], what).to.include(answer.status);
        expectErrorShape(answer, what);
        tried += 1;
      }
    }
    expect(tried).to.be.greaterThan(100);
    expect(await state()).to.deep.equal(before);
  });

  it(`never answers random requests with a 5xx (${RANDOM_RUNS} runs, seed ${SEED})`, async () => {
    const before = await state();
    // Callers who own nothing: random requests must not be able to change anything that exists.
    const nobody = `fuzz-nobody-${randomUUID().slice(0, 8)}`;
    const tokens = await Promise.all((['customer', 'store', 'rider'] as const).map((role) => sys.token(role, nobody)));
    const templates = [...new Set(sys.routes.map((r) => r.path))];
    const segment = fc.oneof(fc.string({ maxLength: 20 }), poisonId, fc.uuid(), fc.constantFrom('__proto__', 'constructor', '..', '.', '%2e%2e'));
    const pathArb = fc.oneof(
      fc.tuple(fc.constantFrom(...templates), fc.array(segment, { minLength: 3, maxLength: 3 })).map(([t, segs]) => {
        let i = 0;
        return t.replace(/:(\w+)/g, () => pct(segs[i++]!));
      }),
      fc.array(segment, { minLength: 1, maxLength: 4 }).map((segs) => `/${segs.map(pct).join('/')}`),
    );
    const queryArb = fc.array(fc.tuple(fc.oneof(strangeKey, fc.constantFrom(...Object.keys(QUERY_KEYS))), fc.oneof(fc.string({ maxLength: 20 }), poisonId)), { maxLength: 4 });
    const bodyArb = fc.oneof(
      fc.constant(undefined),
      fc.json({ maxDepth: 5 }),
      fc.string({ maxLength: 200 }),
      fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)),
    );
    const requestArb = fc.record({
      method: fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS'),
      path: pathArb,
      query: queryArb,
      auth: fc.oneof(fc.constant(undefined), fc.constantFrom(...tokens).map((t) => `Bearer ${t}`), fc.constantFrom('Bearer x', `Bearer ${forged}`, 'Basic x')),
      contentType: fc.constantFrom(undefined, 'application/json', 'application/json; charset=utf-8', 'text/plain', 'application/vnd.x+json', 'application/json; charset=utf-16'),
      body: bodyArb,
      noise,
    });
    await fc.assert(
      fc.asyncProperty(requestArb, async (r) => {
        const headers: Record<string, string> = { ...r.noise };
        if (r.auth) headers.authorization = r.auth;
        if (r.contentType) headers['content-type'] = r.contentType;
        const hasBody = r.body !== undefined && r.method !== 'GET' && r.method !== 'HEAD';
        const query = r.query.map(([k, v]) => `${pct(k)}=${pct(v)}`).join('&');
        const wire: Wire = { method: r.method, url: `${sys.baseUrl}${r.path}${query ? `?${query}` : ''}`, headers, body: hasBody ? r.body : undefined };
        const answer = await send(wire);
        const what = `${describeWire(wire)}\n→ ${answer.status} ${JSON.stringify(answer.body).slice(0, 300)}`;
        expect(answer.status, what).to.be.below(500);
        expect(answer.requestId, what).to.match(/^[A-Za-z0-9._:@-]{1,128}$/);
        if (answer.status >= 400 && r.method !== 'HEAD') expectErrorShape(answer, what);
      }),
      { numRuns: RANDOM_RUNS, seed: SEED, endOnFailure: true },
    );
    expect(await state()).to.deep.equal(before);
  });
});
