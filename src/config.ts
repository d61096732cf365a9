import { z } from 'zod';

const DEV_AUTH_SECRET = 'baedal-development-secret-change-me';

/**
 * Secrets that are published and so never secret: the development default and the placeholder in
 * k8s/secret.yaml (any value starting REPLACE-ME). Production refuses to start with one of them.
 */
export function isPublishedSecret(secret: string): boolean {
  return secret === DEV_AUTH_SECRET || /^replace[-_ ]?me/i.test(secret);
}

/** A host name or an IPv4/IPv6 address to listen on. */
const HOST_PATTERN = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|[0-9A-Fa-f:.]{2,45})$/;

const schema = z
  .object({
    NODE_ENV: z.enum(['development', 'test', 'production']).default('development'),
    /** The interface to listen on; a container sets 0.0.0.0. */
    HOST: z.string().regex(HOST_PATTERN, 'a host name or an IP address, e.g. 127.0.0.1 or 0.0.0.0').default('127.0.0.1'),
    PORT: z.coerce.number().int().min(0).max(65535).default(3000),
    DATABASE_URL: z.url().default('postgres://postgres@127.0.0.1:5432/baedal'),
    REDIS_URL: z.url().default('redis://127.0.0.1:6379'),
    PAYMENT_URL: z.url().default('http://127.0.0.1:4010'),
    AUTH_SECRET: z.string().min(16, 'AUTH_SECRET must be at least 16 characters').optional(),
    /** When set, tokens must carry this `iss`; when unset, `iss` is not checked. */
    AUTH_ISSUER: z.string().min(1).max(200).optional(),
    /** When set, tokens must carry this `aud`; when unset, `aud` is not checked. */
    AUTH_AUDIENCE: z.string().min(1).max(200).optional(),
    /** The longest a token may live: its `exp` may be at most this far ahead. */
    AUTH_MAX_TTL_SECONDS: z.coerce.number().int().min(60).max(30 * 24 * 3600).default(24 * 3600),
    /** Requests per minute per token, for reads and for writes separately; 0 turns the limit off. */
    RATE_LIMIT_PER_MIN: z.coerce.number().int().min(0).max(1_000_000).default(600),
    /** When set, GET /metrics needs `Authorization: Bearer <METRICS_TOKEN>`; when unset it is open. */
    METRICS_TOKEN: z.string().min(16, 'METRICS_TOKEN must be at least 16 characters').optional(),
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
    if (env.NODE_ENV === 'production' && env.AUTH_SECRET && isPublishedSecret(env.AUTH_SECRET)) {
      ctx.addIssue({
        code: 'custom',
        path: ['AUTH_SECRET'],
        message: 'AUTH_SECRET is a published placeholder (the development default or the one in k8s/secret.yaml); generate one with `openssl rand -base64 48`',
      });
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
