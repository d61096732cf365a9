import { isDeepStrictEqual } from 'node:util';
import type pg from 'pg';
import { Database, type Sql } from '../../src/db/pg.ts';
import { createLogger } from '../../src/log.ts';
import { orderMachines, type OrderMachines } from '../../src/machines/order/registry.ts';
import { rebuildViews } from '../../src/views/rebuild.ts';
import { VIEWS } from '../../src/views/registry.ts';
import type { Ledger } from './cluster.ts';

/** A command the service answered 2xx: it must be in the journal, once, at the version it answered. */
export interface Acknowledged {
  orderId: string;
  /** `place` or an order command (`pay`, `accept`, …). */
  command: string;
  version: number;
}

export interface OwedNow {
  /** Journaled events some consumer has not applied yet. */
  unsettledEvents: number;
  failedEvents: number;
  refundsPending: number;
  notificationsUndelivered: number;
  paymentsUndecided: number;
  /** Timers whose time has come and that have not fired. */
  timersDue: number;
}

export const nothingOwed = (o: OwedNow): boolean => Object.values(o).every((n) => n === 0);

/** What is owed right now, across the cluster (read from PostgreSQL: the work is durable there). */
export async function owedNow(db: pg.Pool): Promise<OwedNow> {
  const { rows } = await db.query<OwedNow>(`
    SELECT (SELECT count(*)::int FROM order_journal j JOIN consumer_positions p ON p.part = j.part WHERE (j.tx, j.pos) > (p.tx, p.pos)) AS "unsettledEvents",
           (SELECT count(*)::int FROM consumer_failures) AS "failedEvents",
           (SELECT count(*)::int FROM refunds WHERE status = 'pending') AS "refundsPending",
           (SELECT count(*)::int FROM notifications WHERE delivered_at IS NULL) AS "notificationsUndelivered",
           (SELECT count(*)::int FROM payment_attempts WHERE status IN ('pending', 'unknown') OR due_at IS NOT NULL) AS "paymentsUndecided",
           (SELECT count(*)::int FROM timers WHERE due_at IS NOT NULL AND due_at <= now()) AS "timersDue"`);
  return rows[0]!;
}

/**
 * The keys of the side effects owed at this moment (events to apply, refunds, notifications, due
 * timers): a recovery is over when none of them is owed any more.
 */
export async function owedKeys(db: pg.Pool): Promise<Set<string>> {
  const { rows } = await db.query<{ key: string }>(`
    SELECT 'event ' || j.order_id || '/' || j.seq AS key FROM order_journal j JOIN consumer_positions p ON p.part = j.part WHERE (j.tx, j.pos) > (p.tx, p.pos)
    UNION ALL SELECT 'owed ' || consumer || ' ' || order_id FROM consumer_failures
    UNION ALL SELECT 'refund ' || idempotency_key FROM refunds WHERE status = 'pending'
    UNION ALL SELECT 'notification ' || id FROM notifications WHERE delivered_at IS NULL
    UNION ALL SELECT 'timer ' || id FROM timers WHERE due_at IS NOT NULL AND due_at <= now()`);
  return new Set(rows.map((r) => r.key));
}

export interface InvariantReport {
  ok: boolean;
  /** What failed, one line each (at most a few examples per kind). */
  failures: string[];
  figures: {
    orders: number;
    journalEvents: number;
    acknowledged: number;
    charges: number;
    refunds: number;
    notifications: number;
    /** Notifications the webhook received more than once (same Idempotency-Key): a replica died between the send and its record. */
    notificationRepeats: number;
    viewRows: number;
  };
}

const VIEW_TABLES: Record<string, string> = {
  view_customer_orders: 'SELECT * FROM view_customer_orders ORDER BY order_id',
  view_store_orders: 'SELECT * FROM view_store_orders ORDER BY order_id',
  view_store_food_counts: 'SELECT * FROM view_store_food_counts WHERE count <> 0 ORDER BY store_id, food_id',
  view_rider_delivery_counts: 'SELECT * FROM view_rider_delivery_counts ORDER BY rider_id',
  view_deliveries: 'SELECT * FROM view_deliveries ORDER BY order_id',
};

/** Every row of every view table, in key order: for comparing one state of the views with another. */
export async function viewTables(db: Sql): Promise<Record<string, unknown[]>> {
  const out: Record<string, unknown[]> = {};
  for (const [table, sql] of Object.entries(VIEW_TABLES)) out[table] = await db.query(sql);
  return out;
}

