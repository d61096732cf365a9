import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { Router } from '@koa/router';
import type { ELK } from 'elkjs/lib/elk-api.js';
import type { Context } from 'koa';
import { orderGraph, type MachineGraph } from '../machines/order.graph.ts';
import { cacheable, sendCacheable, type Cacheable } from './cacheable.ts';
import { defineRoute, mountRoutes, ROUTER_OPTIONS, type Route } from './route.ts';
import { MachineGraphSchema, StatechartQuery } from './schemas.ts';
import { layoutChart, renderSvg } from './statechart/chart.js';

/** Served files: URL name → file. Only these; nothing else on disk is reachable. */
const ASSETS: Record<string, { path: string; type: string }> = {
  'page.js': { path: pageFile('page.js'), type: 'text/javascript; charset=utf-8' },
  'chart.js': { path: pageFile('chart.js'), type: 'text/javascript; charset=utf-8' },
  'page.css': { path: pageFile('page.css'), type: 'text/css; charset=utf-8' },
  'chart.css': { path: pageFile('chart.css'), type: 'text/css; charset=utf-8' },
};

function pageFile(name: string): string {
  return fileURLToPath(new URL(`./statechart/${name}`, import.meta.url));
}

// The page loads only same-origin scripts and styles and talks only to this API.
const PAGE_HEADERS = {
  'Content-Security-Policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'Referrer-Policy': 'no-referrer',
  'X-Content-Type-Options': 'nosniff',
};

type Loaded = Cacheable;
const loaded = cacheable;

/** Sends a cacheable body that browsers revalidate (If-None-Match → 304), with the page's headers. */
function send(ctx: Context, type: string, file: Loaded): void {
  ctx.set(PAGE_HEADERS);
  sendCacheable(ctx, type, file);
}

/** Files are read on first request and kept: they change only with a deploy. */
function fileCache(): (path: string) => Loaded {
  const cache = new Map<string, Loaded>();
  return (path) => {
    let hit = cache.get(path);
    if (hit === undefined) {
      hit = loaded(readFileSync(path));
      cache.set(path, hit);
    }
    return hit;
  };
}

function escapeHtml(text: string): string {
  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;');
}

/** Fills one `<!--name-->` marker of the page template; a missing marker is a bug, not a blank. */
function fill(html: string, marker: string, content: string): string {
  const tag = `<!--${marker}-->`;
  if (!html.includes(tag)) throw new Error(`statechart/index.html has no ${tag}`);
  return html.replace(tag, () => content);
}

/**
 * The page with the chart already drawn: the same layout (elkjs) and drawing (chart.js) the
 * browser would run, done once on the server, so the first paint shows the chart and needs no
 * script. The page's script then takes the drawn SVG over for following an order.
 */
export async function renderStatechartPage(graph: MachineGraph = orderGraph): Promise<string> {
  const ElkConstructor = createRequire(import.meta.url)('elkjs/lib/elk.bundled.js') as new () => ELK;
  const layout = await layoutChart(new ElkConstructor(), graph);
  const rows = graph.transitions.map((t) => {
    const command = t.guard === null ? t.command : `${t.command} [${t.guard}]`;
    return `<tr><td><code>${escapeHtml(t.source)}</code></td><td><code>${escapeHtml(command)}</code></td><td><code>${escapeHtml(t.target)}</code></td></tr>`;
  });
  let html = readFileSync(pageFile('index.html'), 'utf8');
  const info =
    `Drawn from the ${graph.id} machine in the code (version ${graph.version}): ` +
    `${graph.states.length} states, ${graph.transitions.length} transitions.`;
  html = fill(html, 'machine-info', escapeHtml(info));
  html = fill(html, 'chart', renderSvg(graph, layout, { interactive: true }).trim());
  html = fill(html, 'transitions', rows.join(''));
  // JSON in a script element: `<` escaped so no string in it can close the element.
  html = fill(html, 'graph', JSON.stringify(graph).replaceAll('<', '\\u003c'));
  return html;
}

/**
 * `GET /machines/order` (the order machine as a graph) and `GET /statechart` (the page that draws
 * it, optionally following one order), as entries of the app's route table so they are in the
 * OpenAPI document. Nothing here holds order data, so nothing needs a token: the page fetches an
 * order with the user's own token.
 */
export function statechartRoutes(): Route[] {
  const graphJson = loaded(Buffer.from(JSON.stringify(orderGraph)));
  // Drawn on the first request and kept (the machine changes only with a deploy); a failure is
  // not kept, so the next request tries again.
  let page: Promise<Loaded> | undefined;
  const drawnPage = (): Promise<Loaded> => {
    if (page === undefined) {
      const drawing = renderStatechartPage().then((html) => loaded(Buffer.from(html)));
      drawing.catch(() => {
        if (page === drawing) page = undefined;
      });
      page = drawing;
    }
    return page;
  };
  return [
    defineRoute({
      method: 'get',
      path: '/machines/order',
      summary: 'The order machine as a graph: states, final states, transitions with their commands and guards, and its version.',
      tag: 'statechart',
      auth: false,
      conditional: true,
      responses: { 200: { description: 'the graph, derived from the machine definition', schema: MachineGraphSchema } },
      errors: [],
      async handle(ctx) {
        send(ctx, 'application/json; charset=utf-8', graphJson);
      },
    }),
    defineRoute({
      method: 'get',
      path: '/statechart',
      summary: 'The order lifecycle drawn as a state chart; with ?orderId= it follows one order live (token in the URL fragment or pasted).',
      tag: 'statechart',
      auth: false,
      query: StatechartQuery,
      conditional: true,
      responses: { 200: { description: 'the page', contentType: 'text/html' } },
      errors: [],
      async handle(ctx) {
        send(ctx, 'text/html; charset=utf-8', await drawnPage());
      },
    }),
  ];
}

/** The page's static assets (its script, the drawing module it shares with the server, styles). */
export function createStatechartAssetsRouter(): Router {
  const router = new Router(ROUTER_OPTIONS);
  const file = fileCache();
  for (const [name, asset] of Object.entries(ASSETS)) {
    router.get(`/statechart/assets/${name}`, (ctx) => {
      // The route template, for the HTTP metrics (they label requests by ctx.state.route).
      ctx.state.route = '/statechart/assets/:name';
      send(ctx, asset.type, file(asset.path));
    });
  }
  return router;
}

/** The chart on its own (routes and assets), for serving it without the rest of the app. */
export function createStatechartRouter(): Router {
  const router = createStatechartAssetsRouter();
  mountRoutes(router, statechartRoutes(), { authSecret: '', bodyLimit: '1kb' });
  return router;
}
