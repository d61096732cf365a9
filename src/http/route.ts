import { bodyParser } from '@koa/bodyparser';
import type Router from '@koa/router';
import type { Context, Middleware } from 'koa';
import type { z } from 'zod';
import type { Principal } from '../actors/principal.ts';
import { DomainError } from '../errors.ts';
import { authenticate } from './auth.ts';

type Schema = z.ZodType;
type Out<S> = S extends z.ZodType ? z.output<S> : undefined;

export interface ResponseSpec {
  description: string;
  schema?: Schema;
  /** Content type when not JSON (for example the metrics text). */
  contentType?: string;
  headers?: Record<string, string>;
}

export interface RouteSpec<P extends Schema | undefined, Q extends Schema | undefined, B extends Schema | undefined> {
  method: 'get' | 'post' | 'put';
  /** Koa-style path: `/orders/:id`. */
  path: string;
  summary: string;
  tag: string;
  /** Whether the route needs a Bearer token. */
  auth: boolean;
  params?: P;
  query?: Q;
  body?: B;
  /** Whether a request must carry a body; when false an absent body is read as `{}`. */
  bodyRequired?: boolean;
  requestHeaders?: Record<string, string>;
  responses: Record<number, ResponseSpec>;
  /** The error statuses the route can answer, for the OpenAPI document. */
  errors: number[];
  handle(ctx: Context, input: { params: Out<P>; query: Out<Q>; body: Out<B>; principal: Principal }): Promise<void>;
}

/** A route with its handler's input types erased, as stored in the route table. */
export type Route = RouteSpec<Schema | undefined, Schema | undefined, Schema | undefined>;

export function defineRoute<P extends Schema | undefined = undefined, Q extends Schema | undefined = undefined, B extends Schema | undefined = undefined>(
  spec: RouteSpec<P, Q, B>,
): Route {
  return spec as unknown as Route;
}

function issues(error: z.ZodError, where: string) {
  return error.issues.map((i) => ({ field: [where, ...i.path.map(String)].join('.'), message: i.message }));
}

function parseOrThrow<S extends Schema>(schema: S, value: unknown, where: string): z.output<S> {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const list = issues(parsed.error, where);
  throw new DomainError('invalid_body', `invalid ${where}: ${list.map((i) => `${i.field} ${i.message}`).join('; ')}`, { issues: list });
}

function hasBody(ctx: Context): boolean {
  return Number(ctx.get('content-length') || 0) > 0 || ctx.get('transfer-encoding') !== '';
}

/** Accepts only JSON bodies (415 otherwise) within the size limit (413), before anything is read. */
function jsonBody(limit: string): Middleware {
  const parse = bodyParser({ enableTypes: ['json'], jsonLimit: limit, jsonStrict: true });
  return async (ctx, next) => {
    if (hasBody(ctx) && !ctx.is('application/json', 'application/*+json')) {
      throw new DomainError('unsupported_media_type', 'the request body must be application/json', {
        contentType: ctx.get('content-type') || null,
      });
    }
    await parse(ctx, next);
  };
}

export interface MountOptions {
  authSecret: string;
  bodyLimit: string;
}

/** Registers each route with its auth, body parsing and validation in front of the handler. */
export function mountRoutes(router: Router, routes: readonly Route[], opts: MountOptions): void {
  for (const route of routes) {
    const chain: Middleware[] = [
      async (ctx, next) => {
        ctx.state.route = route.path;
        await next();
      },
    ];
    if (route.auth) chain.push(authenticate(opts.authSecret));
    if (route.body) chain.push(jsonBody(opts.bodyLimit));
    chain.push(async (ctx) => {
      // A malformed id names no order that could exist: 404, like an unknown one.
      const params = route.params?.safeParse(ctx.params);
      if (params && !params.success) throw new DomainError('not_found', `no such resource: ${ctx.path}`, { path: ctx.path });
      const query = route.query ? parseOrThrow(route.query, { ...ctx.query }, 'query') : undefined;
      let body: unknown;
      if (route.body) {
        if (route.bodyRequired && !hasBody(ctx)) throw new DomainError('invalid_body', 'a JSON body is required', { issues: [{ field: 'body', message: 'required' }] });
        body = parseOrThrow(route.body, hasBody(ctx) ? ctx.request.body : {}, 'body');
      }
      await route.handle(ctx, { params: params?.data, query, body, principal: ctx.state.principal as Principal });
    });
    router[route.method](route.path, ...chain);
  }
}
