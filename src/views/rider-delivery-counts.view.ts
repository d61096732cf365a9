import { requireKnownEvent } from '../actors/order-repository.ts';
import type { Database } from '../db/pg.ts';
import { defineView, sumByKey } from './view.ts';

export interface RiderDeliveryCount {
  riderId: string;
  count: number;
}

const NAME = 'rider-delivery-counts';

/**
 * How many orders each rider picked: one more per OrderPickedUp. It keeps nothing per order (the
 * event names the rider); the checkpoint alone makes a repeated delivery harmless.
 */
export const riderDeliveryCountsView = defineView<null, [string, number]>({
  name: NAME,
  tables: ['view_rider_delivery_counts'],
  describe: 'per rider, the number of orders picked',
  fold(_state, e, note) {
    requireKnownEvent(NAME, e);
    if (e.type === 'OrderPickedUp') note([String(e.data.riderId), 1]);
    return null;
  },
  write(orders) {
    const sums = sumByKey(orders.flatMap((o) => o.notes));
    if (sums.length === 0) return [];
    return [
      {
        text: `INSERT INTO view_rider_delivery_counts (rider_id, count)
             SELECT d.rider_id, d.picks FROM unnest($1::text[], $2::int[]) WITH ORDINALITY AS d(rider_id, picks, n)
             ORDER BY d.n
             ON CONFLICT (rider_id) DO UPDATE SET count = view_rider_delivery_counts.count + EXCLUDED.count`,
        params: [sums.map(([id]) => id), sums.map(([, n]) => n)],
      },
    ];
  },
});

/** The rider's count; 0 for a rider who never picked an order. */
export async function riderDeliveryCount(db: Database, riderId: string): Promise<RiderDeliveryCount> {
  const [row] = await db.query<{ count: number }>('SELECT count FROM view_rider_delivery_counts WHERE rider_id = $1', [riderId]);
  return { riderId, count: row?.count ?? 0 };
}
