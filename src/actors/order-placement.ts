import { createHash, randomUUID } from 'node:crypto';
import type { Sql } from '../db/pg.ts';
import { DomainError, UnprocessableError } from '../errors.ts';
import { emittedEvents } from '../machines/order/define.ts';
import { MenuChanged, priceItems, type PlaceOrder } from '../catalog/pricing.ts';
import { annotate, ATTR, inSpan } from '../tracing.ts';
import type { Cause } from './order-repository.ts';
import { NO_CAUSE, type OrderSteps } from './order-step.ts';
import { viewOf, type OrderView } from './order-view.ts';
import { requireRole, type Principal } from './principal.ts';

/** Times a placement is priced before it gives up on a menu that keeps changing under it. */
const MENU_ATTEMPTS = 3;

/**
 * Placing an order: priced from the menus as they are now, created by the machine's initial
 * transition in one statement; with an Idempotency-Key, a retry of the same request (the same
 * body) answers the order the first one created, and another body under the key is refused.
 */
export function createPlacement(steps: OrderSteps, readView: (sql: Sql, orderId: string) => Promise<OrderView>) {
  const { db } = steps;

  function place(who: Principal, input: PlaceOrder, idempotencyKey?: string, cause: Cause = NO_CAUSE): Promise<{ order: OrderView; replayed: boolean }> {
    return inSpan('order.place', { attributes: { [ATTR.command]: 'place' } }, async (span) => {
      const placed = await placeOrder(who, input, idempotencyKey, cause);
      annotate(span, { [ATTR.orderId]: placed.order.id, [ATTR.orderVersion]: placed.order.version, 'baedal.replayed': placed.replayed });
      return placed;
    });
  }

  async function placeOrder(who: Principal, input: PlaceOrder, idempotencyKey: string | undefined, cause: Cause): Promise<{ order: OrderView; replayed: boolean }> {
    requireRole(who, 'customer', 'place an order');
    const requestHash = createHash('sha256').update(JSON.stringify(input)).digest('hex');
    const deferred: (() => void)[] = [];
    const create = async (sql: Sql): Promise<OrderView> => {
      for (let attempt = 1; ; attempt += 1) {
        try {
          return await createPriced(sql, attempt > 1);
        } catch (err) {
          // Priced from a menu line that changed meanwhile (nothing was written): price it again.
          if (!(err instanceof MenuChanged)) throw err;
          steps.menus.forget?.(input.storeId);
          if (attempt >= MENU_ATTEMPTS) throw new DomainError('internal', `the menu of store ${input.storeId} kept changing while the order was placed`);
        }
      }
    };
    const createPriced = async (sql: Sql, fresh: boolean): Promise<OrderView> => {
      const menus = sql !== db ? undefined : fresh ? (steps.menus.fresh ?? steps.menus) : steps.menus;
      const items = await priceItems(sql, input, menus);
      const orderId = randomUUID();
      const total = items.reduce((sum, i) => sum + i.lineTotal, 0);
      const machine = steps.machines.current;
      const [snapshot, actions] = machine.initial({
        orderId,
        customerId: who.sub,
        storeId: input.storeId,
        items,
        total,
        address: input.address,
      });
      const [event] = emittedEvents(actions);
      if (!event) throw new DomainError('internal', 'the order machine announced no OrderPlaced event');
      const menu = items.map((i) => ({ foodId: i.foodId, name: i.name, price: i.unitPrice }));
      const decided = { machine, next: snapshot, event, menu };
      const saved =
        sql === db
          ? await steps.create(decided, orderId, who, cause)
          : await steps.persistIn(sql, { id: orderId, version: 0, machine_version: machine.version }, decided, who, cause, deferred);
      if (!saved) throw new DomainError('internal', `order ${orderId} already existed`);
      return viewOf(machine, snapshot, { id: orderId, version: saved.version, created_at: saved.at, updated_at: saved.at }, null);
    };

    if (idempotencyKey === undefined) {
      const order = await create(db);
      for (const run of deferred) run();
      return { order, replayed: false };
    }
    const result = await db.transaction(async (tx) => {
      // Serialises retries of one request; the loser then sees the winner's committed order.
      await tx.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [JSON.stringify([who.sub, idempotencyKey])]);
      const [earlier] = await tx.query<{ order_id: string; request_hash: string }>(
        'SELECT order_id, request_hash FROM order_requests WHERE customer_id = $1 AND idempotency_key = $2',
        [who.sub, idempotencyKey],
      );
      if (earlier) {
        if (earlier.request_hash !== requestHash) {
          throw new UnprocessableError('this Idempotency-Key was already used with a different request', { idempotencyKey });
        }
        return { order: await readView(tx, earlier.order_id), replayed: true };
      }
      const order = await create(tx);
      await tx.query('INSERT INTO order_requests (customer_id, idempotency_key, request_hash, order_id) VALUES ($1, $2, $3, $4)', [
        who.sub,
        idempotencyKey,
        requestHash,
        order.id,
      ]);
      return { order, replayed: false };
    });
    for (const run of deferred) run();
    return result;
  }

  return place;
}
