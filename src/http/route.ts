import type Router from '@koa/router';
import type { Context, Middleware } from 'koa';
import { z } from 'zod';
import type { Principal } from '../actors/principal.ts';
import { DomainError } from '../errors.ts';
import { authenticate, DEFAULT_MAX_TTL_SECONDS, type TokenRules, type verifyToken } from './auth.ts';
import { hasBody, jsonBody } from './json-body.ts';
import { HEADER_SCHEMAS, NoQuery } from './schemas.ts';

type Schema = z.ZodType;
type Out<S> = S extends z.ZodType ? z.output<S> : undefined;

export interface ResponseSpec {
  description: string;
  schema?: Schema;
  /** Content type when not JSON (for example the metrics text). */
  contentType?: string;
  headers?: Record<string, string>;
}

export interface RouteSpec<
  P extends Schema | undefined,
  Q extends Schema | undefined,
  B extends Schema | undefined,
  H extends Schema | undefined = undefined,
> {
  method: 'get' | 'post' | 'put';
  /** Koa-style path: `/orders/:id`. */
  path: string;
  summary: string;
  tag: string;
  /** Whether the route needs a Bearer token. */
  auth: boolean;
  params?: P;
  /** Without one, the route takes no query parameters: any is refused with 400. */
  query?: Q;
  body?: B;
  /**
   * Request headers the route reads, as an object schema over lower-case names (other headers
   * pass: clients and proxies add their own). Without one, the headers named in `requestHeaders`
   * are checked with their schema in `HEADER_SCHEMAS`.
   */
  headers?: H;
  /** Whether the route serves a document with an ETag and answers If-None-Match with 304. */
  conditional?: boolean;
  /** Whether a request must carry a body; when false an absent body is read as `{}`. */
  bodyRequired?: boolean;
  /** Headers the route reads, name → description, for the OpenAPI document. */
  requestHeaders?: Record<string, string>;
  responses: Record<number, ResponseSpec>;
  /** The error statuses the route can answer, for the OpenAPI document. */
  errors: number[];
  handle(ctx: Context, input: { params: Out<P>; query: Out<Q>; body: Out<B>; headers: Out<H>; principal: Principal }): Promise<void>;
}

/** A route with its handler's input types erased, as stored in the route table. */
export type Route = RouteSpec<Schema | undefined, Schema | undefined, Schema | undefined, Schema | undefined>;

export function defineRoute<
  P extends Schema | undefined = undefined,
  Q extends Schema | undefined = undefined,
  B extends Schema | undefined = undefined,
  H extends Schema | undefined = undefined,
>(spec: RouteSpec<P, Q, B, H>): Route {
  return spec as unknown as Route;
}

/** The schema a route's headers are checked with: its own, or one built from `requestHeaders`. */
export function headersSchemaOf(route: Route): Schema | undefined {
  if (route.headers) return route.headers;
  const names = Object.keys(route.requestHeaders ?? {}).map((n) => n.toLowerCase());
  if (names.length === 0) return undefined;
  const shape: Record<string, Schema> = {};
  for (const name of names) {
    const schema = HEADER_SCHEMAS[name];
    if (!schema) throw new Error(`${route.method.toUpperCase()} ${route.path} reads header ${name}, which has no schema in HEADER_SCHEMAS`);
    shape[name] = schema;
  }
  return z.object(shape);
}

function issues(error: z.ZodError, where: string) {
  return error.issues.map((i) => ({ field: [where, ...i.path.map(String)].join('.'), message: i.message }));
}

function parseOrThrow<S extends Schema>(schema: S, value: unknown, where: string): z.output<S> {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const list = issues(parsed.error, where);
  throw new DomainError('invalid_body', `invalid ${where}: ${list.map((i) => `${i.field} ${i.message}`).join('; ')}`.slice(0, 1000), { issues: list });
}

/**
 * How every router of the API matches paths: case-sensitively (`/ADMIN/FAILED-EVENTS` is no route)
 * and strictly (`/orders/` is not `/orders`): one resource, one spelling, so a rule keyed on a path
 * (a proxy's, a cache's, the Ingress's) cannot be stepped around by spelling it otherwise.
 */
export const ROUTER_OPTIONS = { sensitive: true, strict: true } as const;

export interface MountOptions {
  authSecret: string;
  bodyLimit: string;
  /** Token rules beyond the secret; by default a token lives at most 24 h and `iss`/`aud` are not checked. */
  tokens?: Omit<TokenRules, 'secret' | 'maxTtlSeconds'> & { maxTtlSeconds?: number };
  /** Runs after authentication on routes that need a token (the per-token rate limit). */
  afterAuth?: Middleware;
  /** The token check (tests count its calls); `verifyToken` by default. */
  verify?: typeof verifyToken;
}

/** Registers each route with its auth, body parsing and validation of path, query, headers and body. */
export function mountRoutes(router: Router, routes: readonly Route[], opts: MountOptions): void {
  const rules: TokenRules = {
    secret: opts.authSecret,
    issuer: opts.tokens?.issuer,
    audience: opts.tokens?.audience,
    maxTtlSeconds: opts.tokens?.maxTtlSeconds ?? DEFAULT_MAX_TTL_SECONDS,
  };
  // One for every route: its memory of verified tokens then serves them all.
  const authenticated = authenticate(rules, opts.verify);
  for (const route of routes) {
    const headersSchema = headersSchemaOf(route);
    const querySchema = route.query ?? NoQuery;
    const chain: Middleware[] = [
      async (ctx, next) => {
        ctx.state.route = route.path;
        await next();
      },
    ];
    if (route.auth) chain.push(authenticated);
    if (route.auth && opts.afterAuth) chain.push(opts.afterAuth);
    if (route.body) chain.push(jsonBody(opts.bodyLimit));
    chain.push(async (ctx) => {
      // A malformed id names no resource that could exist: 404, like an unknown one.
      const params = route.params?.safeParse(ctx.params);
      if (params && !params.success) throw new DomainError('not_found', 'no such resource', { path: ctx.path.slice(0, 300) });
      const query = parseOrThrow(querySchema, { ...ctx.query }, 'query');
      const headers = headersSchema ? parseOrThrow(headersSchema, ctx.headers, 'header') : undefined;
      let body: unknown;
      if (route.body) {
        if (route.bodyRequired && !hasBody(ctx)) throw new DomainError('invalid_body', 'a JSON body is required', { issues: [{ field: 'body', message: 'required' }] });
        body = parseOrThrow(route.body, hasBody(ctx) ? ctx.request.body : {}, 'body');
      }
      await route.handle(ctx, {
        params: params?.data,
        query: route.query ? query : undefined,
        body,
        headers,
        principal: ctx.state.principal as Principal,
      });
    });
    router[route.method](route.path, ...chain);
  }
}
