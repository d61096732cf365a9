import { sqlMigration } from '../sql-migration.ts';

/**
 * `baedal_fail(code, message)` raises an error with that SQLSTATE. A consumer batch is one
 * statement; this is how it undoes itself (all of it) when a checkpoint moved under it or an
 * effect's guard fails: the statement then leaves nothing behind.
 */
export const BatchGuard1767000000000 = sqlMigration('BatchGuard1767000000000', {
  up: [
    `
      CREATE OR REPLACE FUNCTION baedal_fail(code text, message text) RETURNS integer
      LANGUAGE plpgsql AS $$
      BEGIN
        RAISE EXCEPTION USING ERRCODE = code, MESSAGE = message;
      END $$`,
  ],
  down: ['DROP FUNCTION IF EXISTS baedal_fail(text, text)'],
});
