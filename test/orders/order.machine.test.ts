import { expect } from 'chai';
import { initialTransition, transition } from 'xstate';
import { ORDER_STATUSES, ORDER_TIMER_EVENTS, accepts, allowedCommands, orderMachine, orderV1, sampleEvent, statusOf, transitionOrder, type OrderMachineEvent, type OrderSnapshot, type OrderStatus } from '../../src/machines/order/v1.ts';
import { ORDER_COMMANDS, type OrderCommand } from '../../src/machines/order/contract.ts';
import { emittedEvents } from '../../src/machines/order/define.ts';
import { sampleOrderInput } from '../support/fixtures.ts';

const input = sampleOrderInput();

/** The lifecycle as the issue specifies it, written out independently of the machine. */
const SPEC: Record<OrderStatus, Partial<Record<OrderCommand, OrderStatus>>> = {
  awaitingPayment: { pay: 'paid', cancel: 'cancelled' },
  paid: { accept: 'accepted', reject: 'rejected', cancel: 'cancelled' },
  accepted: { 'start-cooking': 'cooking', cancel: 'cancelled' },
  cooking: { 'finish-cooking': 'cooked' },
  cooked: { pick: 'pickedUp' },
  pickedUp: { 'confirm-delivery': 'delivered' },
  delivered: {},
  cancelled: {},
  rejected: {},
};

/** A path of commands from placement to each status. */
const PATH_TO: Record<OrderStatus, OrderCommand[]> = {
  awaitingPayment: [],
  paid: ['pay'],
  accepted: ['pay', 'accept'],
  cooking: ['pay', 'accept', 'start-cooking'],
  cooked: ['pay', 'accept', 'start-cooking', 'finish-cooking'],
  pickedUp: ['pay', 'accept', 'start-cooking', 'finish-cooking', 'pick'],
  delivered: ['pay', 'accept', 'start-cooking', 'finish-cooking', 'pick', 'confirm-delivery'],
  cancelled: ['cancel'],
  rejected: ['pay', 'reject'],
};

function event(type: OrderCommand): OrderMachineEvent {
  switch (type) {
    case 'pay':
      return { type, chargeId: 'ch-1' };
    case 'reject':
      return { type, reason: 'out of rice' };
    case 'cancel':
      return { type, reason: 'changed my mind' };
    case 'pick':
      return { type, riderId: 'r-1' };
    default:
      return sampleEvent(type);
  }
}

/** Given the order reached `status`, when `command` is sent, then this snapshot and these events. */
function given(status: OrderStatus): OrderSnapshot {
  let [snapshot] = initialTransition(orderMachine, input);
  for (const command of PATH_TO[status]) [snapshot] = transition(orderMachine, snapshot, event(command));
  expect(statusOf(snapshot), `setup reaches ${status}`).to.equal(status);
  return snapshot;
}

