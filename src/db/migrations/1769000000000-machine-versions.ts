import { sqlMigration } from '../sql-migration.ts';

/**
 * Several versions of the order machine at once (a rolling deploy, orders finishing on an older
 * version): every journaled event records the machine version that judged it and the status it
 * led to, so consumers and views read events of any version without that version's code; every
 * durable timer records the version that started it, so it fires under the name the order's
 * version knows its event by. Rows written before this migration were all written by version 1
 * (the default); their status is read from version 1's table (UNRECORDED_STATUS_AFTER), so no
 * existing row is rewritten. Adding a column with a constant default rewrites no table.
 */
export const MachineVersions1769000000000 = sqlMigration('MachineVersions1769000000000', {
  up: [
    `ALTER TABLE order_journal ADD COLUMN machine_version integer NOT NULL DEFAULT 1, ADD COLUMN status text`,
    `ALTER TABLE timers ADD COLUMN machine_version integer NOT NULL DEFAULT 1`,
  ],
  down: [
    `ALTER TABLE timers DROP COLUMN machine_version`,
    `ALTER TABLE order_journal DROP COLUMN machine_version, DROP COLUMN status`,
  ],
});
