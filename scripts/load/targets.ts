import { randomUUID } from 'node:crypto';
import type { HttpResult } from './http-client.ts';
import type { OrderCommand } from './scenario.ts';

/** One HTTP request the load generator sends. */
export interface Call {
  method: string;
  path: string;
  body?: string;
}

/**
 * How the same lifecycle is spoken to one kind of server. The virtual users, the timing and the
 * checks are shared; only the requests and the reading of answers differ.
 */
export interface Target {
  readonly name: TargetName;
  /** Whether GET of an order tells its status (the final check needs it). */
  readonly verifiable: boolean;
  publishMenu(storeId: string, menu: unknown): Call;
  /** `orderId` is used by targets whose client picks the id (Restate's virtual-object key). */
  place(orderId: string, input: { storeId: string; items: { foodId: string; qty: number }[]; address: { area: string; line: string } }): Call;
  command(orderId: string, command: OrderCommand, body: unknown): Call;
  get(orderId: string): Call;
  /** A fresh id for `place`, or '' when the server assigns it. */
  newOrderId(): string;
  /** The id of the order a successful `place` created. */
  placedId(res: HttpResult, requested: string): string | undefined;
  statusOf(res: HttpResult): string | undefined;
  /** The error's kind for the report: `<status> <code>`, or `network <code>`. */
  errorKind(res: HttpResult): string;
}

export const TARGET_NAMES = ['baedal', 'restate', 'bare'] as const;
export type TargetName = (typeof TARGET_NAMES)[number];

const json = (value: unknown): string | undefined => (value === undefined ? undefined : JSON.stringify(value));

function networkKind(res: HttpResult): string | undefined {
  return res.status === 0 ? `network ${res.networkError ?? 'error'}` : undefined;
}

/** Baedal's API: `{ error: { code, message, details } }` on every refusal. */
const baedal: Target = {
  name: 'baedal',
  verifiable: true,
  publishMenu: (storeId, menu) => ({ method: 'PUT', path: `/stores/${encodeURIComponent(storeId)}/menu`, body: json(menu) }),
  place: (_id, input) => ({ method: 'POST', path: '/orders', body: json(input) }),
  command: (orderId, command, body) => ({ method: 'POST', path: `/orders/${orderId}/${command}`, body: json(body) }),
  get: (orderId) => ({ method: 'GET', path: `/orders/${orderId}` }),
  newOrderId: () => '',
  placedId: (res) => (typeof res.body?.id === 'string' ? res.body.id : undefined),
  statusOf: (res) => (typeof res.body?.status === 'string' ? res.body.status : undefined),
  errorKind: (res) => networkKind(res) ?? `${res.status} ${typeof res.body?.error?.code === 'string' ? res.body.error.code : 'no_code'}`,
};

/** A server that answers every request with one constant JSON: the same requests as Baedal, no work behind them. */
const bare: Target = {
  ...baedal,
  name: 'bare',
  verifiable: false,
  errorKind: (res) => networkKind(res) ?? `${res.status} bare`,
};

const RESTATE_HANDLER: Record<OrderCommand, string> = {
  pay: 'pay',
  accept: 'accept',
  reject: 'reject',
  'start-cooking': 'startCooking',
  'finish-cooking': 'finishCooking',
  cancel: 'cancel',
  pick: 'pick',
  'confirm-delivery': 'confirmDelivery',
};

/**
 * Restate's ingress in front of bench/restate/service.ts: one virtual object per order, keyed by an
 * id the client picks. A terminal error comes back as `{ code, message }` with the HTTP status as
 * code and `<error code>: ...` as message.
 */
const restate: Target = {
  name: 'restate',
  verifiable: true,
  publishMenu: (storeId, menu) => ({ method: 'POST', path: `/Store/${encodeURIComponent(storeId)}/putMenu`, body: json(menu) }),
  place: (orderId, input) => ({ method: 'POST', path: `/Order/${orderId}/place`, body: json(input) }),
  command: (orderId, command, body) => ({ method: 'POST', path: `/Order/${orderId}/${RESTATE_HANDLER[command]}`, body: json(body) }),
  get: (orderId) => ({ method: 'POST', path: `/Order/${orderId}/get` }),
  newOrderId: () => randomUUID(),
  placedId: (res, requested) => (res.body?.id === requested ? requested : undefined),
  statusOf: baedal.statusOf,
  errorKind: (res) => {
    const network = networkKind(res);
    if (network) return network;
    const message = typeof res.body?.message === 'string' ? res.body.message : '';
    const code = /^([a-z_]+):/.exec(message)?.[1] ?? 'no_code';
    return `${res.status} ${code}`;
  },
};

export const TARGETS: Record<TargetName, Target> = { baedal, restate, bare };