describe('order machine', () => {
  it('has exactly the statuses of the API, with delivered, cancelled and rejected final', () => {
    expect(Object.keys(orderMachine.states)).to.have.members([...ORDER_STATUSES]);
    const finals = Object.values(orderMachine.states).filter((s) => s.type === 'final').map((s) => s.key);
    expect(finals).to.have.members(['delivered', 'cancelled', 'rejected']);
  });

  it('starts awaiting payment and announces OrderPlaced with the priced items', () => {
    const [snapshot, actions] = initialTransition(orderMachine, input);
    expect(statusOf(snapshot)).to.equal('awaitingPayment');
    expect(emittedEvents(actions)).to.deep.equal([{ type: 'OrderPlaced', data: input }]);
  });

  it('answers what each state accepts from the definition exactly as the machine does (can)', () => {
    for (const status of ORDER_STATUSES) {
      const snapshot = given(status);
      for (const type of [...ORDER_COMMANDS, ...ORDER_TIMER_EVENTS]) {
        const event: OrderMachineEvent = ORDER_COMMANDS.includes(type as OrderCommand) ? sampleEvent(type as OrderCommand) : ({ type } as OrderMachineEvent);
        expect(accepts(snapshot, type), `${status} accepts ${type}`).to.equal(snapshot.can(event));
      }
      expect(allowedCommands(snapshot)).to.deep.equal(ORDER_COMMANDS.filter((c) => snapshot.can(sampleEvent(c))));
    }
  });

  it("the runtime's transition gives exactly what XState's transition() gives, for every state and event", () => {
    let compared = 0;
    for (const status of ORDER_STATUSES) {
      for (const type of [...ORDER_COMMANDS, ...ORDER_TIMER_EVENTS]) {
        const event: OrderMachineEvent = ORDER_COMMANDS.includes(type as OrderCommand) ? sampleEvent(type as OrderCommand) : ({ type } as OrderMachineEvent);
        const snapshot = given(status);
        const [expected, expectedActions] = transition(orderMachine, snapshot, event);
        // Twice: each call has its own actions (nothing left over from the one before).
        for (let i = 0; i < 2; i++) {
          const [next, actions] = transitionOrder(snapshot, event);
          expect(orderMachine.getPersistedSnapshot(next), `${status} --${type}-->`).to.deep.equal(orderMachine.getPersistedSnapshot(expected));
          expect(emittedEvents(actions), `${status} --${type}--> emits`).to.deep.equal(emittedEvents(expectedActions));
          expect(actions.map((a) => a.type)).to.deep.equal(expectedActions.map((a) => a.type));
        }
        if (accepts(snapshot, type)) compared += 1;
      }
    }
    expect(compared, 'transitions taken').to.be.greaterThan(10);
  });

  it("stores exactly what XState's getPersistedSnapshot() gives, key for key, in every state, restored or not", () => {
    for (const status of ORDER_STATUSES) {
      const live = given(status);
      const restored = orderV1.restore(JSON.parse(JSON.stringify(orderV1.persist(live)))) as OrderSnapshot;
      for (const snapshot of [live, restored]) {
        const expected = orderMachine.getPersistedSnapshot(snapshot);
        expect(orderV1.persist(snapshot), status).to.deep.equal(expected);
        // What the row holds: the same text, the keys in the same order.
        expect(JSON.stringify(orderV1.persist(snapshot)), status).to.equal(JSON.stringify(expected));
      }
      expect(statusOf(restored)).to.equal(status);
    }
  });

  for (const status of ORDER_STATUSES) {
    describe(`in ${status}`, () => {
      it(`allows exactly ${Object.keys(SPEC[status]).join(', ') || 'nothing'}`, () => {
        expect(allowedCommands(given(status))).to.have.members(Object.keys(SPEC[status]));
      });

      for (const command of ORDER_COMMANDS) {
        const target = SPEC[status][command];
        if (target) {
          it(`${command} moves to ${target} and emits exactly one domain event`, () => {
            const [next, actions] = transition(orderMachine, given(status), event(command));
            expect(statusOf(next)).to.equal(target);
            expect(emittedEvents(actions)).to.have.length(1);
          });
        } else {
          it(`refuses ${command}`, () => {
            const before = given(status);
            expect(before.can(event(command))).to.equal(false);
            const [next, actions] = transition(orderMachine, before, event(command));
            expect(statusOf(next)).to.equal(status);
            expect(actions).to.deep.equal([]);
          });
        }
      }
    });
  }

  describe('effects as data', () => {
    it('records the charge on pay, and owes a refund when a paid order is cancelled', () => {
      const [next, actions] = transition(orderMachine, given('paid'), event('cancel'));
      expect(next.context.cancelReason).to.equal('changed my mind');
      expect(emittedEvents(actions)).to.deep.equal([
        { type: 'OrderCancelled', data: { reason: 'changed my mind', refund: { chargeId: 'ch-1', amount: 18000 } } },
      ]);
    });

    it('owes no refund when an unpaid order is cancelled', () => {
      const [, actions] = transition(orderMachine, given('awaitingPayment'), event('cancel'));
      expect(emittedEvents(actions)).to.deep.equal([{ type: 'OrderCancelled', data: { reason: 'changed my mind', refund: null } }]);
    });

    it('owes a refund when the store rejects, and keeps the reason', () => {
      const [next, actions] = transition(orderMachine, given('paid'), event('reject'));
      expect(next.context.rejectReason).to.equal('out of rice');
      expect(emittedEvents(actions)).to.deep.equal([
        { type: 'OrderRejected', data: { reason: 'out of rice', refund: { chargeId: 'ch-1', amount: 18000 } } },
      ]);
    });

    it('records the rider who picked the order and offers the area when cooked', () => {
      const [cooked, cookedActions] = transition(orderMachine, given('cooking'), event('finish-cooking'));
      expect(emittedEvents(cookedActions)).to.deep.equal([{ type: 'CookingFinished', data: { area: 'gangnam' } }]);
      const [picked] = transition(orderMachine, cooked, event('pick'));
      expect(picked.context.riderId).to.equal('r-1');
    });
  });

  describe('snapshot round trip', () => {
    for (const status of ORDER_STATUSES) {
      it(`restores ${status} from JSON with the same status, context and allowed commands`, () => {
        const before = given(status);
        const json = JSON.parse(JSON.stringify(orderMachine.getPersistedSnapshot(before)));
        const after = orderMachine.resolveState(json);
        expect(statusOf(after)).to.equal(status);
        expect(after.context).to.deep.equal(before.context);
        expect(allowedCommands(after)).to.deep.equal(allowedCommands(before));
        for (const command of allowedCommands(before)) {
          expect(statusOf(transition(orderMachine, after, event(command))[0])).to.equal(SPEC[status][command]);
        }
      });
    }
  });
});
