import type { OrderEvent } from '../actors/consumers/types.ts';
import type { Database } from '../db/pg.ts';
import { requireKnownEvent } from '../actors/order-repository.ts';
import { defineView, missingPlacement, type OrderRow, upsertOrderRows } from './view.ts';
import { withFields } from '../objects.ts';

/** What the view keeps about an order: its row, which it rewrites whole after each batch. */
export interface CustomerOrderState {
  customerId: string;
  storeId: string;
  total: number;
  status: string;
  riderId: string | null;
  placedAt: string;
  updatedAt: string;
}

export interface CustomerOrder {
  orderId: string;
  status: string;
  storeId: string;
  total: number;
  riderId: string | null;
  placedAt: string;
  updatedAt: string;
  /** The seq of the last event applied: the order's version (its ETag) once the view caught up. */
  version: number;
}

const NAME = 'customer-orders';

export function foldCustomerOrder(state: CustomerOrderState | null, e: OrderEvent): CustomerOrderState {
  requireKnownEvent(NAME, e);
  if (e.type === 'OrderPlaced') {
    return {
      customerId: String(e.data.customerId),
      storeId: String(e.data.storeId),
      total: Number(e.data.total),
      status: e.status,
      riderId: null,
      placedAt: e.occurredAt,
      updatedAt: e.occurredAt,
    };
  }
  if (!state) throw missingPlacement(NAME, e);
  const riderId = e.type === 'OrderPickedUp' ? String(e.data.riderId) : state.riderId;
  return { ...state, status: e.status, riderId, updatedAt: e.occurredAt };
}

/** Every order of each customer with its status: what a customer checks "at any time". */
export const customerOrdersView = defineView<CustomerOrderState>({
  name: NAME,
  tables: ['view_customer_orders'],
  describe: "each customer's orders with their status, newest first",
  fold: foldCustomerOrder,
  write(orders) {
    const rows = orders.flatMap(({ state, orderId, seq }) => (state ? [withFields(state, { orderId, seq })] : []));
    const columns = { customerId: 'text', storeId: 'text', status: 'text', total: 'int', riderId: 'text', placedAt: 'timestamptz', updatedAt: 'timestamptz' };
    return upsertOrderRows('view_customer_orders', columns, rows);
  },
});

interface Row extends OrderRow {
  store_id: string;
  total: number;
  placed_at: Date;
}

/** A customer's orders, newest first. */
export async function customerOrders(db: Database, customerId: string, limit: number): Promise<CustomerOrder[]> {
  const rows = await db.query<Row>(
    `SELECT order_id, status, store_id, total, rider_id, placed_at, updated_at, seq FROM view_customer_orders
     WHERE customer_id = $1 ORDER BY placed_at DESC, order_id LIMIT $2`,
    [customerId, limit],
  );
  return rows.map((r) => ({
    orderId: r.order_id,
    status: r.status,
    storeId: r.store_id,
    total: r.total,
    riderId: r.rider_id,
    placedAt: r.placed_at.toISOString(),
    updatedAt: r.updated_at.toISOString(),
    version: r.seq,
  }));
}
