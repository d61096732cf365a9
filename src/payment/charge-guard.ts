import type { CommitGuard, Transition } from '../actors/order-commit.ts';
import { variant } from '../db/statement-variant.ts';

/**
 * The payment's part in the statement that writes orders (a CommitGuard): a `pay` transition that
 * records a charge is written only together with its attempt, still undecided (pending or unknown)
 * and the order still at the version the payment was judged on. If the order moved on (a cancel,
 * the unpaid-order timer), the same statement marks the attempt orphaned and records the refund of
 * its charge instead. The orders concerned are locked first, in id order: their version then
 * decides alone.
 */
const CHARGE_CTES = `paying AS (
    SELECT o.id, CASE WHEN o.machine_id = $4::text AND o.machine_version = i.from_machine_version THEN o.version ELSE -1 END AS version
    FROM orders o JOIN input i ON i.id = o.id
    WHERE o.id = ANY (ARRAY(SELECT id FROM input WHERE guard IS NOT NULL)) AND i.guard IS NOT NULL
    ORDER BY o.id FOR UPDATE OF o
  ), charged AS (
    UPDATE payment_attempts a SET status = 'charged', charge_id = i.guard->>'charge_id', decided_at = now(), due_at = NULL, lease_until = NULL
    FROM input i JOIN paying p ON p.id = i.id AND p.version = i.from_version
    WHERE a.idempotency_key = i.guard->>'attempt_key' AND a.status IN ('pending', 'unknown')
    RETURNING a.idempotency_key
  ), orphaned AS (
    UPDATE payment_attempts a SET status = 'orphaned', charge_id = i.guard->>'charge_id', decided_at = now(), due_at = NULL, lease_until = NULL
    FROM input i JOIN paying p ON p.id = i.id AND p.version <> i.from_version
    WHERE a.idempotency_key = i.guard->>'attempt_key' AND a.status IN ('pending', 'unknown')
    RETURNING a.order_id, a.idempotency_key
  ), orphan_refunds AS (
    INSERT INTO refunds (idempotency_key, order_id, charge_id, amount, reason, status, requested_at, due_at)
    SELECT i.guard->>'refund_key', i.id, i.guard->>'charge_id', (i.guard->>'amount')::int, 'orphaned', 'pending', now(), now()
    FROM input i JOIN orphaned o ON o.idempotency_key = i.guard->>'attempt_key'
    ON CONFLICT DO NOTHING
  ), guard_passed AS (
    SELECT i.id FROM input i JOIN charged c ON c.idempotency_key = i.guard->>'attempt_key'
  ), guard_outcomes AS (
    SELECT order_id AS id, 'orphaned'::text AS what FROM orphaned
  )`;

export const chargeGuard: CommitGuard = {
  ctes: CHARGE_CTES,
  tracedCtes: variant(CHARGE_CTES, [
    [
      "INSERT INTO refunds (idempotency_key, order_id, charge_id, amount, reason, status, requested_at, due_at)\n    SELECT i.guard->>'refund_key', i.id, i.guard->>'charge_id', (i.guard->>'amount')::int, 'orphaned', 'pending', now(), now()",
      "INSERT INTO refunds (idempotency_key, order_id, charge_id, amount, reason, status, requested_at, due_at, traceparent)\n    SELECT i.guard->>'refund_key', i.id, i.guard->>'charge_id', (i.guard->>'amount')::int, 'orphaned', 'pending', now(), now(), i.traceparent",
    ],
  ]),
};

/** A charge a `pay` transition records: the attempt that made it, and the refund's key should the order have moved on. */
export interface Charge {
  attemptKey: string;
  chargeId: string;
  amount: number;
  refundKey: string;
}

/** Makes `t` record `charge` (see chargeGuard); returns `t`. */
export function recordingCharge(t: Transition, charge: Charge): Transition {
  t.guard = { data: { attempt_key: charge.attemptKey, charge_id: charge.chargeId, amount: charge.amount, refund_key: charge.refundKey } };
  return t;
}

/**
 * What became of the charge once `t` was committed: `charged` (the order is paid), `orphaned` (the
 * order had moved on: the refund is recorded) or `gone` (the attempt was decided already, by
 * reconciliation or by a retry that took it over).
 */
export function chargeOutcome(t: Transition): 'charged' | 'orphaned' | 'gone' {
  const outcome = t.guard?.outcome;
  return outcome === 'written' ? 'charged' : outcome === 'orphaned' ? 'orphaned' : 'gone';
}
