import { z } from 'zod';
import { ORDER_COMMANDS } from '../machines/order/contract.ts';
import { ORDER_STATUSES } from './schemas.ts';

/*
 * The schemas of what the API answers: the OpenAPI document's response bodies, which the contract
 * check holds every answer of the tests to. What a request may say is in schemas.ts.
 */

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
  machineVersion: z.number().int().describe('the version of the order machine the order runs (GET /machines/order)'),
  customerId: z.string().nullable().describe('null for a rider: riders never see who the customer is'),
  storeId: z.string(),
  riderId: z.string().nullable(),
  items: z.array(OrderItemSchema),
  total: z.number().int(),
  address: z.object({
    area: z.string(),
    line: z.string().nullable().describe('null for a rider, except the rider delivering the order (picked, not yet delivered)'),
  }),
  allowed: z.array(z.enum(ORDER_COMMANDS)).describe('the commands the order accepts now'),
  chargeId: z.string().nullable().describe('null for a rider'),
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
    machineVersion: z.number().int().describe('the version of the order machine that recorded the event'),
    status: z.string().describe("the order's status right after the event"),
    occurredAt: Timestamp,
    at: Timestamp.describe('same as occurredAt'),
    causationId: z
      .string()
      .nullable()
      .describe("what caused the event, as the service names it: the id it gave the request (the X-Request-Id of its answer), or the timer that fired"),
    clientRequestId: z
      .string()
      .nullable()
      .describe('the X-Request-Id the client sent with the command, if any: for its own tracing, not an identity'),
    actor: z
      .object({ sub: z.string().nullable().describe("null for a customer's command read by a rider"), role: z.string() })
      .describe('who issued the command: the token subject and role, or the service'),
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

export const ReplayResultSchema = z.object({
  events: z.record(z.string(), z.number().int()).describe('consumer → orders whose owed events were sent again'),
  work: z.record(z.string(), z.number().int()).describe('work kind → failing items made due now (only when neither consumer nor orderId is given)'),
});

export const OpenApiDocumentSchema = z.object({ openapi: z.literal('3.1.0') }).catchall(z.unknown()).describe('this document');

export const HealthSchema = z.object({ status: z.literal('ok') });
export const ReadySchema = z.object({
  status: z.enum(['ready', 'unavailable', 'stopping']),
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
  versions: z
    .array(
      z.object({
        version: z.number().int(),
        current: z.boolean().describe('the version new orders start on and others are moved to'),
        known: z.boolean().describe('whether the replica that answered has this version (an older replica does not know a newer one)'),
        orders: z.number().int().describe('orders stored with this version'),
        active: z.number().int().nullable().describe('of those, the ones not in a final state (null for a version the replica does not know)'),
      }),
    )
    .describe('the versions still in use (every version some order is stored with, and the current one), counted at most every 5 s'),
});
