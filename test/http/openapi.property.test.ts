import { expect } from 'chai';
import fc from 'fast-check';
import { checkAnswer, schemaValidator, type OpenApiDocument, type Operation } from '../support/contract.ts';
import { request, sharedSystem, type Parties, type TestSystem } from '../support/system.ts';

type Schema = Record<string, unknown>;

/**
 * Requests made from the OpenAPI document alone, sent to the service, each answered as the
 * document says. A request the document calls valid (every parameter and the body drawn from
 * their schemas, a token of the party the route serves) must not be refused as invalid (400),
 * and a request with exactly one part the document calls invalid must be refused as such (400,
 * or 404 for a path id); either way the status is one the operation lists and the body matches
 * that status's schema. So the document says exactly what the validators enforce, no more and
 * no less. `OPENAPI_SEED` replays a run.
 */
describe('the OpenAPI document, property-based', function () {
  this.timeout(180_000);
  const seed = Number(process.env.OPENAPI_SEED ?? Date.now() % 1_000_000_007);
  const RUNS = Number(process.env.OPENAPI_RUNS ?? 30);
  let sys: TestSystem;
  let doc: OpenApiDocument;
  let validator: ReturnType<typeof schemaValidator>;
  let p: Parties;
  /** Values that name something that exists, mixed into what is generated for a name. */
  let known: Record<string, string[]>;

  before(async () => {
    sys = await sharedSystem();
    doc = (await request(sys.baseUrl, 'GET', '/openapi.json')).body;
    validator = schemaValidator(doc);
    p = await sys.newParties();
    const orders: string[] = [];
    for (const steps of [[], ['pay'], ['pay', 'accept'], ['pay', 'accept', 'start-cooking', 'finish-cooking']]) {
      const order = await sys.placeOrder(p);
      if (steps.length > 0) await sys.drive(p, order.id, steps);
      orders.push(order.id);
    }
    known = {
      id: orders,
      orderId: orders,
      storeId: [p.storeId],
      customerId: [p.customerId],
      riderId: [p.riderId],
      area: [p.area],
      foodId: ['bibimbap', 'tteokbokki'],
    };
  });

  const valid = (schema: Schema, value: unknown) => validator(schema)(value);

  /** Values of `schema`, as JSON Schema reads it (the subset the zod schemas produce). */
  function arbitraryOf(schema: Schema, name?: string): fc.Arbitrary<unknown> {
    const fromSchema = plainArbitraryOf(schema);
    const names = name ? known[name] : undefined;
    if (!names) return fromSchema;
    const fitting = names.filter((v) => valid(schema, v));
    return fitting.length > 0 ? fc.oneof(fc.constantFrom(...fitting), fromSchema) : fromSchema;
  }

  function plainArbitraryOf(schema: Schema): fc.Arbitrary<unknown> {
    if (schema.$ref) return plainArbitraryOf(resolve(schema.$ref as string));
    if (schema.enum) return fc.constantFrom(...(schema.enum as unknown[]));
    if ('const' in schema) return fc.constant(schema.const);
    if (schema.anyOf || schema.oneOf) return fc.oneof(...((schema.anyOf ?? schema.oneOf) as Schema[]).map((s) => plainArbitraryOf(s)));
    switch (schema.type) {
      case 'string':
        return stringOf(schema);
      case 'integer':
        return fc.integer({ min: (schema.minimum as number) ?? -1e6, max: (schema.maximum as number) ?? 1e6 });
      case 'number':
        return fc.double({ min: (schema.minimum as number) ?? -1e6, max: (schema.maximum as number) ?? 1e6, noNaN: true });
      case 'boolean':
        return fc.boolean();
      case 'null':
        return fc.constant(null);
      case 'array':
        return fc.array(arbitraryOf(schema.items as Schema), { minLength: (schema.minItems as number) ?? 0, maxLength: Math.min((schema.maxItems as number) ?? 4, 4) });
      case 'object': {
        const properties = (schema.properties ?? {}) as Record<string, Schema>;
        const required = new Set((schema.required ?? []) as string[]);
        const entries = Object.fromEntries(Object.entries(properties).map(([k, s]) => [k, arbitraryOf(s, k)]));
        return fc.record(entries, { requiredKeys: [...required] });
      }
      default:
        if (Array.isArray(schema.type)) return fc.oneof(...(schema.type as string[]).map((t) => plainArbitraryOf({ ...schema, type: t })));
        return fc.jsonValue({ maxDepth: 2 });
    }
  }

  function resolve(ref: string): Schema {
    return ref.replace(/^#\//, '').split('/').reduce<any>((node, key) => node[key], doc);
  }

  /** A string of its schema: from its one pattern, or from characters of every kind kept when every pattern holds. */
  function stringOf(schema: Schema): fc.Arbitrary<string> {
    const patterns = [schema.pattern, ...((schema.allOf ?? []) as Schema[]).map((s) => s.pattern)].filter((x): x is string => typeof x === 'string');
    const holds = (v: string) => patterns.every((pat) => new RegExp(pat, 'u').test(v)) && valid(schema, v);
    if (patterns.length === 1 && !/\\[pP]\{/.test(patterns[0]!)) return fc.stringMatching(new RegExp(patterns[0]!)).filter(holds);
    // Free text: its length bound from `^[\s\S]{0,N}$`; characters from ASCII to other scripts, spaces and emoji.
    const bound = patterns.map((pat) => /^\^\[\\s\\S\]\{0,(\d+)\}\$$/.exec(pat)?.[1]).find(Boolean);
    const max = Math.min(Number(bound ?? (schema.maxLength as number | undefined) ?? 40), 60);
    const unit = fc.oneof(fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 3 }), fc.constantFrom('é', 'e\u0301', '한', '食', '😀', ' ', '\u00a0', 'Ω'));
    return fc
      .array(unit, { minLength: 1, maxLength: max })
      .map((parts) => parts.join(''))
      .filter(holds);
  }

  /** A value `schema` refuses (checked against the document, so it is invalid by it). */
  function invalidOf(schema: Schema): fc.Arbitrary<unknown> {
    const candidates: fc.Arbitrary<unknown>[] = [fc.constantFrom<unknown>(null, true, 12345, -1, 1.5, [], {}, '', 'x', '0', '201', '\u0000', '\u202e', 'a\u2028b', ' ', 'x'.repeat(600))];
    if (schema.type === 'object') {
      candidates.push(plainArbitraryOf(schema).map((v) => ({ ...(v as object), unexpected: 1 })));
      const properties = Object.entries((schema.properties ?? {}) as Record<string, Schema>);
      if (properties.length > 0) {
        candidates.push(
          fc
            .tuple(plainArbitraryOf(schema), fc.constantFrom(...properties))
            .chain(([v, [key, s]]) => invalidOf(s).map((bad) => ({ ...(v as object), [key]: bad }))),
        );
      }
    }
    if (schema.type === 'array' && schema.items) {
      candidates.push(fc.tuple(plainArbitraryOf(schema), invalidOf(schema.items as Schema)).map(([v, bad]) => [...(v as unknown[]), bad]));
    }
    return fc.oneof(...candidates).filter((v) => !valid(schema, v));
  }

  const BAD_STRINGS = ['', 'x', '0', '007', '201', '-1', '1e2', '\u0000', '\u202e', 'a b', 'ä', 'x'.repeat(201), '"3', 'W/"x"'];
  /** A string `schema` refuses: what a path segment, a query value or a header can carry. */
  function invalidStringOf(schema: Schema): fc.Arbitrary<string> {
    return fc.oneof(fc.constantFrom(...BAD_STRINGS), fc.string({ maxLength: 8 })).filter((v) => !valid(schema, v));
  }
  /** Whether a parameter refuses anything (If-None-Match, any string, does not). */
  const breakable = (schema: Schema) => BAD_STRINGS.some((v) => !valid(schema, v));

  interface Draft {
    path: string;
    query: Record<string, string>;
    headers: Record<string, string>;
    body: unknown;
    token: 'customer' | 'store' | 'rider' | 'admin' | 'none';
    /** Which part was made invalid, if any. */
    broken: 'none' | 'path' | 'query' | 'header' | 'body';
  }

  function requestOf(template: string, op: Operation): fc.Arbitrary<Draft> {
    const params = op.parameters ?? [];
    const of = (where: 'path' | 'query' | 'header') => params.filter((x) => x.in === where);
    const breakableOf = (where: 'path' | 'query' | 'header') => of(where).filter((x) => breakable(x.schema));
    const record = (list: typeof params, broken?: string) =>
      fc.record(
        Object.fromEntries(list.map((x) => [x.name, x.name === broken ? invalidStringOf(x.schema) : arbitraryOf(x.schema, x.name)])),
        { requiredKeys: list.filter((x) => x.required || x.name === broken).map((x) => x.name) },
      );
    const bodySchema = op.requestBody?.content['application/json']?.schema;
    const parts: Draft['broken'][] = ['none', 'none'];
    if (breakableOf('path').length) parts.push('path');
    parts.push('query');
    if (breakableOf('header').length) parts.push('header');
    if (bodySchema) parts.push('body');
    return fc.constantFrom(...parts).chain((broken) => {
      const brokenName = (where: 'path' | 'query' | 'header') => (broken === where ? fc.constantFrom(...breakableOf(where).map((x) => x.name)) : fc.constant(undefined));
      return fc
        .tuple(brokenName('path'), brokenName('header'))
        .chain(([badPath, badHeader]) =>
          fc.record({
            pathParams: record(of('path'), badPath),
            query:
              broken === 'query'
                ? breakableOf('query').length > 0
                  ? fc.oneof(fc.constantFrom(...breakableOf('query').map((x) => x.name)).chain((n) => record(of('query'), n)), fc.constant({ unexpected: 'x' }))
                  : fc.constant({ unexpected: 'x' })
                : record(of('query')),
            headers: record(of('header'), badHeader),
            body: bodySchema ? (broken === 'body' ? invalidOf(bodySchema) : arbitraryOf(bodySchema)) : fc.constant(undefined),
            token: op.security.length > 0 ? fc.constantFrom<Draft['token']>('customer', 'store', 'rider', 'admin') : fc.constant<Draft['token']>('none'),
          }),
        )
        .map(({ pathParams, query, headers, body, token }) => ({
          path: template.replace(/\{(\w+)\}/g, (_, n: string) => encodeURIComponent(String((pathParams as Record<string, unknown>)[n]))),
          query: Object.fromEntries(Object.entries(query as Record<string, unknown>).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)])),
          headers: Object.fromEntries(Object.entries(headers as Record<string, unknown>).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)])),
          body,
          token,
          broken,
        }));
    });
  }

  /** Header values HTTP can carry at all: others would be refused by the client before the service. */
  const sendable = (d: Draft) => Object.values(d.headers).every((v) => /^[\x20-\x7e]*$/.test(v) && v.trim() === v);

  it('answers every request generated from the document as the document says, for every operation', async () => {
    const operations = Object.entries(doc.paths).flatMap(([template, ops]) => Object.entries(ops).map(([method, op]) => ({ template, method, op })));
    expect(operations.length).to.be.at.least(25);
    const seen = new Map<string, Set<number>>();
    const failures: string[] = [];
    for (const { template, method, op } of operations) {
      const statuses = new Set<number>();
      seen.set(`${method.toUpperCase()} ${template}`, statuses);
      const run = await fc.check(
        fc.asyncProperty(requestOf(template, op).filter(sendable), async (d) => {
          const qs = new URLSearchParams(d.query).toString();
          const path = `${d.path}${qs ? `?${qs}` : ''}`;
          const token = d.token === 'none' ? undefined : p[d.token];
          const res = await request(sys.baseUrl, method.toUpperCase(), path, { token, ...(d.body !== undefined && { body: d.body }), headers: d.headers });
          statuses.add(res.status);
          const what = `${method.toUpperCase()} ${path} (${d.broken} broken) → ${res.status} ${JSON.stringify(res.body).slice(0, 300)}`;
          const problem = checkAnswer(doc, validator, { method, path, status: res.status, contentType: res.headers.get('content-type') ?? '', body: res.body });
          expect(problem, what).to.equal(undefined);
          expect(res.status === 500, what).to.equal(false);
          if (d.broken === 'none') {
            // Valid by the document; a rule it states only in words (each foodId once) may still refuse it.
            const issues = (res.body?.error?.details?.issues ?? []) as { message: string }[];
            const wordsOnly = issues.length > 0 && issues.every((i) => /^duplicate foodId/.test(i.message));
            if (!wordsOnly) expect(res.status, what).not.to.equal(400);
          } else if (d.broken === 'path') {
            expect(res.status, what).to.equal(404);
          } else {
            expect(res.status, what).to.equal(400);
          }
        }),
        { numRuns: RUNS, seed, endOnFailure: true },
      );
      // Every operation is tried, and every one that fails is reported.
      if (run.failed) failures.push(`${method.toUpperCase()} ${template}: ${String((run.errorInstance as Error | undefined)?.message ?? run.counterexample).split('\n')[0]!.slice(0, 600)}`);
    }
    expect(failures, `with OPENAPI_SEED=${seed}:\n${failures.join('\n')}`).to.deep.equal([]);
    // The runs reached more than refusals: most operations served some request.
    const served = [...seen].filter(([, s]) => [...s].some((x) => x < 300 || x === 304));
    expect(served.length, JSON.stringify(Object.fromEntries([...seen].map(([k, s]) => [k, [...s]])))).to.be.at.least(operations.length * 0.6);
  });
});
