import { assertEvent, assign, createActor, emit, setup, type ExecutableActionObject, type SnapshotFrom } from 'xstate';

/** Bump when a change makes old snapshots unreadable; the runtime refuses snapshots of other versions. */
export const ORDER_MACHINE_ID = 'order';
export const ORDER_MACHINE_VERSION = 1;

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

export interface OrderContext extends OrderInput {
  riderId: string | null;
  chargeId: string | null;
  rejectReason: string | null;
  cancelReason: string | null;
}

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

/**
 * Events no caller sends: the runtime raises them when a durable timer of the state fires
 * (see ORDER_TIMERS). They are part of the machine so the chart and the journal show them.
 */
export const ORDER_TIMER_EVENTS = ['payment-timeout', 'store-accept-timeout'] as const;
export type OrderTimerEvent = (typeof ORDER_TIMER_EVENTS)[number];

export type OrderMachineEvent =
  | { type: 'pay'; chargeId: string }
  | { type: 'accept' }
  | { type: 'reject'; reason: string }
  | { type: 'start-cooking' }
  | { type: 'finish-cooking' }
  | { type: 'cancel'; reason: string | null }
  | { type: 'pick'; riderId: string }
  | { type: 'confirm-delivery' }
  | { type: 'payment-timeout' }
  | { type: 'store-accept-timeout' };

/** A refund owed to the customer, carried by the event that ends a paid order early. */
export interface RefundDue {
  chargeId: string;
  amount: number;
}

/** Domain events: exactly one per transition. They are journaled and published through the outbox. */
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

export const PAYMENT_TIMEOUT_REASON = 'the order was not paid in time';
export const STORE_ACCEPT_TIMEOUT_REASON = 'the store did not accept the order in time';

function refundDue(context: OrderContext): RefundDue | null {
  return context.chargeId ? { chargeId: context.chargeId, amount: context.total } : null;
}

