import type { Database } from '../db/pg.ts';
import { MachineVersionAheadError } from '../errors.ts';
import type { TimerToFire } from './order-actor.ts';
import { exponentialBackoff, WorkTable, type WorkColumns, type WorkKind } from './work.ts';

export interface TimerRow extends WorkColumns {
  id: string;
  order_id: string;
  version: number;
  /** Named as the machine version that started the timer knew it. */
  event: string;
  machine_version: number;
  fire_at: Date;
}

/** How soon a timer whose order runs a newer machine version than this replica is tried again (by any replica). */
const AHEAD_RETRY_MS = 1000;

/**
 * Durable timers: written with the transition that starts them, due at `fire_at`, prompted by a
 * delayed BullMQ job keyed by order and version. Firing sends the event only if the order is still
 * at that version; a timer whose order moved on is closed as such. During a rolling deploy, a
 * replica that meets a timer of an order moved to a newer machine version leaves it due for a
 * replica that runs that version.
 */
export function timerWork(db: Database, fire: (timer: TimerToFire) => Promise<'fired' | 'moved-on'>): WorkKind<TimerRow> {
  return {
    name: 'timer',
    table: new WorkTable<TimerRow>(db, 'timers', 'id', 'text', (r) => r.id),
    backoffMs: exponentialBackoff(500, 30_000),
    async perform(row) {
      let outcome: 'fired' | 'moved-on';
      try {
        outcome = await fire({ id: row.id, orderId: row.order_id, version: row.version, event: row.event, machineVersion: row.machine_version });
      } catch (err) {
        if (err instanceof MachineVersionAheadError) return { retryInMs: AHEAD_RETRY_MS, error: err.message };
        throw err;
      }
      await db.query(
        `UPDATE timers SET fired_at = now(), outcome = $2, due_at = NULL, lease_until = NULL, last_error = NULL WHERE id = $1`,
        [row.id, outcome],
      );
    },
  };
}
