import { expect } from 'chai';
import Router from '@koa/router';
import Koa from 'koa';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { SignJWT } from 'jose';
import { verifyToken, type TokenRules } from '../../src/http/auth.ts';
import { errorMiddleware, requestContext } from '../../src/http/error-middleware.ts';
import { defineRoute, mountRoutes, ROUTER_OPTIONS } from '../../src/http/route.ts';
import { createLogger } from '../../src/log.ts';
import { AUTH_SECRET } from '../support/system.ts';

const key = new TextEncoder().encode(AUTH_SECRET);
const sign = (sub: string) =>
  new SignJWT({ role: 'customer' }).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setSubject(sub).setIssuedAt().setExpirationTime('10m').sign(key);

/** Two routes that need a token, on a real HTTP server, with a token check that counts its calls. */
describe('verified tokens are remembered across routes', () => {
  let server: Server;
  let base: string;
  const verified: string[] = [];

  before(async () => {
    const router = new Router(ROUTER_OPTIONS);
    const answer = (name: string) =>
      defineRoute({
        method: 'get',
        path: `/${name}`,
        summary: name,
        tag: 'test',
        auth: true,
        responses: { 200: { description: 'ok' } },
        errors: [401],
        async handle(ctx, { principal }) {
          ctx.body = { route: name, sub: principal.sub };
        },
      });
    mountRoutes(router, [answer('first'), answer('second')], {
      authSecret: AUTH_SECRET,
      bodyLimit: '1kb',
      verify: async (rules: TokenRules | string, token: string, now?: Date) => {
        verified.push(token);
        return verifyToken(rules, token, now);
      },
    });
    const app = new Koa();
    app.use(requestContext());
    app.use(errorMiddleware(createLogger('silent')));
    app.use(router.routes());
    server = app.listen(0, '127.0.0.1');
    await new Promise<void>((resolve) => server.once('listening', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  const get = async (path: string, token: string) => {
    const res = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${token}` } });
    return { status: res.status, body: (await res.json().catch(() => null)) as Record<string, unknown> | null };
  };

  it('verifies a token once for every route it is used on, and each other token once', async () => {
    const alice = await sign('customer-verified-1');
    const bob = await sign('customer-verified-2');
    expect(await get('/first', alice)).to.deep.equal({ status: 200, body: { route: 'first', sub: 'customer-verified-1' } });
    expect(await get('/second', alice)).to.deep.equal({ status: 200, body: { route: 'second', sub: 'customer-verified-1' } });
    expect(await get('/first', alice)).to.deep.include({ status: 200 });
    expect(verified, 'one check for three requests on two routes').to.deep.equal([alice]);
    expect(await get('/second', bob)).to.deep.equal({ status: 200, body: { route: 'second', sub: 'customer-verified-2' } });
    expect(verified).to.deep.equal([alice, bob]);
  });

  it('remembers no refused token: a forged one is checked, and refused, every time', async () => {
    const good = await sign('customer-verified-3');
    const [header, claims] = good.split('.');
    const forged = `${header}.${claims}.${Buffer.alloc(32, 7).toString('base64url')}`;
    const before = verified.length;
    for (const path of ['/first', '/second', '/first']) {
      const res = await get(path, forged);
      expect(res.status, path).to.equal(401);
      expect(res.body, path).to.have.nested.property('error.code', 'unauthenticated');
    }
    expect(verified.length - before, 'checked on each of the three requests').to.equal(3);
  });
});
