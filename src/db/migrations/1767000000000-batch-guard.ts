import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * `baedal_fail(code, message)` raises an error with that SQLSTATE. A consumer batch is one
 * statement; this is how it undoes itself (all of it) when a checkpoint moved under it or an
 * effect's guard fails: the statement then leaves nothing behind.
 */
export class BatchGuard1767000000000 implements MigrationInterface {
  name = 'BatchGuard1767000000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE OR REPLACE FUNCTION baedal_fail(code text, message text) RETURNS integer
      LANGUAGE plpgsql AS $$
      BEGIN
        RAISE EXCEPTION USING ERRCODE = code, MESSAGE = message;
      END $$`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP FUNCTION IF EXISTS baedal_fail(text, text)');
  }
}
