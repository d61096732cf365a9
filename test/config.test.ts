import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import { ConfigError, loadConfig } from '../src/config.ts';

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

  it('requires AUTH_SECRET in production', () => {
    expect(() => loadConfig({ NODE_ENV: 'production' })).to.throw(ConfigError, /AUTH_SECRET is required/);
    expect(loadConfig({ NODE_ENV: 'production', AUTH_SECRET: randomBytes(48).toString('base64') }).usingDevSecret).to.equal(false);
  });
});
