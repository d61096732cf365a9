import type { Sql } from '../db/pg.ts';
import { NotFoundError } from '../errors.ts';
import { readJournal, type OrderRow } from './order-repository.ts';
import type { OrderSteps } from './order-step.ts';
import { REFUND_JOIN, refundViewOf, viewOf, type OrderView, type RefundColumns } from './order-view.ts';
import { canSee, type Principal } from './principal.ts';
import { journalShownTo, orderShownTo, type JournalAnswer } from './privacy.ts';

/** The strongly consistent reads of orders: one order, its journal, and the caller's orders. */
export function createOrderQueries(steps: OrderSteps) {
  const { db } = steps;

  /** The order as the API shows it, judged by its own machine version (a read moves nothing). */
  function shown(row: OrderRow & RefundColumns): OrderView {
    const { machine, snapshot } = steps.machines.restore(row);
    return viewOf(machine, snapshot, row, refundViewOf(row));
  }

  async function readView(sql: Sql, orderId: string): Promise<OrderView> {
    const [row] = await sql.query<OrderRow & RefundColumns>(
      `SELECT o.*, rf.* FROM orders o ${REFUND_JOIN} WHERE o.id = $1`,
      [orderId],
    );
    if (!row) throw new NotFoundError('order', orderId);
    return shown(row);
  }

  async function get(who: Principal, orderId: string): Promise<OrderView> {
    const [row] = await db.query<OrderRow & RefundColumns>(`SELECT o.*, rf.* FROM orders o ${REFUND_JOIN} WHERE o.id = $1`, [orderId]);
    if (!row || !canSee(who, { customerId: row.customer_id, storeId: row.store_id, riderId: row.rider_id, status: row.status })) {
      throw new NotFoundError('order', orderId);
    }
    return orderShownTo(who, shown(row));
  }

  async function events(who: Principal, orderId: string): Promise<JournalAnswer[]> {
    await steps.visibleRow(who, orderId);
    return journalShownTo(who, await readJournal(db, orderId));
  }

  /** The caller's orders, newest first: a customer's own, a store's incoming, a rider's picked and pickable. */
  async function list(who: Principal, filter: { status?: string; area?: string; limit: number }): Promise<OrderView[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    const param = (v: unknown) => {
      params.push(v);
      return `$${params.length}`;
    };
    switch (who.role) {
      case 'customer':
        where.push(`o.customer_id = ${param(who.sub)}`);
        break;
      case 'store':
        where.push(`o.store_id = ${param(who.sub)}`);
        break;
      case 'rider':
        // cooked_area is set exactly while an order is cooked (orders_cooked_idx finds those).
        where.push(`(o.rider_id = ${param(who.sub)} OR o.cooked_area IS NOT NULL)`);
        break;
      case 'admin':
        break;
      default: {
        const exhaustive: never = who.role;
        throw new Error(`unknown role ${String(exhaustive)}`);
      }
    }
    if (filter.status) where.push(`o.status = ${param(filter.status)}`);
    if (filter.area) where.push(`o.area = ${param(filter.area)}`);
    // The same condition again, in the terms of the index of cooked orders (no index names the status).
    if (filter.status === 'cooked') where.push(filter.area ? `o.cooked_area = ${param(filter.area)}` : 'o.cooked_area IS NOT NULL');
    const rows = await db.query<OrderRow & RefundColumns>(
      `SELECT o.*, rf.* FROM orders o ${REFUND_JOIN}
       WHERE ${where.length > 0 ? where.join(' AND ') : 'true'}
       ORDER BY o.created_at DESC, o.id LIMIT ${param(filter.limit)}`,
      params,
    );
    return rows.map((row) => orderShownTo(who, shown(row)));
  }

  return { shown, readView, get, events, list };
}
