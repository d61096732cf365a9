import type { Applied, Consumer, OrderEvents } from '../actors/consumers.ts';
import type { Database, Sql } from '../db/pg.ts';
import type { OrderItem } from '../machines/order.machine.ts';
import type { ViewDefinition } from './view.ts';

/** What the view keeps about an order between events: only what a rider may see. */
export interface DeliveryState {
  storeId: string;
  area: string;
  itemsCount: number;
}

export interface AvailableDelivery {
  orderId: string;
  storeId: string;
  area: string;
  itemsCount: number;
  cookedAt: string;
}

/**
 * Deliveries available to riders, by area: an order appears when cooking finishes and leaves when
 * a rider picks it (or it ends otherwise). No customer id or address line is kept. A row records
 * the seq that offered it; neither an offer nor a withdrawal older than the row changes it.
 */
export function deliveriesView(): Consumer<DeliveryState> {
  return {
    name: 'view.deliveries',
    async apply(tx: Sql, batch: OrderEvents<DeliveryState>[]): Promise<Applied<DeliveryState>> {
      const offered: (AvailableDelivery & { seq: number })[] = [];
      const withdrawn: { orderId: string; seq: number }[] = [];
      const states = batch.map((b) => {
        let state = b.state;
        let offer: string | null | undefined; // cookedAt while offered, null once withdrawn, undefined: untouched
        for (const e of b.events) {
          if (e.type === 'OrderPlaced') {
            const items = (e.data.items as OrderItem[] | undefined) ?? [];
            const address = e.data.address as { area: string };
            state = { storeId: String(e.data.storeId), area: address.area, itemsCount: items.reduce((n, i) => n + i.qty, 0) };
          } else if (e.type === 'CookingFinished') {
            offer = e.occurredAt;
          } else if (e.type === 'OrderPickedUp' || e.type === 'OrderDelivered' || e.type === 'OrderCancelled') {
            offer = null;
          }
        }
        const seq = b.events.at(-1)?.seq ?? 0;
        if (offer && state) offered.push({ orderId: b.orderId, storeId: state.storeId, area: state.area, itemsCount: state.itemsCount, cookedAt: offer, seq });
        else if (offer === null) withdrawn.push({ orderId: b.orderId, seq });
        return state;
      });
      if (offered.length > 0) {
        await tx.query(
          `INSERT INTO view_deliveries (order_id, store_id, area, items_count, cooked_at, seq)
           SELECT d."orderId", d."storeId", d."area", d."itemsCount", d."cookedAt", d."seq"
           FROM jsonb_to_recordset($1::jsonb) AS d("orderId" uuid, "storeId" text, "area" text, "itemsCount" int, "cookedAt" timestamptz, "seq" int)
           ON CONFLICT (order_id) DO UPDATE SET cooked_at = EXCLUDED.cooked_at, seq = EXCLUDED.seq
           WHERE view_deliveries.seq < EXCLUDED.seq`,
          [JSON.stringify(offered)],
        );
      }
      if (withdrawn.length > 0) {
        await tx.query(
          `DELETE FROM view_deliveries d USING unnest($1::uuid[], $2::int[]) AS w(order_id, seq) WHERE d.order_id = w.order_id AND d.seq < w.seq`,
          [withdrawn.map((w) => w.orderId), withdrawn.map((w) => w.seq)],
        );
      }
      return { states };
    },
  };
}

/** GET /deliveries?area=: the view riders look at for work. */
export const deliveriesViewDefinition: ViewDefinition<DeliveryState> = {
  name: 'deliveries',
  tables: ['view_deliveries'],
  describe: 'cooked orders waiting for a rider, by area',
  consumer: deliveriesView,
};

export async function availableDeliveries(db: Database, area: string, limit: number): Promise<AvailableDelivery[]> {
  const rows = await db.query<{ order_id: string; store_id: string; area: string; items_count: number; cooked_at: Date }>(
    `SELECT order_id, store_id, area, items_count, cooked_at FROM view_deliveries WHERE area = $1 ORDER BY cooked_at, order_id LIMIT $2`,
    [area, limit],
  );
  return rows.map((r) => ({ orderId: r.order_id, storeId: r.store_id, area: r.area, itemsCount: r.items_count, cookedAt: r.cooked_at.toISOString() }));
}
