import { SignJWT } from 'jose';
import type { Role } from './scenario.ts';

/** The service accepts tokens that expire within the hour; the generator signs its own for at most that. */
export const TOKEN_TTL_SECONDS = 3600;
/** Re-signed well before they expire, so runs longer than an hour keep working. */
export const TOKEN_REFRESH_MS = 30 * 60 * 1000;

/** HS256, with the claims the service reads: sub, role, iat, exp. */
export async function signToken(secret: string, role: Role, sub: string, ttlSeconds = TOKEN_TTL_SECONDS): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ role })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(sub)
    .setIssuedAt(now)
    .setExpirationTime(now + ttlSeconds)
    .sign(new TextEncoder().encode(secret));
}

/** A party of the load (a store, a customer, a rider) with its current token. */
export interface Party {
  role: Role;
  sub: string;
  token: string;
}

/** The tokens of every party of a run, signed once and re-signed on a timer. */
export class TokenBook {
  private readonly parties: Party[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly secret: string) {}

  async party(role: Role, sub: string): Promise<Party> {
    const party = { role, sub, token: await signToken(this.secret, role, sub) };
    this.parties.push(party);
    return party;
  }

  startRefreshing(): void {
    this.timer = setInterval(() => {
      for (const p of this.parties) void signToken(this.secret, p.role, p.sub).then((t) => (p.token = t));
    }, TOKEN_REFRESH_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
