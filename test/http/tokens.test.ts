import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { SignJWT, type JWTPayload } from 'jose';
import { verifyToken } from '../../src/http/auth.ts';
import { AUTH_SECRET, serveApp, sharedSystem, type ServedApp, type TestSystem } from '../support/system.ts';

const run = promisify(execFile);
const key = new TextEncoder().encode(AUTH_SECRET);
const now = () => Math.floor(Date.now() / 1000);

/** A token with exactly these claims (nothing added), signed with the test secret unless told otherwise. */
function sign(claims: JWTPayload, opts: { secret?: string; alg?: string } = {}): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: opts.alg ?? 'HS256', typ: 'JWT' }).sign(opts.secret ? new TextEncoder().encode(opts.secret) : key);
}

describe('tokens', () => {
  let sys: TestSystem;
  let strict: ServedApp;
  const ISSUER = 'https://auth.baedal.test';
  const AUDIENCE = 'baedal-api';

  before(async () => {
    sys = await sharedSystem();
    strict = await serveApp(sys.runtime, { authIssuer: ISSUER, authAudience: AUDIENCE, authMaxTtlSeconds: 3600 });
  });
  after(async () => {
    await strict?.close();
  });

  const base = () => ({ sub: 'customer-tok-1', role: 'customer', iat: now(), exp: now() + 600 });
  const status = async (app: { request: TestSystem['request'] }, token: string) => {
    const res = await app.request('GET', '/orders', { token });
    if (res.status === 401) expect(res.body.error.code).to.equal('unauthenticated');
    return res.status;
  };

  it('accepts a well-formed token with exp at most 24 h ahead and iat within the clock skew', async () => {
    expect(await status(sys, await sign(base()))).to.equal(200);
    expect(await status(sys, await sign({ ...base(), exp: now() + 24 * 3600 - 5 }))).to.equal(200);
    expect(await status(sys, await sign({ ...base(), iat: now() + 10 }))).to.equal(200);
    const { iat: _omitted, ...withoutIat } = base();
    expect(await status(sys, await sign(withoutIat))).to.equal(200);
  });

  it('refuses a token without exp, with exp too far ahead, or issued in the future (401)', async () => {
    const { exp: _omitted, ...withoutExp } = base();
    expect(await status(sys, await sign(withoutExp)), 'no exp').to.equal(401);
    expect(await status(sys, await sign({ ...base(), exp: now() + 25 * 3600 })), 'exp in 25 h').to.equal(401);
    expect(await status(sys, await sign({ ...base(), exp: now() + 10 * 365 * 24 * 3600 })), 'exp in 10 years').to.equal(401);
    expect(await status(sys, await sign({ ...base(), iat: now() + 120 })), 'iat in 2 min').to.equal(401);
    expect(await status(sys, await sign({ ...base(), exp: now() - 120 })), 'expired 2 min ago').to.equal(401);
    expect(await status(sys, await sign({ ...base(), nbf: now() + 120 })), 'not before 2 min from now').to.equal(401);
    expect(await status(sys, await sign({ ...base(), exp: 'tomorrow' as unknown as number })), 'exp a string').to.equal(401);
  });

  it('refuses a sub outside the id charset and an unknown role (401)', async () => {
    for (const sub of ['a b', 'x/y', 'ä', '', 'x'.repeat(101), 'a\u0000b', 'a\ud800']) {
      expect(await status(sys, await sign({ ...base(), sub })), JSON.stringify(sub)).to.equal(401);
    }
    for (const role of ['root', 'Customer', '', 42]) {
      expect(await status(sys, await sign({ ...base(), role })), JSON.stringify(role)).to.equal(401);
    }
  });

  it('refuses other algorithms, other secrets and oversized or malformed bearer values (401)', async () => {
    expect(await status(sys, await sign(base(), { alg: 'HS512' }))).to.equal(401);
    expect(await status(sys, await sign(base(), { secret: 'another-secret-0123456789' }))).to.equal(401);
    const unsigned = `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${Buffer.from(JSON.stringify(base())).toString('base64url')}.`;
    expect(await status(sys, unsigned)).to.equal(401);
    expect(await status(sys, `${await sign(base())}${'A'.repeat(5000)}`)).to.equal(401);
    const res = await sys.request('GET', '/orders', { headers: { authorization: `Bearer ${await sign(base())} extra` } });
    expect(res.status).to.equal(401);
  });

  it('refuses a token that is not canonical base64url: padding, stray characters, other spellings of a part (401)', async () => {
    const good = await sign(base());
    expect(await status(sys, good)).to.equal(200);
    const [header, payload, signature] = good.split('.') as [string, string, string];
    // A 32-byte HS256 signature is 43 characters; the last carries 4 unused bits that decoders ignore.
    const last = signature.at(-1)!;
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const sameBytes = alphabet[(alphabet.indexOf(last) & ~0b1111) | ((alphabet.indexOf(last) + 1) & 0b1111)]!;
    expect(Buffer.from(`${signature.slice(0, -1)}${sameBytes}`, 'base64url').equals(Buffer.from(signature, 'base64url'))).to.equal(true);
    const variants: Record<string, string> = {
      'signature + "="': `${good}=`,
      'signature + "=="': `${good}==`,
      'payload padded': `${header}.${payload}${'='.repeat((4 - (payload.length % 4)) % 4 || 4)}.${signature}`,
      'header + "="': `${header}=.${payload}.${signature}`,
      'signature in base64 (+ and /)': `${header}.${payload}.${Buffer.from(signature, 'base64url').toString('base64')}`,
      'unused bits set': `${header}.${payload}.${signature.slice(0, -1)}${sameBytes}`,
      'a fourth part': `${good}.AAAA`,
      'a stray ~': `${good}~`,
    };
    for (const [what, token] of Object.entries(variants)) {
      expect(token, what).not.to.equal(good);
      const res = await sys.request('GET', '/orders', { headers: { authorization: `Bearer ${token}` } });
      expect(res.status, what).to.equal(401);
      expect(res.body.error.code, what).to.equal('unauthenticated');
    }
    // The canonical token still works after its variants were tried (they are not remembered as it).
    expect(await status(sys, good)).to.equal(200);
  });

  it('checks iss and aud when they are configured, and the configured lifetime', async () => {
    const good = { ...base(), iss: ISSUER, aud: AUDIENCE };
    expect(await status(strict, await sign(good))).to.equal(200);
    expect(await status(strict, await sign({ ...good, aud: [AUDIENCE, 'other'] }))).to.equal(200);
    expect(await status(strict, await sign({ ...good, iss: 'https://evil.test' })), 'wrong iss').to.equal(401);
    expect(await status(strict, await sign({ ...good, aud: 'other-api' })), 'wrong aud').to.equal(401);
    const { iss: _i, ...noIss } = good;
    expect(await status(strict, await sign(noIss)), 'no iss').to.equal(401);
    const { aud: _a, ...noAud } = good;
    expect(await status(strict, await sign(noAud)), 'no aud').to.equal(401);
    expect(await status(strict, await sign({ ...good, exp: now() + 2 * 3600 })), 'beyond AUTH_MAX_TTL_SECONDS').to.equal(401);
  });

  it('verifyToken applies the rules at a given time', async () => {
    const token = await sign({ sub: 's-1', role: 'store', iat: 1_000_000, exp: 1_000_000 + 3600 });
    const rules = { secret: AUTH_SECRET, maxTtlSeconds: 3600 };
    expect(await verifyToken(rules, token, new Date(1_000_100 * 1000))).to.deep.equal({ sub: 's-1', role: 'store' });
    await verifyToken(rules, token, new Date(1_000_000 * 1000 - 3600 * 1000)).then(
      () => expect.fail('a token issued an hour in the future was accepted'),
      (err: { code?: string }) => expect(err.code).to.equal('unauthenticated'),
    );
  });

  describe('npm run token', function () {
    this.timeout(30_000);
    const token = (args: string[], env: Record<string, string> = {}) =>
      run(process.execPath, ['--import', 'tsx', 'scripts/token.ts', ...args], { env: { ...process.env, AUTH_SECRET, ...env } });

    it('prints usage on --help, and refuses bad arguments with usage and exit code 2, without a stack trace', async () => {
      const help = await token(['--help']);
      expect(help.stdout).to.match(/^usage: npm run -s token/);
      for (const args of [['--role', 'customer', '--sub', 'a b'], ['--role', 'king', '--sub', 'c1'], ['--role', 'customer', '--sub', 'c1', '--expires', '48h'], ['--bogus']]) {
        const failed = await token(args).then(
          () => expect.fail(`${args.join(' ')} succeeded`),
          (err: { code: number; stderr: string }) => err,
        );
        expect(failed.code, args.join(' ')).to.equal(2);
        expect(failed.stderr).to.include('usage:');
        expect(failed.stderr).not.to.match(/\n\s+at /);
      }
    });

    it('mints a token the service accepts, with the configured issuer and audience', async () => {
      const { stdout } = await token(['--role', 'rider', '--sub', 'rider-9', '--expires', '30m'], { AUTH_ISSUER: ISSUER, AUTH_AUDIENCE: AUDIENCE, AUTH_MAX_TTL_SECONDS: '3600' });
      const minted = stdout.trim();
      expect(await status(strict, minted)).to.equal(200);
      const claims = JSON.parse(Buffer.from(minted.split('.')[1]!, 'base64url').toString()) as JWTPayload;
      expect(claims).to.include({ sub: 'rider-9', role: 'rider', iss: ISSUER, aud: AUDIENCE });
      expect(claims.exp! - claims.iat!).to.equal(1800);
    });
  });
});
