import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { startRuntime } from '../../src/app.ts';
import { loadConfig } from '../../src/config.ts';
import type { PaymentGateway } from '../../src/payment/payment-gateway.ts';
import { captureLog } from '../support/capture-log.ts';
import { removeQueueKeys, sharedSystem, TEST_DATABASE_URL, TEST_REDIS_URL } from '../support/system.ts';

describe('runtime close()', function () {
  this.timeout(30_000);
  before(async () => {
    await sharedSystem(); // the schema exists
  });

  it('releases every connection and timer, so the process exits by itself (regression: the worker Redis connection leaked)', async () => {
    const prefix = `{baedal-close-${randomUUID()}}`;
    const script = `
      import { startRuntime } from './src/app.ts';
      import { loadConfig } from './src/config.ts';
      import { createLogger } from './src/log.ts';
      const config = loadConfig({ DATABASE_URL: ${JSON.stringify(TEST_DATABASE_URL)}, REDIS_URL: ${JSON.stringify(TEST_REDIS_URL)}, QUEUE_PREFIX: '${prefix}' });
      const payments = { charge: async () => ({ chargeId: 'x' }), refund: async () => ({ refundId: 'x' }) };
      const runtime = await startRuntime({ config, log: createLogger('silent'), payments });
      await runtime.close();
      await runtime.close(); // idempotent
      console.log('closed');
    `;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const exit = await new Promise<number | null | 'hung'>((resolve) => {
      const timer = setTimeout(() => resolve('hung'), 20_000);
      child.once('exit', (code) => {
        clearTimeout(timer);
        resolve(code);
      });
    });
    if (exit === 'hung') child.kill('SIGKILL');
    await removeQueueKeys(prefix);
    expect(exit, output).to.equal(0);
    expect(output).to.include('closed');
  });
});

describe('runtime start', function () {
  this.timeout(30_000);

  it("warns when PostgreSQL's autovacuum is off (and only then): the service would slow down over time", async () => {
    const captured = captureLog('warn');
    const prefix = `{baedal-start-${randomUUID()}}`;
    const config = loadConfig({ DATABASE_URL: TEST_DATABASE_URL, REDIS_URL: TEST_REDIS_URL, QUEUE_PREFIX: prefix, ROLE: 'api' });
    const payments = { charge: async () => ({ chargeId: 'x' }), refund: async () => ({ refundId: 'x' }) } as unknown as PaymentGateway;
    const runtime = await startRuntime({ config, log: captured.log, payments });
    try {
      const autovacuum = ((await runtime.db.query(`SELECT current_setting('autovacuum') AS autovacuum`)) as { autovacuum: string }[])[0]!.autovacuum;
      const warnings = captured.lines().filter((l) => String(l.msg).startsWith("PostgreSQL's autovacuum is off"));
      expect(warnings, `autovacuum is ${autovacuum} on this server`).to.have.length(autovacuum === 'on' ? 0 : 1);
    } finally {
      await runtime.close();
      await removeQueueKeys(prefix);
    }
  });

  it('warns when webhooks are configured without NOTIFY_WEBHOOK_SECRET (unsigned), and not when it is set', async () => {
    const payments = { charge: async () => ({ chargeId: 'x' }), refund: async () => ({ refundId: 'x' }) } as unknown as PaymentGateway;
    const unsigned = (lines: Record<string, unknown>[]) => lines.filter((l) => String(l.msg).startsWith('NOTIFY_WEBHOOK_URL is set without NOTIFY_WEBHOOK_SECRET'));
    for (const secret of [undefined, 'a-webhook-secret-of-this-test']) {
      const captured = captureLog('warn');
      const prefix = `{baedal-start-${randomUUID()}}`;
      const config = loadConfig({
        DATABASE_URL: TEST_DATABASE_URL,
        REDIS_URL: TEST_REDIS_URL,
        QUEUE_PREFIX: prefix,
        ROLE: 'api',
        NOTIFY_WEBHOOK_URL: 'http://127.0.0.1:9/hook',
        ...(secret && { NOTIFY_WEBHOOK_SECRET: secret }),
      });
      const runtime = await startRuntime({ config, log: captured.log, payments });
      try {
        expect(unsigned(captured.lines()), `NOTIFY_WEBHOOK_SECRET ${secret ?? 'unset'}`).to.have.length(secret ? 0 : 1);
      } finally {
        await runtime.close();
        await removeQueueKeys(prefix);
      }
    }
  });
});
