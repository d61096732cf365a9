import type { Address, OrderCommand, OrderItem } from '../machines/order/contract.ts';
import type { OrderMachineVersion, OrderSnapshot } from '../machines/order/define.ts';

export interface RefundView {
  status: 'pending' | 'refunded';
  amount: number;
  /** The gateway's id of the refund, once it is done. */
  refundId: string | null;
  refundedAt: string | null;
}

/** An order as the API shows it: the snapshot plus what only the row and the refund know. */
export interface OrderView {
  id: string;
  /** A state of the order's machine version. */
  status: string;
  version: number;
  /** The version of the order machine the order runs (its next command may move it to a newer one). */
  machineVersion: number;
  /** Null for a rider, who never sees who the customer is (src/actors/privacy.ts). */
  customerId: string | null;
  storeId: string;
  riderId: string | null;
  items: OrderItem[];
  total: number;
  /** `line` is null for a rider who is not delivering the order now. */
  address: { area: Address['area']; line: Address['line'] | null };
  allowed: OrderCommand[];
  chargeId: string | null;
  refund: RefundView | null;
  reason: string | null;
  createdAt: string;
  updatedAt: string;
}

export interface RowMeta {
  id: string;
  version: number;
  created_at: Date;
  updated_at: Date;
}

export function viewOf(machine: OrderMachineVersion, snapshot: OrderSnapshot, row: RowMeta, refund: RefundView | null): OrderView {
  const ctx = snapshot.context;
  return {
    id: row.id,
    status: machine.statusOf(snapshot),
    version: row.version,
    machineVersion: machine.version,
    customerId: ctx.customerId,
    storeId: ctx.storeId,
    riderId: ctx.riderId,
    items: ctx.items,
    total: ctx.total,
    address: ctx.address,
    allowed: machine.allowedCommands(snapshot),
    chargeId: ctx.chargeId,
    refund,
    reason: ctx.rejectReason ?? ctx.cancelReason,
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
  };
}

export interface RefundColumns {
  refund_status: 'pending' | 'refunded' | null;
  refund_amount: number | null;
  refund_id: string | null;
  refunded_at: Date | null;
}

export function refundViewOf(r: RefundColumns): RefundView | null {
  if (r.refund_status === null) return null;
  return { status: r.refund_status, amount: r.refund_amount ?? 0, refundId: r.refund_id, refundedAt: r.refunded_at?.toISOString() ?? null };
}

/** The refund of the order's own charge (orphaned charges are refunded too, but are not the order's). */
export const REFUND_JOIN = `LEFT JOIN LATERAL (
    SELECT r.status AS refund_status, r.amount AS refund_amount, r.refund_id, r.refunded_at
    FROM refunds r WHERE r.order_id = o.id AND r.reason <> 'orphaned' ORDER BY r.requested_at LIMIT 1
  ) rf ON true`;
