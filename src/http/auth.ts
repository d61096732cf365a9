import { createHmac, timingSafeEqual } from 'node:crypto';
import { jwtVerify, SignJWT } from 'jose';
import type { Middleware } from 'koa';
import { z } from 'zod';
import { ROLES, type Principal } from '../actors/principal.ts';
import { DomainError } from '../errors.ts';
import { ID_PATTERN, ID_RULE } from './schemas.ts';

/** What a token must satisfy besides its HS256 signature. */
export interface TokenRules {
  secret: string;
  /** When set, `iss` must equal it. */
  issuer?: string;
  /** When set, `aud` must equal (or contain) it. */
  audience?: string;
  /** `exp` may be at most this far ahead of now. */
  maxTtlSeconds: number;
}

/** Clocks of issuers and replicas differ a little: `exp`, `nbf` and `iat` are checked with this slack. */
export const CLOCK_SKEW_SECONDS = 30;
export const DEFAULT_MAX_TTL_SECONDS = 24 * 3600;
/** Longer bearer values are refused before any parsing: no honest token comes near it. */
const MAX_TOKEN_LENGTH = 4096;

const claims = z.object({
  sub: z.string().regex(ID_PATTERN, `sub must be ${ID_RULE}`),
  role: z.enum(ROLES),
  exp: z.number(),
  iat: z.number().optional(),
});

const key = (secret: string) => new TextEncoder().encode(secret);

/** `12h`, `30m`, `90s`, `1d` or a number of seconds, as seconds; undefined when unreadable. */
export function durationSeconds(value: string): number | undefined {
  const match = /^(\d{1,7})\s*(s|sec|secs|m|min|mins|h|hr|hrs|d|day|days)?$/i.exec(value.trim());
  if (!match) return undefined;
  const unit = (match[2] ?? 's').toLowerCase()[0];
  const factor = unit === 'd' ? 86400 : unit === 'h' ? 3600 : unit === 'm' ? 60 : 1;
  return Number(match[1]) * factor;
}

/**
 * Signs a token for `principal`. `expiresIn` is what jose takes (`12h`, or a negative `-1s` for an
 * already expired one); `claims` adds `iss`/`aud` when the service checks them.
 */
export async function signToken(
  secret: string,
  principal: Principal,
  expiresIn: string | number = '12h',
  extra: { issuer?: string; audience?: string } = {},
): Promise<string> {
  const jwt = new SignJWT({ role: principal.role })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(principal.sub)
    .setIssuedAt()
    .setExpirationTime(expiresIn);
  if (extra.issuer) jwt.setIssuer(extra.issuer);
  if (extra.audience) jwt.setAudience(extra.audience);
  return jwt.sign(key(secret));
}

function refuse(message: string, details: Record<string, unknown> = {}): never {
  throw new DomainError('unauthenticated', message, details);
}

/**
 * Verifies an HS256 token: signature, `exp` present and not past, at most `maxTtlSeconds` ahead,
 * `iat` (if present) not in the future, `iss`/`aud` when configured, `sub` and `role` well-formed.
 */
export async function verifyToken(rules: TokenRules | string, token: string, now = new Date()): Promise<Principal> {
  const r: TokenRules = typeof rules === 'string' ? { secret: rules, maxTtlSeconds: DEFAULT_MAX_TTL_SECONDS } : rules;
  requireCompact(token);
  // The signature first, with Node's synchronous HMAC (a few µs): jose's WebCrypto verification
  // costs about 100 µs, which a flood of forged tokens would otherwise buy for free.
  const [header, claimsPart, signature] = token.split('.') as [string, string, string];
  if (!sameBytes(Buffer.from(signature, 'base64url'), createHmac('sha256', r.secret).update(`${header}.${claimsPart}`).digest())) {
    refuse('invalid token: signature verification failed');
  }
  let payload: unknown;
  try {
    ({ payload } = await jwtVerify(token, key(r.secret), {
      algorithms: ['HS256'],
      requiredClaims: ['exp'],
      clockTolerance: CLOCK_SKEW_SECONDS,
      currentDate: now,
      ...(r.issuer !== undefined && { issuer: r.issuer }),
      ...(r.audience !== undefined && { audience: r.audience }),
    }));
  } catch (err) {
    refuse(`invalid token: ${(err as Error).message}`);
  }
  const parsed = claims.safeParse(payload);
  if (!parsed.success) {
    refuse('token lacks a valid sub, role or exp claim', { fields: parsed.error.issues.map((i) => i.path.join('.')) });
  }
  const seconds = Math.floor(now.getTime() / 1000);
  if (parsed.data.exp > seconds + r.maxTtlSeconds + CLOCK_SKEW_SECONDS) {
    refuse(`token expires too far ahead: at most ${r.maxTtlSeconds} s after now`, { maxTtlSeconds: r.maxTtlSeconds });
  }
  if (parsed.data.iat !== undefined && parsed.data.iat > seconds + CLOCK_SKEW_SECONDS) {
    refuse('token was issued in the future (iat)');
  }
  return { sub: parsed.data.sub, role: parsed.data.role };
}

