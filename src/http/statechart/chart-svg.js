// SVG drawing of a laid-out machine graph (positions from chart-layout.js).
import { describeState, sourcesOf, transitionText } from './chart-graph.js';
import { FINAL_INSET, LABEL_FONT_SIZE, MARGIN, labelTextWidth, round } from './chart-layout.js';

const ARROW_LENGTH = 9;
const ARROW_HALF_WIDTH = 5;
const CORNER_RADIUS = 6;
const LEGEND_LINE = 24;
const LEGEND_FONT_SIZE = 14;

function escapeXml(text) {
  return String(text)
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;');
}

function classToken(text) {
  return String(text).replace(/[^A-Za-z0-9_-]/g, '_');
}

/** An orthogonal polyline with rounded corners, stopping `trim` short of its last point. */
function pathData(points, trim) {
  const pts = points.map((p) => ({ ...p }));
  const last = pts[pts.length - 1];
  const prev = pts[pts.length - 2];
  const len = Math.hypot(last.x - prev.x, last.y - prev.y) || 1;
  const cut = Math.min(trim, len);
  last.x -= ((last.x - prev.x) / len) * cut;
  last.y -= ((last.y - prev.y) / len) * cut;
  let d = `M${round(pts[0].x)} ${round(pts[0].y)}`;
  for (let i = 1; i < pts.length - 1; i += 1) {
    const a = pts[i - 1];
    const b = pts[i];
    const c = pts[i + 1];
    const inLen = Math.hypot(b.x - a.x, b.y - a.y);
    const outLen = Math.hypot(c.x - b.x, c.y - b.y);
    const r = Math.min(CORNER_RADIUS, inLen / 2, outLen / 2);
    if (r < 0.5) {
      d += ` L${round(b.x)} ${round(b.y)}`;
      continue;
    }
    const p1 = { x: b.x - ((b.x - a.x) / inLen) * r, y: b.y - ((b.y - a.y) / inLen) * r };
    const p2 = { x: b.x + ((c.x - b.x) / outLen) * r, y: b.y + ((c.y - b.y) / outLen) * r };
    d += ` L${round(p1.x)} ${round(p1.y)} Q${round(b.x)} ${round(b.y)} ${round(p2.x)} ${round(p2.y)}`;
  }
  d += ` L${round(last.x)} ${round(last.y)}`;
  return d;
}

function arrowData(points) {
  const tip = points[points.length - 1];
  const from = points[points.length - 2];
  const len = Math.hypot(tip.x - from.x, tip.y - from.y) || 1;
  const ux = (tip.x - from.x) / len;
  const uy = (tip.y - from.y) / len;
  const bx = tip.x - ux * ARROW_LENGTH;
  const by = tip.y - uy * ARROW_LENGTH;
  const left = { x: bx - uy * ARROW_HALF_WIDTH, y: by + ux * ARROW_HALF_WIDTH };
  const right = { x: bx + uy * ARROW_HALF_WIDTH, y: by - ux * ARROW_HALF_WIDTH };
  return `M${round(tip.x)} ${round(tip.y)} L${round(left.x)} ${round(left.y)} L${round(right.x)} ${round(right.y)} Z`;
}

function legendItems(graph) {
  const items = [
    { kind: 'start', text: `start: a new order is ${graph.initial}` },
    { kind: 'transition', text: 'transition, labelled with its API command' },
  ];
  const cancelFrom = sourcesOf(graph, 'cancel');
  if (cancelFrom.length > 0) {
    items.push({ kind: 'cancel', text: `cancel: only from ${cancelFrom.join(', ')}` });
  }
  const timers = graph.transitions.filter((t) => t.trigger === 'timer');
  if (timers.length > 0) {
    const delays = [...new Set(timers.map((t) => t.after))].join(', ');
    items.push({ kind: 'timer', text: `⏱ timer: the service raises it after ${delays}` });
  }
  if (graph.states.some((s) => s.final)) items.push({ kind: 'final', text: 'final state: the order is over' });
  return items;
}

function renderLegend(items, top) {
  const out = [`<g class="legend" transform="translate(${MARGIN} ${top})">`];
  items.forEach((item, i) => {
    const y = i * LEGEND_LINE + LEGEND_LINE / 2;
    let sample;
    switch (item.kind) {
      case 'start':
        sample = `<circle class="start" cx="15" cy="${y}" r="6"/>`;
        break;
      case 'final':
        sample =
          `<g class="state final"><rect class="outer" x="1" y="${y - 9}" width="28" height="18" rx="7"/>` +
          `<rect class="inner" x="4" y="${y - 6}" width="22" height="12" rx="4"/></g>`;
        break;
      default: {
        const cls = item.kind === 'cancel' ? 'transition cmd-cancel' : item.kind === 'timer' ? 'transition timer' : 'transition';
        sample =
          `<g class="${cls}"><path class="edge" d="M0 ${y} L22 ${y}"/>` +
          `<path class="arrowhead" d="${arrowData([{ x: 0, y }, { x: 30, y }])}"/></g>`;
      }
    }
    out.push(`<g class="legend-item legend-${item.kind}">${sample}<text x="40" y="${y}" dy="0.35em">${escapeXml(item.text)}</text></g>`);
  });
  out.push('</g>');
  return out.join('');
}

