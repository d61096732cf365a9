import { sqlMigration } from '../sql-migration.ts';

/**
 * The payload columns, which no statement filters, joins, groups or sorts on, keep no planner
 * statistics (`SET STATISTICS 0`): ANALYZE, autovacuum's or an operator's, then no longer
 * detoasts, compares and sorts every sampled order's snapshot, event's data or message's text to
 * build statistics that no plan reads. On a database of 14,209 orders and 87,796 journal rows
 * (docs/benchmarks.md, 2026-12-05 11:16), ANALYZE took 66–86 ms on orders instead of 284–369, and
 * 175–199 ms on the journal instead of 384–420. The columns the statements do filter on keep
 * their statistics. A statement that comes to filter on one of these columns gives it its
 * statistics back (`SET STATISTICS -1`) in a migration of its own.
 */
export const PAYLOAD_COLUMNS: readonly (readonly [table: string, column: string])[] = [
  ['orders', 'snapshot'],
  ['order_journal', 'data'],
  ['order_journal', 'actor'],
  ['order_journal', 'traceparent'],
  ['notifications', 'text'],
  ['notifications', 'traceparent'],
  ['view_store_orders', 'items'],
  ['timers', 'traceparent'],
  ['payment_attempts', 'traceparent'],
  ['refunds', 'traceparent'],
];

export const PayloadStatistics1769600000000 = sqlMigration('PayloadStatistics1769600000000', {
  // ALTER … SET STATISTICS takes a SHARE UPDATE EXCLUSIVE lock: reads and writes go on meanwhile.
  up: PAYLOAD_COLUMNS.map(([table, column]) => `ALTER TABLE ${table} ALTER COLUMN ${column} SET STATISTICS 0`),
  down: PAYLOAD_COLUMNS.map(([table, column]) => `ALTER TABLE ${table} ALTER COLUMN ${column} SET STATISTICS -1`),
});
