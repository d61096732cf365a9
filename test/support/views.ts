/**
 * What the views must show, worked out from the script of the orders alone (who ordered what
 * where, and which steps each order went through), not from the journal the views read.
 */

import type { ScriptedOrder, Step } from '../../scripts/cluster/seed-orders.ts';

export { LIVES, type ScriptedOrder, type Step } from '../../scripts/cluster/seed-orders.ts';

/** The status each step leaves an order in: the rules as the README states them. */
const STATUS_AFTER_STEP: Record<Step, string> = {
  pay: 'paid',
  accept: 'accepted',
  reject: 'rejected',
  'start-cooking': 'cooking',
  'finish-cooking': 'cooked',
  cancel: 'cancelled',
  pick: 'pickedUp',
  'confirm-delivery': 'delivered',
  'store-accept-timeout': 'rejected',
  'payment-timeout': 'cancelled',
};

export const statusOfScript = (o: ScriptedOrder) => (o.steps.length === 0 ? 'awaitingPayment' : STATUS_AFTER_STEP[o.steps.at(-1)!]);
export const totalOfScript = (o: ScriptedOrder) => o.items.reduce((sum, i) => sum + i.qty * i.unitPrice, 0);
const riderOfScript = (o: ScriptedOrder) => (o.steps.includes('pick') ? o.riderId! : null);

export interface ExpectedViews {
  /** customerId → rows, sorted by order id. */
  customerOrders: Map<string, { orderId: string; status: string; storeId: string; total: number; riderId: string | null }[]>;
  /** storeId → rows of the orders it received, sorted by order id. */
  storeOrders: Map<string, { orderId: string; status: string; total: number; riderId: string | null; items: { foodId: string; qty: number }[] }[]>;
  /** storeId → foodId → count (foods at 0 left out). */
  foodCounts: Map<string, Map<string, number>>;
  riderCounts: Map<string, number>;
  /** area → ids of the cooked orders waiting for a rider, sorted. */
  deliveries: Map<string, string[]>;
}

const byOrderId = (a: { orderId: string }, b: { orderId: string }) => (a.orderId < b.orderId ? -1 : a.orderId > b.orderId ? 1 : 0);

export function expectedViews(orders: readonly ScriptedOrder[]): ExpectedViews {
  const out: ExpectedViews = { customerOrders: new Map(), storeOrders: new Map(), foodCounts: new Map(), riderCounts: new Map(), deliveries: new Map() };
  const push = <T>(map: Map<string, T[]>, key: string, value: T) => map.set(key, [...(map.get(key) ?? []), value]);
  for (const o of orders) {
    const status = statusOfScript(o);
    const riderId = riderOfScript(o);
    push(out.customerOrders, o.customerId, { orderId: o.orderId, status, storeId: o.storeId, total: totalOfScript(o), riderId });
    const received = o.steps.includes('pay');
    if (received) {
      push(out.storeOrders, o.storeId, { orderId: o.orderId, status, total: totalOfScript(o), riderId, items: o.items.map((i) => ({ foodId: i.foodId, qty: i.qty })) });
      // Received, and not called off afterwards.
      if (!['cancelled', 'rejected'].includes(status)) {
        const counts = out.foodCounts.get(o.storeId) ?? new Map<string, number>();
        for (const i of o.items) counts.set(i.foodId, (counts.get(i.foodId) ?? 0) + i.qty);
        out.foodCounts.set(o.storeId, counts);
      }
    }
    if (riderId) out.riderCounts.set(riderId, (out.riderCounts.get(riderId) ?? 0) + 1);
    if (status === 'cooked') push(out.deliveries, o.area, o.orderId);
  }
  for (const rows of out.customerOrders.values()) rows.sort(byOrderId);
  for (const rows of out.storeOrders.values()) rows.sort(byOrderId);
  for (const ids of out.deliveries.values()) ids.sort();
  return out;
}

export { viewTables } from '../../scripts/cluster/invariants.ts';

/** A shuffled copy (Fisher–Yates). */
export function shuffled<T>(items: readonly T[], random = Math.random): T[] {
  const copy = [...items];
  for (let i = copy.length - 1; i > 0; i -= 1) {
    const j = Math.floor(random() * (i + 1));
    [copy[i], copy[j]] = [copy[j]!, copy[i]!];
  }
  return copy;
}

/** The view tables (as `viewTables` reads them) in the shape of `expectedViews`. */
export function tablesAsExpected(tables: Record<string, unknown[]>): ExpectedViews {
  const out: ExpectedViews = { customerOrders: new Map(), storeOrders: new Map(), foodCounts: new Map(), riderCounts: new Map(), deliveries: new Map() };
  const push = <T>(map: Map<string, T[]>, key: string, value: T) => map.set(key, [...(map.get(key) ?? []), value]);
  for (const r of tables.view_customer_orders as any[]) {
    push(out.customerOrders, r.customer_id, { orderId: r.order_id, status: r.status, storeId: r.store_id, total: r.total, riderId: r.rider_id });
  }
  for (const r of tables.view_store_orders as any[]) {
    push(out.storeOrders, r.store_id, { orderId: r.order_id, status: r.status, total: r.total, riderId: r.rider_id, items: r.items.map((i: { foodId: string; qty: number }) => ({ foodId: i.foodId, qty: i.qty })) });
  }
  for (const r of tables.view_store_food_counts as any[]) {
    if (r.count === 0) continue;
    const counts = out.foodCounts.get(r.store_id) ?? new Map<string, number>();
    counts.set(r.food_id, r.count);
    out.foodCounts.set(r.store_id, counts);
  }
  for (const r of tables.view_rider_delivery_counts as any[]) if (r.count !== 0) out.riderCounts.set(r.rider_id, r.count);
  for (const r of tables.view_deliveries as any[]) if (r.withdrawn_at === null) push(out.deliveries, r.area, r.order_id);
  for (const rows of out.customerOrders.values()) rows.sort(byOrderId);
  for (const rows of out.storeOrders.values()) rows.sort(byOrderId);
  for (const ids of out.deliveries.values()) ids.sort();
  return out;
}

/** Maps as sorted plain objects, so chai's deep equality and its diff read well. */
export function plain(views: ExpectedViews): Record<string, unknown> {
  const sorted = <T>(m: Map<string, T>, f: (v: T) => unknown = (v) => v) => Object.fromEntries([...m].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, v]) => [k, f(v)]));
  return {
    customerOrders: sorted(views.customerOrders),
    storeOrders: sorted(views.storeOrders),
    foodCounts: sorted(views.foodCounts, (m) => sorted(m)),
    riderCounts: sorted(views.riderCounts),
    deliveries: sorted(views.deliveries),
  };
}

/** A small seeded PRNG (mulberry32), so a failing run can be repeated: the load generator's. */
export { seededRandom as prng } from '../../scripts/load/scenario.ts';
