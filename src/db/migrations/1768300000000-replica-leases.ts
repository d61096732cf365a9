import { sqlMigration } from '../sql-migration.ts';

/**
 * Each replica holds a lease it renews every moment (src/actors/replica-lease.ts), and each payment
 * attempt names the replica calling the gateway for it: when that replica's lease lapses (it died),
 * its attempts are reconciled at once and a retried pay may take them over, instead of the order
 * waiting for PAYMENT_RECONCILE_AFTER_MS and PAYMENT_SETTLE_MS.
 */
export const ReplicaLeases1768300000000 = sqlMigration('ReplicaLeases1768300000000', {
  up: [
    `
      CREATE TABLE replica_leases (
        replica    text        PRIMARY KEY,
        until      timestamptz NOT NULL,
        started_at timestamptz NOT NULL DEFAULT now()
      )`,
    'ALTER TABLE payment_attempts ADD COLUMN replica text',
    // The attempts in flight, by the replica calling for them: few at any moment.
    `CREATE INDEX payment_attempts_pending_idx ON payment_attempts (replica) WHERE status = 'pending'`,
  ],
  down: [
    'DROP INDEX IF EXISTS payment_attempts_pending_idx',
    'ALTER TABLE payment_attempts DROP COLUMN IF EXISTS replica',
    'DROP TABLE IF EXISTS replica_leases',
  ],
});