export const orderMachine = setup({
  types: {
    context: {} as OrderContext,
    events: {} as OrderMachineEvent,
    input: {} as OrderInput,
    emitted: {} as OrderDomainEvent,
  },
  actions: {
    announcePlaced: emit(({ context }): OrderDomainEvent => ({
      type: 'OrderPlaced',
      data: {
        orderId: context.orderId,
        customerId: context.customerId,
        storeId: context.storeId,
        items: context.items,
        total: context.total,
        address: context.address,
      },
    })),
    recordCancel: assign(({ event }) => {
      assertEvent(event, 'cancel');
      return { cancelReason: event.reason };
    }),
    announceCancelled: emit(({ context, event }): OrderDomainEvent => {
      assertEvent(event, 'cancel');
      return { type: 'OrderCancelled', data: { reason: event.reason, refund: refundDue(context) } };
    }),
  },
}).createMachine({
  id: ORDER_MACHINE_ID,
  initial: 'awaitingPayment',
  context: ({ input }) => ({
    ...input,
    riderId: null,
    chargeId: null,
    rejectReason: null,
    cancelReason: null,
  }),
  entry: 'announcePlaced',
  states: {
    awaitingPayment: {
      on: {
        pay: {
          target: 'paid',
          actions: [
            assign({ chargeId: ({ event }) => event.chargeId }),
            emit(({ context, event }): OrderDomainEvent => ({
              type: 'OrderPaid',
              data: { chargeId: event.chargeId, amount: context.total },
            })),
          ],
        },
        cancel: { target: 'cancelled', actions: ['recordCancel', 'announceCancelled'] },
        'payment-timeout': {
          target: 'cancelled',
          actions: [
            assign({ cancelReason: PAYMENT_TIMEOUT_REASON }),
            emit({ type: 'PaymentTimedOut', data: { reason: PAYMENT_TIMEOUT_REASON } }),
          ],
        },
      },
    },
    paid: {
      on: {
        accept: {
          target: 'accepted',
          actions: emit({ type: 'OrderAccepted', data: {} }),
        },
        reject: {
          target: 'rejected',
          actions: [
            assign({ rejectReason: ({ event }) => event.reason }),
            emit(({ context, event }): OrderDomainEvent => ({
              type: 'OrderRejected',
              data: { reason: event.reason, refund: refundDue(context) },
            })),
          ],
        },
        cancel: { target: 'cancelled', actions: ['recordCancel', 'announceCancelled'] },
        'store-accept-timeout': {
          target: 'rejected',
          actions: [
            assign({ rejectReason: STORE_ACCEPT_TIMEOUT_REASON }),
            emit(({ context }): OrderDomainEvent => ({
              type: 'StoreAcceptTimedOut',
              data: { reason: STORE_ACCEPT_TIMEOUT_REASON, refund: refundDue(context) },
            })),
          ],
        },
      },
    },
    accepted: {
      on: {
        'start-cooking': {
          target: 'cooking',
          actions: emit({ type: 'CookingStarted', data: {} }),
        },
        cancel: { target: 'cancelled', actions: ['recordCancel', 'announceCancelled'] },
      },
    },
    cooking: {
      on: {
        'finish-cooking': {
          target: 'cooked',
          actions: emit(({ context }): OrderDomainEvent => ({
            type: 'CookingFinished',
            data: { area: context.address.area },
          })),
        },
      },
    },
    cooked: {
      on: {
        pick: {
          target: 'pickedUp',
          actions: [
            assign({ riderId: ({ event }) => event.riderId }),
            emit(({ event }): OrderDomainEvent => ({
              type: 'OrderPickedUp',
              data: { riderId: event.riderId },
            })),
          ],
        },
      },
    },
    pickedUp: {
      on: {
        'confirm-delivery': {
          target: 'delivered',
          actions: emit(({ context }): OrderDomainEvent => ({
            type: 'OrderDelivered',
            data: { riderId: context.riderId },
          })),
        },
      },
    },
    delivered: { type: 'final' },
    cancelled: { type: 'final' },
    rejected: { type: 'final' },
  },
});

export type OrderSnapshot = SnapshotFrom<typeof orderMachine>;

/** Every state of the machine; a unit test keeps this list equal to the machine's own. */
export const ORDER_STATUSES = [
  'awaitingPayment',
  'paid',
  'accepted',
  'cooking',
  'cooked',
  'pickedUp',
  'delivered',
  'cancelled',
  'rejected',
] as const;
export type OrderStatus = (typeof ORDER_STATUSES)[number];

/**
 * The events each state accepts, read once from the machine definition. The machine has no guards
 * (checked here), so what a state accepts depends on the state alone: a lookup replaces
 * `snapshot.can()`, which runs a whole transition each time. A unit test compares the two.
 */
const ACCEPTED: Record<string, ReadonlySet<string>> = Object.fromEntries(
  Object.entries(orderMachine.states).map(([key, node]) => {
    for (const [event, definitions] of node.transitions) {
      if (definitions.some((d) => d.guard !== undefined)) throw new Error(`order machine: ${key} --${event}--> has a guard; allowed events need can()`);
    }
    return [key, new Set(node.transitions.keys())];
  }),
);
const ALLOWED: Record<string, readonly OrderCommand[]> = Object.fromEntries(
  Object.entries(ACCEPTED).map(([key, events]) => [key, ORDER_COMMANDS.filter((c) => events.has(c))]),
);

/** Whether the machine takes an event of this type in this snapshot. */
export function accepts(snapshot: OrderSnapshot, type: OrderMachineEvent['type']): boolean {
  return ACCEPTED[String(snapshot.value)]?.has(type) ?? false;
}

/** The commands the machine accepts in this snapshot. */
export function allowedCommands(snapshot: OrderSnapshot): OrderCommand[] {
  return [...(ALLOWED[String(snapshot.value)] ?? [])];
}