/**
 * SVG markup of a laid-out graph. `options.css` embeds a stylesheet (for a stand-alone file);
 * `options.interactive` makes states focusable for keyboard and screen-reader users.
 */
export function renderSvg(graph, layout, options = {}) {
  const { css, interactive = false } = options;
  const finals = new Set(graph.states.filter((s) => s.final).map((s) => s.id));
  const byId = new Map(graph.transitions.map((t) => [t.id, t]));
  const items = legendItems(graph);
  const legendTop = layout.height;
  const legendWidth = Math.max(...items.map((it) => 40 + labelTextWidth(it.text) * (LEGEND_FONT_SIZE / LABEL_FONT_SIZE)));
  const width = Math.ceil(Math.max(layout.width, legendWidth + 2 * MARGIN));
  const height = Math.ceil(legendTop + items.length * LEGEND_LINE + MARGIN);
  const title = `State chart of the ${graph.id} machine, version ${graph.version}`;
  const desc =
    `${graph.states.length} states and ${graph.transitions.length} transitions. ` +
    `A new order starts in ${graph.initial}. ` +
    graph.states.map((s) => describeState(graph, s.id)).join(' ');

  const out = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" class="statechart" viewBox="0 0 ${width} ${height}" ` +
      `width="${width}" height="${height}" role="group" aria-labelledby="statechart-title statechart-desc" ` +
      `data-machine="${escapeXml(graph.id)}" data-version="${escapeXml(graph.version)}">`,
  );
  out.push(`<title id="statechart-title">${escapeXml(title)}</title>`);
  out.push(`<desc id="statechart-desc">${escapeXml(desc)}</desc>`);
  if (css) out.push(`<style>${css.trim()}</style>`);
  out.push(`<rect class="background" x="0" y="0" width="${width}" height="${height}"/>`);

  out.push('<g class="transitions" aria-hidden="true">');
  out.push(
    `<g class="transition start-edge"><circle class="start" cx="${layout.start.cx}" cy="${layout.start.cy}" r="${layout.start.r}"/>` +
      `<path class="edge" d="${pathData(layout.startEdge, ARROW_LENGTH - 1)}"/>` +
      `<path class="arrowhead" d="${arrowData(layout.startEdge)}"/></g>`,
  );
  for (const laid of layout.transitions) {
    const t = byId.get(laid.id);
    const text = transitionText(t);
    const { label } = laid;
    out.push(
      `<g class="transition cmd-${classToken(t.command)}${t.trigger === 'timer' ? ' timer' : ''}" data-transition="${escapeXml(t.id)}" ` +
        `data-command="${escapeXml(t.command)}" data-source="${escapeXml(t.source)}" data-target="${escapeXml(t.target)}">` +
        `<path class="edge" d="${pathData(laid.points, ARROW_LENGTH - 1)}"/>` +
        `<path class="arrowhead" d="${arrowData(laid.points)}"/>` +
        `<g class="edge-label"><rect x="${label.x}" y="${label.y}" width="${label.width}" height="${label.height}" rx="3"/>` +
        `<text x="${round(label.x + label.width / 2)}" y="${round(label.y + label.height / 2)}" text-anchor="middle" dy="0.35em">${escapeXml(text)}</text></g>` +
        `</g>`,
    );
  }
  out.push('</g>');

  out.push(`<g class="states"${interactive ? ' role="list" aria-label="States"' : ''}>`);
  for (const s of layout.states) {
    const final = finals.has(s.id);
    const classes = ['state', final ? 'final' : '', s.id === graph.initial ? 'initial' : ''].filter(Boolean);
    const a11y = interactive
      ? ` tabindex="0" role="listitem" aria-label="${escapeXml(describeState(graph, s.id))}"`
      : '';
    const inner = final
      ? `<rect class="inner" x="${FINAL_INSET}" y="${FINAL_INSET}" width="${round(s.width - 2 * FINAL_INSET)}" ` +
        `height="${round(s.height - 2 * FINAL_INSET)}" rx="${10 - FINAL_INSET}"/>`
      : '';
    out.push(
      `<g class="${classes.join(' ')}" data-state="${escapeXml(s.id)}" transform="translate(${s.x} ${s.y})"${a11y}>` +
        `<title>${escapeXml(describeState(graph, s.id))}</title>` +
        `<rect class="outer" x="0" y="0" width="${s.width}" height="${s.height}" rx="10"/>${inner}` +
        `<text x="${round(s.width / 2)}" y="${round(s.height / 2)}" text-anchor="middle" dy="0.35em">${escapeXml(s.id)}</text></g>`,
    );
  }
  out.push('</g>');
  out.push(renderLegend(items, legendTop));
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
