import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { Router } from '@koa/router';
import type { ELK } from 'elkjs/lib/elk-api.js';
import type { Context } from 'koa';
import type { Database } from '../db/pg.ts';
import { DomainError } from '../errors.ts';
import type { MachineGraph } from '../machines/graph.ts';
import { orderMachines, type OrderMachines } from '../machines/order/registry.ts';
import { cacheable, sendCacheable, type Cacheable } from './cacheable.ts';
import { defineRoute, mountRoutes, ROUTER_OPTIONS, type Route } from './route.ts';
import { MachineGraphQuery, StatechartQuery } from './schemas.ts';
import { MachineGraphSchema } from './answer-schemas.ts';
import { layoutChart, renderSvg } from './statechart/chart.js';

/** Served files: URL name → file. Only these; nothing else on disk is reachable. */
const ASSETS: Record<string, { path: string; type: string; what: string }> = {
  'page.js': { path: pageFile('page.js'), type: 'text/javascript', what: "the page's script (following an order)" },
  'page-follow.js': { path: pageFile('page-follow.js'), type: 'text/javascript', what: "the page's polling of the followed order (part of page.js)" },
  'page-view.js': { path: pageFile('page-view.js'), type: 'text/javascript', what: 'what the page shows of the followed order (part of page.js)' },
  'page-address.js': { path: pageFile('page-address.js'), type: 'text/javascript', what: "the page's address and token (part of page.js)" },
  'chart.js': { path: pageFile('chart.js'), type: 'text/javascript', what: 'the drawing module the page shares with the server' },
  'chart-layout.js': { path: pageFile('chart-layout.js'), type: 'text/javascript', what: "the chart's sizes and layout (part of chart.js)" },
  'chart-svg.js': { path: pageFile('chart-svg.js'), type: 'text/javascript', what: "the chart's SVG drawing (part of chart.js)" },
  'chart-graph.js': { path: pageFile('chart-graph.js'), type: 'text/javascript', what: 'what the machine graph says: labels, paths, state descriptions (part of chart.js)' },
  'page.css': { path: pageFile('page.css'), type: 'text/css', what: "the page's style" },
  'chart.css': { path: pageFile('chart.css'), type: 'text/css', what: "the chart's style" },
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

/** The machine versions a page links to: each version this build runs, and which one is current. */
export interface PageVersions {
  versions: readonly number[];
  current: number;
}

/**
 * The page with the chart already drawn: the same layout (elkjs) and drawing (chart.js) the
 * browser would run, done once on the server, so the first paint shows the chart and needs no
 * script. The page's script then takes the drawn SVG over for following an order.
 */
export async function renderStatechartPage(
  graph: MachineGraph = orderMachines().current.graph,
  pages: PageVersions = { versions: orderMachines().versions.map((v) => v.version), current: orderMachines().newest },
): Promise<string> {
  const ElkConstructor = createRequire(import.meta.url)('elkjs/lib/elk.bundled.js') as new () => ELK;
  const layout = await layoutChart(new ElkConstructor(), graph);
  const rows = graph.transitions.map((t) => {
    const command = t.guard === null ? t.command : `${t.command} [${t.guard}]`;
    return `<tr><td><code>${escapeHtml(t.source)}</code></td><td><code>${escapeHtml(command)}</code></td><td><code>${escapeHtml(t.target)}</code></td></tr>`;
  });
  let html = readFileSync(pageFile('index.html'), 'utf8');
  const info =
    `Drawn from the ${graph.id} machine in the code (version ${graph.version}${graph.version === pages.current ? ', the current one' : ''}): ` +
    `${graph.states.length} states, ${graph.transitions.length} transitions.`;
  html = fill(html, 'machine-info', escapeHtml(info));
  const links = pages.versions.map((v) => {
    const label = `version ${v}${v === pages.current ? ' (current)' : ''}`;
    const shown = v === graph.version ? ' aria-current="page"' : '';
    return `<li><a href="/statechart?version=${v}" data-version="${v}"${shown}>${escapeHtml(label)}</a> <span class="muted orders" data-orders="${v}"></span></li>`;
  });
  html = fill(html, 'versions', links.join(''));
  html = fill(html, 'chart', renderSvg(graph, layout, { interactive: true }).trim());
  html = fill(html, 'transitions', rows.join(''));
  // JSON in a script element: `<` escaped so no string in it can close the element.
  html = fill(html, 'graph', JSON.stringify(graph).replaceAll('<', '\\u003c'));
  return html;
}

/** How long the order counts of `GET /machines/order` are kept: counting reads the whole orders table. */
const COUNTS_TTL_MS = 5000;

/** One machine version as `GET /machines/order` lists it. */
export interface MachineVersionUse {
  version: number;
  /** The version new orders start on and others are moved to (by this replica). */
  current: boolean;
  /** Whether this replica has the version's definition (an older replica does not know a newer one). */
  known: boolean;
  /** Orders stored with this version. */
  orders: number;
  /** Of those, the ones not in a final state (null when this replica does not know the version's states). */
  active: number | null;
}

/**
 * The versions still in use, with their order counts: every version some order is stored with,
 * and the current one. Counted on one statement, at most once per COUNTS_TTL_MS per replica (the
 * requests of that time share the answer).
 */
export function versionCounter(db: Database, machines: OrderMachines, ttlMs = COUNTS_TTL_MS): () => Promise<MachineVersionUse[]> {
  let cached: { at: number; counts: Promise<MachineVersionUse[]> } | undefined;
  const count = async (): Promise<MachineVersionUse[]> => {
    const rows = await db.query<{ machine_version: number; status: string; n: number }>(
      `SELECT machine_version, status, count(*)::int AS n FROM orders WHERE machine_id = 'order' GROUP BY machine_version, status`,
    );
    const byVersion = new Map<number, MachineVersionUse>();
    const entry = (version: number) => {
      let use = byVersion.get(version);
      if (!use) {
        const known = machines.get(version) !== undefined;
        byVersion.set(version, (use = { version, current: version === machines.newest, known, orders: 0, active: known ? 0 : null }));
      }
      return use;
    };
    entry(machines.newest);
    for (const r of rows) {
      const use = entry(r.machine_version);
      use.orders += r.n;
      const machine = machines.get(r.machine_version);
      if (machine && use.active !== null && !machine.isFinal(r.status)) use.active += r.n;
    }
    return [...byVersion.values()].sort((a, b) => a.version - b.version);
  };
  return () => {
    const now = Date.now();
    if (!cached || now - cached.at > ttlMs) {
      const counts = count();
      cached = { at: now, counts };
      // A failure is not kept: the next request counts again.
      counts.catch(() => {
        if (cached?.counts === counts) cached = undefined;
      });
    }
    return cached.counts;
  };
}

export interface StatechartDeps {
  /** For the order counts of `GET /machines/order`. */
  db: Database;
  machines?: OrderMachines;
}

/**
 * `GET /machines/order` (a version of the order machine as a graph, and the versions in use) and
 * `GET /statechart` (the page that draws it, optionally following one order), as entries of the
 * app's route table so they are in the OpenAPI document. Nothing here holds order data, so nothing
 * needs a token: the page fetches an order with the user's own token.
 */
export function statechartRoutes({ db, machines = orderMachines() }: StatechartDeps): Route[] {
  const file = fileCache();
  const inUse = versionCounter(db, machines);
  const graphs = new Map<number, { versions: MachineVersionUse[]; body: Loaded }>();
  const pages: PageVersions = { versions: machines.versions.map((v) => v.version), current: machines.newest };
  const versionOf = (requested: number | undefined) => {
    const machine = requested === undefined ? machines.current : machines.get(requested);
    if (!machine) throw new DomainError('not_found', `this service does not run version ${requested} of the order machine`, { version: requested });
    return machine;
  };
  // Each version is drawn on its first request and kept (the machines change only with a deploy);
  // a failure is not kept, so the next request tries again.
  const drawn = new Map<number, Promise<Loaded>>();
  const drawnPage = (graph: MachineGraph): Promise<Loaded> => {
    let page = drawn.get(graph.version);
    if (page === undefined) {
      const drawing = renderStatechartPage(graph, pages).then((html) => loaded(Buffer.from(html)));
      drawing.catch(() => {
        if (drawn.get(graph.version) === drawing) drawn.delete(graph.version);
      });
      drawn.set(graph.version, (page = drawing));
    }
    return page;
  };
  return [
    defineRoute({
      method: 'get',
      path: '/machines/order',
      summary:
        'The order machine as a graph (states, final states, transitions with their commands and guards; the current version, or ?version=), and the versions still in use with their order counts.',
      tag: 'statechart',
      auth: false,
      conditional: true,
      query: MachineGraphQuery,
      responses: { 200: { description: 'the graph, derived from the machine definition, and the versions in use', schema: MachineGraphSchema } },
      // 503: the counts of the versions in use are read from PostgreSQL.
      errors: [400, 404, 503],
      async handle(ctx, { query }) {
        const machine = versionOf(query.version);
        const versions = await inUse();
        // Built once per version and count measure (at most one a second), not per request.
        let built = graphs.get(machine.graph.version);
        if (built?.versions !== versions) {
          built = { versions, body: loaded(Buffer.from(JSON.stringify({ ...machine.graph, versions }))) };
          graphs.set(machine.graph.version, built);
        }
        send(ctx, 'application/json; charset=utf-8', built.body);
      },
    }),
    defineRoute({
      method: 'get',
      path: '/statechart',
      summary:
        'The order lifecycle drawn as a state chart (the current machine version, or ?version=); with ?orderId= it follows one order live (token in the URL fragment or pasted), on the chart of the version the order runs.',
      tag: 'statechart',
      auth: false,
      query: StatechartQuery,
      conditional: true,
      responses: { 200: { description: 'the page', contentType: 'text/html' } },
      errors: [400, 404],
      async handle(ctx, { query }) {
        send(ctx, 'text/html; charset=utf-8', await drawnPage(versionOf(query.version).graph));
      },
    }),
    // The page's static files, one route each (so the document lists them): any other name is no route.
    ...Object.entries(ASSETS).map(([name, asset]) =>
      defineRoute({
        method: 'get',
        path: `/statechart/assets/${name}`,
        summary: `The state chart page's ${name}: ${asset.what}.`,
        tag: 'statechart',
        auth: false,
        conditional: true,
        responses: { 200: { description: name, contentType: asset.type } },
        errors: [],
        async handle(ctx) {
          send(ctx, `${asset.type}; charset=utf-8`, file(asset.path));
        },
      }),
    ),
  ];
}

/** The chart on its own (the page, its graph and its files), for serving it without the rest of the app. */
export function createStatechartRouter(deps: StatechartDeps): Router {
  const router = new Router(ROUTER_OPTIONS);
  mountRoutes(router, statechartRoutes(deps), { authSecret: '', bodyLimit: '1kb' });
  return router;
}
