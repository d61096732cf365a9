import type { MigrationInterface, QueryRunner } from 'typeorm';

/** One statement of a migration: its SQL, or its SQL and the parameters it takes. */
export type Statement = string | { sql: string; params: readonly unknown[] };

export interface SqlMigrationSteps {
  /** Run in order, each on its own, inside the migration's transaction. */
  up: readonly Statement[];
  /** Run in order to revert it; `'irreversible'` refuses to (restore from a backup instead). */
  down: readonly Statement[] | 'irreversible';
}

export type SqlMigration = new () => MigrationInterface;

async function run(q: QueryRunner, statements: readonly Statement[]): Promise<void> {
  for (const s of statements) {
    if (typeof s === 'string') await q.query(s);
    else await q.query(s.sql, [...s.params]);
  }
}

/**
 * A migration made of SQL statements, as a class TypeORM instantiates. `migrationName` is the name
 * TypeORM records in schema_migrations (and the class's own name): databases already hold it, so
 * a migration keeps it, timestamp and all, once it has shipped.
 */
export function sqlMigration(migrationName: string, steps: SqlMigrationSteps): SqlMigration {
  const migration = class implements MigrationInterface {
    readonly name = migrationName;

    async up(q: QueryRunner): Promise<void> {
      await run(q, steps.up);
    }

    async down(q: QueryRunner): Promise<void> {
      if (steps.down === 'irreversible') throw new Error(`${migrationName} cannot be reverted: restore from a backup instead`);
      await run(q, steps.down);
    }
  };
  Object.defineProperty(migration, 'name', { value: migrationName });
  return migration;
}
