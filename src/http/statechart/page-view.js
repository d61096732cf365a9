// What the state chart page shows: its elements, the error box, the followed order's marks on the
// chart and the order's panel. `chart` is what the server drew: `{ graph, svg, versions }`.
import { describeState } from './chart.js';

export const $ = (id) => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`page is missing #${id}`);
  return el;
};

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const child of children) node.append(child);
  return node;
}

export function showError(title, hint, details) {
  const box = $('error');
  box.replaceChildren(el('strong', {}, title));
  if (hint) box.append(el('p', {}, hint));
  if (details) box.append(el('pre', {}, details));
  box.hidden = false;
}

export function clearError() {
  $('error').hidden = true;
  $('error').replaceChildren();
}

/** Marks the followed order's position on the chart; `null` clears it. */
export function highlight({ graph, svg }, live) {
  svg.classList.toggle('live', live !== null);
  svg.querySelector('.start-edge')?.classList.toggle('visited', live !== null);
  const visited = new Set(live?.visited ?? []);
  const trodden = new Set(live?.transitions ?? []);
  for (const node of svg.querySelectorAll('.state[data-state]')) {
    const id = node.dataset.state;
    const current = live?.current === id;
    node.classList.toggle('current', current);
    node.classList.toggle('visited', !current && visited.has(id));
    if (current) node.setAttribute('aria-current', 'step');
    else node.removeAttribute('aria-current');
    const label = describeState(graph, id, live ?? undefined);
    node.setAttribute('aria-label', label);
    const title = node.querySelector('title');
    if (title) title.textContent = label;
  }
  for (const edge of svg.querySelectorAll('.transition[data-transition]')) {
    const allowed =
      live !== null && edge.dataset.source === live.current && live.allowed.includes(edge.dataset.command);
    edge.classList.toggle('allowed', allowed);
    edge.classList.toggle('visited', trodden.has(edge.dataset.transition));
  }
}

function timeOf(at) {
  const date = new Date(at);
  if (Number.isNaN(date.getTime())) return el('span', { class: 'when' }, String(at ?? ''));
  return el('time', { class: 'when', datetime: date.toISOString(), title: date.toLocaleString() }, date.toLocaleTimeString());
}

/** Fills the order's panel: its state, what it may do now, and the path its journal traced. */
export function showOrder({ graph }, order, events, trace) {
  const final = graph.states.find((s) => s.id === order.status)?.final ?? false;
  $('order').hidden = false;
  $('order-summary').textContent = final
    ? `Order ${order.id} is ${order.status}: a final state, nothing more will happen.`
    : `Order ${order.id} is ${order.status}.`;
  $('order-state').replaceChildren(el('code', {}, order.status));
  const allowed = order.allowed.map((c) => el('span', { class: `command cmd-${c}` }, c));
  $('order-allowed').replaceChildren(...(allowed.length > 0 ? allowed : ['nothing']));
  $('order-version').textContent = String(order.version);
  $('order-machine').textContent = `version ${order.machineVersion}`;
  $('order-checked').textContent = new Date().toLocaleTimeString();
  const items = trace.steps.map((step, i) => {
    const event = events[i];
    const text = step.unmatched ? `${step.type} (not on the chart)` : `${step.state} ← ${step.type}`;
    return el('li', {}, el('code', {}, text), ' ', timeOf(event?.at));
  });
  $('order-path').replaceChildren(...items);
  document.title = `${order.status} · order ${order.id} · Baedal`;
}
