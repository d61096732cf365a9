import type { OrderDomainEventType, OrderStatus, RefundDue } from '../machines/order.machine.ts';

/**
 * What travels over BullMQ for each journaled order event. Ids and facts only: no addresses,
 * no payment details beyond what a refund needs, so job payloads hold nothing sensitive.
 */
export interface OrderEventMessage {
  eventId: string;
  orderId: string;
  seq: number;
  type: OrderDomainEventType;
  /** The order's status after this event. */
  status: OrderStatus;
  customerId: string;
  storeId: string;
  riderId: string | null;
  area: string;
  refund: RefundDue | null;
  at: string;
}
