import { expect } from 'chai';
import { getShortestPaths, getSimplePaths } from 'xstate/graph';
import { allowedCommands, orderMachine, sampleEvent, statusOf, type OrderMachineEvent, type OrderSnapshot } from '../../src/machines/order/v1.ts';
import { ORDER_COMMANDS, type OrderCommand, type OrderInput } from '../../src/machines/order/contract.ts';
import { commandRequest, eventually, sharedSystem, type TestSystem } from '../support/system.ts';

const input: OrderInput = {
  orderId: 'model',
  customerId: 'c',
  storeId: 's',
  items: [],
  total: 1,
  address: { area: 'a', line: 'l' },
};

const traversal = {
  input,
  events: ORDER_COMMANDS.map(sampleEvent) as OrderMachineEvent[],
  // Paths differ by status, not by context details such as ids.
  serializeState: (s: OrderSnapshot) => String(s.value),
};

/** A path's steps without the initial `xstate.init` step: the commands sent after placing the order. */
const commandSteps = <S extends { event: { type: string } }>(steps: S[]) => steps.filter((s) => s.event.type !== 'xstate.init');
const describePath = (steps: { event: { type: string } }[]) => commandSteps(steps).map((s) => s.event.type).join(' → ') || '(placed)';


/** Paths generated from the machine itself, each driven through the real HTTP API. */
describe('model-based: every path of the order machine through the HTTP API', () => {
  let sys: TestSystem;
  before(async () => {
    sys = await sharedSystem();
    await sys.resetGateway();
  });

  const simplePaths = getSimplePaths(orderMachine, traversal);
  const shortestPaths = getShortestPaths(orderMachine, traversal);

  it('the generated paths cover every command transition of the machine', () => {
    const covered = new Set<string>();
    for (const path of simplePaths) {
      let from = 'awaitingPayment';
      for (const step of commandSteps(path.steps)) {
        covered.add(`${from} ${step.event.type}`);
        from = statusOf(step.state);
      }
    }
    // Timer transitions are raised by the service, not sent through the API: test/events/saga.timers.test.ts drives them.
    const commands = new Set<string>(ORDER_COMMANDS);
    const all = Object.values(orderMachine.states).flatMap((node) =>
      Object.keys(node.on)
        .filter((event) => commands.has(event))
        .map((event) => `${node.key} ${event}`),
    );
    expect(all.length).to.be.greaterThan(0);
    expect([...covered].sort()).to.deep.equal(all.sort());
  });

  for (const path of simplePaths) {
    it(`follows ${describePath(path.steps)} to ${statusOf(path.state)}`, async () => {
      const p = await sys.newParties();
      const placed = await sys.placeOrder(p);
      expect(placed.status).to.equal('awaitingPayment');
      const steps = commandSteps(path.steps);
      for (const [index, step] of steps.entries()) {
        const command = step.event.type as OrderCommand;
        const res = await sys.request('POST', `/orders/${placed.id}/${command}`, commandRequest(p, command));
        expect(res.status, `${command}: ${JSON.stringify(res.body)}`).to.equal(200);
        expect(res.body.status).to.equal(statusOf(step.state));
        expect(res.body.allowed).to.have.members(allowedCommands(step.state));
        expect(res.body.version).to.equal(index + 2);
      }
      const journal = await sys.request('GET', `/orders/${placed.id}/events`, { token: p.customer });
      expect(journal.body.map((e: { seq: number }) => e.seq)).to.deep.equal(Array.from({ length: steps.length + 1 }, (_, i) => i + 1));
      if (steps.some((s) => s.event.type === 'pick')) {
        const picked = await sys.request('GET', `/orders/${placed.id}`, { token: p.rider });
        expect(picked.body.riderId).to.equal(p.riderId);
      }
      // The customer is notified of every status change, exactly once each.
      await eventually(async () => {
        const feed = await sys.request('GET', '/notifications', { token: p.customer });
        return feed.body.length === steps.length + 1;
      }, 'one notification per status change');
      const paid = steps.some((s) => s.event.type === 'pay');
      const endedEarly = ['cancelled', 'rejected'].includes(statusOf(path.state));
      if (paid && endedEarly) {
        const refund = await eventually(async () => {
          const order = await sys.request('GET', `/orders/${placed.id}`, { token: p.customer });
          return order.body.refund?.status === 'refunded' && order.body.refund;
        }, 'the refund to be made');
        const ledger = await sys.ledger();
        const charges = ledger.charges.filter((c) => c.orderId === placed.id);
        expect(charges).to.have.length(1);
        const refunds = ledger.refunds.filter((r) => r.chargeId === charges[0]!.chargeId);
        expect(refunds.map((r) => r.refundId)).to.deep.equal([refund.refundId]);
        expect(refund.amount).to.equal(placed.total);
      }
    });
  }

  for (const path of shortestPaths) {
    const status = statusOf(path.state);
    const forbidden = ORDER_COMMANDS.filter((c) => !allowedCommands(path.state).includes(c));
    it(`in ${status}, refuses ${forbidden.join(', ')} with 409 and the allowed list`, async () => {
      const p = await sys.newParties();
      const placed = await sys.placeOrder(p);
      const commands = commandSteps(path.steps).map((s) => s.event.type);
      const reached = commands.length > 0 ? await sys.drive(p, placed.id, commands) : placed;
      for (const command of forbidden) {
        const res = await sys.request('POST', `/orders/${placed.id}/${command}`, commandRequest(p, command));
        if (res.status === 404) {
          // A rider cannot see an order that is not cooked and not theirs, so cannot even be told no.
          expect(command).to.equal('pick');
          continue;
        }
        expect(res.status, `${command} in ${status}`).to.equal(409);
        expect(res.body.error.details).to.deep.include({ status, allowed: allowedCommands(path.state) });
      }
      const after = await sys.request('GET', `/orders/${placed.id}`, { token: p.customer });
      expect(after.body.version).to.equal(reached.version);
    });
  }
});
