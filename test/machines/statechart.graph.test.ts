import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { expect } from 'chai';
import { initialTransition, setup, transition, type AnyStateMachine } from 'xstate';
import type { ELK } from 'elkjs/lib/elk-api.js';
import { ORDER_MACHINE_VERSION, ORDER_STATUSES, ORDER_TIMER_EVENTS, allowedCommands, timerOf, orderMachine, sampleEvent, statusOf, type OrderMachineEvent, type OrderSnapshot, type OrderTimerEvent } from '../../src/machines/order/v1.ts';
import { ORDER_COMMANDS, ORDER_MACHINE_ID, type OrderCommand } from '../../src/machines/order/contract.ts';
import { machineGraph, toMermaid } from '../../src/machines/graph.ts';
import { JOURNAL_EVENT_COMMANDS, orderV1 } from '../../src/machines/order/v1.ts';
import { describeState, layoutChart, mainPath, renderSvg, tracePath, type ChartLayout } from '../../src/http/statechart/chart.js';
import { MERMAID_PATH, SVG_PATH, renderStatechartDocs } from '../../scripts/statechart.ts';
import { sampleOrderInput } from '../support/fixtures.ts';

const input = sampleOrderInput({ orderId: 'o-graph' });
const orderGraph = orderV1.graph;

interface Edge {
  source: string;
  command: string;
  target: string;
  guard: string | null;
}

const byKey = (a: Edge, b: Edge) =>
  `${a.source} ${a.command} ${a.target}`.localeCompare(`${b.source} ${b.command} ${b.target}`);

/** Every transition, read from the machine's own state nodes (not from toDirectedGraph). */
function machineEdges(machine: AnyStateMachine): Edge[] {
  const edges: Edge[] = [];
  for (const [key, node] of Object.entries(machine.states)) {
    for (const [eventType, definitions] of node.transitions) {
      for (const definition of definitions) {
        for (const target of definition.target ?? [node]) {
          const guard = definition.guard;
          edges.push({
            source: key,
            command: eventType,
            target: target.key,
            guard: guard === undefined ? null : typeof guard === 'string' ? guard : 'guarded',
          });
        }
      }
    }
  }
  return edges.sort(byKey);
}

function emitted(actions: readonly { type: string; params?: unknown }[]): string[] {
  return actions
    .filter((a) => a.type === 'xstate.emit')
    .map((a) => (a.params as { event: { type: string } }).event.type);
}

type Step = OrderCommand | OrderTimerEvent;
const isTimer = (step: string): step is OrderTimerEvent => (ORDER_TIMER_EVENTS as readonly string[]).includes(step);
const eventOf = (step: Step): OrderMachineEvent => (isTimer(step) ? { type: step } : sampleEvent(step));

/** What the machine takes in this snapshot: the API commands it allows and the timer events it accepts. */
function acceptedSteps(snapshot: OrderSnapshot): Step[] {
  return [...allowedCommands(snapshot), ...ORDER_TIMER_EVENTS.filter((t) => snapshot.can({ type: t }))];
}

/** Runs commands (and timer events) through the machine: the status after each, and the domain events it emitted. */
function run(commands: readonly Step[]): { statuses: string[]; events: string[]; snapshot: OrderSnapshot } {
  let [snapshot, actions] = initialTransition(orderMachine, input);
  const statuses = [statusOf(snapshot)];
  const events = emitted(actions);
  for (const command of commands) {
    expect(snapshot.can(eventOf(command)), `${statuses.at(-1)} accepts ${command}`).to.equal(true);
    [snapshot, actions] = transition(orderMachine, snapshot, eventOf(command));
    statuses.push(statusOf(snapshot));
    events.push(...emitted(actions));
  }
  return { statuses, events, snapshot };
}

/** Every path of commands and timer events from the initial state that visits no state twice, ending anywhere. */
function allSimplePaths(): Step[][] {
  const paths: Step[][] = [];
  const walk = (path: Step[], visited: Set<string>) => {
    paths.push(path);
    const { snapshot } = run(path);
    for (const command of acceptedSteps(snapshot)) {
      const [next] = transition(orderMachine, snapshot, eventOf(command));
      if (!visited.has(statusOf(next))) walk([...path, command], new Set([...visited, statusOf(next)]));
    }
  };
  walk([], new Set([orderMachine.config.initial as string]));
  return paths;
}

function newElk(): ELK {
  const ELKConstructor = createRequire(import.meta.url)('elkjs/lib/elk.bundled.js') as new () => ELK;
  return new ELKConstructor();
}

