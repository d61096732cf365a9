import type { Database } from '../db/pg.ts';
import { Batcher } from '../db/batcher.ts';
import { variant } from '../db/statement-variant.ts';
import type { WorkPrompt } from '../actors/work.ts';
import { ORDER_MACHINE_ID } from '../machines/order/contract.ts';

/*
 * Payment attempts (`payment_attempts`): each pay's own idempotency key, recorded before the gateway
 * is called and closed with what it answered; what is undecided belongs to reconciliation.
 */

export const chargeKey = (orderId: string, n: number) => `order-${orderId}-charge-${n}`;

export interface Attempt {
  key: string;
  n: number;
}

/** What recording an attempt found: the attempt to call for, or why there is none. */
export type Started =
  | Attempt
  /** Another attempt of the order is in flight on a live replica. */
  | 'in-progress'
  /** The order's earlier attempt was abandoned and is being reconciled (or was just taken over): judge again shortly. */
  | { wait: string }
  /** The order moved on since it was judged. */
  | undefined;

export interface AttemptRequest {
  orderId: string;
  /** The version the payment was judged on. */
  version: number;
  /** The machine version the order was stored with when it was judged. */
  machineVersion: number;
  amount: number;
  /** The pay's trace context (tracing on): a reconciliation of the attempt joins its trace. */
  traceparent?: string;
}

/*
 * Records a payment attempt for each order still at its judged version and machine version (input
 * arrays: order ids, versions, amounts, machine versions), as the attempt of this replica ($7). The orders' row locks last this one
 * statement: they order the attempts after a payment being recorded. An order whose earlier
 * attempt is undecided (pending or unknown) gets no new one: while that attempt's replica holds its
 * lease, it is in flight (a null key); once its replica is gone or its caller gave up, this pay
 * takes it over with its idempotency key, so the gateway charges at most once for both, unless a
 * reconciliation holds it now (then `wait` names it).
 */
const START_ATTEMPTS = `
  WITH input AS (
    SELECT * FROM unnest($1::uuid[], $2::int[], $3::int[], $6::int[]) AS i(id, version, amount, machine_version)
  ), judged AS (
    SELECT o.id FROM orders o JOIN input i ON i.id = o.id AND o.version = i.version AND o.machine_version = i.machine_version
    WHERE o.id = ANY ($1::uuid[]) AND o.machine_id = $5::text
    ORDER BY o.id FOR UPDATE OF o
  ), open AS (
    SELECT DISTINCT ON (a.order_id) a.order_id, a.idempotency_key, a.status, a.replica, a.due_at,
      (a.status = 'unknown' OR NOT EXISTS (SELECT 1 FROM replica_leases r WHERE r.replica = a.replica AND r.until > now())) AS abandoned
    FROM payment_attempts a
    WHERE a.order_id = ANY (ARRAY(SELECT id FROM judged)) AND a.status IN ('pending', 'unknown')
    ORDER BY a.order_id, a.n DESC
  ), taken AS (
    -- Conditions on what was read: if another pay took it over first, or a reconciliation claimed
    -- it, since this statement's snapshot, the row re-read under its lock no longer matches.
    UPDATE payment_attempts a SET status = 'pending', replica = $7, due_at = now() + make_interval(secs => $4::float8 / 1000),
      decided_at = NULL, last_error = NULL
    FROM open o
    WHERE a.idempotency_key = o.idempotency_key AND o.abandoned
      AND a.status = o.status AND a.replica IS NOT DISTINCT FROM o.replica AND a.due_at IS NOT DISTINCT FROM o.due_at
      AND (a.lease_until IS NULL OR a.lease_until < now())
    RETURNING a.order_id, a.idempotency_key, a.n
  ), numbered AS (
    SELECT j.id, coalesce((SELECT max(a.n) FROM payment_attempts a WHERE a.order_id = j.id), 0) + 1 AS n
    FROM judged j WHERE j.id NOT IN (SELECT order_id FROM open)
  ), started AS (
    INSERT INTO payment_attempts (idempotency_key, order_id, n, amount, status, started_at, due_at, replica)
    SELECT 'order-' || x.id::text || '-charge-' || x.n, x.id, x.n, i.amount, 'pending', now(),
           now() + make_interval(secs => $4::float8 / 1000), $7
    FROM numbered x JOIN input i ON i.id = x.id
    ON CONFLICT DO NOTHING
    RETURNING order_id, idempotency_key, n
  )
  SELECT j.id, coalesce(s.idempotency_key, t.idempotency_key) AS key, coalesce(s.n, t.n) AS n,
    CASE WHEN o.abandoned THEN o.idempotency_key END AS wait
  FROM judged j
  LEFT JOIN started s ON s.order_id = j.id
  LEFT JOIN taken t ON t.order_id = j.id
  LEFT JOIN open o ON o.order_id = j.id`;

