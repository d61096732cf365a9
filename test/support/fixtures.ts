import type { OrderInput } from '../../src/machines/order/contract.ts';

/** A placed order's input for pure machine tests: one line of bibimbap in Gangnam. */
export function sampleOrderInput(overrides: Partial<OrderInput> = {}): OrderInput {
  return {
    orderId: 'o-1',
    customerId: 'c-1',
    storeId: 's-1',
    items: [{ foodId: 'bibimbap', name: 'Bibimbap', qty: 2, unitPrice: 9000, lineTotal: 18000 }],
    total: 18000,
    address: { area: 'gangnam', line: '1 Teheran-ro' },
    ...overrides,
  };
}