const REFUNDED_END = new Set(['cancelled', 'rejected']);

/**
 * Checks the guarantees of the cluster once it has settled (no load, nothing owed):
 * every acknowledged command is in the journal exactly once; each order's journal has consecutive
 * seqs from 1 and a history the machine allows, ending in the order's status; the gateway's ledger
 * has exactly one kept charge per order that is paid and not refunded, and one refund per other
 * charge, none twice; every view equals a replay of the journal (a rebuild changes nothing); every
 * notification was delivered and reached the webhook.
 * Histories are judged by the machine version that recorded each event (`machines`: the versions
 * the cluster ran), an order moving to a newer version between two events as its migration says.
 * The view check rebuilds the views in place: run it on a cluster nobody uses any more.
 */
export async function checkInvariants(
  db: pg.Pool,
  ledger: Ledger,
  acknowledged: readonly Acknowledged[],
  webhook: ReadonlyMap<string, number>,
  machines: OrderMachines = orderMachines(),
): Promise<InvariantReport> {
  const failures: string[] = [];
  const fail = (kind: string, lines: string[]) => {
    if (lines.length === 0) return;
    failures.push(`${kind}: ${lines.length} (${lines.slice(0, 3).join('; ')}${lines.length > 3 ? '; …' : ''})`);
  };

  const journal = (
    await db.query<{ order_id: string; seq: number; type: string; data: Record<string, unknown>; machine_version: number; status: string | null }>(
      'SELECT order_id, seq, type, data, machine_version, status FROM order_journal ORDER BY order_id, seq',
    )
  ).rows;
  const orders = (await db.query<{ id: string; status: string; version: number; machine_version: number }>('SELECT id, status, version, machine_version FROM orders')).rows;
  const byOrder = new Map<string, typeof journal>();
  for (const e of journal) {
    let list = byOrder.get(e.order_id);
    if (!list) byOrder.set(e.order_id, (list = []));
    list.push(e);
  }

  // 1. Every acknowledged command, in the journal at the version it answered, once.
  const commandOf = (e: { type: string; machine_version: number }) => machines.get(e.machine_version)?.journal[e.type as keyof typeof machines.current.journal];
  const missing: string[] = [];
  for (const a of acknowledged) {
    const e = byOrder.get(a.orderId)?.[a.version - 1];
    const expected = a.command === 'place' ? null : a.command;
    if (!e || e.seq !== a.version || commandOf(e) !== expected) missing.push(`${a.command} on ${a.orderId} answered version ${a.version}, journal has ${e ? e.type : 'nothing'} there`);
  }
  fail('acknowledged commands not in the journal as answered', missing);

  // 2 and 3. Consecutive seqs; a history the machine allows, ending where the order is.
  const gaps: string[] = [];
  const disallowed: string[] = [];
  const repeated: string[] = [];
  const paidChargeOf = new Map<string, string>();
  for (const o of orders) {
    const events = byOrder.get(o.id) ?? [];
    if (events.some((e, i) => e.seq !== i + 1) || events.length !== o.version) gaps.push(`${o.id}: seqs ${events.map((e) => e.seq).join(',')}, version ${o.version}`);
    const types = events.map((e) => e.type);
    if (new Set(types).size !== types.length) repeated.push(`${o.id}: ${types.join(' → ')}`);
    let version = events[0]?.machine_version ?? o.machine_version;
    let state: string | null = machines.get(version)?.initialStatus ?? null;
    let ok = types[0] === 'OrderPlaced' && state !== null && (events[0]!.status ?? state) === state;
    // Moves the order to a later machine version as the migrations map its state (never back).
    const moveTo = (to: number) => {
      if (to < version) ok = false;
      else if (to > version && state !== null) state = machines.statusIn(state, version, to);
      version = to;
      if (state === null || !machines.get(version)) ok = false;
    };
    for (const e of events.slice(1)) {
      if (!ok) break;
      moveTo(e.machine_version);
      if (!ok) break;
      const command = commandOf(e);
      const t = machines.get(version)!.graph.transitions.find((x) => x.source === state && x.command === command);
      if (!t || (e.status !== null && e.status !== t.target)) {
        ok = false;
        break;
      }
      state = t.target;
      if (e.type === 'OrderPaid') paidChargeOf.set(o.id, String(e.data.chargeId));
    }
    if (ok) moveTo(o.machine_version);
    if (!ok || state !== o.status) disallowed.push(`${o.id}: ${events.map((e) => `${e.type}@v${e.machine_version}`).join(' → ')} but status ${o.status} (machine version ${o.machine_version})`);
  }
  fail('journals with a gap in seq', gaps);
  fail('journals with an event twice', repeated);
  fail('orders whose history the machine does not allow', disallowed);

  // 4. Money, counted on the gateway's ledger.
  const statusOf = new Map(orders.map((o) => [o.id, o.status]));
  const refundsOf = new Map<string, number>();
  for (const r of ledger.refunds) refundsOf.set(r.chargeId, (refundsOf.get(r.chargeId) ?? 0) + 1);
  const money: string[] = [];
  for (const r of ledger.refunds) {
    const charge = ledger.charges.find((c) => c.chargeId === r.chargeId);
    if (!charge) money.push(`refund ${r.refundId} of an unknown charge ${r.chargeId}`);
    else if (charge.amount !== r.amount) money.push(`refund ${r.refundId} of ${r.amount} for a charge of ${charge.amount}`);
  }
  for (const c of ledger.charges) {
    const status = statusOf.get(c.orderId);
    const refunds = refundsOf.get(c.chargeId) ?? 0;
    const kept = paidChargeOf.get(c.orderId) === c.chargeId && status !== undefined && !REFUNDED_END.has(status);
    if (status === undefined) money.push(`charge ${c.chargeId} for an order the service does not have`);
    else if (kept && refunds !== 0) money.push(`charge ${c.chargeId} of ${status} order ${c.orderId} refunded ${refunds}×`);
    else if (!kept && refunds !== 1) money.push(`charge ${c.chargeId} of ${status} order ${c.orderId} (${paidChargeOf.get(c.orderId) === c.chargeId ? 'its payment' : 'not its payment'}) refunded ${refunds}×, not once`);
  }
  const charged = new Set(ledger.charges.map((c) => c.chargeId));
  for (const [orderId, chargeId] of paidChargeOf) if (!charged.has(chargeId)) money.push(`order ${orderId} paid with ${chargeId}, which the gateway never charged`);
  fail('money', money);

  // 5. Notifications: one per recipient per event, all delivered, each received by the webhook.
  const notifications = (await db.query<{ id: string; delivered: boolean }>('SELECT id::text, delivered_at IS NOT NULL AS delivered FROM notifications')).rows;
  const customerNotified = (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM order_journal j WHERE NOT EXISTS (SELECT 1 FROM notifications n WHERE n.event_id = j.event_id AND n.to_role = 'customer')`)).rows[0]!.n;
  if (customerNotified > 0) failures.push(`status changes the customer was not notified of: ${customerNotified}`);
  fail('notifications not delivered', notifications.filter((n) => !n.delivered).map((n) => n.id));
  fail('notifications the webhook never received', notifications.filter((n) => n.delivered && !webhook.has(n.id)).map((n) => n.id));
  const known = new Set(notifications.map((n) => n.id));
  fail('webhook messages of no notification', [...webhook.keys()].filter((k) => !known.has(k)));
  let repeats = 0;
  for (const n of webhook.values()) repeats += n - 1;

  // 6. Nothing owed.
  const owed = await owedNow(db);
  if (!nothingOwed(owed)) failures.push(`still owed: ${JSON.stringify(owed)}`);

  // 7. Views equal a replay of the journal: rebuilding them from it changes nothing.
  const database = new Database(db);
  const live = await viewTables(database);
  await rebuildViews(database, VIEWS, { log: createLogger('silent') });
  const replayed = await viewTables(database);
  const differing = Object.keys(VIEW_TABLES).filter((t) => !isDeepStrictEqual(live[t], replayed[t]));
  fail('views that differ from a replay of the journal', differing.map((t) => `${t}: ${live[t]!.length} rows live, ${replayed[t]!.length} replayed`));

  return {
    ok: failures.length === 0,
    failures,
    figures: {
      orders: orders.length,
      journalEvents: journal.length,
      acknowledged: acknowledged.length,
      charges: ledger.charges.length,
      refunds: ledger.refunds.length,
      notifications: notifications.length,
      notificationRepeats: repeats,
      viewRows: Object.values(live).reduce((n, rows) => n + rows.length, 0),
    },
  };
}
