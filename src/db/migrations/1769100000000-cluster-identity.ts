import { sqlMigration } from '../sql-migration.ts';

/**
 * The cluster's identity: one id, made by the first replica that starts on the database, and kept
 * under the queue prefix in Redis too, so a replica whose database and Redis prefix belong to
 * different clusters can tell (see `src/actors/cluster-identity.ts`).
 */
export const ClusterIdentity1769100000000 = sqlMigration('ClusterIdentity1769100000000', {
  up: [
    `
      CREATE TABLE cluster_identity (
        singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
        id         uuid        NOT NULL DEFAULT gen_random_uuid(),
        created_at timestamptz NOT NULL DEFAULT now()
      )`,
  ],
  down: ['DROP TABLE cluster_identity'],
});
