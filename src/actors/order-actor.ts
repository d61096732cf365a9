import type { OrderCommand } from '../machines/order/contract.ts';
import type { OrderMachineInput } from '../machines/order/define.ts';
import type { PlaceOrder } from '../catalog/pricing.ts';
import { annotate, ATTR, inSpan } from '../tracing.ts';
import { createPlacement } from './order-placement.ts';
import { createOrderQueries } from './order-queries.ts';
import type { Actor, Cause } from './order-repository.ts';
import { NO_CAUSE, requireCommand, type OrderSteps } from './order-step.ts';
import type { OrderView, RefundView } from './order-view.ts';
import type { Principal, Role } from './principal.ts';
import { orderShownTo } from './privacy.ts';

export type { OrderView, PlaceOrder, RefundView };

/** A command as the API receives it; the payload each needs is already validated. */
export type CommandRequest =
  | { type: 'pay' }
  | { type: 'accept' }
  | { type: 'reject'; reason: string }
  | { type: 'start-cooking' }
  | { type: 'finish-cooking' }
  | { type: 'cancel'; reason: string | null }
  | { type: 'pick' }
  | { type: 'confirm-delivery' };

/** Which party sends each command. */
export const COMMAND_ROLE: Record<OrderCommand, Role> = {
  pay: 'customer',
  accept: 'store',
  reject: 'store',
  'start-cooking': 'store',
  'finish-cooking': 'store',
  cancel: 'customer',
  pick: 'rider',
  'confirm-delivery': 'customer',
};

/** What the API knows about the request behind a command, for the journal. */
export interface CommandContext {
  /** `If-Match`: the version the caller last saw. */
  expectedVersion?: number;
  /** The request's ids: the service's (the causation id of the event the command records) and the client's. */
  cause?: Cause;
}

/** A durable timer due now (a row of `timers`). */
export interface TimerToFire {
  id: string;
  orderId: string;
  /** The order's version that started it. */
  version: number;
  /** The event, named as the machine version that started it knew it. */
  event: string;
  machineVersion: number;
}

const SYSTEM_TIMER: Actor = { sub: 'timer', role: 'system' };

export type OrderActors = ReturnType<typeof createOrderActors>;

/**
 * Undefined when a new command (a placement or an API command) may go on at once, or a promise that
 * resolves when it may: the replica's `AdmissionGate` (src/actors/admission.ts). Timers never wait.
 */
export type Admit = () => Promise<void> | undefined;

/** Pays an order (see src/payment/pay.ts): the one command that calls out. */
export type PayCommand = (who: Principal, orderId: string, ctx: CommandContext) => Promise<OrderView>;

/**
 * The order actors: placement (order-placement.ts), the commands and timers (here, each one step of
 * order-step.ts; pay through src/payment/pay.ts), and the strongly consistent reads (order-queries.ts).
 */
export function createOrderActors(steps: OrderSteps, pay: PayCommand, admit: Admit = () => undefined) {
  const { clock } = steps;
  const { get, events, list, readView } = createOrderQueries(steps);
  const placeNow = createPlacement(steps, readView);

  /** Places an order once new commands may go on (see `Admit`). */
  const place: typeof placeNow = async (...args) => {
    const held = admit();
    if (held) await held;
    return placeNow(...args);
  };

  /** The machine event for an API command (pay is handled by the payment module). */
  function machineEvent(who: Principal, request: Exclude<CommandRequest, { type: 'pay' }>): OrderMachineInput {
    switch (request.type) {
      case 'pick':
        return { type: 'pick', riderId: who.sub };
      case 'reject':
      case 'cancel':
      case 'accept':
      case 'start-cooking':
      case 'finish-cooking':
      case 'confirm-delivery':
        return request;
      default: {
        const exhaustive: never = request;
        return exhaustive;
      }
    }
  }

  function command(who: Principal, orderId: string, request: CommandRequest, ctx: CommandContext = {}): Promise<OrderView> {
    return inSpan(`order.${request.type}`, { attributes: { [ATTR.orderId]: orderId, [ATTR.command]: request.type } }, async (span) => {
      const held = admit();
      if (held) await held;
      const order = await judged(who, orderId, request, ctx);
      annotate(span, { [ATTR.orderVersion]: order.version });
      return order;
    });
  }

  async function judged(who: Principal, orderId: string, request: CommandRequest, ctx: CommandContext): Promise<OrderView> {
    if (request.type === 'pay') return orderShownTo(who, await pay(who, orderId, ctx));
    const event = machineEvent(who, request);
    const order = await steps.step(
      orderId,
      (found) => requireCommand(who, found, orderId, request.type, COMMAND_ROLE[request.type], ctx.expectedVersion),
      (_row, order) => steps.decide(order, event, request.type),
      who,
      ctx.cause ?? NO_CAUSE,
    );
    return orderShownTo(who, order);
  }

  /**
   * Fires a durable timer: the event is sent only if the order is still at the version that
   * started the timer. The timer names its event as the machine version that started it knew it;
   * an order moved to a later version since is sent the event under that version's name (the
   * migrations' renames), and a timer whose event the later version has no equivalent of is
   * closed as moved on. Returns whether it fired or found the order moved on; throws
   * `machine_version_ahead` when the order runs a newer version than this replica (the timer
   * stays due for a replica that runs it).
   */
  function fireTimer(timer: TimerToFire): Promise<'fired' | 'moved-on'> {
    return inSpan('order.timer', { attributes: { [ATTR.orderId]: timer.orderId, [ATTR.command]: timer.event } }, async (span) => {
      const outcome = await fire(timer);
      annotate(span, { [ATTR.workOutcome]: outcome });
      return outcome;
    });
  }

  async function fire(timer: TimerToFire): Promise<'fired' | 'moved-on'> {
    class MovedOn extends Error {}
    try {
      await steps.step(
        timer.orderId,
        (row) => {
          if (!row || row.version !== timer.version) throw new MovedOn();
          return row;
        },
        (_row, order) => {
          const event = steps.machines.eventIn(timer.event, timer.machineVersion, order.machine.version);
          if (event === null || !order.machine.accepts(order.snapshot, event)) throw new MovedOn();
          return steps.decide(order, { type: event }, event);
        },
        SYSTEM_TIMER,
        { causationId: timer.id, clientRequestId: null },
        { fresh: true },
      );
      return 'fired';
    } catch (err) {
      if (err instanceof MovedOn) return 'moved-on';
      throw err;
    }
  }

  return { place, command, fireTimer, get, events, list, clock };
}
