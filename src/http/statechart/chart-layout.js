// Layout of a machine graph with elkjs: the sizes of states and labels, the ELK input graph, and
// the positions ELK returns. Text is sized by a fixed estimate, never measured, so the layout does
// not depend on fonts.
import { transitionText } from './chart-graph.js';

const INITIAL_NODE = '__initial__';
const STATE_FONT_SIZE = 16;
const STATE_HEIGHT = 42;
const STATE_PAD_X = 20;
const LABEL_HEIGHT = 18;
const LABEL_PAD_X = 5;
// Sizes the drawing (chart-svg.js) shares with the layout.
export const FINAL_INSET = 4;
export const LABEL_FONT_SIZE = 13;
export const MARGIN = 16;

export const LAYOUT_OPTIONS = Object.freeze({
  'elk.algorithm': 'layered',
  'elk.direction': 'DOWN',
  'elk.edgeRouting': 'ORTHOGONAL',
  'elk.layered.considerModelOrder.strategy': 'NODES_AND_EDGES',
  'elk.layered.nodePlacement.strategy': 'NETWORK_SIMPLEX',
  'elk.layered.spacing.nodeNodeBetweenLayers': '20',
  'elk.layered.spacing.edgeNodeBetweenLayers': '10',
  'elk.layered.spacing.edgeEdgeBetweenLayers': '10',
  'elk.spacing.nodeNode': '30',
  'elk.spacing.edgeNode': '18',
  'elk.spacing.edgeEdge': '14',
  'elk.spacing.edgeLabel': '4',
  'elk.edgeLabels.inline': 'false',
  'elk.padding': `[top=${MARGIN},left=${MARGIN},bottom=${MARGIN},right=${MARGIN}]`,
});

// Advance widths of Helvetica/Arial per 1000 em; unknown characters count as wide.
const SANS_WIDTHS = (() => {
  const widths = new Map();
  const set = (chars, width) => {
    for (const c of chars) widths.set(c, width);
  };
  set('ijl', 222);
  set("ftI' ", 278);
  set('r-()', 333);
  set('cksvxyzJ', 500);
  set('abdeghnopqu0123456789L', 556);
  set('FTZ', 611);
  set('ABEKPSVXY', 667);
  set('CDHNRUw', 722);
  set('GOQ', 778);
  set('mM', 833);
  set('W', 944);
  return widths;
})();

/** Estimated width of `text` in a bold sans-serif face, generous so that wider fonts still fit. */
export function stateTextWidth(text) {
  let units = 0;
  for (const c of text) units += SANS_WIDTHS.get(c) ?? 833;
  return (units / 1000) * STATE_FONT_SIZE * 1.18;
}

/** Width of `text` in the monospace face of edge labels (0.6 em is the common advance). */
export function labelTextWidth(text) {
  return [...text].length * LABEL_FONT_SIZE * 0.62;
}

/**
 * Transitions of the longest path from the initial state without revisiting a state: the main
 * flow, which the layout keeps straight so side exits (cancel, reject) branch off it visibly.
 */
export function mainPath(graph) {
  let best = [];
  const walk = (state, visited, path) => {
    if (path.length > best.length) best = path;
    for (const t of graph.transitions) {
      if (t.source === state && !visited.has(t.target)) {
        walk(t.target, new Set([...visited, t.target]), [...path, t.id]);
      }
    }
  };
  walk(graph.initial, new Set([graph.initial]), []);
  return best;
}

/** The ELK input graph for a machine graph. */
export function toElkGraph(graph) {
  const straight = { 'elk.layered.priority.straightness': '10' };
  const spine = new Set(mainPath(graph));
  const children = [{ id: INITIAL_NODE, width: 14, height: 14 }];
  for (const state of graph.states) {
    if (state.id === INITIAL_NODE) throw new Error(`state id ${INITIAL_NODE} is reserved`);
    children.push({
      id: state.id,
      width: Math.ceil(stateTextWidth(state.id) + 2 * STATE_PAD_X + (state.final ? 2 * FINAL_INSET : 0)),
      height: STATE_HEIGHT,
    });
  }
  const edges = [{ id: INITIAL_NODE, sources: [INITIAL_NODE], targets: [graph.initial], layoutOptions: straight }];
  for (const transition of graph.transitions) {
    const text = transitionText(transition);
    edges.push({
      id: transition.id,
      sources: [transition.source],
      targets: [transition.target],
      ...(spine.has(transition.id) ? { layoutOptions: straight } : {}),
      labels: [
        {
          id: `${transition.id}#label`,
          text,
          width: Math.ceil(labelTextWidth(text) + 2 * LABEL_PAD_X),
          height: LABEL_HEIGHT,
          layoutOptions: { 'elk.edgeLabels.inline': 'true' },
        },
      ],
    });
  }
  return { id: 'root', layoutOptions: { ...LAYOUT_OPTIONS }, children, edges };
}

/** One decimal, never -0: coordinates the layout and the drawing write out. */
export function round(n) {
  const r = Math.round(n * 10) / 10;
  return Object.is(r, -0) ? 0 : r;
}

function sectionPoints(edge) {
  const section = edge.sections?.[0];
  if (!section) throw new Error(`ELK returned no route for edge ${edge.id}`);
  return [section.startPoint, ...(section.bendPoints ?? []), section.endPoint].map((p) => ({
    x: round(p.x),
    y: round(p.y),
  }));
}

/**
 * Lays the graph out with an ELK instance (`new ELK()` from elkjs's `lib/elk.bundled.js`).
 * Returns positions only; `renderSvg` draws them.
 */
export async function layoutChart(elk, graph) {
  const laidOut = await elk.layout(toElkGraph(graph));
  const nodes = new Map(laidOut.children.map((n) => [n.id, n]));
  const edges = new Map(laidOut.edges.map((e) => [e.id, e]));
  const box = (id) => {
    const n = nodes.get(id);
    return { x: round(n.x), y: round(n.y), width: round(n.width), height: round(n.height) };
  };
  const start = box(INITIAL_NODE);
  return {
    width: Math.ceil(laidOut.width),
    height: Math.ceil(laidOut.height),
    start: { cx: round(start.x + start.width / 2), cy: round(start.y + start.height / 2), r: round(start.width / 2) },
    startEdge: sectionPoints(edges.get(INITIAL_NODE)),
    states: graph.states.map((state) => ({ id: state.id, ...box(state.id) })),
    transitions: graph.transitions.map((transition) => {
      const edge = edges.get(transition.id);
      const label = edge.labels[0];
      return {
        id: transition.id,
        points: sectionPoints(edge),
        label: { x: round(label.x), y: round(label.y), width: round(label.width), height: round(label.height) },
      };
    }),
  };
}
