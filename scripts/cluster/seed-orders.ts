// Orders written straight into the store, as the service would have left them: what the views'
// and machine migration's tests and `npm run bench:rebuild` start from.

import { partitionSql } from '../../src/actors/partitions.ts';
import { randomUUID } from 'node:crypto';
import { initialTransition, transition } from 'xstate';
import { emittedEvents } from '../../src/machines/order/define.ts';
import type { Sql } from '../../src/db/pg.ts';
import { ORDER_MACHINE_VERSION, orderMachine, statusOf, type OrderMachineEvent } from '../../src/machines/order/v1.ts';
import { ORDER_MACHINE_ID } from '../../src/machines/order/contract.ts';

/** A step of an order's life: an API command, or the durable timer that fired. */
export type Step = 'pay' | 'accept' | 'reject' | 'start-cooking' | 'finish-cooking' | 'cancel' | 'pick' | 'confirm-delivery' | 'store-accept-timeout' | 'payment-timeout';

export interface ScriptedOrder {
  orderId: string;
  customerId: string;
  storeId: string;
  area: string;
  items: { foodId: string; qty: number; unitPrice: number }[];
  steps: Step[];
  /** The rider who picks it, when `pick` is a step. */
  riderId?: string;
}

/** The step sequences an order can take, from a new order to where it rests. */
export const LIVES: readonly Step[][] = [
  [],
  ['payment-timeout'],
  ['cancel'],
  ['pay'],
  ['pay', 'cancel'],
  ['pay', 'reject'],
  ['pay', 'store-accept-timeout'],
  ['pay', 'accept'],
  ['pay', 'accept', 'cancel'],
  ['pay', 'accept', 'start-cooking'],
  ['pay', 'accept', 'start-cooking', 'finish-cooking'],
  ['pay', 'accept', 'start-cooking', 'finish-cooking', 'pick'],
  ['pay', 'accept', 'start-cooking', 'finish-cooking', 'pick', 'confirm-delivery'],
  ['pay', 'accept', 'start-cooking', 'finish-cooking', 'pick', 'confirm-delivery'],
  ['pay', 'accept', 'start-cooking', 'finish-cooking', 'pick', 'confirm-delivery'],
];

function machineEvent(step: Step, order: ScriptedOrder): OrderMachineEvent {
  switch (step) {
    case 'pay':
      return { type: 'pay', chargeId: `seed-charge-${order.orderId}` };
    case 'reject':
      return { type: 'reject', reason: 'out of rice' };
    case 'cancel':
      return { type: 'cancel', reason: null };
    case 'pick':
      return { type: 'pick', riderId: order.riderId! };
    case 'accept':
    case 'start-cooking':
    case 'finish-cooking':
    case 'confirm-delivery':
    case 'store-accept-timeout':
    case 'payment-timeout':
      return { type: step };
    default: {
      const exhaustive: never = step;
      throw new Error(`unknown step ${String(exhaustive)}`);
    }
  }
}

/** Who sends each step, as the journal records it. */
function actorOf(step: Step, o: ScriptedOrder): { sub: string; role: string } {
  if (step === 'store-accept-timeout' || step === 'payment-timeout') return { sub: 'timer', role: 'system' };
  if (step === 'pick') return { sub: o.riderId!, role: 'rider' };
  if (step === 'accept' || step === 'reject' || step === 'start-cooking' || step === 'finish-cooking') return { sub: o.storeId, role: 'store' };
  return { sub: o.customerId, role: 'customer' };
}

/**
 * Writes orders as the service would have left them, fast: each order's life is run through the
 * real order machine (so every event is one the machine emits, in its order, with its data), and
 * the orders and their journals are inserted in bulk, 1000 orders per statement. Nothing is
 * published: the caller decides how the consumers hear of them. The events happened over the hour
 * before `now`, one order after the other.
 */
export async function seedOrders(db: Sql, orders: readonly ScriptedOrder[], now = Date.now()): Promise<{ events: number }> {
  let events = 0;
  const stepMs = 3_600_000 / Math.max(1, orders.length * 8);
  let clock = now - 3_600_000;
  const tick = () => new Date((clock += stepMs)).toISOString();
  for (let start = 0; start < orders.length; start += 1000) {
    const orderRows: unknown[] = [];
    const journalRows: unknown[] = [];
    for (const o of orders.slice(start, start + 1000)) {
      const items = o.items.map((i) => ({ foodId: i.foodId, name: i.foodId, qty: i.qty, unitPrice: i.unitPrice, lineTotal: i.qty * i.unitPrice }));
      const input = { orderId: o.orderId, customerId: o.customerId, storeId: o.storeId, items, total: items.reduce((s, i) => s + i.lineTotal, 0), address: { area: o.area, line: '1 Teheran-ro' } };
      let [snapshot, actions] = initialTransition(orderMachine, input);
      const emitted = [{ event: emittedEvents(actions)[0]!, actor: { sub: o.customerId, role: 'customer' }, at: tick() }];
      for (const step of o.steps) {
        [snapshot, actions] = transition(orderMachine, snapshot, machineEvent(step, o));
        const actor = actorOf(step, o);
        const [event] = emittedEvents(actions);
        if (!event) throw new Error(`the machine refused ${step} for order ${o.orderId} (${o.steps.join(', ')})`);
        emitted.push({ event, actor, at: tick() });
      }
      emitted.forEach((e, i) =>
        journalRows.push({ order_id: o.orderId, seq: i + 1, event_id: randomUUID(), type: e.event.type, data: e.event.data, actor: e.actor, at: e.at }),
      );
      events += emitted.length;
      orderRows.push({
        id: o.orderId,
        version: emitted.length,
        status: statusOf(snapshot),
        snapshot: orderMachine.getPersistedSnapshot(snapshot),
        customer_id: o.customerId,
        store_id: o.storeId,
        rider_id: snapshot.context.riderId,
        area: o.area,
        created_at: emitted[0]!.at,
        updated_at: emitted.at(-1)!.at,
      });
    }
    await db.query(
      `INSERT INTO orders (id, machine_id, machine_version, version, status, snapshot, customer_id, store_id, rider_id, area, created_at, updated_at)
       SELECT r.id, $2, $3, r.version, r.status, r.snapshot, r.customer_id, r.store_id, r.rider_id, r.area, r.created_at, r.updated_at
       FROM jsonb_to_recordset($1::jsonb) AS r(id uuid, version int, status text, snapshot jsonb, customer_id text, store_id text, rider_id text, area text,
                                             created_at timestamptz, updated_at timestamptz)`,
      [JSON.stringify(orderRows), ORDER_MACHINE_ID, ORDER_MACHINE_VERSION],
    );
    await db.query(
      `INSERT INTO order_journal (order_id, seq, event_id, type, data, actor, at, part)
       SELECT r.order_id, r.seq, r.event_id, r.type, r.data, r.actor, r.at, ${partitionSql('r.order_id', '(SELECT count(*) FROM event_partitions)')}
       FROM jsonb_to_recordset($1::jsonb) AS r(order_id uuid, seq int, event_id uuid, type text, data jsonb, actor jsonb, at timestamptz)`,
      [JSON.stringify(journalRows)],
    );
  }
  return { events };
}
