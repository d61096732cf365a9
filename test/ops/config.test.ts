import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import { ConfigError, loadConfig } from '../../src/config.ts';

describe('configuration', () => {
  it('has working defaults for development, with a flagged development secret', () => {
    const config = loadConfig({});
    expect(config).to.include({
      PORT: 3000,
      DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/baedal',
      REDIS_URL: 'redis://127.0.0.1:6379',
      PAYMENT_URL: 'http://127.0.0.1:4010',
      usingDevSecret: true,
    });
  });

  it('names every invalid variable', () => {
    expect(() => loadConfig({ PORT: 'eighty', REDIS_URL: 'nope' }))
      .to.throw(ConfigError)
      .with.property('message')
      .that.matches(/PORT/)
      .and.matches(/REDIS_URL/);
  });

  it('delivers one notification per POST through 16 connections by default; NOTIFY_BATCH takes 0 or 1 only', () => {
    expect(loadConfig({})).to.include({ NOTIFY_CONCURRENCY: 64, NOTIFY_BATCH: false, NOTIFY_BATCH_MAX: 100 });
    expect(loadConfig({ NOTIFY_BATCH: '1', NOTIFY_BATCH_MAX: '20', NOTIFY_CONCURRENCY: '4' })).to.include({ NOTIFY_BATCH: true, NOTIFY_BATCH_MAX: 20, NOTIFY_CONCURRENCY: 4 });
    expect(loadConfig({ NOTIFY_BATCH: '0' }).NOTIFY_BATCH).to.equal(false);
    expect(() => loadConfig({ NOTIFY_BATCH: 'yes', NOTIFY_CONCURRENCY: '0', NOTIFY_BATCH_MAX: '-1' }))
      .to.throw(ConfigError)
      .with.property('message')
      .that.matches(/NOTIFY_BATCH: must be 0 or 1/)
      .and.matches(/NOTIFY_CONCURRENCY/)
      .and.matches(/NOTIFY_BATCH_MAX/);
  });

  it('reads NOTIFY_WEBHOOK_SECRET as comma-separated secrets, the current one first, each at least 16 characters', () => {
    expect(loadConfig({}).NOTIFY_WEBHOOK_SECRET).to.equal(undefined);
    expect(loadConfig({ NOTIFY_WEBHOOK_SECRET: 'a-webhook-secret-1' }).NOTIFY_WEBHOOK_SECRET).to.deep.equal(['a-webhook-secret-1']);
    expect(loadConfig({ NOTIFY_WEBHOOK_SECRET: 'new-webhook-secret-2, old-webhook-secret-1' }).NOTIFY_WEBHOOK_SECRET).to.deep.equal(['new-webhook-secret-2', 'old-webhook-secret-1']);
    for (const bad of ['', 'short', 'a-webhook-secret-1,', 'a-webhook-secret-1,,b-webhook-secret-2', 'a-webhook-secret-1,tiny']) {
      expect(() => loadConfig({ NOTIFY_WEBHOOK_SECRET: bad }), bad)
        .to.throw(ConfigError)
        .with.property('message')
        .that.matches(/NOTIFY_WEBHOOK_SECRET: each comma-separated secret must be at least 16 characters/);
    }
  });

  it('asks of each NOTIFY_WEBHOOK_SECRET in production what it asks of AUTH_SECRET', () => {
    const production = (secret: string) => () => loadConfig({ NODE_ENV: 'production', AUTH_SECRET: randomBytes(48).toString('base64'), NOTIFY_WEBHOOK_SECRET: secret });
    const strong = randomBytes(48).toString('base64');
    expect(production(strong)().NOTIFY_WEBHOOK_SECRET).to.deep.equal([strong]);
    expect(production('a-webhook-secret-1')).to.throw(ConfigError, /NOTIFY_WEBHOOK_SECRET is 18 bytes; at least 32 are required in production/);
    expect(production(`${strong},test-webhook-secret-of-the-tests`)).to.throw(ConfigError, /NOTIFY_WEBHOOK_SECRET \(secret 2 of 2\) is a published example/);
  });

  it('requires AUTH_SECRET in production', () => {
    expect(() => loadConfig({ NODE_ENV: 'production' })).to.throw(ConfigError, /AUTH_SECRET is required/);
    expect(loadConfig({ NODE_ENV: 'production', AUTH_SECRET: randomBytes(48).toString('base64') }).usingDevSecret).to.equal(false);
  });
});
