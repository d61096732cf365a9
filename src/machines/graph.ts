import type { AnyStateMachine } from 'xstate';
import { toDirectedGraph, type DirectedGraphNode } from 'xstate/graph';

/**
 * A machine version as plain data, for `GET /machines/order`, the state chart page and the
 * generated docs. Derived from the machine definition on every start, so it cannot drift.
 */
export interface MachineGraph {
  id: string;
  version: number;
  /** Key of the state a new order starts in. */
  initial: string;
  /** In the order the machine declares them. */
  states: MachineGraphState[];
  /** In the order the machine declares them, state by state. */
  transitions: MachineGraphTransition[];
  /**
   * Journal event type → the command whose transition records it (`null`: the event that
   * creates the order in the initial state). Lets a reader of the journal replay the path.
   */
  journal: Record<string, string | null>;
}

export interface MachineGraphState {
  /** The state's key, which is also the order's `status` while in it. */
  id: string;
  final: boolean;
}

export interface MachineGraphTransition {
  /** `source:command:target`, unique within the graph. */
  id: string;
  source: string;
  target: string;
  /** The event that takes this transition: an API command, or the event a durable timer raises. */
  command: string;
  /** `command` when a caller sends it through the API, `timer` when a durable timer raises it. */
  trigger: 'command' | 'timer';
  /** For a timer: the configuration variable naming its delay; otherwise null. */
  after: string | null;
  /** Name of the guard that must hold, or null when the transition is unguarded. */
  guard: string | null;
}

type AnyTransition = DirectedGraphNode['edges'][number]['transition'];

function guardName(guard: AnyTransition['guard']): string | null {
  if (guard === undefined) return null;
  if (typeof guard === 'string') return guard;
  if (typeof guard === 'function') return guard.name || 'inline guard';
  return guard.type;
}

/** Builds the graph of a flat machine (no nested states: the chart does not draw them). */
export function machineGraph(
  machine: AnyStateMachine,
  version: number,
  journal: Record<string, string | null>,
  timers: Record<string, string> = {},
): MachineGraph {
  const root = toDirectedGraph(machine);
  const initial = machine.root.initial?.target[0]?.key;
  if (initial === undefined) throw new Error(`machine ${machine.id} has no initial state`);

  const states: MachineGraphState[] = [];
  const transitions: MachineGraphTransition[] = [];
  for (const node of root.children) {
    const { stateNode } = node;
    if (node.children.length > 0) {
      throw new Error(`state ${stateNode.id} has child states; the chart only draws flat machines`);
    }
    states.push({ id: stateNode.key, final: stateNode.type === 'final' });
    for (const edge of node.edges) {
      const base = `${edge.source.key}:${edge.transition.eventType}:${edge.target.key}`;
      let id = base;
      for (let n = 2; transitions.some((t) => t.id === id); n += 1) id = `${base}:${n}`;
      transitions.push({
        id,
        source: edge.source.key,
        target: edge.target.key,
        command: edge.transition.eventType,
        trigger: edge.transition.eventType in timers ? 'timer' : 'command',
        after: timers[edge.transition.eventType] ?? null,
        guard: guardName(edge.transition.guard),
      });
    }
  }
  return { id: machine.id, version, initial, states, transitions, journal: { ...journal } };
}

/** Mermaid `stateDiagram-v2` source of a machine graph (for renderers that speak Mermaid). */
export function toMermaid(graph: MachineGraph): string {
  const lines = [
    '---',
    `title: ${graph.id} state machine, version ${graph.version}`,
    '---',
    `%% Generated from src/machines/order/v${graph.version}.ts by \`npm run statechart\`; do not edit.`,
    'stateDiagram-v2',
    '  direction TB',
    `  [*] --> ${graph.initial}`,
  ];
  for (const t of graph.transitions) {
    const event = t.after === null ? t.command : `${t.command} (after ${t.after})`;
    const label = t.guard === null ? event : `${event} [${t.guard}]`;
    lines.push(`  ${t.source} --> ${t.target}: ${label}`);
  }
  const finals = graph.states.filter((s) => s.final).map((s) => s.id);
  for (const id of finals) lines.push(`  ${id} --> [*]`);
  if (finals.length > 0) {
    lines.push('  classDef final stroke-width:3px,font-weight:bold');
    lines.push(`  class ${finals.join(',')} final`);
  }
  return `${lines.join('\n')}\n`;
}
