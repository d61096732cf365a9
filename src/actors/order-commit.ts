import { randomUUID } from 'node:crypto';
import type { Sql } from '../db/pg.ts';
import { ORDER_MACHINE_ID, type OrderDomainEvent } from '../machines/order/contract.ts';
import type { OrderMachineVersion, OrderSnapshot } from '../machines/order/define.ts';
import { partitionOf } from './partitions.ts';
import { variant } from '../db/statement-variant.ts';
import type { Actor, Cause } from './order-repository.ts';
import type { RefundIntent, TimerIntent } from './order-intents.ts';

export interface Transition {
  orderId: string;
  /** The version the order had before this transition; 0 when it is being created. */
  fromVersion: number;
  /**
   * The machine version the order was stored with before this transition (ignored when it is
   * being created). The write happens only if the order is still on it: a snapshot another
   * replica moved to another version is never overwritten by one judged on the old one.
   */
  fromMachineVersion: number;
  /** The machine that judged the transition: the order is stored with its version (a lazy migration when newer). */
  machine: OrderMachineVersion;
  snapshot: OrderSnapshot;
  event: OrderDomainEvent;
  by: Actor;
  /** What caused it: the server's id of the request, or the timer that fired; and the client's own request id. */
  cause: Cause;
  at: Date;
  refunds: readonly RefundIntent[];
  timers: readonly TimerIntent[];
  /**
   * A condition of the feature that asked for the transition (see CommitGuard): the order is
   * written only if the guard lets it. `data` is what the guard's statement part reads for it;
   * `outcome` says what happened once the statement ran: `written`, the guard's own outcome, or
   * `gone` (the guard neither let it through nor reported anything).
   */
  guard?: { data: Record<string, unknown>; outcome?: string };
  /**
   * For a new order, the menu lines it was priced from: it is written only if the store's menu
   * still serves each food under that name at that price when the statement runs, so an order
   * priced from a menu read a moment before a change (or from a cached copy) is never written.
   */
  menu?: readonly MenuLine[];
  /**
   * For a new order that was not written, why (set once the statement ran): its customer already
   * has the most unpaid orders allowed (`too-many`), the count was being created by another
   * statement at the same moment (`retry`: judged again, it is decided on that count), or a line
   * of the menu it was priced from has changed since (`menu-changed`: priced again).
   */
  unwritten?: 'too-many' | 'retry' | 'menu-changed';
  /**
   * The trace context of the span that judged it (only while tracing is on): written with its
   * journal row, refunds and timers, whose consumers and work then join that trace.
   */
  traceparent?: string;
}

/** A line of a store's menu as an order was priced from it. */
export interface MenuLine {
  foodId: string;
  name: string;
  price: number;
}

/** Rules the statement that writes orders enforces. */
export interface CommitRules {
  /** Event partitions: each journal row is written with its order's partition. */
  partitions: number;
  /** Orders in `awaitingPayment` one customer may have at once (MAX_UNPAID_ORDERS_PER_CUSTOMER). */
  maxUnpaidOrders: number;
  /** The statement that writes orders, with the guard of the feature wired in (`commitStatement`). */
  statement: CommitStatement;
}

export interface Committed {
  eventId: string;
  version: number;
}

/*
 * A note on the statements below: a batch arrives as a JSON record set, whose size the planner
 * cannot know. Every table a statement touches is reached through `= ANY (ARRAY(...))` on its key,
 * so the plan is an index scan however large the tables grow (test/ops/plans.test.ts checks it).
 */

/**
 * A feature's part in the statement that writes orders, for transitions that may be written only
 * together with a record of the feature's own (a payment's charge). Its CTEs run before any order
 * is written and read `input` (a guarded transition's `guard` column holds its `guard.data`) and
 * `$4` (the order machine's id). They must define `guard_passed (id)`, the guarded orders that may
 * be written, and `guard_outcomes (id, what)`, what happened to the others as the feature names
 * it. A guard that locks rows locks orders first, in id order: every statement has one lock order.
 */
export interface CommitGuard {
  ctes: string;
  /** The same CTEs, also writing the trace context (`i.traceparent`) into the rows they insert. */
  tracedCtes: string;
}

/** The statement that writes orders, as sent with tracing off and on. */
export interface CommitStatement {
  plain: string;
  traced: string;
}

/** The guard part of a statement with no guard wired in: nothing passes, nothing is reported. */
const NO_GUARD_CTES = `guard_passed AS (SELECT NULL::uuid AS id WHERE false),
  guard_outcomes AS (SELECT NULL::uuid AS id, NULL::text AS what WHERE false)`;
const NO_GUARD: CommitGuard = { ctes: NO_GUARD_CTES, tracedCtes: NO_GUARD_CTES };

const GUARD_CTES = '/* guard */';

