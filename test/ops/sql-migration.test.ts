import { expect } from 'chai';
import type { QueryRunner } from 'typeorm';
import { MIGRATIONS } from '../../src/db/data-source.ts';
import { sqlMigration } from '../../src/db/sql-migration.ts';

/** A query runner that records what it is asked to run. */
function recorder(): { q: QueryRunner; ran: unknown[] } {
  const ran: unknown[] = [];
  const q = { query: async (sql: string, params?: unknown[]) => void ran.push(params ? [sql, params] : sql) } as unknown as QueryRunner;
  return { q, ran };
}

describe('sqlMigration', () => {
  it('makes a class named as databases record it, and so are its instances', () => {
    const Example = sqlMigration('Example1700000000000', { up: [], down: [] });
    expect(Example.name).to.equal('Example1700000000000');
    expect(new Example().name).to.equal('Example1700000000000');
    for (const M of MIGRATIONS) expect(new M().name, M.name).to.equal(M.name);
  });

  it('runs its statements in order, with their parameters, up and down', async () => {
    const Example = sqlMigration('Example1700000000000', {
      up: ['CREATE TABLE a (x int)', { sql: 'INSERT INTO a SELECT unnest($1::int[])', params: [[1, 2]] }],
      down: ['DROP TABLE a'],
    });
    const { q, ran } = recorder();
    await new Example().up(q);
    await new Example().down(q);
    expect(ran).to.deep.equal(['CREATE TABLE a (x int)', ['INSERT INTO a SELECT unnest($1::int[])', [[1, 2]]], 'DROP TABLE a']);
  });

  it('refuses to revert an irreversible migration, running nothing', async () => {
    const Example = sqlMigration('Example1700000000000', { up: ['SELECT 1'], down: 'irreversible' });
    const { q, ran } = recorder();
    let refused: Error | undefined;
    await new Example().down(q).catch((err: Error) => (refused = err));
    expect(refused?.message).to.equal('Example1700000000000 cannot be reverted: restore from a backup instead');
    expect(ran).to.deep.equal([]);
  });
});
