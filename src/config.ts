import { z } from 'zod';

const DEV_AUTH_SECRET = 'baedal-development-secret-change-me';

const schema = z
  .object({
    NODE_ENV: z.enum(['development', 'test', 'production']).default('development'),
    PORT: z.coerce.number().int().min(0).max(65535).default(3000),
    DATABASE_URL: z.url().default('postgres://postgres@127.0.0.1:5432/baedal'),
    REDIS_URL: z.url().default('redis://127.0.0.1:6379'),
    PAYMENT_URL: z.url().default('http://127.0.0.1:4010'),
    AUTH_SECRET: z.string().min(16, 'AUTH_SECRET must be at least 16 characters').optional(),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    ROLE: z.enum(['all', 'api', 'worker']).default('all'),
    /** BullMQ key prefix; the braces make it a Redis Cluster hash tag, as BullMQ requires. */
    QUEUE_PREFIX: z.string().min(1).default('{baedal}'),
    BODY_LIMIT: z.string().regex(/^\d+(b|kb|mb)$/i, 'e.g. 64kb').default('64kb'),
    PAYMENT_TIMEOUT_MS: z.coerce.number().int().positive().default(5000),
    RELAY_POLL_MS: z.coerce.number().int().positive().default(250),
    WORKER_CONCURRENCY: z.coerce.number().int().positive().default(8),
    /** How long a worker holds a job before BullMQ deems it stalled (its replica died) and redelivers it. */
    JOB_LOCK_MS: z.coerce.number().int().min(1000).default(30000),
    SHUTDOWN_GRACE_MS: z.coerce.number().int().positive().default(20000),
  })
  .superRefine((env, ctx) => {
    if (env.NODE_ENV === 'production' && !env.AUTH_SECRET) {
      ctx.addIssue({ code: 'custom', path: ['AUTH_SECRET'], message: 'AUTH_SECRET is required when NODE_ENV=production' });
    }
  });

export type Config = Omit<z.infer<typeof schema>, 'AUTH_SECRET'> & {
  AUTH_SECRET: string;
  /** True when AUTH_SECRET fell back to the development default. */
  usingDevSecret: boolean;
};

export class ConfigError extends Error {}

/** Reads and validates the environment; throws ConfigError naming every bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = schema.safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
    throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`);
  }
  const { AUTH_SECRET, ...rest } = parsed.data;
  return { ...rest, AUTH_SECRET: AUTH_SECRET ?? DEV_AUTH_SECRET, usingDevSecret: !AUTH_SECRET };
}
