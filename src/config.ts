import { z } from 'zod';
import { DEV_AUTH_SECRET, secretProblem } from './auth-secret.ts';

export { isPublishedSecret } from './auth-secret.ts';

/** A positive whole number from the environment (milliseconds, counts). */
const ms = (fallback: number) => z.coerce.number().int().positive().default(fallback);

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
    /**
     * Requests per minute per client address that carry no accepted credential: the public routes
     * (but the probes /healthz and /readyz), unknown routes and refused tokens; 0 turns it off.
     */
    PUBLIC_RATE_LIMIT_PER_MIN: z.coerce.number().int().min(0).max(1_000_000).default(300),
    /**
     * Proxies in front of the service whose X-Forwarded-For entries are trusted (1 behind the
     * Ingress): the client address is the entry that many places from the right. 0: the socket's peer.
     */
    TRUSTED_PROXY_HOPS: z.coerce.number().int().min(0).max(10).default(0),
    /** When set, GET /metrics needs `Authorization: Bearer <METRICS_TOKEN>`; when unset it is open. */
    METRICS_TOKEN: z.string().min(16, 'METRICS_TOKEN must be at least 16 characters').optional(),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    ROLE: z.enum(['all', 'api', 'worker']).default('all'),
    /** BullMQ key prefix; the braces make it a Redis Cluster hash tag, as BullMQ requires. */
    QUEUE_PREFIX: z.string().min(1).default('{baedal}'),
    /**
     * How long an idle keep-alive connection stays open. Longer than the idle timeout of the load
     * balancer in front (60 s for most), so the balancer, not the service, closes idle connections:
     * otherwise a request it sends as the service closes the socket fails (a 502, ECONNRESET).
     */
    HTTP_KEEP_ALIVE_TIMEOUT_MS: ms(65_000),
    BODY_LIMIT: z.string().regex(/^\d+(b|kb|mb)$/i, 'e.g. 64kb').default('64kb'),
    DATABASE_POOL_SIZE: ms(10),
    /** Longest wait for a pooled connection (all busy) or a new one; then the request answers 503. */
    DATABASE_CONNECT_TIMEOUT_MS: ms(5000),
    /** PostgreSQL's statement_timeout for the service's connections (migrations run without it). */
    DATABASE_STATEMENT_TIMEOUT_MS: ms(30_000),
    /** PostgreSQL's lock_timeout: the longest a statement waits for a row (or advisory) lock. */
    DATABASE_LOCK_TIMEOUT_MS: ms(10_000),
    /** PostgreSQL's idle_in_transaction_session_timeout: a transaction left open this long is ended. */
    DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS: ms(60_000),
    /** Orders each replica keeps in memory to judge commands without a read (0: none). */
    ORDER_CACHE_SIZE: z.coerce.number().int().min(0).default(10_000),
    /** Most commands written (or orders read) in one statement. */
    GROUP_COMMIT_MAX: ms(64),
    /** Most such statements of each kind on their way at once, per replica. */
    GROUP_COMMIT_IN_FLIGHT: ms(2),
    /**
     * While commands keep coming, a replica starts at most one statement writing them per this many
     * milliseconds, so each carries more of them (0: each goes as soon as a slot is free); a second
     * starts with it only for what the first cannot carry. A command after a quiet spell of that
     * length goes at once.
     */
    GROUP_COMMIT_SPACING_MS: z.coerce.number().int().min(0).max(1000).default(0),
    /** Deadline of one payment gateway call, retries included. */
    PAYMENT_TIMEOUT_MS: ms(2000),
    /** Extra attempts after a transient gateway failure (within PAYMENT_TIMEOUT_MS). */
    PAYMENT_RETRIES: z.coerce.number().int().min(0).max(10).default(2),
    /** Consecutive failed gateway calls that open the circuit breaker. */
    PAYMENT_BREAKER_FAILURES: ms(5),
    /** How long the open breaker refuses calls before a half-open probe. */
    PAYMENT_BREAKER_HALF_OPEN_MS: ms(10_000),
    /** A payment attempt still pending this long after it started is reconciled with the gateway. */
    PAYMENT_RECONCILE_AFTER_MS: ms(10_000),
    /**
     * How long a replica's lease lasts without renewal (renewed three times as often): a replica
     * that dies is known gone after this, and its payments in flight are reconciled (and may be
     * retried) at once.
     */
    REPLICA_LEASE_MS: z.coerce.number().int().min(500).max(60_000).default(3000),
    /** A charge the gateway does not know this long after the attempt started never happened. */
    PAYMENT_SETTLE_MS: ms(60_000),
    REFUND_RETRY_MAX_MS: ms(60_000),
    /** Notifications go to this webhook (POST, JSON); without it they are written to the log. */
    NOTIFY_WEBHOOK_URL: z.url().optional(),
    /**
     * Secrets that sign each webhook request (`Baedal-Signature`), comma-separated, the current one
     * first: one signature per secret, so a receiver holding the old or the new one of a rotation
     * verifies it. Unset: requests go unsigned.
     */
    NOTIFY_WEBHOOK_SECRET: z
      .string()
      .transform((value, ctx) => {
        const secrets = value.split(',').map((s) => s.trim());
        if (secrets.some((s) => s.length < 16)) {
          ctx.addIssue({ code: 'custom', message: 'each comma-separated secret must be at least 16 characters (no empty entries); generate one with `openssl rand -base64 48`' });
          return z.NEVER;
        }
        return secrets;
      })
      .optional(),
    NOTIFY_TIMEOUT_MS: ms(5000),
    NOTIFY_RETRY_MAX_MS: ms(60_000),
    /** Webhook requests on their way at once per replica (kept-alive connections to the endpoint). */
    NOTIFY_CONCURRENCY: z.coerce.number().int().min(1).max(1024).default(64),
    /** 1: one POST carries a JSON array of the notifications waiting (up to NOTIFY_BATCH_MAX); 0: one per POST. */
    NOTIFY_BATCH: z.enum(['0', '1'], 'must be 0 or 1').default('0').transform((v) => v === '1'),
    NOTIFY_BATCH_MAX: z.coerce.number().int().min(1).max(10_000).default(100),
    /** Orders one customer may have waiting for payment at once; the next POST /orders answers 429. */
    MAX_UNPAID_ORDERS_PER_CUSTOMER: ms(10),
    /** A paid order the store has not accepted by then is rejected and refunded. */
    STORE_ACCEPT_TIMEOUT_MS: ms(10 * 60_000),
    /** An order not paid by then is cancelled. */
    UNPAID_ORDER_TIMEOUT_MS: ms(15 * 60_000),
    /** Partitions the journal's events are split into (by order id); fixed once events exist. */
    EVENT_PARTITIONS: z.coerce.number().int().min(1).max(1024).default(32),
    /** A replica's lease on its event partitions; one that dies frees them after this long. */
    EVENTS_LEASE_MS: z.coerce.number().int().min(500).default(5000),
    /** How often an owner reads its partitions (and retries owed orders) without being woken. */
    EVENTS_POLL_MS: ms(2000),
    /** How long committed events wait to travel together in one job (0: next tick only). */
    EVENTS_LINGER_MS: z.coerce.number().int().min(0).max(1000).default(20),
    /** At most one wake-up per other replica this often (an owner busy with a partition reads it again by itself). */
    EVENTS_REMOTE_WAKE_MS: z.coerce.number().int().min(0).max(5000).default(100),
    /** New commands wait while this replica's last event batch applied an event older than this (0: never). */
    EVENTS_LAG_BUDGET_MS: z.coerce.number().int().min(0).max(60_000).default(100),
    /** The longest a new command waits for the replica's event batches to come within their budget. */
    EVENTS_LAG_HOLD_MS: z.coerce.number().int().min(1).max(10_000).default(250),
    /** How often each replica sweeps for overdue work. */
    SWEEP_INTERVAL_MS: ms(2000),
    /** Delivered notifications are kept this many days (the feed of GET /notifications). */
    NOTIFICATION_RETENTION_DAYS: ms(30),
    /** An Idempotency-Key of POST /orders is remembered this many hours. */
    IDEMPOTENCY_KEY_TTL_HOURS: ms(24),
    /** How long a replica holds a work item (refund, notification, timer) before another may take it. */
    WORK_LEASE_MS: ms(10_000),
    WORKER_CONCURRENCY: ms(8),
    /** How long a worker holds a job before BullMQ deems it stalled (its replica died) and redelivers it. */
    JOB_LOCK_MS: z.coerce.number().int().min(1000).default(10_000),
    /** Bound of the whole shutdown after SIGTERM: HTTP drain, in-flight jobs, connections; then exit 0. */
    SHUTDOWN_TIMEOUT_MS: ms(20_000),
    /** How long a starting replica waits for PostgreSQL to accept connections before it gives up (exit 1). */
    STARTUP_WAIT_MS: ms(60_000),
  })
  .superRefine((env, ctx) => {
    if (env.PAYMENT_RECONCILE_AFTER_MS <= env.PAYMENT_TIMEOUT_MS) {
      ctx.addIssue({ code: 'custom', path: ['PAYMENT_RECONCILE_AFTER_MS'], message: 'must exceed PAYMENT_TIMEOUT_MS (a call in flight is not abandoned)' });
    }
    if (env.WORK_LEASE_MS <= Math.max(env.PAYMENT_TIMEOUT_MS, env.NOTIFY_TIMEOUT_MS)) {
      ctx.addIssue({ code: 'custom', path: ['WORK_LEASE_MS'], message: 'must exceed PAYMENT_TIMEOUT_MS and NOTIFY_TIMEOUT_MS' });
    }
    if (env.NODE_ENV === 'production' && !env.AUTH_SECRET) {
      ctx.addIssue({ code: 'custom', path: ['AUTH_SECRET'], message: 'AUTH_SECRET is required when NODE_ENV=production; generate one with `openssl rand -base64 48`' });
    }
    const weak = env.NODE_ENV === 'production' && env.AUTH_SECRET ? secretProblem(env.AUTH_SECRET) : undefined;
    if (weak) ctx.addIssue({ code: 'custom', path: ['AUTH_SECRET'], message: weak });
    if (env.NODE_ENV === 'production') {
      const secrets = env.NOTIFY_WEBHOOK_SECRET ?? [];
      for (const [i, secret] of secrets.entries()) {
        const problem = secretProblem(secret, secrets.length > 1 ? `NOTIFY_WEBHOOK_SECRET (secret ${i + 1} of ${secrets.length})` : 'NOTIFY_WEBHOOK_SECRET');
        if (problem) ctx.addIssue({ code: 'custom', path: ['NOTIFY_WEBHOOK_SECRET'], message: problem });
      }
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

/** For entry points: the configuration, or the reasons it is invalid on stderr and exit code 2. */
export function loadConfigOrExit(env: NodeJS.ProcessEnv = process.env): Config {
  try {
    return loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(err.message);
      process.exit(2);
    }
    throw err;
  }
}