/** START_ATTEMPTS that also records each new attempt's trace context ($8), for batches that carry one (tracing on). */
const START_ATTEMPTS_TRACED = variant(START_ATTEMPTS, [
  ['unnest($1::uuid[], $2::int[], $3::int[], $6::int[]) AS i(id, version, amount, machine_version)', 'unnest($1::uuid[], $2::int[], $3::int[], $6::int[], $8::text[]) AS i(id, version, amount, machine_version, traceparent)'],
  ['INSERT INTO payment_attempts (idempotency_key, order_id, n, amount, status, started_at, due_at, replica)', 'INSERT INTO payment_attempts (idempotency_key, order_id, n, amount, status, started_at, due_at, replica, traceparent)'],
  ['now() + make_interval(secs => $4::float8 / 1000), $7\n    FROM numbered x', 'now() + make_interval(secs => $4::float8 / 1000), $7, i.traceparent\n    FROM numbered x'],
]);

/** What recording and closing attempts needs: the batches' bounds, this replica, the reconciliation's prompt. */
export interface AttemptDeps {
  batch: { maxBatch: number; maxInFlight: number };
  reconcileAfterMs: number;
  replica: string;
  prompt: WorkPrompt;
}

/** This replica's payment attempts: started in batches, closed, or handed to reconciliation. */
export function createAttempts(db: Database, deps: AttemptDeps) {
  /**
   * Records attempts if their orders are still at the judged versions, those of the moment in one
   * statement (one commit instead of one per payment). Per order, see `Started`.
   */
  const batched = new Batcher<AttemptRequest, Started>(startAttempts, { ...deps.batch, key: (r) => r.orderId, alone: true });

  async function startAttempts(requests: readonly AttemptRequest[]): Promise<Started[]> {
    const params: unknown[] = [
      requests.map((r) => r.orderId),
      requests.map((r) => r.version),
      requests.map((r) => r.amount),
      deps.reconcileAfterMs,
      ORDER_MACHINE_ID,
      requests.map((r) => r.machineVersion),
      deps.replica,
    ];
    const traced = requests.some((r) => r.traceparent);
    if (traced) params.push(requests.map((r) => r.traceparent ?? null));
    const rows = await db.query<{ id: string; key: string | null; n: number | null; wait: string | null }>(traced ? START_ATTEMPTS_TRACED : START_ATTEMPTS, params);
    const byId = new Map(rows.map((r) => [r.id, r]));
    return requests.map((r): Started => {
      const row = byId.get(r.orderId);
      if (!row) return undefined;
      if (row.key !== null) return { key: row.key, n: row.n! };
      return row.wait !== null ? { wait: row.wait } : 'in-progress';
    });
  }

  /** Closes an attempt that certainly charged nothing. */
  async function settle(key: string, status: 'declined' | 'failed', error: string | null): Promise<void> {
    await db.query(
      `UPDATE payment_attempts SET status = $2, decided_at = now(), due_at = NULL, lease_until = NULL, last_error = $3
       WHERE idempotency_key = $1 AND status = 'pending'`,
      [key, status, error],
    );
  }

  /** Hands an attempt whose outcome is unknown to reconciliation, due at once. */
  async function unknown(key: string, error: string): Promise<void> {
    const [row] = await db.query<{ due_at: Date }>(
      `UPDATE payment_attempts SET status = 'unknown', decided_at = now(), last_error = $2, due_at = now()
       WHERE idempotency_key = $1 AND status = 'pending' RETURNING due_at`,
      [key, error],
    );
    if (row) deps.prompt.schedule('payment-reconcile', [key], row.due_at);
  }

  /**
   * At shutdown: the attempts of this replica still waiting for the gateway will not be recorded
   * by this process. They are handed to reconciliation now (and a retried pay may take them over)
   * instead of holding their orders until PAYMENT_RECONCILE_AFTER_MS. Answers their keys.
   */
  async function handOver(): Promise<string[]> {
    const rows = await db.query<{ key: string }>(
      `UPDATE payment_attempts SET status = 'unknown', due_at = now(), last_error = 'its replica stopped before the gateway answered'
       WHERE replica = $1 AND status = 'pending' RETURNING idempotency_key AS key`,
      [deps.replica],
    );
    const keys = rows.map((r) => r.key);
    if (keys.length > 0) deps.prompt.schedule('payment-reconcile', keys);
    return keys;
  }

  return { start: (request: AttemptRequest) => batched.submit(request), settle, unknown, handOver };
}
