import { expect } from 'chai';
import { setup } from 'xstate';
import type { OrderEvent } from '../../src/actors/consumers/types.ts';
import { toJournalEntry, UNRECORDED_STATUS_AFTER, type JournalRow } from '../../src/actors/order-repository.ts';
import { ORDER_MACHINE_ID, type OrderDomainEvent } from '../../src/machines/order/contract.ts';
import { defineOrderMachine, emittedEvents, type OrderMachineVersion, type OrderSnapshot } from '../../src/machines/order/define.ts';
import { OrderMachines, SHIPPED_ORDER_MACHINES, type OrderMigration } from '../../src/machines/order/registry.ts';
import { ORDER_STATUSES, ORDER_TIMERS, STATUS_AFTER, orderV1, type OrderStatus } from '../../src/machines/order/v1.ts';
import { notifierConsumer } from '../../src/notifications/notifier.consumer.ts';
import { foldCustomerOrder, type CustomerOrderState } from '../../src/views/customer-orders.view.ts';
import { foldFoodCounts } from '../../src/views/store-food-counts.view.ts';
import { foldStoreOrder, type StoreOrderState } from '../../src/views/store-orders.view.ts';
import { COOKING_REFUSED, ORDER_MACHINES_V2, ORDER_MACHINES_V2_REFUSING_COOKING, migrationV1toV2, orderV2 } from '../fixtures/order-v2.ts';
import { sampleOrderInput } from '../support/fixtures.ts';

const input = sampleOrderInput({ orderId: '00000000-0000-4000-8000-000000000001' });

/** A path of commands from placement to each version 1 state. */
const PATH_TO: Record<OrderStatus, string[]> = {
  awaitingPayment: [],
  paid: ['pay'],
  accepted: ['pay', 'accept'],
  cooking: ['pay', 'accept', 'start-cooking'],
  cooked: ['pay', 'accept', 'start-cooking', 'finish-cooking'],
  pickedUp: ['pay', 'accept', 'start-cooking', 'finish-cooking', 'pick'],
  delivered: ['pay', 'accept', 'start-cooking', 'finish-cooking', 'pick', 'confirm-delivery'],
  cancelled: ['pay', 'cancel'],
  rejected: ['pay', 'reject'],
};

const payload: Record<string, Record<string, unknown>> = {
  pay: { chargeId: 'ch-1' },
  reject: { reason: 'out of rice' },
  cancel: { reason: 'changed my mind' },
  pick: { riderId: 'rider-1' },
};

/** Runs `events` through a version from placement: its snapshot and every domain event emitted. */
function run(machine: OrderMachineVersion, events: readonly string[]): { snapshot: OrderSnapshot; emitted: OrderDomainEvent[] } {
  let [snapshot, actions] = machine.initial(input);
  const emitted = emittedEvents(actions);
  for (const type of events) {
    expect(machine.accepts(snapshot, type), `${machine.statusOf(snapshot)} takes ${type} (v${machine.version})`).to.equal(true);
    [snapshot, actions] = machine.transition(snapshot, { type, ...payload[type] });
    emitted.push(...emittedEvents(actions));
  }
  return { snapshot, emitted };
}

