import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

/**
 * Fields of database errors that may hold what was sent: TypeORM's QueryFailedError carries the
 * SQL text and its bound parameters (addresses, names), pg's DatabaseError a `detail` such as
 * "Key (id)=(…) already exists". None of them reaches a log.
 */
const UNSAFE_ERROR_FIELDS = ['query', 'parameters', 'driverError', 'detail', 'where', 'internalQuery', 'hint', 'position', 'internalPosition', 'body'];

/** What a database error may keep: its SQLSTATE and where it arose, never values. */
const SAFE_DATABASE_FIELDS = ['code', 'severity', 'routine', 'schema', 'table', 'column', 'dataType', 'constraint'] as const;

function isDatabaseError(err: Record<string, unknown>): boolean {
  if (err.name === 'QueryFailedError' || 'driverError' in err) return true;
  // pg's DatabaseError: a five-character SQLSTATE next to a server-side routine name.
  return typeof err.code === 'string' && /^[0-9A-Z]{5}$/.test(err.code) && typeof err.routine === 'string';
}

/** The stack without its first line, which repeats the message. */
function framesOnly(stack: unknown): string | undefined {
  if (typeof stack !== 'string') return undefined;
  return stack.split('\n').filter((line) => /^\s+at /.test(line)).join('\n');
}

/**
 * pino's error serializer without anything a request put into the error: a database error keeps
 * only its SQLSTATE and location (its message may quote a value: `invalid input syntax for type
 * integer: "…"`), and no error keeps SQL, parameters or bodies. Causes are serialized alike.
 */
export function safeError(value: unknown, depth = 0): unknown {
  if (!(value instanceof Error) || depth > 5) return value instanceof Error ? { type: value.name } : value;
  const err = value as Error & Record<string, unknown>;
  if (isDatabaseError(err)) {
    const source = (err.driverError as Record<string, unknown> | undefined) ?? err;
    const safe: Record<string, unknown> = { type: err.name };
    for (const field of SAFE_DATABASE_FIELDS) if (source[field] !== undefined) safe[field] = source[field];
    safe.message = `database error${typeof safe.code === 'string' ? ` ${safe.code}` : ''}${typeof safe.routine === 'string' ? ` in ${safe.routine}` : ''}`;
    const frames = framesOnly(err.stack);
    if (frames) safe.stack = frames;
    return safe;
  }
  // pino's own serializer would append the messages of causes (which may be database errors).
  const serialized: Record<string, unknown> = { type: err.constructor?.name ?? err.name, message: err.message, stack: err.stack };
  for (const key of Object.keys(err)) {
    if (UNSAFE_ERROR_FIELDS.includes(key) || key in serialized) continue;
    const field = err[key];
    serialized[key] = field instanceof Error ? safeError(field, depth + 1) : field;
  }
  if (Array.isArray(err.errors)) serialized.aggregateErrors = err.errors.map((e: unknown) => safeError(e, depth + 1));
  if (err.cause !== undefined) serialized.cause = safeError(err.cause, depth + 1);
  return serialized;
}

/** Paths that never reach a log, whoever logs them: bodies, tokens, addresses, SQL parameters. */
export const REDACTED_PATHS = [
  'body',
  '*.body',
  'parameters',
  '*.parameters',
  'headers.authorization',
  'req.headers.authorization',
  'authorization',
  '*.authorization',
  'address',
  '*.address',
];

export function createLogger(level: string, name = 'baedal', destination?: DestinationStream): Logger {
  const options = {
    name,
    level,
    serializers: { err: safeError, error: safeError },
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
  };
  return destination ? pino(options, destination) : pino(options);
}
