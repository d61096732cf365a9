import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The cluster's identity: one id, made by the first replica that starts on the database, and kept
 * under the queue prefix in Redis too, so a replica whose database and Redis prefix belong to
 * different clusters can tell (see `src/actors/cluster-identity.ts`).
 */
export class ClusterIdentity1769100000000 implements MigrationInterface {
  name = 'ClusterIdentity1769100000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE cluster_identity (
        singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
        id         uuid        NOT NULL DEFAULT gen_random_uuid(),
        created_at timestamptz NOT NULL DEFAULT now()
      )`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP TABLE cluster_identity');
  }
}
