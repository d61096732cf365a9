import type { JournalEntry } from './order-repository.ts';
import type { OrderView } from './order-view.ts';
import type { Principal } from './principal.ts';

/**
 * What a caller may read of an order. A rider is not a party to the customer's side of it: before
 * picking an order a rider sees where it goes (the area) and what it holds (the items); while
 * delivering it, the address line too; never the customer's id, payment or reasons, and nothing
 * of the customer once it is delivered. Customers, stores and admins see the order whole.
 */
export interface RiderReading {
  /** The rider is delivering the order now (picked by them, not yet delivered): the address line is needed. */
  delivering: boolean;
}

export function riderReading(who: Principal, order: { status: string; riderId: string | null }): RiderReading | undefined {
  if (who.role !== 'rider') return undefined;
  return { delivering: order.status === 'pickedUp' && order.riderId === who.sub };
}

/** The order as `who` may read it. */
export function orderShownTo(who: Principal, view: OrderView): OrderView {
  const rider = riderReading(who, view);
  if (!rider) return view;
  return {
    ...view,
    customerId: null,
    address: { area: view.address.area, line: rider.delivering ? view.address.line : null },
    chargeId: null,
    refund: null,
    reason: null,
  };
}

/** A journal entry as the API answers it: a customer's id may be withheld from its actor. */
export type JournalAnswer = Omit<JournalEntry, 'actor'> & { actor: { sub: string | null; role: JournalEntry['actor']['role'] } };

/** Keys of event data that belong to the customer's side of an order. */
const CUSTOMER_DATA = new Set(['customerId', 'chargeId', 'refund', 'reason']);

/** The journal of an order as `who` may read it: a rider delivering it is one whose pick is its last event. */
export function journalShownTo(who: Principal, entries: JournalEntry[]): JournalAnswer[] {
  const last = entries.at(-1);
  const pickedBy = last?.type === 'OrderPickedUp' ? (last.data as { riderId?: unknown }).riderId : undefined;
  const rider = riderReading(who, { status: pickedBy === undefined ? 'other' : 'pickedUp', riderId: typeof pickedBy === 'string' ? pickedBy : null });
  if (!rider) return entries;
  return entries.map((e) => {
    const data: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(e.data)) {
      if (CUSTOMER_DATA.has(key)) continue;
      if (key === 'address' && value && typeof value === 'object') {
        const address = value as { area?: unknown; line?: unknown };
        data.address = { area: address.area, line: rider.delivering ? address.line : null };
      } else {
        data[key] = value;
      }
    }
    // A customer's command is told by its role alone: a rider never learns the customer's id, nor
    // another party's own request ids.
    const own = e.actor.role === 'rider' && e.actor.sub === who.sub;
    return {
      ...e,
      data,
      actor: e.actor.role === 'customer' ? { sub: null, role: 'customer' } : e.actor,
      clientRequestId: own ? e.clientRequestId : null,
    };
  });
}
