import type { OrderEvent } from '../actors/consumers/types.ts';
import type { Database } from '../db/pg.ts';
import { requireKnownEvent } from '../actors/order-repository.ts';
import type { OrderItem } from '../machines/order/contract.ts';
import { defineView, missingPlacement, type OrderRow, upsertOrderRows } from './view.ts';
import { withFields } from '../objects.ts';

export interface StoreOrderItem {
  foodId: string;
  name: string;
  qty: number;
}

/** What the view keeps about an order; the row exists from the payment on. */
export interface StoreOrderState {
  storeId: string;
  total: number;
  items: StoreOrderItem[];
  status: string;
  riderId: string | null;
  /** When the store received the order (it was paid); null before. */
  paidAt: string | null;
  updatedAt: string;
}

export interface StoreOrder {
  orderId: string;
  status: string;
  total: number;
  items: StoreOrderItem[];
  riderId: string | null;
  paidAt: string;
  updatedAt: string;
  /** The seq of the last event applied: the order's version (its ETag) once the view caught up. */
  version: number;
}

/** The statuses an order can have once the store received it. */
export const STORE_ORDER_STATUSES = ['paid', 'accepted', 'cooking', 'cooked', 'pickedUp', 'delivered', 'cancelled', 'rejected'] as const;
export type StoreOrderStatus = (typeof STORE_ORDER_STATUSES)[number];

const NAME = 'store-orders';

export function foldStoreOrder(state: StoreOrderState | null, e: OrderEvent): StoreOrderState {
  requireKnownEvent(NAME, e);
  if (e.type === 'OrderPlaced') {
    const items = (e.data.items as OrderItem[] | undefined) ?? [];
    return {
      storeId: String(e.data.storeId),
      total: Number(e.data.total),
      items: items.map((i) => ({ foodId: i.foodId, name: i.name, qty: i.qty })),
      status: e.status,
      riderId: null,
      paidAt: null,
      updatedAt: e.occurredAt,
    };
  }
  if (!state) throw missingPlacement(NAME, e);
  return {
    ...state,
    status: e.status,
    riderId: e.type === 'OrderPickedUp' ? String(e.data.riderId) : state.riderId,
    paidAt: e.type === 'OrderPaid' ? e.occurredAt : state.paidAt,
    updatedAt: e.occurredAt,
  };
}

/** The store's inbox: the orders it received (paid), to accept, reject and cook. */
export const storeOrdersView = defineView<StoreOrderState>({
  name: NAME,
  tables: ['view_store_orders'],
  describe: 'the orders each store received (from payment on), by status',
  fold: foldStoreOrder,
  write(orders) {
    const rows = orders.flatMap(({ state, orderId, seq }) => (state?.paidAt ? [withFields(state, { orderId, seq })] : []));
    const columns = { storeId: 'text', status: 'text', total: 'int', items: 'jsonb', riderId: 'text', paidAt: 'timestamptz', updatedAt: 'timestamptz' };
    return upsertOrderRows('view_store_orders', columns, rows);
  },
});

interface Row extends OrderRow {
  total: number;
  items: StoreOrderItem[];
  paid_at: Date;
}

/** The store's received orders, newest payment first; only those in `status` when given. */
export async function storeOrders(db: Database, storeId: string, filter: { status?: StoreOrderStatus; limit: number }): Promise<StoreOrder[]> {
  const columns = 'order_id, status, total, items, rider_id, paid_at, updated_at, seq';
  const rows = filter.status
    ? await db.query<Row>(
        `SELECT ${columns} FROM view_store_orders WHERE store_id = $1 AND status = $2 ORDER BY paid_at DESC, order_id LIMIT $3`,
        [storeId, filter.status, filter.limit],
      )
    : await db.query<Row>(`SELECT ${columns} FROM view_store_orders WHERE store_id = $1 ORDER BY paid_at DESC, order_id LIMIT $2`, [storeId, filter.limit]);
  return rows.map((r) => ({
    orderId: r.order_id,
    status: r.status,
    total: r.total,
    items: r.items,
    riderId: r.rider_id,
    paidAt: r.paid_at.toISOString(),
    updatedAt: r.updated_at.toISOString(),
    version: r.seq,
  }));
}
