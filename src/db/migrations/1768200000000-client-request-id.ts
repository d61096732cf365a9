import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The journal keeps the client's `X-Request-Id` beside the causation id, which the service now
 * chooses itself: a client's id is for its own tracing and never names what caused an event.
 */
export class ClientRequestId1768200000000 implements MigrationInterface {
  name = 'ClientRequestId1768200000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query('ALTER TABLE order_journal ADD COLUMN client_request_id text');
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('ALTER TABLE order_journal DROP COLUMN IF EXISTS client_request_id');
  }
}
