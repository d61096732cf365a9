/**
 * What every version of the order machine shares with the rest of the service: the order's data,
 * the API's commands, the durable timers' delays and the journal's events. A new machine version
 * may accept a different set of these commands and raise different timer events, but the types
 * below are contracts with code that outlives any one version (the API, the consumers that replay
 * the journal, the views): they only ever grow.
 */

export const ORDER_MACHINE_ID = 'order';

export interface Address {
  area: string;
  line: string;
}

export interface OrderItem {
  foodId: string;
  name: string;
  qty: number;
  unitPrice: number;
  lineTotal: number;
}

export interface OrderInput {
  orderId: string;
  customerId: string;
  storeId: string;
  items: OrderItem[];
  total: number;
  address: Address;
}

/** The context every version keeps (a version may add fields; the runtime reads these). */
export interface OrderContext extends OrderInput {
  riderId: string | null;
  chargeId: string | null;
  rejectReason: string | null;
  cancelReason: string | null;
}

/**
 * States the service outside the machine relies on by name, which every version must have with
 * this meaning: `awaitingPayment` (the unpaid-order limit counts the orders in it), `cooked` (riders
 * see an order waiting for one), `pickedUp` (the rider delivering it sees the address line).
 */
export const ORDER_CONTRACT_STATES = ['awaitingPayment', 'cooked', 'pickedUp'] as const;

/** Commands the API accepts, named by their route's last segment. */
export const ORDER_COMMANDS = [
  'pay',
  'accept',
  'reject',
  'start-cooking',
  'finish-cooking',
  'cancel',
  'pick',
  'confirm-delivery',
] as const;
export type OrderCommand = (typeof ORDER_COMMANDS)[number];

/** A command as the machine receives it, with the payload the runtime adds. */
export type OrderCommandEvent =
  | { type: 'pay'; chargeId: string }
  | { type: 'accept' }
  | { type: 'reject'; reason: string }
  | { type: 'start-cooking' }
  | { type: 'finish-cooking' }
  | { type: 'cancel'; reason: string | null }
  | { type: 'pick'; riderId: string }
  | { type: 'confirm-delivery' };

/** The configuration variables that name the durable timers' delays (src/config.ts). */
export const ORDER_TIMER_DELAYS = ['UNPAID_ORDER_TIMEOUT_MS', 'STORE_ACCEPT_TIMEOUT_MS'] as const;
export type OrderTimerDelay = (typeof ORDER_TIMER_DELAYS)[number];

/** A refund owed to the customer, carried by the event that ends a paid order early. */
export interface RefundDue {
  chargeId: string;
  amount: number;
}

/**
 * Domain events: exactly one per transition, journaled and read by the consumers. A type keeps its
 * meaning and its data for good (old events stay in the journal and are replayed into rebuilt
 * views); a version that needs another meaning adds a type.
 */
export type OrderDomainEvent =
  | { type: 'OrderPlaced'; data: OrderInput }
  | { type: 'OrderPaid'; data: { chargeId: string; amount: number } }
  | { type: 'OrderAccepted'; data: Record<string, never> }
  | { type: 'OrderRejected'; data: { reason: string; refund: RefundDue | null } }
  | { type: 'CookingStarted'; data: Record<string, never> }
  | { type: 'CookingFinished'; data: { area: string } }
  | { type: 'OrderCancelled'; data: { reason: string | null; refund: RefundDue | null } }
  | { type: 'OrderPickedUp'; data: { riderId: string } }
  | { type: 'OrderDelivered'; data: { riderId: string | null } }
  | { type: 'PaymentTimedOut'; data: { reason: string } }
  | { type: 'StoreAcceptTimedOut'; data: { reason: string; refund: RefundDue | null } };
export type OrderDomainEventType = OrderDomainEvent['type'];

/** Every journal event type this build's consumers know. */
export const ORDER_EVENT_TYPES = [
  'OrderPlaced',
  'OrderPaid',
  'OrderAccepted',
  'OrderRejected',
  'CookingStarted',
  'CookingFinished',
  'OrderCancelled',
  'OrderPickedUp',
  'OrderDelivered',
  'PaymentTimedOut',
  'StoreAcceptTimedOut',
] as const satisfies readonly OrderDomainEventType[];

const KNOWN_EVENT_TYPES: ReadonlySet<string> = new Set(ORDER_EVENT_TYPES);

export function isOrderEventType(type: string): type is OrderDomainEventType {
  return KNOWN_EVENT_TYPES.has(type);
}

/** The refund an event owes the customer, if any. */
export function refundOwed(event: OrderDomainEvent): RefundDue | null {
  switch (event.type) {
    case 'OrderCancelled':
    case 'OrderRejected':
    case 'StoreAcceptTimedOut':
      return event.data.refund;
    case 'OrderPlaced':
    case 'OrderPaid':
    case 'OrderAccepted':
    case 'CookingStarted':
    case 'CookingFinished':
    case 'OrderPickedUp':
    case 'OrderDelivered':
    case 'PaymentTimedOut':
      return null;
    default: {
      const exhaustive: never = event;
      return exhaustive;
    }
  }
}

// ORDER_EVENT_TYPES lists every type of the union (a type missing from it fails to compile here).
const everyEventTypeListed: [Exclude<OrderDomainEventType, (typeof ORDER_EVENT_TYPES)[number]>] extends [never] ? true : false = true;
void everyEventTypeListed;
