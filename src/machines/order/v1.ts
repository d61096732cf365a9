import { assertEvent, assign, emit, setup, type ExecutableActionObject, type SnapshotFrom } from 'xstate';
import { ORDER_MACHINE_ID, type OrderCommand, type OrderCommandEvent, type OrderContext, type OrderDomainEvent, type OrderDomainEventType, type OrderInput, type RefundDue } from './contract.ts';
import { defineOrderMachine } from './define.ts';

/**
 * Version 1 of the order machine. A version is never edited once orders run on it: a change that
 * moves, removes or renames a state or an event is a new version (v2.ts, a copy of this file to
 * edit) with a migration from this one; see the README, "Changing the machine".
 */
export const ORDER_MACHINE_VERSION = 1;

/**
 * Events no caller sends: the runtime raises them when a durable timer of the state fires
 * (see ORDER_TIMERS). They are part of the machine so the chart and the journal show them.
 */
export const ORDER_TIMER_EVENTS = ['payment-timeout', 'store-accept-timeout'] as const;
export type OrderTimerEvent = (typeof ORDER_TIMER_EVENTS)[number];

export type OrderMachineEvent = OrderCommandEvent | { type: 'payment-timeout' } | { type: 'store-accept-timeout' };

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

/** Journal event type → the event whose transition emits it (null: the placement). */
export const JOURNAL_EVENT_COMMANDS = {
  OrderPlaced: null,
  OrderPaid: 'pay',
  OrderAccepted: 'accept',
  OrderRejected: 'reject',
  CookingStarted: 'start-cooking',
  CookingFinished: 'finish-cooking',
  OrderCancelled: 'cancel',
  OrderPickedUp: 'pick',
  OrderDelivered: 'confirm-delivery',
  PaymentTimedOut: 'payment-timeout',
  StoreAcceptTimedOut: 'store-accept-timeout',
} as const satisfies Record<OrderDomainEventType, OrderCommand | OrderTimerEvent | null>;

export const orderV1 = defineOrderMachine({ version: ORDER_MACHINE_VERSION, machine: orderMachine, timers: ORDER_TIMERS, journal: JOURNAL_EVENT_COMMANDS });

// Version 1's own view of the helpers every version has (the runtime uses orderV1, typed for any version).
export const statusOf = (snapshot: OrderSnapshot): OrderStatus => orderV1.statusOf(snapshot) as OrderStatus;
export const accepts = (snapshot: OrderSnapshot, type: OrderMachineEvent['type']): boolean => orderV1.accepts(snapshot, type);
export const allowedCommands = (snapshot: OrderSnapshot): OrderCommand[] => orderV1.allowedCommands(snapshot);
export const timerOf = (status: OrderStatus) => ORDER_TIMERS[status as keyof typeof ORDER_TIMERS] as (typeof ORDER_TIMERS)[keyof typeof ORDER_TIMERS] | undefined;
export const transitionOrder = (snapshot: OrderSnapshot, event: OrderMachineEvent) => orderV1.transition(snapshot, event) as [OrderSnapshot, ExecutableActionObject[]];
