import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { charEntropy, DEV_AUTH_SECRET, secretProblem } from '../../src/auth-secret.ts';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { AUTH_SECRET as TEST_SECRET } from '../support/system.ts';

const ROOT = new URL('../..', import.meta.url).pathname;

/** Loads the configuration as production would, with this AUTH_SECRET. */
const production = (secret: string) => () => loadConfig({ NODE_ENV: 'production', AUTH_SECRET: secret });

/**
 * Every AUTH_SECRET value written in the files people copy from: the README and docs, the k8s
 * manifests and their README, the compose file and the Dockerfile (`AUTH_SECRET: x`, `AUTH_SECRET=x`;
 * shell expansions such as `$(…)` are not values).
 */
function publishedValues(): { file: string; value: string }[] {
  const files = ['README.md', 'compose.yaml', 'Dockerfile', 'k8s/README.md'];
  for (const dir of ['k8s', 'docs']) {
    for (const name of readdirSync(join(ROOT, dir))) if (/\.(ya?ml|md)$/.test(name)) files.push(`${dir}/${name}`);
  }
  const found: { file: string; value: string }[] = [];
  for (const file of new Set(files)) {
    const text = readFileSync(join(ROOT, file), 'utf8');
    for (const m of text.matchAll(/AUTH_SECRET["']?\s*[:=]\s*["']?([^\s"'`$(){},]+)/g)) found.push({ file, value: m[1]! });
  }
  return found;
}

describe('AUTH_SECRET in production', () => {
  it('refuses a secret under 32 bytes, saying how to make one', () => {
    for (const weak of ['aaaaaaaaaaaaaaaa', 'Vb7rK2qLm9XzT4wNp0sYd8Fh3Jc6Gu1', randomBytes(21).toString('base64')]) {
      expect(Buffer.byteLength(weak)).to.be.below(32);
      expect(production(weak), weak).to.throw(ConfigError, /AUTH_SECRET is \d+ bytes; at least 32 are required/);
      expect(production(weak)).to.throw(ConfigError, /openssl rand -base64 48/);
    }
  });

  it('refuses a long secret of low entropy: few distinct characters, a repeated block, runs', () => {
    const lowEntropy = ['a'.repeat(64), 'ab'.repeat(20), 'aaaaaaaabbbbbbbbccccccccdddddddd', '0000000000000000000000000000000011'];
    for (const weak of lowEntropy) {
      expect(charEntropy(weak), weak).to.be.below(3);
      expect(production(weak), weak).to.throw(ConfigError, /low entropy \(\d\.\d\d bits per character, at least 3 required\).*openssl rand -base64 48/);
    }
    // Enough distinct characters, but a pattern.
    expect(production('0123456789abcdef0123456789abcdef'), 'repeated').to.throw(ConfigError, /a shorter string repeated/);
    expect(production('Xk3!aZ9@pQ'.repeat(4)), 'repeated').to.throw(ConfigError, /a shorter string repeated/);
    expect(production('abcdefghijklmnopqrstuvwxyz0123456789'), 'a run').to.throw(ConfigError, /runs of equal or consecutive characters/);
    expect(production('zyxwvutsrqponmlkjihgfedcba9876543210'), 'a run').to.throw(ConfigError, /runs of equal or consecutive characters/);
  });

  it('refuses every secret written in the README, docs, manifests and compose file, and the code defaults', () => {
    const published = publishedValues();
    // The scan found the two that are there today, so it reads the files it should.
    expect(published.map((p) => p.file)).to.include.members(['k8s/secret.yaml', 'compose.yaml']);
    for (const { file, value } of [...published, { file: 'src/auth-secret.ts', value: DEV_AUTH_SECRET }, { file: 'test/support', value: TEST_SECRET }]) {
      expect(secretProblem(value), `${file}: ${value}`).to.match(/published example.*openssl rand -base64 48/);
      expect(production(value), `${file}: ${value}`).to.throw(ConfigError, /AUTH_SECRET/);
    }
  });

  it('refuses variants of the development secret and placeholders however they are spelled or padded', () => {
    for (const variant of [
      'baedal-development-secret-change-me-2',
      'BAEDAL_DEVELOPMENT_SECRET_CHANGE_ME',
      'Baedal Development Secret Change Me!!',
      `${randomBytes(8).toString('hex')}baedal-development-secret-change-me`,
      'replace-me-0123456789abcdef-0123456789abcdef',
      `${randomBytes(24).toString('base64')}-CHANGEME`,
    ]) {
      expect(production(variant), variant).to.throw(ConfigError, /published example.*openssl rand -base64 48/);
    }
  });

  it('accepts what `openssl rand -base64 48` and `openssl rand -hex 32` print', () => {
    for (let i = 0; i < 2000; i += 1) {
      const base64 = randomBytes(48).toString('base64');
      expect(secretProblem(base64), base64).to.equal(undefined);
      const hex = randomBytes(32).toString('hex');
      expect(secretProblem(hex), hex).to.equal(undefined);
    }
    const secret = randomBytes(48).toString('base64');
    expect(loadConfig({ NODE_ENV: 'production', AUTH_SECRET: secret })).to.include({ AUTH_SECRET: secret, usingDevSecret: false });
  });

  it('outside production a short or published secret is only the weak secret of a development machine', () => {
    expect(loadConfig({ NODE_ENV: 'development', AUTH_SECRET: 'aaaaaaaaaaaaaaaa' }).AUTH_SECRET).to.equal('aaaaaaaaaaaaaaaa');
    expect(loadConfig({ NODE_ENV: 'test', AUTH_SECRET: TEST_SECRET }).AUTH_SECRET).to.equal(TEST_SECRET);
  });
});
