// Layout and SVG drawing of a machine graph (the JSON of `GET /machines/order`).
// Plain ES modules with no imports but each other: the browser page and `npm run statechart` (Node)
// both run them, with the same elkjs build, so the page and docs/order-lifecycle.svg are the same
// picture. This module is what both import (typed by chart.d.ts); the work is done in
// chart-layout.js (sizes and the elkjs layout), chart-svg.js (drawing) and chart-graph.js (what the
// graph says: transition labels, an order's path, a state described for screen readers).
export { LAYOUT_OPTIONS, labelTextWidth, layoutChart, mainPath, stateTextWidth, toElkGraph } from './chart-layout.js';
export { describeState, sourcesOf, tracePath } from './chart-graph.js';
export { renderSvg } from './chart-svg.js';