/**
 * One statement for a batch of transitions on different orders (group commit): each order's
 * snapshot is written only if it is still at the version the transition was judged on (and, for a
 * guarded transition, if its guard lets it); journal rows, refunds and timers follow only for the
 * orders written. Timers of a state the order left are closed here (the new state's timer is
 * inserted by the same statement, so it stays open).
 */
const COMMIT_BATCH = `
  WITH input AS (
    SELECT * FROM jsonb_to_recordset($1::jsonb) AS i(
      id uuid, from_version int, version int, from_machine_version int, machine_version int, status text, snapshot jsonb, customer_id text, store_id text,
      rider_id text, area text, at timestamptz, event_id uuid, type text, data jsonb, actor jsonb, causation_id text, client_request_id text,
      guard jsonb, part smallint, menu jsonb)
  ), menu_changed AS (
    -- New orders priced from a menu line the store no longer serves as it was (another price or
    -- name, unavailable, or gone): not written, and not counted against the customer's limit.
    SELECT i.id FROM input i
    WHERE i.from_version = 0 AND i.menu IS NOT NULL AND EXISTS (
      SELECT 1 FROM jsonb_to_recordset(i.menu) AS m(food_id text, name text, price int)
      LEFT JOIN menu_items mi ON mi.store_id = i.store_id AND mi.food_id = m.food_id
      WHERE mi.food_id IS NULL OR NOT mi.available OR mi.price <> m.price OR mi.name <> m.name)
  ), ${GUARD_CTES}, prior AS MATERIALIZED (
    -- The status each order had at the version its transition was judged on: whenever the write
    -- below succeeds, this statement's snapshot holds that version (versions only grow).
    -- Materialized: read once by primary key. Folded into \`freed\`, its status condition let the
    -- planner AND the orders' (status, area) index into a lookup repeated for each order written,
    -- each time reading every entry of 'awaitingPayment', dead ones included (every order passes
    -- through it), so its cost grew with the orders placed since the last vacuum.
    SELECT o.id, o.status FROM orders o WHERE o.id = ANY (ARRAY(SELECT id FROM input WHERE from_version > 0))
  ), changed AS (
    UPDATE orders o SET version = i.version, machine_version = i.machine_version, status = i.status, snapshot = i.snapshot,
      rider_id = i.rider_id, updated_at = i.at
    FROM input i WHERE o.id = i.id AND o.id = ANY (ARRAY(SELECT id FROM input)) AND i.from_version > 0 AND o.version = i.from_version
      -- A snapshot moved to another machine version meanwhile is never overwritten by one judged on the old one.
      AND o.machine_id = $4::text AND o.machine_version = i.from_machine_version
      AND (i.guard IS NULL OR o.id IN (SELECT id FROM guard_passed))
    RETURNING o.id, o.customer_id, o.status
  ), freed AS (
    -- Orders that stopped waiting for payment (paid, cancelled, expired) give their customer's slot back.
    SELECT c.customer_id, count(*)::int AS n FROM changed c JOIN prior p ON p.id = c.id
    WHERE p.status = 'awaitingPayment' AND c.status <> 'awaitingPayment'
    GROUP BY c.customer_id
  ), new_orders AS (
    SELECT i.id, i.customer_id, row_number() OVER (PARTITION BY i.customer_id ORDER BY i.at, i.id) AS rank
    FROM input i WHERE i.from_version = 0 AND i.id NOT IN (SELECT id FROM menu_changed)
  ), slots AS (
    -- The unpaid-order counts of the customers concerned, locked. Reading all of freed first runs
    -- the order writes above, so every statement locks order rows before counts: one lock order.
    SELECT s.customer_id, s.unpaid FROM customer_unpaid_orders s
    WHERE s.customer_id = ANY (ARRAY(SELECT customer_id FROM new_orders UNION SELECT customer_id FROM freed))
    ORDER BY s.customer_id FOR UPDATE OF s
  ), admitted AS (
    -- New orders in the order they came, while the customer's count stays within the limit ($5).
    SELECT p.id, p.customer_id FROM new_orders p
    LEFT JOIN slots s ON s.customer_id = p.customer_id
    LEFT JOIN freed f ON f.customer_id = p.customer_id
    WHERE coalesce(s.unpaid, 0) - coalesce(f.n, 0) + p.rank <= $5::int
  ), counted AS (
    -- A customer's first count is inserted; when another statement inserted it meanwhile (it was
    -- not there to lock), the condition re-checks the limit on the count that statement wrote.
    INSERT INTO customer_unpaid_orders AS s (customer_id, unpaid)
    SELECT d.customer_id, sum(d.delta)::int
    FROM (SELECT customer_id, 1 AS delta FROM admitted UNION ALL SELECT customer_id, -n FROM freed) d
    GROUP BY d.customer_id
    ON CONFLICT (customer_id) DO UPDATE SET unpaid = greatest(0, s.unpaid + excluded.unpaid)
      WHERE s.unpaid + excluded.unpaid <= $5::int OR excluded.unpaid <= 0
    RETURNING s.customer_id
  ), created AS (
    INSERT INTO orders (id, machine_id, machine_version, version, status, snapshot, customer_id, store_id, rider_id, area, created_at, updated_at)
    SELECT i.id, $4::text, i.machine_version, i.version, i.status, i.snapshot, i.customer_id, i.store_id, NULL, i.area, i.at, i.at
    FROM input i JOIN admitted a ON a.id = i.id
    WHERE a.customer_id IN (SELECT customer_id FROM counted)
    RETURNING id
  ), written AS (
    SELECT id FROM changed UNION ALL SELECT id FROM created
  ), ins_journal AS (
    INSERT INTO order_journal (order_id, seq, event_id, type, data, actor, causation_id, client_request_id, at, part, machine_version, status)
    SELECT i.id, i.version, i.event_id, i.type, i.data, i.actor, i.causation_id, i.client_request_id, i.at, i.part, i.machine_version, i.status
    FROM input i JOIN written w ON w.id = i.id
  ), ins_refunds AS (
    INSERT INTO refunds (idempotency_key, order_id, charge_id, amount, reason, status, requested_at, due_at)
    SELECT r.key, r.order_id, r.charge_id, r.amount, r.reason, 'pending', r.at, r.at
    FROM jsonb_to_recordset($2::jsonb) AS r(key text, order_id uuid, charge_id text, amount integer, reason text, at timestamptz)
    JOIN written w ON w.id = r.order_id
    ON CONFLICT DO NOTHING
  ), ins_timers AS (
    INSERT INTO timers (id, order_id, version, event, fire_at, due_at, machine_version)
    SELECT t.id, t.order_id, t.version, t.event, t.fire_at, t.fire_at, t.machine_version
    FROM jsonb_to_recordset($3::jsonb) AS t(id text, order_id uuid, version int, event text, fire_at timestamptz, machine_version int)
    JOIN written w ON w.id = t.order_id
    ON CONFLICT DO NOTHING
  ), left_timers AS (
    UPDATE timers tm SET due_at = NULL, lease_until = NULL, fired_at = now(), outcome = 'moved-on'
    FROM changed c WHERE tm.order_id = c.id AND tm.order_id = ANY (ARRAY(SELECT id FROM changed)) AND tm.due_at IS NOT NULL
  )
  SELECT id, 'written' AS what FROM written
  UNION ALL SELECT id, what FROM guard_outcomes
  UNION ALL SELECT id, 'menu-changed' FROM menu_changed
  -- A new order not written: over the limit, or admitted on a count another statement was creating.
  UNION ALL SELECT p.id, CASE WHEN p.id IN (SELECT id FROM admitted) THEN 'retry' ELSE 'too-many' END
    FROM new_orders p WHERE p.id NOT IN (SELECT id FROM created)`;

