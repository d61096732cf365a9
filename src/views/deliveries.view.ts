import type { Effect } from '../actors/consumers/types.ts';
import type { Database } from '../db/pg.ts';
import { requireKnownEvent } from '../actors/order-repository.ts';
import type { OrderItem } from '../machines/order/contract.ts';
import { defineView } from './view.ts';

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

/** What an event of the batch did to the order's offer. */
type Offer = { cooked: string } | { withdrawn: string };

/**
 * GET /deliveries?area=: the view riders look at for work. Deliveries available to riders, by
 * area: an order appears when cooking finishes and leaves when a rider picks it (or it ends
 * otherwise). No customer id or address line is kept. A row records
 * the seq last applied to it, and a withdrawn order keeps its row (with `withdrawn_at`), so no
 * event older than the row, replayed for whatever reason, can offer it again.
 */
export const deliveriesView = defineView<DeliveryState, Offer>({
  name: 'deliveries',
  tables: ['view_deliveries'],
  describe: 'cooked orders waiting for a rider, by area',
  fold(state, e, note) {
    requireKnownEvent('deliveries', e);
    if (e.type === 'OrderPlaced') {
      const items = (e.data.items as OrderItem[] | undefined) ?? [];
      const address = e.data.address as { area: string };
      return { storeId: String(e.data.storeId), area: address.area, itemsCount: items.reduce((n, i) => n + i.qty, 0) };
    }
    if (e.type === 'CookingFinished') note({ cooked: e.occurredAt });
    else if (e.type === 'OrderPickedUp' || e.type === 'OrderDelivered' || e.type === 'OrderCancelled') note({ withdrawn: e.occurredAt });
    return state;
  },
  write(orders) {
    // Orders cooked in this batch (a row to write, offered or already withdrawn again), and
    // orders cooked earlier that this batch withdraws (their row exists).
    const cooked: (AvailableDelivery & { withdrawnAt: string | null; seq: number })[] = [];
    const withdrawn: { orderId: string; at: string; seq: number }[] = [];
    for (const { orderId, state, seq, notes } of orders) {
      let cookedAt: string | undefined;
      let withdrawnAt: string | undefined;
      for (const n of notes) {
        if ('cooked' in n) [cookedAt, withdrawnAt] = [n.cooked, undefined];
        else withdrawnAt ??= n.withdrawn;
      }
      if (cookedAt && state) {
        cooked.push({ orderId, storeId: state.storeId, area: state.area, itemsCount: state.itemsCount, cookedAt, withdrawnAt: withdrawnAt ?? null, seq });
      } else if (withdrawnAt) {
        withdrawn.push({ orderId, at: withdrawnAt, seq });
      }
    }
    const effects: Effect[] = [];
    if (cooked.length > 0) {
      effects.push({
        text: `INSERT INTO view_deliveries (order_id, store_id, area, items_count, cooked_at, withdrawn_at, seq)
           SELECT d."orderId", d."storeId", d."area", d."itemsCount", d."cookedAt", d."withdrawnAt", d."seq"
           FROM jsonb_to_recordset($1::jsonb) AS d("orderId" uuid, "storeId" text, "area" text, "itemsCount" int, "cookedAt" timestamptz, "withdrawnAt" timestamptz, "seq" int)
           ON CONFLICT (order_id) DO UPDATE SET cooked_at = EXCLUDED.cooked_at, withdrawn_at = EXCLUDED.withdrawn_at, seq = EXCLUDED.seq
           WHERE view_deliveries.seq < EXCLUDED.seq`,
        params: [JSON.stringify(cooked)],
      });
    }
    if (withdrawn.length > 0) {
      effects.push({
        text: `UPDATE view_deliveries d SET withdrawn_at = coalesce(d.withdrawn_at, w.at), seq = w.seq
           FROM unnest($1::uuid[], $2::timestamptz[], $3::int[]) AS w(order_id, at, seq)
           WHERE d.order_id = ANY ($1::uuid[]) AND d.order_id = w.order_id AND d.seq < w.seq`,
        params: [withdrawn.map((w) => w.orderId), withdrawn.map((w) => w.at), withdrawn.map((w) => w.seq)],
      });
    }
    return effects;
  },
});

export async function availableDeliveries(db: Database, area: string, limit: number): Promise<AvailableDelivery[]> {
  const rows = await db.query<{ order_id: string; store_id: string; area: string; items_count: number; cooked_at: Date }>(
    `SELECT order_id, store_id, area, items_count, cooked_at FROM view_deliveries WHERE area = $1 AND withdrawn_at IS NULL ORDER BY cooked_at, order_id LIMIT $2`,
    [area, limit],
  );
  return rows.map((r) => ({ orderId: r.order_id, storeId: r.store_id, area: r.area, itemsCount: r.items_count, cookedAt: r.cooked_at.toISOString() }));
}
