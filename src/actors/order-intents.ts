import { refundOwed, type OrderDomainEvent, type OrderTimerDelay } from '../machines/order/contract.ts';
import type { OrderMachineVersion, OrderSnapshot } from '../machines/order/define.ts';

/** A refund the transition owes, recorded with it and performed later by the refund worker. */
export interface RefundIntent {
  key: string;
  chargeId: string;
  amount: number;
  reason: 'cancelled' | 'rejected' | 'orphaned';
}

/** A durable timer the transition starts. */
export interface TimerIntent {
  id: string;
  /** The event's name in the machine version that started the timer. */
  event: string;
  fireAt: Date;
}

export const refundKey = (orderId: string, chargeId: string) => `order-${orderId}-refund-${chargeId}`;
export const timerId = (orderId: string, version: number, event: string) => `${orderId}:${version}:${event}`;

/** What the runtime records beside a transition: the machine's intents turned into rows. */
export function intentsOf(
  orderId: string,
  version: number,
  machine: OrderMachineVersion,
  snapshot: OrderSnapshot,
  event: OrderDomainEvent,
  at: Date,
  delays: Readonly<Record<OrderTimerDelay, number>>,
): { refunds: RefundIntent[]; timers: TimerIntent[] } {
  const refunds: RefundIntent[] = [];
  const owed = refundOwed(event);
  if (owed) {
    refunds.push({
      key: refundKey(orderId, owed.chargeId),
      chargeId: owed.chargeId,
      amount: owed.amount,
      reason: event.type === 'OrderCancelled' ? 'cancelled' : 'rejected',
    });
  }
  const timers: TimerIntent[] = [];
  const timer = machine.timerOf(machine.statusOf(snapshot));
  if (timer) {
    timers.push({ id: timerId(orderId, version, timer.event), event: timer.event, fireAt: new Date(at.getTime() + delays[timer.delay]) });
  }
  return { refunds, timers };
}