/**
 * COMMIT_BATCH that also writes each transition's trace context into its journal row, refunds and
 * timers: sent only for a batch that carries one (tracing on), so with tracing off the statement,
 * its parameters and its plan are those of COMMIT_BATCH.
 */
const COMMIT_BATCH_TRACED = variant(COMMIT_BATCH, [
  ['client_request_id text,\n      guard jsonb, part smallint, menu jsonb)', 'client_request_id text,\n      guard jsonb, part smallint, menu jsonb, traceparent text)'],
  ['INSERT INTO order_journal (order_id, seq, event_id, type, data, actor, causation_id, client_request_id, at, part, machine_version, status)\n    SELECT i.id, i.version, i.event_id, i.type, i.data, i.actor, i.causation_id, i.client_request_id, i.at, i.part, i.machine_version, i.status',
    'INSERT INTO order_journal (order_id, seq, event_id, type, data, actor, causation_id, client_request_id, at, part, machine_version, status, traceparent)\n    SELECT i.id, i.version, i.event_id, i.type, i.data, i.actor, i.causation_id, i.client_request_id, i.at, i.part, i.machine_version, i.status, i.traceparent'],
  ["INSERT INTO refunds (idempotency_key, order_id, charge_id, amount, reason, status, requested_at, due_at)\n    SELECT r.key, r.order_id, r.charge_id, r.amount, r.reason, 'pending', r.at, r.at\n    FROM jsonb_to_recordset($2::jsonb) AS r(key text, order_id uuid, charge_id text, amount integer, reason text, at timestamptz)",
    "INSERT INTO refunds (idempotency_key, order_id, charge_id, amount, reason, status, requested_at, due_at, traceparent)\n    SELECT r.key, r.order_id, r.charge_id, r.amount, r.reason, 'pending', r.at, r.at, r.traceparent\n    FROM jsonb_to_recordset($2::jsonb) AS r(key text, order_id uuid, charge_id text, amount integer, reason text, at timestamptz, traceparent text)"],
  ['INSERT INTO timers (id, order_id, version, event, fire_at, due_at, machine_version)\n    SELECT t.id, t.order_id, t.version, t.event, t.fire_at, t.fire_at, t.machine_version\n    FROM jsonb_to_recordset($3::jsonb) AS t(id text, order_id uuid, version int, event text, fire_at timestamptz, machine_version int)',
    'INSERT INTO timers (id, order_id, version, event, fire_at, due_at, machine_version, traceparent)\n    SELECT t.id, t.order_id, t.version, t.event, t.fire_at, t.fire_at, t.machine_version, t.traceparent\n    FROM jsonb_to_recordset($3::jsonb) AS t(id text, order_id uuid, version int, event text, fire_at timestamptz, machine_version int, traceparent text)'],
]);

