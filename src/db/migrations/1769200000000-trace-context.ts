import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The trace context (a W3C `traceparent`) of the span that recorded each event and each piece of
 * durable work, so the work done later, on any replica, joins the same trace. Null when tracing
 * was off: the service writes these columns only while it exports traces.
 */
export class TraceContext1769200000000 implements MigrationInterface {
  name = 'TraceContext1769200000000';

  async up(q: QueryRunner): Promise<void> {
    // Nullable, no default: a change of the catalogue only, whatever the tables hold.
    for (const table of TABLES) await q.query(`ALTER TABLE ${table} ADD COLUMN traceparent text`);
  }

  async down(q: QueryRunner): Promise<void> {
    for (const table of TABLES) await q.query(`ALTER TABLE ${table} DROP COLUMN IF EXISTS traceparent`);
  }
}

const TABLES = ['order_journal', 'refunds', 'timers', 'notifications', 'payment_attempts'];
