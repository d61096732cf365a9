import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { ConfigError, isPublishedSecret, loadConfig } from '../../src/config.ts';

const run = promisify(execFile);

/** The AUTH_SECRET value shipped in k8s/secret.yaml, read from the file itself. */
function shippedPlaceholder(): string {
  const match = /^\s*AUTH_SECRET:\s*(\S+)\s*$/m.exec(readFileSync(new URL('../../k8s/secret.yaml', import.meta.url), 'utf8'));
  if (!match?.[1]) throw new Error('k8s/secret.yaml has no AUTH_SECRET line');
  return match[1];
}

describe('configuration of the edge', () => {
  it('listens on 127.0.0.1 unless HOST says otherwise, and refuses a HOST that is no host', () => {
    expect(loadConfig({}).HOST).to.equal('127.0.0.1');
    expect(loadConfig({ HOST: '0.0.0.0' }).HOST).to.equal('0.0.0.0');
    expect(loadConfig({ HOST: '::' }).HOST).to.equal('::');
    expect(loadConfig({ HOST: 'api.internal' }).HOST).to.equal('api.internal');
    expect(() => loadConfig({ HOST: 'http://0.0.0.0' })).to.throw(ConfigError, /HOST/);
  });

  it('rate limits 600 requests a minute by default; 0 turns it off; token rules default to 24 h and no iss/aud', () => {
    const config = loadConfig({});
    expect(config).to.include({ RATE_LIMIT_PER_MIN: 600, AUTH_MAX_TTL_SECONDS: 86400 });
    expect([config.AUTH_ISSUER, config.AUTH_AUDIENCE, config.METRICS_TOKEN]).to.deep.equal([undefined, undefined, undefined]);
    expect(loadConfig({ RATE_LIMIT_PER_MIN: '0' }).RATE_LIMIT_PER_MIN).to.equal(0);
    expect(() => loadConfig({ RATE_LIMIT_PER_MIN: '-1' })).to.throw(ConfigError, /RATE_LIMIT_PER_MIN/);
    expect(() => loadConfig({ METRICS_TOKEN: 'short' })).to.throw(ConfigError, /METRICS_TOKEN/);
  });

  it('refuses, in production, the development secret and the placeholder shipped in k8s/secret.yaml', () => {
    const placeholder = shippedPlaceholder();
    expect(isPublishedSecret(placeholder)).to.equal(true);
    expect(() => loadConfig({ NODE_ENV: 'production', AUTH_SECRET: placeholder })).to.throw(ConfigError, /published example/);
    expect(() => loadConfig({ NODE_ENV: 'production', AUTH_SECRET: 'baedal-development-secret-change-me' })).to.throw(ConfigError, /AUTH_SECRET/);
    expect(() => loadConfig({ NODE_ENV: 'production', AUTH_SECRET: 'replace-me-0123456789abcdef' })).to.throw(ConfigError, /AUTH_SECRET/);
    expect(loadConfig({ NODE_ENV: 'production', AUTH_SECRET: randomBytes(48).toString('base64') }).usingDevSecret).to.equal(false);
    // Outside production the placeholder is only a weak secret, as in development.
    expect(loadConfig({ NODE_ENV: 'development', AUTH_SECRET: placeholder }).AUTH_SECRET).to.equal(placeholder);
  });

  it('the service process exits with code 2 and names AUTH_SECRET instead of starting with the placeholder', async function () {
    this.timeout(30_000);
    const failed = await run(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      env: { ...process.env, NODE_ENV: 'production', AUTH_SECRET: shippedPlaceholder(), PORT: '0', DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none' },
      timeout: 25_000,
    }).then(
      () => expect.fail('the service started'),
      (err: { code: number; stderr: string }) => err,
    );
    expect(failed.code).to.equal(2);
    expect(failed.stderr).to.include('AUTH_SECRET').and.include('published example').and.include('openssl rand -base64 48');
  });
});
