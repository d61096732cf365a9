import { z } from 'zod';
import { ORDER_COMMANDS, ORDER_STATUSES } from '../machines/order.machine.ts';

const id = (what: string) => z.string().trim().min(1).max(100).describe(what);

export const MenuItemSchema = z
  .object({
    foodId: id('food id, unique within the store'),
    name: z.string().trim().min(1).max(200),
    price: z.number().int().min(0).describe('price in the smallest currency unit'),
    available: z.boolean(),
  })
  .strict();

export const MenuSchema = z
  .array(MenuItemSchema)
  .max(500)
  .superRefine((items, ctx) => {
    const seen = new Set<string>();
    items.forEach((item, index) => {
      if (seen.has(item.foodId)) ctx.addIssue({ code: 'custom', path: [index, 'foodId'], message: `duplicate foodId ${item.foodId}` });
      seen.add(item.foodId);
    });
  });

export const AddressSchema = z.object({ area: id('delivery area; riders see cooked orders by area'), line: z.string().trim().min(1).max(300) }).strict();

export const PlaceOrderSchema = z
  .object({
    storeId: id('the store to order from'),
    items: z
      .array(z.object({ foodId: id('a food on the store menu'), qty: z.number().int().min(1).max(100) }).strict())
      .min(1)
      .max(50),
    address: AddressSchema,
  })
  .strict();

export const RejectSchema = z.object({ reason: z.string().trim().min(1).max(500) }).strict();
export const CancelSchema = z.object({ reason: z.string().trim().min(1).max(500).optional() }).strict();
export const EmptyBodySchema = z.object({}).strict();

export const StoreParams = z.object({ storeId: id('store id') });
export const OrderParams = z.object({ id: z.uuid().describe('order id') });

export const ListOrdersQuery = z
  .object({
    status: z.enum(ORDER_STATUSES).optional(),
    area: z.string().min(1).max(100).optional(),
    limit: z.coerce.number().int().min(1).max(200).default(50),
  })
  .strict();

export const LimitQuery = z.object({ limit: z.coerce.number().int().min(1).max(200).default(50) }).strict();

const Timestamp = z.string().describe('ISO 8601 timestamp');

export const OrderItemSchema = z.object({
  foodId: z.string(),
  name: z.string(),
  qty: z.number().int(),
  unitPrice: z.number().int(),
  lineTotal: z.number().int(),
});

export const OrderSchema = z.object({
  id: z.uuid(),
  status: z.enum(ORDER_STATUSES),
  version: z.number().int().describe('increments with every transition; also sent as the ETag'),
  customerId: z.string(),
  storeId: z.string(),
  riderId: z.string().nullable(),
  items: z.array(OrderItemSchema),
  total: z.number().int(),
  address: AddressSchema,
  allowed: z.array(z.enum(ORDER_COMMANDS)).describe('the commands the order accepts now'),
  chargeId: z.string().nullable(),
  refund: z
    .object({
      status: z.enum(['pending', 'refunded']),
      amount: z.number().int(),
      refundId: z.string().nullable(),
      refundedAt: Timestamp.nullable(),
    })
    .nullable()
    .describe('the refund of the payment, once a paid order is cancelled or rejected'),
  reason: z.string().nullable().describe('why the order was rejected or cancelled'),
  createdAt: Timestamp,
  updatedAt: Timestamp,
});

export const JournalSchema = z.array(
  z.object({
    eventId: z.uuid(),
    seq: z.number().int(),
    type: z.string(),
    data: z.record(z.string(), z.unknown()),
    occurredAt: Timestamp,
    at: Timestamp.describe('same as occurredAt'),
    causationId: z.string().nullable().describe('the request (X-Request-Id) or timer that caused the event'),
    actor: z.object({ sub: z.string(), role: z.string() }).describe('who issued the command: the token subject and role, or the service'),
  }),
);

export const NotificationsSchema = z.array(
  z.object({
    notificationId: z.uuid().describe('the same on every delivery attempt'),
    eventId: z.uuid(),
    orderId: z.uuid(),
    seq: z.number().int(),
    status: z.enum(ORDER_STATUSES),
    text: z.string(),
    message: z.string().describe('same as text'),
    at: Timestamp,
    delivery: z.object({
      state: z.enum(['pending', 'delivered']),
      attempts: z.number().int(),
      deliveredAt: Timestamp.nullable(),
      transport: z.string().nullable(),
      lastError: z.string().nullable(),
    }),
  }),
);

export const DeliveriesQuery = z
  .object({
    area: z.string().trim().min(1).max(100).describe('the delivery area riders work in'),
    limit: z.coerce.number().int().min(1).max(200).default(50),
  })
  .strict();

export const DeliveriesSchema = z.array(
  z.object({ orderId: z.uuid(), storeId: z.string(), area: z.string(), itemsCount: z.number().int(), cookedAt: Timestamp }),
);

export const FailedEventsSchema = z.object({
  consumers: z.array(
    z.object({
      consumer: z.string(),
      orderId: z.uuid(),
      seq: z.number().int(),
      attempts: z.number().int(),
      error: z.string(),
      firstFailedAt: Timestamp,
      lastFailedAt: Timestamp,
    }),
  ),
  work: z.array(
    z.object({ kind: z.string(), key: z.string(), attempts: z.number().int(), lastError: z.string().nullable(), dueAt: Timestamp }),
  ),
});

export const ReplaySchema = z
  .object({
    consumer: z.string().min(1).max(100).optional().describe('only this consumer'),
    orderId: z.uuid().optional().describe('only this order'),
  })
  .strict();

export const HealthSchema = z.object({ status: z.literal('ok') });
export const ReadySchema = z.object({
  status: z.enum(['ready', 'unavailable']),
  checks: z.object({ postgres: z.boolean(), redis: z.boolean() }),
  details: z
    .object({ paymentBreaker: z.enum(['closed', 'open', 'half-open']).describe('informational: an open breaker does not make the pod unready') })
    .describe('state that does not decide readiness'),
});

export const ErrorSchema = z.object({
  error: z.object({
    code: z.string(),
    message: z.string(),
    details: z.record(z.string(), z.unknown()),
  }),
});

export const MachineGraphSchema = z.object({
  id: z.string(),
  version: z.number().int(),
  initial: z.string(),
  states: z.array(z.object({ id: z.string(), final: z.boolean() })),
  transitions: z.array(
    z.object({
      id: z.string(),
      source: z.string(),
      target: z.string(),
      command: z.string().describe('the API command, or the event a durable timer raises'),
      trigger: z.enum(['command', 'timer']),
      after: z.string().nullable().describe('for a timer, the configuration variable naming its delay'),
      guard: z.string().nullable(),
    }),
  ),
  journal: z.record(z.string(), z.string().nullable()).describe('journal event type → the command (or timer event) whose transition records it'),
});

/** The page reads `orderId` itself; other parameters are ignored rather than refused. */
export const StatechartQuery = z.object({ orderId: z.string().optional().describe('an order to follow live') });
