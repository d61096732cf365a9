import type { Database } from '../db/pg.ts';
import type { OrderTimerEvent } from '../machines/order.machine.ts';
import { cappedBackoff, WorkTable, type WorkColumns, type WorkKind } from './work.ts';

export interface TimerRow extends WorkColumns {
  id: string;
  order_id: string;
  version: number;
  event: OrderTimerEvent;
  fire_at: Date;
}

/**
 * Durable timers: written with the transition that starts them, due at `fire_at`, prompted by a
 * delayed BullMQ job keyed by order and version. Firing sends the event only if the order is still
 * at that version; a timer whose order moved on is closed as such.
 */
export function timerWork(
  db: Database,
  fire: (timer: { id: string; orderId: string; version: number; event: OrderTimerEvent }) => Promise<'fired' | 'moved-on'>,
): WorkKind<TimerRow> {
  return {
    name: 'timer',
    table: new WorkTable<TimerRow>(db, 'timers', 'id', 'text', (r) => r.id),
    backoffMs: (attempts) => cappedBackoff(attempts, 500, 30_000),
    async perform(row) {
      const outcome = await fire({ id: row.id, orderId: row.order_id, version: row.version, event: row.event });
      await db.query(
        `UPDATE timers SET fired_at = now(), outcome = $2, due_at = NULL, lease_until = NULL, last_error = NULL WHERE id = $1`,
        [row.id, outcome],
      );
    },
  };
}
