import { sqlMigration } from '../sql-migration.ts';

const TABLES = ['order_journal', 'refunds', 'timers', 'notifications', 'payment_attempts'];

/**
 * The trace context (a W3C `traceparent`) of the span that recorded each event and each piece of
 * durable work, so the work done later, on any replica, joins the same trace. Null when tracing
 * was off: the service writes these columns only while it exports traces.
 */
export const TraceContext1769200000000 = sqlMigration('TraceContext1769200000000', {
  up: [
    // Nullable, no default: a change of the catalogue only, whatever the tables hold.
    ...TABLES.map((table) => `ALTER TABLE ${table} ADD COLUMN traceparent text`),
  ],
  down: TABLES.map((table) => `ALTER TABLE ${table} DROP COLUMN IF EXISTS traceparent`),
});