describe('order machine versions', () => {
  describe('version 2 (the test fixture): one added state, one renamed event', () => {
    it('differs from version 1 by the state expired and the timer event unpaid-timeout, and by nothing else', () => {
      expect(orderV2.statuses).to.deep.equal([...ORDER_STATUSES, 'expired']);
      expect(orderV2.finals).to.deep.equal([...orderV1.finals, 'expired']);
      const edges = (m: OrderMachineVersion) => m.graph.transitions.map((t) => `${t.source} --${t.command}--> ${t.target}`).sort();
      const onlyV1 = edges(orderV1).filter((e) => !edges(orderV2).includes(e));
      const onlyV2 = edges(orderV2).filter((e) => !edges(orderV1).includes(e));
      expect(onlyV1).to.deep.equal(['awaitingPayment --payment-timeout--> cancelled']);
      expect(onlyV2).to.deep.equal(['awaitingPayment --unpaid-timeout--> expired']);
      expect(orderV2.timerOf('awaitingPayment')).to.deep.equal({ event: 'unpaid-timeout', delay: 'UNPAID_ORDER_TIMEOUT_MS' });
    });

    it('an unpaid order expires (and announces PaymentTimedOut, as version 1 does)', () => {
      const { snapshot, emitted } = run(orderV2, ['unpaid-timeout']);
      expect(orderV2.statusOf(snapshot)).to.equal('expired');
      expect(snapshot.status).to.equal('done');
      expect(emitted.map((e) => e.type)).to.deep.equal(['OrderPlaced', 'PaymentTimedOut']);
      expect(orderV2.accepts(run(orderV2, []).snapshot, 'payment-timeout'), 'the old name').to.equal(false);
    });
  });

  describe('the migration from version 1 to version 2', () => {
    for (const status of ORDER_STATUSES) {
      it(`moves a ${status} order to its namesake, with the same context and what that state takes in version 2`, () => {
        const { snapshot } = run(orderV1, PATH_TO[status]);
        // Through JSON, as it is stored.
        const stored = JSON.parse(JSON.stringify(orderV1.persist(snapshot)));
        const up = ORDER_MACHINES_V2.upgrade(orderV1, orderV1.restore(stored));
        if (!up.moved) throw new Error(`refused: ${up.reason}`);
        expect(up.machine).to.equal(orderV2);
        expect(orderV2.statusOf(up.snapshot)).to.equal(status);
        expect(up.snapshot.context).to.deep.equal(snapshot.context);
        expect(up.snapshot.status).to.equal(orderV1.isFinal(status) ? 'done' : 'active');
        expect(orderV2.allowedCommands(up.snapshot)).to.deep.equal(orderV1.allowedCommands(snapshot));
        // And it goes on in version 2 as an order placed there would.
        const again = orderV2.restore(JSON.parse(JSON.stringify(orderV2.persist(up.snapshot))));
        expect(orderV2.persist(again)).to.deep.equal(orderV2.persist(run(orderV2, PATH_TO[status]).snapshot));
      });
    }

    it('renames a timer event started on version 1 for an order on version 2, and leaves others as they are', () => {
      expect(ORDER_MACHINES_V2.eventIn('payment-timeout', 1, 2)).to.equal('unpaid-timeout');
      expect(ORDER_MACHINES_V2.eventIn('store-accept-timeout', 1, 2)).to.equal('store-accept-timeout');
      expect(ORDER_MACHINES_V2.eventIn('payment-timeout', 1, 1)).to.equal('payment-timeout');
      expect(ORDER_MACHINES_V2.statusIn('cooking', 1, 2)).to.equal('cooking');
    });

    it('keeps an order on version 1 when the migration refuses its state, naming the step and the reason', () => {
      const { snapshot } = run(orderV1, PATH_TO.cooking);
      expect(ORDER_MACHINES_V2_REFUSING_COOKING.upgrade(orderV1, snapshot)).to.deep.equal({
        moved: false,
        from: 1,
        refusedAt: 1,
        state: 'cooking',
        reason: COOKING_REFUSED,
      });
      expect(ORDER_MACHINES_V2_REFUSING_COOKING.statusIn('cooking', 1, 2)).to.equal(null);
      expect(ORDER_MACHINES_V2_REFUSING_COOKING.upgrade(orderV1, run(orderV1, PATH_TO.cooked).snapshot).moved).to.equal(true);
    });
  });

  describe('a registry of versions', () => {
    it('ships version 1 alone: new orders start on it and nothing moves', () => {
      expect(SHIPPED_ORDER_MACHINES.versions).to.deep.equal([orderV1]);
      expect(SHIPPED_ORDER_MACHINES.newest).to.equal(1);
      const { snapshot } = run(orderV1, ['pay']);
      const up = SHIPPED_ORDER_MACHINES.upgrade(orderV1, snapshot);
      expect(up.moved && up.snapshot).to.equal(snapshot);
    });

    it('restores an order with its own version, refuses a newer one as machine_version_ahead and a dropped one as internal', () => {
      const stored = orderV1.persist(run(orderV1, ['pay']).snapshot);
      const row = (version: number) => ({ id: 'o-9', machine_id: ORDER_MACHINE_ID, machine_version: version, snapshot: stored });
      expect(ORDER_MACHINES_V2.restore(row(1)).machine).to.equal(orderV1);
      expect(() => SHIPPED_ORDER_MACHINES.restore(row(2))).to.throw(/runs version 2 of the order machine; this replica runs up to version 1/).with.property('code', 'machine_version_ahead');
      const dropped = new OrderMachines([orderV2]);
      expect(() => dropped.restore(row(1))).to.throw(/order@1, which this build no longer has/).with.property('code', 'internal');
      expect(() => SHIPPED_ORDER_MACHINES.restore({ ...row(1), machine_id: 'payment' })).to.throw(/payment@1/);
    });

    const invalid: [string, () => unknown, RegExp][] = [
      ['a version without the migration from the one before', () => new OrderMachines([orderV1, orderV2]), /no migration from version 1 to 2/],
      ['a version without a state the service relies on by name', () => new OrderMachines([defineOrderMachine({ version: 1, machine: setup({}).createMachine({ id: ORDER_MACHINE_ID, initial: 'awaitingPayment', states: { awaitingPayment: { on: { pay: 'cooked' } }, cooked: { type: 'final' } } }), timers: {}, journal: {} })]), /version 1 has no pickedUp/],
      ['versions with a gap', () => new OrderMachines([orderV1, defineOrderMachine({ ...definitionOf(orderV2), version: 3 })]), /not consecutive/],
      ['a migration that forgets a state', () => withMigration({ states: without(migrationV1toV2.states, 'cooked') }), /says nothing of cooked/],
      ['a migration to a state the next version lacks', () => withMigration({ states: { ...migrationV1toV2.states, cooked: 'readyForPickup' } }), /maps cooked to readyForPickup, which version 2 does not have/],
      ['a migration that ends an order without an event', () => withMigration({ states: { ...migrationV1toV2.states, cooking: 'expired' } }), /one is final and the other is not/],
      ['a migration that renames a state the service relies on by name', () => withMigration({ states: { ...migrationV1toV2.states, accepted: 'cooked' } }), /maps accepted to cooked; a state the service relies on by name keeps its name/],
      ['a migration that refuses without a reason', () => withMigration({ states: { ...migrationV1toV2.states, cooking: { refuse: '' } } }), /refuses cooking without a reason/],
      ['a rename of an event the old version does not take', () => withMigration({ events: { 'no-such-event': 'unpaid-timeout' } }), /renames no-such-event/],
      ['a rename to an event the new version does not take', () => withMigration({ events: { 'payment-timeout': 'payment-timeout' } }), /to payment-timeout, which version 2 does not take/],
    ];
    for (const [what, build, message] of invalid) {
      it(`refuses at start-up ${what}`, () => {
        expect(build).to.throw(message);
      });
    }
  });

  describe('defining a version', () => {
    const base = setup({}).createMachine({ id: ORDER_MACHINE_ID, initial: 'a', states: { a: { on: { pay: 'b' } }, b: { type: 'final' } } });

    it('takes a flat machine whose events are API commands and its own timer events', () => {
      const v = defineOrderMachine({ version: 1, machine: base, timers: {}, journal: { OrderPaid: 'pay' } });
      expect(v.statuses).to.deep.equal(['a', 'b']);
      expect(v.initialStatus).to.equal('a');
      expect(v.finals).to.deep.equal(['b']);
    });

    const refused: [string, () => unknown, RegExp][] = [
      ['another machine id', () => defineOrderMachine({ version: 1, machine: setup({}).createMachine({ id: 'other', initial: 'a', states: { a: {} } }), timers: {}, journal: {} }), /id is other/],
      ['an event that is neither a command nor a timer', () => defineOrderMachine({ version: 1, machine: setup({}).createMachine({ id: ORDER_MACHINE_ID, initial: 'a', states: { a: { on: { dance: 'a' } } } }), timers: {}, journal: {} }), /takes dance, which is neither/],
      ['a guard', () => defineOrderMachine({ version: 1, machine: setup({ guards: { ok: () => true } }).createMachine({ id: ORDER_MACHINE_ID, initial: 'a', states: { a: { on: { pay: { target: 'a', guard: 'ok' } } } } }), timers: {}, journal: {} }), /has a guard/],
      ['a timer on a state that does not take its event', () => defineOrderMachine({ version: 1, machine: base, timers: { b: { event: 'late', delay: 'UNPAID_ORDER_TIMEOUT_MS' } }, journal: {} }), /b starts the timer late but does not take it/],
      ['a journal entry naming an event nobody takes', () => defineOrderMachine({ version: 1, machine: base, timers: {}, journal: { OrderPaid: 'accept' } }), /maps OrderPaid to accept/],
    ];
    for (const [what, build, message] of refused) {
      it(`refuses ${what}`, () => {
        expect(build).to.throw(message);
      });
    }
  });

  describe('consumers read events of every version', () => {
    const row = (seq: number, type: string, data: Record<string, unknown>, machineVersion: number, status: string | null): JournalRow =>
      ({ event_id: `00000000-0000-4000-8000-00000000000${seq}`, order_id: input.orderId, seq, type, data, actor: { sub: 'c-1', role: 'customer' }, causation_id: null, at: new Date(Date.UTC(2026, 0, 1, 12, seq)), machine_version: machineVersion, status }) as JournalRow;
    const event = (r: JournalRow): OrderEvent => ({ ...toJournalEntry(r), orderId: r.order_id });

    it('rows journaled before statuses were recorded read version 1\'s table', () => {
      expect(UNRECORDED_STATUS_AFTER).to.deep.equal(STATUS_AFTER);
      expect(toJournalEntry(row(2, 'PaymentTimedOut', {}, 1, null))).to.include({ machineVersion: 1, status: 'cancelled' });
      expect(toJournalEntry(row(2, 'PaymentTimedOut', {}, 2, 'expired'))).to.include({ machineVersion: 2, status: 'expired' });
    });

    it('an order placed on version 1 and timed out on version 2 is expired in every view that shows a status', () => {
      const placed = event(row(1, 'OrderPlaced', { ...input }, 1, null));
      const expired = event(row(2, 'PaymentTimedOut', { reason: 'the order was not paid in time' }, 2, 'expired'));
      let customer: CustomerOrderState | null = null;
      for (const e of [placed, expired]) customer = foldCustomerOrder(customer, e);
      expect(customer!.status).to.equal('expired');
      let store: StoreOrderState | null = null;
      for (const e of [placed, expired]) store = foldStoreOrder(store, e);
      expect(store!.status).to.equal('expired');
      const counts = foldFoodCounts(foldFoodCounts(null, placed).state, expired);
      expect(counts.sign, 'never paid: nothing to take off').to.equal(0);
      const planned = notifierConsumer(() => undefined, 1000).plan([{ orderId: input.orderId, state: null, events: [placed, expired] }]);
      const drafts = JSON.parse(String(planned.effects[0]!.params[0])) as { status: string; seq: number }[];
      expect(drafts.map((d) => [d.seq, d.status])).to.deep.equal([
        [1, 'awaitingPayment'],
        [2, 'expired'],
      ]);
    });

    it('refuses an event type this build does not know (a newer version journaled it): it stays owed', () => {
      const placed = event(row(1, 'OrderPlaced', { ...input }, 1, null));
      const unknown = event(row(2, 'OrderPacked', {}, 3, 'packed'));
      expect(() => foldCustomerOrder(foldCustomerOrder(null, placed), unknown)).to.throw(/OrderPacked \(seq 2, machine version 3\) this build does not know/);
      expect(() => foldFoodCounts(foldFoodCounts(null, placed).state, unknown)).to.throw(/does not know/);
      expect(() => notifierConsumer(() => undefined, 1000).plan([{ orderId: input.orderId, state: null, events: [placed, unknown] }])).to.throw(/does not know/);
    });
  });

  it('version 1 keeps its timers as the chart and the runtime see them', () => {
    expect(orderV1.timerOf('awaitingPayment')).to.deep.equal(ORDER_TIMERS.awaitingPayment);
    expect(orderV1.timerEvents).to.deep.equal(['payment-timeout', 'store-accept-timeout']);
  });
});

function definitionOf(v: OrderMachineVersion) {
  return {
    version: v.version,
    machine: v.machine,
    timers: Object.fromEntries(v.statuses.flatMap((s) => (v.timerOf(s) ? [[s, v.timerOf(s)!]] : []))),
    journal: v.journal,
  };
}

function withMigration(change: Partial<OrderMigration>): OrderMachines {
  return new OrderMachines([orderV1, orderV2], [{ ...migrationV1toV2, ...change }]);
}

function without<T extends Record<string, unknown>>(record: T, key: string): T {
  const { [key]: _, ...rest } = record;
  return rest as T;
}
