import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Signatures of webhook deliveries, in Stripe's scheme: the header
 * `Baedal-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">` carries one `v1`
 * per secret, so a receiver that knows either the current or the previous secret of a rotation
 * verifies it. The timestamp is inside the signed text: a receiver that refuses old timestamps
 * refuses a replayed delivery.
 */
export const SIGNATURE_HEADER = 'Baedal-Signature';

/** How far (seconds) a delivery's timestamp may be from the receiver's clock, either way. */
export const DEFAULT_TOLERANCE_SECONDS = 300;

export type Secrets = string | readonly string[];
export type Body = string | Uint8Array;

/** The HMAC-SHA256 of `<t>.<body>` with one secret. */
function digest(secret: string, timestamp: number, body: Body): Buffer {
  return createHmac('sha256', secret).update(`${timestamp}.`).update(body).digest();
}

const list = (secrets: Secrets): readonly string[] => (typeof secrets === 'string' ? [secrets] : secrets);

/** The header value for `body` sent now (or at `now`): `t=…,v1=…`, one v1 per secret, in order. */
export function sign(body: Body, secrets: Secrets, { now = new Date() }: { now?: Date } = {}): string {
  const keys = list(secrets);
  if (keys.length === 0) throw new Error('sign needs at least one secret');
  const timestamp = Math.floor(now.getTime() / 1000);
  return [`t=${timestamp}`, ...keys.map((secret) => `v1=${digest(secret, timestamp, body).toString('hex')}`)].join(',');
}

export type VerifyResult =
  | { ok: true; timestamp: number }
  | {
      ok: false;
      /** `missing`: no header; `malformed`: not `t=<digits>,v1=<64 hex>…`; `mismatch`: no v1 of any secret; `expired`: authentic, but its timestamp is outside the tolerance. */
      reason: 'missing' | 'malformed' | 'mismatch' | 'expired';
    };

export interface VerifyOptions {
  /** Largest distance between the timestamp and `now`, either way (seconds). */
  toleranceSeconds?: number;
  now?: Date;
}

const HEX_DIGEST = /^[0-9a-f]{64}$/;
const TIMESTAMP = /^\d{1,12}$/;

/**
 * Checks a `Baedal-Signature` header against the raw bytes of the body as received (not
 * re-serialized JSON) and the secrets the receiver accepts. Entries of schemes other than `v1` are
 * ignored. The comparison is constant-time.
 */
export function verify(header: string | null | undefined, body: Body, secrets: Secrets, { toleranceSeconds = DEFAULT_TOLERANCE_SECONDS, now = new Date() }: VerifyOptions = {}): VerifyResult {
  if (header === undefined || header === null || header.trim() === '') return { ok: false, reason: 'missing' };
  let timestamp: number | undefined;
  const signatures: Buffer[] = [];
  for (const part of header.split(',')) {
    const eq = part.indexOf('=');
    if (eq <= 0) return { ok: false, reason: 'malformed' };
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (key === 't') {
      if (timestamp !== undefined || !TIMESTAMP.test(value)) return { ok: false, reason: 'malformed' };
      timestamp = Number(value);
    } else if (key === 'v1') {
      if (!HEX_DIGEST.test(value)) return { ok: false, reason: 'malformed' };
      signatures.push(Buffer.from(value, 'hex'));
    }
  }
  if (timestamp === undefined || signatures.length === 0) return { ok: false, reason: 'malformed' };
  const keys = list(secrets);
  if (keys.length === 0) throw new Error('verify needs at least one secret');

  let matched = false;
  for (const secret of keys) {
    const expected = digest(secret, timestamp, body);
    // Every pair is compared, so the time taken does not tell which one matched.
    for (const candidate of signatures) matched = timingSafeEqual(expected, candidate) || matched;
  }
  if (!matched) return { ok: false, reason: 'mismatch' };
  if (Math.abs(now.getTime() / 1000 - timestamp) > toleranceSeconds) return { ok: false, reason: 'expired' };
  return { ok: true, timestamp };
}
