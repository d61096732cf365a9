import { ExponentialBackoff, handleWhen, retry } from 'cockatiel';
/** SQLSTATEs raised by `baedal_fail()` inside a batch statement (see the migration that creates it). */
export const POSITION_MOVED = 'BAE01';
export const EFFECT_REFUSED = 'BAE02';

/** Another delivery applied some of the same events first: read again and apply what is left. */
export const isPositionMoved = (err: unknown) => (err as { code?: unknown } | null)?.code === POSITION_MOVED;

/** How often a batch is read again after another delivery moved its positions first. */
export const CONFLICT_RETRIES = 12;

/** Thrown when an order's journal is not 1, 2, … without gaps (must not happen). */
export class JournalGap extends Error {}

/** PostgreSQL gave up one of two transactions that waited on each other: try again. */
export function isConflict(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === '40P01' || code === '40001';
}

/** Errors that belong to one batch's data or code, as opposed to PostgreSQL being unreachable or a lost race. */
export function isApplicationError(err: unknown): boolean {
  if (isPositionMoved(err) || isConflict(err) || err instanceof JournalGap) return false;
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && /^(08|53|57)/.test(code)) return false; // connection, resources, shutdown, cancelled
  if (typeof code === 'string' && /^(ECONN|ETIMEDOUT|EPIPE)/.test(code)) return false;
  if (code === '55P03') return false; // lock timeout
  if (err instanceof Error && /Connection terminated|timeout exceeded when trying to connect/i.test(err.message)) return false;
  return true;
}

export function describe(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}

/** A batch that lost a race: another delivery moved its positions first, or PostgreSQL gave it up in a deadlock. */
const lostRace = retry(handleWhen((err) => isPositionMoved(err) || isConflict(err)), {
  maxAttempts: CONFLICT_RETRIES - 1,
  // A few milliseconds, more each time and jittered, so the racers stop meeting.
  backoff: new ExponentialBackoff({ initialDelay: 2, maxDelay: 60 }),
});

/**
 * Runs `attempt` (its number from 1) again, reading afresh, while it loses a race: at most
 * CONFLICT_RETRIES times in all. The consumers' one retry policy; any other error goes out at once.
 */
export function untilNoLostRace<T>(attempt: (n: number) => Promise<T>): Promise<T> {
  return lostRace.execute(({ attempt: retries }) => attempt(retries + 1));
}
