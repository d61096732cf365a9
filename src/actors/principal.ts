import { ForbiddenError } from '../errors.ts';

export const ROLES = ['customer', 'store', 'rider', 'admin'] as const;
export type Role = (typeof ROLES)[number];

/** Who is acting: the verified `sub` and `role` claims of the caller's token. */
export interface Principal {
  sub: string;
  role: Role;
}

export interface OrderParties {
  customerId: string;
  storeId: string;
  riderId: string | null;
  status: string;
}

/**
 * Whether the principal may see the order at all. Callers that may not see it get 404,
 * so order ids cannot be probed. Any rider sees cooked orders: they are offers to pick.
 */
export function canSee(who: Principal, order: OrderParties): boolean {
  switch (who.role) {
    case 'admin':
      return true;
    case 'customer':
      return order.customerId === who.sub;
    case 'store':
      return order.storeId === who.sub;
    case 'rider':
      return order.riderId === who.sub || order.status === 'cooked';
    default: {
      const exhaustive: never = who.role;
      return exhaustive;
    }
  }
}

export function requireRole(who: Principal, role: Role, action: string): void {
  if (who.role !== role) {
    throw new ForbiddenError(`only a ${role} may ${action}`, { role: who.role, required: role });
  }
}
