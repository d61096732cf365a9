import { jwtVerify, SignJWT } from 'jose';
import type { Middleware } from 'koa';
import { z } from 'zod';
import { ROLES, type Principal } from '../actors/principal.ts';
import { DomainError } from '../errors.ts';

const claims = z.object({ sub: z.string().min(1), role: z.enum(ROLES) });

const key = (secret: string) => new TextEncoder().encode(secret);

export async function signToken(secret: string, principal: Principal, expiresIn = '12h'): Promise<string> {
  return new SignJWT({ role: principal.role })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(principal.sub)
    .setIssuedAt()
    .setExpirationTime(expiresIn)
    .sign(key(secret));
}

export async function verifyToken(secret: string, token: string): Promise<Principal> {
  let payload: unknown;
  try {
    ({ payload } = await jwtVerify(token, key(secret), { algorithms: ['HS256'] }));
  } catch (err) {
    throw new DomainError('unauthenticated', `invalid token: ${(err as Error).message}`);
  }
  const parsed = claims.safeParse(payload);
  if (!parsed.success) {
    throw new DomainError('unauthenticated', 'token lacks a valid sub or role claim', {
      fields: parsed.error.issues.map((i) => i.path.join('.')),
    });
  }
  return parsed.data;
}

/** Requires `Authorization: Bearer <JWT>` and puts the caller on `ctx.state.principal`. */
export function authenticate(secret: string): Middleware {
  return async (ctx, next) => {
    const header = ctx.get('authorization');
    const match = /^Bearer\s+(\S+)$/i.exec(header);
    if (!match?.[1]) {
      throw new DomainError('unauthenticated', header ? 'Authorization must be "Bearer <token>"' : 'a Bearer token is required');
    }
    ctx.state.principal = await verifyToken(secret, match[1]);
    await next();
  };
}