describe('order machine graph (GET /machines/order)', () => {
  it('names the machine and its version', () => {
    expect(orderGraph.id).to.equal(ORDER_MACHINE_ID);
    expect(orderGraph.version).to.equal(ORDER_MACHINE_VERSION);
    expect(orderGraph.initial).to.equal(orderMachine.config.initial);
  });

  it("has exactly the machine's states, in its order, with its final states marked", () => {
    const states = Object.entries(orderMachine.states).map(([id, node]) => ({ id, final: node.type === 'final' }));
    expect(orderGraph.states).to.deep.equal(states);
    expect(orderGraph.states.map((s) => s.id)).to.deep.equal([...ORDER_STATUSES]);
    expect(orderGraph.states.filter((s) => s.final).map((s) => s.id)).to.have.members(['delivered', 'cancelled', 'rejected']);
  });

  it("has exactly the machine's transitions, with their commands and guards", () => {
    const fromGraph = orderGraph.transitions
      .map(({ source, command, target, guard }) => ({ source, command, target, guard }))
      .sort(byKey);
    expect(fromGraph).to.deep.equal(machineEdges(orderMachine));
    expect(new Set(orderGraph.transitions.map((t) => t.id)).size).to.equal(orderGraph.transitions.length);
  });

  it('offers from each state exactly the commands the machine accepts there, and its timer', () => {
    for (const path of allSimplePaths()) {
      const { snapshot } = run(path);
      const status = statusOf(snapshot);
      const out = orderGraph.transitions.filter((t) => t.source === status);
      expect(out.filter((t) => t.trigger === 'command').map((t) => t.command), `commands out of ${status}`).to.have.members(allowedCommands(snapshot));
      const timer = timerOf(status);
      expect(out.filter((t) => t.trigger === 'timer').map((t) => [t.command, t.after]), `timers of ${status}`).to.deep.equal(
        timer ? [[timer.event, timer.delay]] : [],
      );
      for (const t of out) {
        const [next] = transition(orderMachine, snapshot, eventOf(t.command as Step));
        expect(statusOf(next), `${status} --${t.command}-->`).to.equal(t.target);
      }
    }
  });

  it('draws cancel only out of the states before cooking', () => {
    const cancelFrom = orderGraph.transitions.filter((t) => t.command === 'cancel').map((t) => t.source);
    expect(cancelFrom).to.deep.equal(['awaitingPayment', 'paid', 'accepted']);
  });

  it('names a guard when a transition has one', () => {
    const guarded = setup({ guards: { isReady: () => true } }).createMachine({
      id: 'guarded',
      initial: 'idle',
      states: {
        idle: { on: { go: [{ target: 'busy', guard: 'isReady' }, { target: 'idle' }] } },
        busy: { on: { stop: 'idle' } },
      },
    });
    const graph = machineGraph(guarded, 7, {});
    expect(graph.transitions).to.deep.equal([
      { id: 'idle:go:busy', source: 'idle', target: 'busy', command: 'go', trigger: 'command', after: null, guard: 'isReady' },
      { id: 'idle:go:idle', source: 'idle', target: 'idle', command: 'go', trigger: 'command', after: null, guard: null },
      { id: 'busy:stop:idle', source: 'busy', target: 'idle', command: 'stop', trigger: 'command', after: null, guard: null },
    ]);
    expect(graph).to.include({ id: 'guarded', version: 7, initial: 'idle' });
    expect(toMermaid(graph)).to.include('  idle --> busy: go [isReady]\n');
  });
});

describe('journal event → command mapping', () => {
  it('maps every domain event the machine emits, each to the command whose transition emits it', () => {
    const seen = new Map<string, string | null>();
    for (const path of allSimplePaths()) {
      const { events } = run(path);
      // One event for the placement, then exactly one per transition.
      expect(events, `events of ${path.join(' → ') || 'placement'}`).to.have.length(path.length + 1);
      seen.set(events[0]!, null);
      path.forEach((command, i) => seen.set(events[i + 1]!, command));
    }
    expect(Object.fromEntries(seen)).to.deep.equal(JOURNAL_EVENT_COMMANDS);
    expect(orderGraph.journal).to.deep.equal(JOURNAL_EVENT_COMMANDS);
  });

  it("replaying an order's journal over the graph reaches the states the machine went through", () => {
    const paths = allSimplePaths();
    expect(paths.length).to.be.greaterThan(6);
    for (const path of paths) {
      const { statuses, events } = run(path);
      const traced = tracePath(orderGraph, events);
      expect(traced.states, path.join(' → ') || 'placement').to.deep.equal(statuses);
      expect(traced.state).to.equal(statuses.at(-1));
      expect(traced.transitions.map((id) => orderGraph.transitions.find((t) => t.id === id)?.command)).to.deep.equal(path);
    }
  });

  it('marks journal events that match no transition instead of guessing', () => {
    const traced = tracePath(orderGraph, ['OrderPlaced', 'OrderAccepted', 'SomethingNew', 'OrderPaid']);
    expect(traced.states).to.deep.equal(['awaitingPayment', 'paid']);
    expect(traced.steps.map((s) => s.unmatched ?? false)).to.deep.equal([false, true, true, false]);
  });
});

