// What a machine graph (the JSON of `GET /machines/order`) says, in words and paths: the text of a
// transition, the path an order's journal took, and a state described for screen readers.

/** A transition's label: its command (⏱ for a timer) and guard. */
export function transitionText(transition) {
  const event = transition.trigger === 'timer' ? `⏱ ${transition.command}` : transition.command;
  return transition.guard === null ? event : `${event} [${transition.guard}]`;
}

/** Replays journal event types over the graph: the states and transitions an order went through. */
export function tracePath(graph, eventTypes) {
  let state = graph.initial;
  const states = [state];
  const transitions = [];
  const steps = [];
  for (const type of eventTypes) {
    const command = Object.hasOwn(graph.journal, type) ? graph.journal[type] : undefined;
    if (command === null) {
      steps.push({ type, transition: null, state });
      continue;
    }
    const transition =
      command === undefined ? undefined : graph.transitions.find((t) => t.source === state && t.command === command);
    if (transition === undefined) {
      steps.push({ type, transition: null, state, unmatched: true });
      continue;
    }
    transitions.push(transition.id);
    state = transition.target;
    states.push(state);
    steps.push({ type, transition: transition.id, state });
  }
  return { state, states, transitions, steps };
}

/** States from which `command` is accepted, in machine order. */
export function sourcesOf(graph, command) {
  return [...new Set(graph.transitions.filter((t) => t.command === command).map((t) => t.source))];
}

/** What a screen reader says for a state; `live` adds an order's position. */
export function describeState(graph, stateId, live) {
  const state = graph.states.find((s) => s.id === stateId);
  const parts = [`State ${stateId}`];
  if (stateId === graph.initial) parts.push('initial state');
  if (state?.final) parts.push('final state');
  if (live?.current === stateId) parts.push('the order is here now');
  else if (live?.visited?.includes(stateId)) parts.push('the order passed through here');
  const outgoing = graph.transitions.filter((t) => t.source === stateId);
  if (outgoing.length > 0) {
    const list = outgoing.map((t) => {
      const allowed = live?.current === stateId && live.allowed?.includes(t.command) ? ' (allowed now)' : '';
      return `${transitionText(t)} to ${t.target}${allowed}`;
    });
    parts.push(`commands: ${list.join('; ')}`);
  } else if (!state?.final) {
    parts.push('no commands');
  }
  return `${parts.join(', ')}.`;
}
