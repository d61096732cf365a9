// The fake payment gateway on its own: npm run payment-gateway (the image: node dist/tools/scripts/payment-gateway.js).
import { z } from 'zod';
import { createLogger } from '../src/log.ts';
import { createFakeGateway } from '../dev/fake-gateway.ts';
import { commandLine } from '../src/cli.ts';

const USAGE = `usage: npm run payment-gateway   (compiled: node dist/tools/scripts/payment-gateway.js)

Runs the fake payment gateway that development and the tests use, until SIGTERM or Ctrl-C.
Environment:
  PAYMENT_GATEWAY_PORT  port to listen on (default 4010)
  PAYMENT_GATEWAY_HOST  address to listen on (default 127.0.0.1; 0.0.0.0 in a container)
It keeps its ledger in memory; GET /_admin/ledger shows it, PUT /_admin/behaviour makes it slow,
failing or declining, POST /_admin/reset forgets everything.`;

commandLine('payment-gateway', USAGE, {});

const DEFAULT_PORT = 4010;
/** If close() ever hangs, give up rather than ignore the orchestrator's SIGTERM. */
const SHUTDOWN_DEADLINE_MS = 10_000;

const logger = createLogger('info', 'payment-gateway');

const env = z
  .object({
    PAYMENT_GATEWAY_PORT: z
      .string()
      .regex(/^\d+$/, 'must be a whole number')
      .transform(Number)
      .pipe(z.int().max(65535, 'must be at most 65535'))
      .default(DEFAULT_PORT),
    PAYMENT_GATEWAY_HOST: z.string().min(1).default('127.0.0.1'),
  })
  .safeParse(process.env);

if (!env.success) {
  const problems = env.error.issues.map((i) => `${i.path.map(String).join('.')} ${i.message}`);
  logger.fatal({ problems }, `invalid configuration: ${problems.join('; ')}`);
  process.exit(1);
}

const { PAYMENT_GATEWAY_PORT: port, PAYMENT_GATEWAY_HOST: host } = env.data;

const gateway = await createFakeGateway({ port, host }).catch((err: unknown) => {
  logger.fatal({ err, port, host }, 'could not start the fake payment gateway');
  process.exit(1);
});
logger.info({ url: gateway.url, port: gateway.port }, `fake payment gateway listening on ${gateway.url}`);

async function shutdown(signal: NodeJS.Signals): Promise<void> {
  logger.info({ signal }, 'shutting down');
  const deadline = setTimeout(() => {
    logger.error({ deadlineMs: SHUTDOWN_DEADLINE_MS }, 'shutdown took too long, exiting');
    process.exit(1);
  }, SHUTDOWN_DEADLINE_MS).unref();
  try {
    await gateway.close();
    logger.info('closed');
  } catch (err) {
    logger.error({ err }, 'close failed');
    process.exitCode = 1;
  } finally {
    clearTimeout(deadline);
  }
}

// `once`: a second signal falls back to Node's default and kills the process outright.
process.once('SIGTERM', (s) => void shutdown(s));
process.once('SIGINT', (s) => void shutdown(s));