describe('state chart drawing (chart.js)', () => {
  let layout: ChartLayout;
  before(async () => {
    layout = await layoutChart(newElk(), orderGraph);
  });

  const overlap = (a: { x: number; y: number; width: number; height: number }, b: typeof a) =>
    a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height;

  it('places every state and every transition label without overlaps', () => {
    expect(layout.states.map((s) => s.id)).to.deep.equal(orderGraph.states.map((s) => s.id));
    expect(layout.transitions.map((t) => t.id)).to.deep.equal(orderGraph.transitions.map((t) => t.id));
    const boxes = [
      ...layout.states.map((s) => ({ name: `state ${s.id}`, ...s })),
      ...layout.transitions.map((t) => ({ name: `label of ${t.id}`, ...t.label })),
    ];
    for (const [i, a] of boxes.entries()) {
      for (const b of boxes.slice(i + 1)) expect(overlap(a, b), `${a.name} overlaps ${b.name}`).to.equal(false);
    }
  });

  it('stacks the main flow from placement to delivery top to bottom', () => {
    const spine = mainPath(orderGraph).map((id) => orderGraph.transitions.find((t) => t.id === id)!.target);
    expect(spine).to.deep.equal(['paid', 'accepted', 'cooking', 'cooked', 'pickedUp', 'delivered']);
    const tops = ['awaitingPayment', ...spine].map((id) => layout.states.find((s) => s.id === id)!.y);
    for (let i = 1; i < tops.length; i += 1) expect(tops[i]).to.be.greaterThan(tops[i - 1]!);
  });

  it('draws every state with a readable label and cancel edges in their own style', () => {
    const svg = renderSvg(orderGraph, layout, { interactive: true });
    for (const state of orderGraph.states) {
      expect(svg).to.include(`data-state="${state.id}"`);
      expect(svg).to.include(`aria-label="${describeState(orderGraph, state.id)}"`);
      expect(svg).to.include(`>${state.id}</text>`);
    }
    expect(svg.match(/class="transition cmd-cancel" data-transition=/g)).to.have.length(3);
    expect(svg.match(/class="state final" data-state=/g)).to.have.length(3);
    expect(svg).to.include('cancel: only from awaitingPayment, paid, accepted');
  });

  it('says in words where a followed order is and what it may do', () => {
    const text = describeState(orderGraph, 'paid', { current: 'paid', visited: ['awaitingPayment'], allowed: ['accept', 'cancel'] });
    expect(text).to.equal(
      'State paid, the order is here now, commands: accept to accepted (allowed now); reject to rejected; cancel to cancelled (allowed now); ⏱ store-accept-timeout to rejected.',
    );
    expect(describeState(orderGraph, 'delivered')).to.equal('State delivered, final state.');
  });
});

describe('docs/order-lifecycle.svg and .mmd', () => {
  it('are what `npm run statechart` generates from the machine now (run it if this fails)', async () => {
    const { svg, mermaid } = await renderStatechartDocs();
    const [svgOnDisk, mermaidOnDisk] = await Promise.all([readFile(SVG_PATH, 'utf8'), readFile(MERMAID_PATH, 'utf8')]);
    expect(svgOnDisk === svg, 'docs/order-lifecycle.svg is stale: run `npm run statechart`').to.equal(true);
    expect(mermaidOnDisk === mermaid, 'docs/order-lifecycle.mmd is stale: run `npm run statechart`').to.equal(true);
  });

  it('are the same on every run', async () => {
    const [a, b] = [await renderStatechartDocs(), await renderStatechartDocs()];
    expect(a).to.deep.equal(b);
  });

  it('Mermaid has one line per transition and marks the final states', () => {
    const mermaid = toMermaid(orderGraph);
    for (const t of orderGraph.transitions) {
      const label = t.after === null ? t.command : `${t.command} (after ${t.after})`;
      expect(mermaid).to.include(`  ${t.source} --> ${t.target}: ${label}\n`);
    }
    expect(mermaid).to.include('  [*] --> awaitingPayment\n');
    expect(mermaid).to.include('  class delivered,cancelled,rejected final\n');
  });
});