/** Three base64url parts without padding: the only shape of a compact JWS. */
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

/**
 * Whether a part is canonical base64url: what encoding its own bytes gives back. Decoders skip
 * padding, stray characters and the unused low bits of the last character, so without this one
 * signature would have many spellings (a token with `=` appended would still verify).
 */
const canonical = (part: string) => Buffer.from(part, 'base64url').toString('base64url') === part;

/** The token of `Authorization: Bearer <token>`, or a 401 naming what is wrong. */
export function bearerToken(header: string): string {
  const match = /^Bearer +(\S+)$/i.exec(header);
  if (!match?.[1]) {
    refuse(header ? 'Authorization must be "Bearer <token>"' : 'a Bearer token is required');
  }
  const token = match[1];
  if (token.length > MAX_TOKEN_LENGTH) refuse(`the token is longer than ${MAX_TOKEN_LENGTH} characters`);
  requireCompact(token);
  return token;
}

function requireCompact(token: string): void {
  if (!COMPACT_JWS.test(token) || !token.split('.').every(canonical)) {
    refuse('the token must be a JWT of three canonical base64url parts (no padding, nothing else)');
  }
}

/** How many verified tokens each replica remembers (a client sends the same token again and again). */
const VERIFIED_CACHE_SIZE = 10_000;

/**
 * Requires `Authorization: Bearer <JWT>` and puts the caller on `ctx.state.principal`. A token is
 * verified once and then remembered until its `exp` (with the same clock skew the verification
 * allows): what the check decided depends on nothing else that can change, and the HMAC is the
 * costliest step of a request. One middleware serves every route (`mountRoutes`), so a client's
 * token is verified once per replica, not once per route it calls. `verify` is the check itself
 * (tests count its calls).
 */
export function authenticate(rules: TokenRules | string, verify: typeof verifyToken = verifyToken): Middleware {
  const verified = new Map<string, { principal: Principal; until: number }>();
  return async (ctx, next) => {
    const token = bearerToken(ctx.get('authorization'));
    const hit = verified.get(token);
    if (hit && Date.now() <= hit.until) {
      ctx.state.principal = hit.principal;
    } else {
      if (hit) verified.delete(token);
      const principal = await verify(rules, token);
      const exp = (JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as { exp: number }).exp;
      verified.set(token, { principal, until: (exp + CLOCK_SKEW_SECONDS) * 1000 });
      if (verified.size > VERIFIED_CACHE_SIZE) verified.delete(verified.keys().next().value!);
      ctx.state.principal = principal;
    }
    ctx.state.authenticated = true;
    await next();
  };
}

const sameBytes = (a: Buffer, b: Buffer) => a.length === b.length && timingSafeEqual(a, b);

/** Compares two secrets in time independent of where they differ. */
export function sameSecret(given: string, expected: string): boolean {
  return sameBytes(Buffer.from(given), Buffer.from(expected));
}

/** Requires `Authorization: Bearer <token>` with exactly `token` (a shared secret, not a JWT). */
export function requireStaticToken(token: string, what: string): Middleware {
  return async (ctx, next) => {
    const header = ctx.get('authorization');
    const match = /^Bearer +(\S+)$/i.exec(header);
    if (!match?.[1] || !sameSecret(match[1], token)) refuse(`${what} needs Authorization: Bearer <its token>`);
    ctx.state.authenticated = true;
    await next();
  };
}
