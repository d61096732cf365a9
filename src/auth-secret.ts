/**
 * What production asks of AUTH_SECRET, the HS256 key every token is signed with: anyone who knows
 * or guesses it can sign a token for any party, an admin included.
 */

/** The development default (used when AUTH_SECRET is unset outside production). */
export const DEV_AUTH_SECRET = 'baedal-development-secret-change-me';

/** How to make a good one; every refusal says it. */
export const SECRET_RECIPE = 'generate one with `openssl rand -base64 48`';

export const MIN_SECRET_BYTES = 32;
/** Shannon entropy of the secret's own characters, in bits per character (see `charEntropy`). */
export const MIN_BITS_PER_CHAR = 3;

/**
 * Secrets printed in this repository (its code, README, manifests, compose file and tests): they
 * are public, so never secret. A secret that contains one of them, compared without case and
 * punctuation, is refused too (`BAEDAL_DEVELOPMENT_SECRET_CHANGE_ME_2`).
 */
export const PUBLISHED_SECRETS: readonly string[] = [
  DEV_AUTH_SECRET,
  'REPLACE-ME-with-output-of-openssl-rand-base64-48', // k8s/secret.yaml
  'dev-only-secret-not-for-production-0123456789abcdef', // compose.yaml
  'test-secret-at-least-16-chars', // the tests
  'test-webhook-secret-of-the-tests', // the tests' NOTIFY_WEBHOOK_SECRET
  'baedal-bench-secret-0123456789', // an earlier benchmark
  'q7Zk2v9pX1mB4nR8sT0wY6uE3aC5dF', // an earlier test
];

/** Words that mark a placeholder, whatever surrounds them: `REPLACE-ME…`, `…change_me`. */
const PLACEHOLDER_WORDS = ['replaceme', 'changeme'];

const folded = (s: string) => s.toLowerCase().replace(/[^a-z0-9]/g, '');

/** Whether `secret` is, contains or varies a published secret or a placeholder. */
export function isPublishedSecret(secret: string): boolean {
  const f = folded(secret);
  if (PLACEHOLDER_WORDS.some((w) => f.includes(w))) return true;
  return PUBLISHED_SECRETS.some((p) => {
    const fp = folded(p);
    return f.includes(fp) || (f.length >= 8 && fp.includes(f));
  });
}

/**
 * Shannon entropy of the distribution of the secret's characters, in bits per character:
 * −Σ p·log2(p) over each distinct character's share p. `aaaa…` has 0, `abab…` 1, a base64
 * string from `openssl rand -base64 48` about 5.5, random hex about 3.8.
 */
export function charEntropy(secret: string): number {
  const chars = [...secret];
  const counts = new Map<string, number>();
  for (const c of chars) counts.set(c, (counts.get(c) ?? 0) + 1);
  let bits = 0;
  for (const n of counts.values()) {
    const p = n / chars.length;
    bits -= p * Math.log2(p);
  }
  return bits;
}

/** More than half of neighbouring characters equal or consecutive: `aaaa…`, `abcd…`, `1234…`, `9876…`. */
function mostlyRuns(secret: string): boolean {
  const codes = [...secret].map((c) => c.codePointAt(0)!);
  let steps = 0;
  for (let i = 1; i < codes.length; i += 1) if (Math.abs(codes[i]! - codes[i - 1]!) <= 1) steps += 1;
  return steps * 2 > codes.length - 1;
}

/** A shorter string said again and again: `0123456789abcdef0123456789abcdef`. */
const repeated = (secret: string) => /^([\s\S]+?)\1+$/.test(secret);

/**
 * Why `secret` may not sign production tokens (or, named `name`, anything else the service signs
 * in production), or undefined when it may. Refused: under
 * MIN_SECRET_BYTES bytes (UTF-8); under MIN_BITS_PER_CHAR bits of entropy per character; a
 * repetition of a shorter string; mostly runs of equal or consecutive characters; a published
 * secret or a variant of one.
 */
export function secretProblem(secret: string, name = 'AUTH_SECRET'): string | undefined {
  if (isPublishedSecret(secret)) {
    return `${name} is a published example (the development default, the k8s/secret.yaml placeholder, or another secret printed in this repository) or a variant of one; ${SECRET_RECIPE}`;
  }
  const bytes = Buffer.byteLength(secret, 'utf8');
  if (bytes < MIN_SECRET_BYTES) return `${name} is ${bytes} bytes; at least ${MIN_SECRET_BYTES} are required in production; ${SECRET_RECIPE}`;
  const bits = charEntropy(secret);
  if (bits < MIN_BITS_PER_CHAR) {
    return `${name} has low entropy (${bits.toFixed(2)} bits per character, at least ${MIN_BITS_PER_CHAR} required); ${SECRET_RECIPE}`;
  }
  if (repeated(secret)) return `${name} has low entropy (a shorter string repeated); ${SECRET_RECIPE}`;
  if (mostlyRuns(secret)) return `${name} has low entropy (mostly runs of equal or consecutive characters); ${SECRET_RECIPE}`;
  return undefined;
}