/** The statement that writes orders with `guard` wired in (none: no transition may carry a guard). */
export function commitStatement(guard: CommitGuard = NO_GUARD): CommitStatement {
  return { plain: COMMIT_BATCH.replace(GUARD_CTES, guard.ctes), traced: COMMIT_BATCH_TRACED.replace(GUARD_CTES, guard.tracedCtes) };
}

/**
 * Persists transitions in one statement (see COMMIT_BATCH): the snapshot with its new version,
 * the journal row, and the refunds and timers each owes. For each transition, its committed event
 * id and version, or undefined when the order moved on meanwhile (the caller judges again).
 * The transitions must be on different orders.
 */
export async function commitTransitions(sql: Sql, ts: readonly Transition[], rules: CommitRules): Promise<(Committed | undefined)[]> {
  const rows = ts.map((t) => {
    const ctx = t.snapshot.context;
    return {
      id: t.orderId,
      from_version: t.fromVersion,
      version: t.fromVersion + 1,
      from_machine_version: t.fromMachineVersion,
      machine_version: t.machine.version,
      status: t.machine.statusOf(t.snapshot),
      snapshot: t.machine.persist(t.snapshot),
      customer_id: ctx.customerId,
      store_id: ctx.storeId,
      rider_id: ctx.riderId,
      area: ctx.address.area,
      at: t.at.toISOString(),
      event_id: randomUUID(),
      type: t.event.type,
      data: t.event.data,
      actor: { sub: t.by.sub, role: t.by.role },
      causation_id: t.cause.causationId,
      client_request_id: t.cause.clientRequestId,
      guard: t.guard?.data ?? null,
      part: partitionOf(t.orderId, rules.partitions),
      menu: t.menu ? t.menu.map((l) => ({ food_id: l.foodId, name: l.name, price: l.price })) : null,
      ...(t.traceparent ? { traceparent: t.traceparent } : {}),
    };
  });
  const traced = ts.some((t) => t.traceparent);
  const refunds = ts.flatMap((t) =>
    t.refunds.map((r) => ({ key: r.key, order_id: t.orderId, charge_id: r.chargeId, amount: r.amount, reason: r.reason, at: t.at.toISOString(), ...(t.traceparent ? { traceparent: t.traceparent } : {}) })),
  );
  const timers = ts.flatMap((t) =>
    t.timers.map((tm) => ({ id: tm.id, order_id: t.orderId, version: t.fromVersion + 1, event: tm.event, fire_at: tm.fireAt.toISOString(), machine_version: t.machine.version, ...(t.traceparent ? { traceparent: t.traceparent } : {}) })),
  );
  const result = await sql.query<{ id: string; what: string }>(traced ? rules.statement.traced : rules.statement.plain, [
    JSON.stringify(rows),
    JSON.stringify(refunds),
    JSON.stringify(timers),
    ORDER_MACHINE_ID,
    rules.maxUnpaidOrders,
  ]);
  const what = new Map(result.map((r) => [r.id, r.what]));
  const ok = new Set(result.filter((r) => r.what === 'written').map((r) => r.id));
  for (const t of ts) {
    const outcome = what.get(t.orderId);
    if (t.guard) t.guard.outcome = outcome ?? 'gone';
    t.unwritten = outcome === 'too-many' || outcome === 'retry' || outcome === 'menu-changed' ? outcome : undefined;
  }
  return rows.map((r) => (ok.has(r.id) ? { eventId: r.event_id, version: r.version } : undefined));
}

/** Persists one transition; undefined when the order moved on meanwhile. */
export async function commitTransition(sql: Sql, t: Transition, rules: CommitRules): Promise<Committed | undefined> {
  const [committed] = await commitTransitions(sql, [t], rules);
  return committed;
}
