import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Each replica holds a lease it renews every moment (src/actors/replica-lease.ts), and each payment
 * attempt names the replica calling the gateway for it: when that replica's lease lapses (it died),
 * its attempts are reconciled at once and a retried pay may take them over, instead of the order
 * waiting for PAYMENT_RECONCILE_AFTER_MS and PAYMENT_SETTLE_MS.
 */
export class ReplicaLeases1768300000000 implements MigrationInterface {
  name = 'ReplicaLeases1768300000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE replica_leases (
        replica    text        PRIMARY KEY,
        until      timestamptz NOT NULL,
        started_at timestamptz NOT NULL DEFAULT now()
      )`);
    await q.query('ALTER TABLE payment_attempts ADD COLUMN replica text');
    // The attempts in flight, by the replica calling for them: few at any moment.
    await q.query(`CREATE INDEX payment_attempts_pending_idx ON payment_attempts (replica) WHERE status = 'pending'`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP INDEX IF EXISTS payment_attempts_pending_idx');
    await q.query('ALTER TABLE payment_attempts DROP COLUMN IF EXISTS replica');
    await q.query('DROP TABLE IF EXISTS replica_leases');
  }
}