/** An event of the given type with placeholder payload, for asking the machine what it accepts. */
export function sampleEvent(type: OrderCommand): OrderMachineEvent {
  switch (type) {
    case 'pay':
      return { type, chargeId: '' };
    case 'reject':
      return { type, reason: '' };
    case 'cancel':
      return { type, reason: null };
    case 'pick':
      return { type, riderId: '' };
    case 'accept':
    case 'start-cooking':
    case 'finish-cooking':
    case 'confirm-delivery':
      return { type };
    default: {
      const exhaustive: never = type;
      return exhaustive;
    }
  }
}

/**
 * Durable timers, by the state that starts them: entering the state schedules the event after the
 * named delay (a configuration variable); leaving the state first makes the timer a no-op. XState's
 * own `after` timers are not used: they do not survive a restore from a persisted snapshot.
 */
export const ORDER_TIMERS = {
  awaitingPayment: { event: 'payment-timeout', delay: 'UNPAID_ORDER_TIMEOUT_MS' },
  paid: { event: 'store-accept-timeout', delay: 'STORE_ACCEPT_TIMEOUT_MS' },
} as const satisfies Partial<Record<OrderStatus, { event: OrderTimerEvent; delay: string }>>;
export type OrderTimerDelay = (typeof ORDER_TIMERS)[keyof typeof ORDER_TIMERS]['delay'];

/** The timer the state starts, if any. */
export function timerOf(status: OrderStatus): { event: OrderTimerEvent; delay: OrderTimerDelay } | undefined {
  return (ORDER_TIMERS as Partial<Record<OrderStatus, { event: OrderTimerEvent; delay: OrderTimerDelay }>>)[status];
}

/** The status an order is in right after each domain event; a unit test checks it against the machine. */
export const STATUS_AFTER: Record<OrderDomainEventType, OrderStatus> = {
  OrderPlaced: 'awaitingPayment',
  OrderPaid: 'paid',
  OrderAccepted: 'accepted',
  OrderRejected: 'rejected',
  StoreAcceptTimedOut: 'rejected',
  CookingStarted: 'cooking',
  CookingFinished: 'cooked',
  OrderCancelled: 'cancelled',
  PaymentTimedOut: 'cancelled',
  OrderPickedUp: 'pickedUp',
  OrderDelivered: 'delivered',
};

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

export function statusOf(snapshot: OrderSnapshot): OrderStatus {
  return snapshot.value as OrderStatus;
}

/**
 * The machine's next snapshot and the actions it would execute: XState's pure `transition()`,
 * without its cost per call. That function builds a throwaway actor for each transition, and
 * building an actor computes the machine's initial snapshot (a whole initial microstep) only to
 * discard it. The order machine invokes and spawns nothing (checked here), so one inert scope
 * serves every transition; each call gets its own action list. A unit test compares the two.
 */
type OrderActorScope = Parameters<typeof orderMachine.transition>[2];
let inertScope: OrderActorScope | undefined;
export function transitionOrder(snapshot: OrderSnapshot, event: OrderMachineEvent): [OrderSnapshot, ExecutableActionObject[]] {
  if (!inertScope) {
    for (const [key, node] of Object.entries(orderMachine.states)) {
      if (node.invoke.length > 0) throw new Error(`order machine: ${key} invokes an actor; use xstate's transition()`);
    }
    const self = createActor(orderMachine, { input: { orderId: '', customerId: '', storeId: '', items: [], total: 0, address: { area: '', line: '' } } });
    inertScope = {
      self,
      id: '',
      sessionId: '',
      system: self.system,
      logger: () => {},
      defer: () => {},
      emit: () => {},
      stopChild: () => {},
      actionExecutor: () => {},
    } as unknown as OrderActorScope;
  }
  const actions: ExecutableActionObject[] = [];
  const next = orderMachine.transition(snapshot, event, { ...inertScope, actionExecutor: (action) => void actions.push(action) });
  return [next, actions];
}
