import { sqlMigration } from '../sql-migration.ts';

/**
 * The journal keeps the client's `X-Request-Id` beside the causation id, which the service now
 * chooses itself: a client's id is for its own tracing and never names what caused an event.
 */
export const ClientRequestId1768200000000 = sqlMigration('ClientRequestId1768200000000', {
  up: [
    'ALTER TABLE order_journal ADD COLUMN client_request_id text',
  ],
  down: ['ALTER TABLE order_journal DROP COLUMN IF EXISTS client_request_id'],
});
