// The mixed order lifecycle the load generator drives: which commands, by whom, in which order,
// and the state each kind of lifecycle must end in. Written against the HTTP API contract in the
// README, not against the service's code, so it measures what a client sees.

export type Role = 'customer' | 'store' | 'rider' | 'admin';

export const ORDER_COMMANDS = ['pay', 'accept', 'reject', 'start-cooking', 'finish-cooking', 'cancel', 'pick', 'confirm-delivery'] as const;
export type OrderCommand = (typeof ORDER_COMMANDS)[number];
/** Everything the load generator times: placing an order and each command on it. */
export type CommandName = 'place' | OrderCommand;
export const COMMAND_NAMES: readonly CommandName[] = ['place', ...ORDER_COMMANDS];

/** Who sends each command (the API's rule). */
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

export type LifecycleKind = 'full' | 'cancel' | 'reject';

export interface LifecycleSpec {
  /** Share of lifecycles of this kind. */
  weight: number;
  /** The commands after `place`, in order. */
  steps: readonly OrderCommand[];
  /** The status GET /orders/:id must show afterwards. */
  finalStatus: string;
}

export const LIFECYCLES: Record<LifecycleKind, LifecycleSpec> = {
  full: { weight: 0.85, steps: ['pay', 'accept', 'start-cooking', 'finish-cooking', 'pick', 'confirm-delivery'], finalStatus: 'delivered' },
  cancel: { weight: 0.1, steps: ['pay', 'cancel'], finalStatus: 'cancelled' },
  reject: { weight: 0.05, steps: ['pay', 'reject'], finalStatus: 'rejected' },
};
const KINDS = Object.keys(LIFECYCLES) as LifecycleKind[];

/** The body a command carries. */
export function commandBody(command: OrderCommand): unknown {
  switch (command) {
    case 'reject':
      return { reason: 'out of rice' };
    case 'cancel':
      return { reason: 'changed my mind' };
    default:
      return undefined;
  }
}

export const MENU = [
  { foodId: 'bibimbap', name: 'Bibimbap', price: 9000, available: true },
  { foodId: 'tteokbokki', name: 'Tteokbokki', price: 6500, available: true },
  { foodId: 'naengmyeon', name: 'Naengmyeon', price: 11000, available: true },
];

/** A small seeded generator (mulberry32), so a run's mix of lifecycles can be repeated. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function pickLifecycle(random: () => number): LifecycleKind {
  let r = random();
  for (const kind of KINDS) {
    r -= LIFECYCLES[kind].weight;
    if (r < 0) return kind;
  }
  return 'full';
}

/** The items of one order: one to three dishes of the menu. */
export function pickItems(random: () => number): { foodId: string; qty: number }[] {
  const first = Math.floor(random() * MENU.length);
  const count = 1 + Math.floor(random() * 2);
  return Array.from({ length: count }, (_, i) => ({ foodId: MENU[(first + i) % MENU.length]!.foodId, qty: 1 + Math.floor(random() * 3) }));
}
