import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import Koa from 'koa';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { createStatechartRouter, renderStatechartPage } from '../../src/http/statechart.routes.ts';
import { SHIPPED_ORDER_MACHINES } from '../../src/machines/order/registry.ts';
import { orderV1 } from '../../src/machines/order/v1.ts';
import { SVG_PATH } from '../../scripts/statechart.ts';
import { ORDER_MACHINES_V2, orderV2 } from '../fixtures/order-v2.ts';
import { sharedSystem, startSystem, type AppInstance, type Parties, type TestSystem } from '../support/system.ts';

const orderGraph = orderV1.graph;

// Debian's chromium, driven by playwright-core; never a downloaded browser.
const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = fileURLToPath(new URL('../../test-artifacts/', import.meta.url));
const WAIT_MS = 10_000;

async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `The state chart browser tests need Debian's chromium at ${CHROMIUM}: ` +
        'run `apt-get update && apt-get install -y chromium`.',
    );
  }
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

async function screenshot(page: Page, name: string): Promise<void> {
  await mkdir(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: `${ARTIFACTS}${name}.png`, fullPage: true });
}

/** Opens a page and records every URL it requests, and any script error. */
async function openPage(context: BrowserContext, url: string): Promise<{ page: Page; requests: string[]; errors: string[] }> {
  const page = await context.newPage();
  const requests: string[] = [];
  const errors: string[] = [];
  page.on('request', (r) => requests.push(r.url()));
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  await page.goto(url);
  await page.waitForSelector('body[data-ready="true"]', { timeout: WAIT_MS });
  return { page, requests, errors };
}

// Code run in the page is kept as plain JS text: tsx's transpiled functions may call helpers
// (such as __name) that exist only in Node.

/** What the chart in `svg` drew: state positions and edge routes, read alike from any SVG. */
const DRAWING_JS = `(svg) => ({
  viewBox: svg.getAttribute('viewBox'),
  states: [...svg.querySelectorAll('.state[data-state]')].map(
    (g) => g.getAttribute('data-state') + ' ' + g.getAttribute('transform')),
  edges: [...svg.querySelectorAll('.transition[data-transition]')].map(
    (g) => g.getAttribute('data-transition') + ' ' + g.querySelector('.edge').getAttribute('d')),
})`;

interface Marks {
  current: string[];
  visitedStates: string[];
  allowed: string[];
  visited: string[];
}

/** The live marks on the chart: current state, states and transitions passed, transitions allowed. */
async function chartMarks(page: Page): Promise<Marks> {
  return page.evaluate(`(() => {
    const marked = (selector, attr) =>
      [...document.querySelectorAll('#chart ' + selector)].map((e) => e.getAttribute(attr)).sort();
    return {
      current: marked('.state.current', 'data-state'),
      visitedStates: marked('.state.visited', 'data-state'),
      allowed: marked('.transition.allowed[data-transition]', 'data-transition'),
      visited: marked('.transition.visited[data-transition]', 'data-transition'),
    };
  })()`);
}

const transitionId = (source: string, command: string) => {
  const t = orderGraph.transitions.find((x) => x.source === source && x.command === command);
  if (!t) throw new Error(`no ${command} out of ${source} on the chart`);
  return t.id;
};

describe('state chart in a real browser', function () {
  this.timeout(60_000);
  let browser: Browser;
  let context: BrowserContext;

  before(async () => {
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
  });
  beforeEach(async () => {
    context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  });
  afterEach(async () => {
    await context?.close();
  });

  describe('GET /statechart, served by the statechart router alone', () => {
    let server: Server;
    let baseUrl: string;

    before(async () => {
      const koa = new Koa();
      koa.use(createStatechartRouter({ db: (await sharedSystem()).runtime.pg }).routes());
      server = createServer(koa.callback());
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });
    after(async () => {
      await new Promise<void>((resolve) => server?.close(() => resolve()));
    });

    it('shows every state and every labelled transition, loading nothing but the app', async () => {
      const { page, requests, errors } = await openPage(context, `${baseUrl}/statechart`);
      for (const state of orderGraph.states) {
        const label = page.locator(`#chart .state[data-state="${state.id}"] text`);
        await label.waitFor({ state: 'visible', timeout: WAIT_MS });
        expect(await label.textContent()).to.equal(state.id);
      }
      for (const t of orderGraph.transitions) {
        const label = page.locator(`#chart .transition[data-transition="${t.id}"] .edge-label text`);
        await label.waitFor({ state: 'visible', timeout: WAIT_MS });
        expect(await label.textContent()).to.equal(t.trigger === 'timer' ? `⏱ ${t.command}` : t.command);
      }
      expect(await page.locator('#chart .transition.timer[data-transition]').count()).to.equal(2);
      expect(await page.locator('#chart .state.final[data-state]').count()).to.equal(3);
      expect(await page.locator('#chart .transition.cmd-cancel[data-transition]').count()).to.equal(3);
      expect(requests.filter((url) => !url.startsWith(`${baseUrl}/`) && !url.startsWith('data:'))).to.deep.equal([]);
      expect(errors).to.deep.equal([]);
      await screenshot(page, 'statechart-desktop');

      await page.setViewportSize({ width: 390, height: 844 });
      await page.locator('#chart .state[data-state="delivered"] text').waitFor({ state: 'visible' });
      const chartBox = await page.locator('#chart svg').boundingBox();
      expect(chartBox!.width, 'the chart fits a phone screen').to.be.at.most(390);
      await screenshot(page, 'statechart-phone');
    });

    it('paints the server-drawn chart on first load, before any script runs, whole in a 1400×900 window', async () => {
      // JavaScript off: what the browser shows from the HTML and CSS alone, as a first paint does.
      const bare = await browser.newContext({ viewport: { width: 1400, height: 900 }, javaScriptEnabled: false });
      try {
        const page = await bare.newPage();
        const response = await page.goto(`${baseUrl}/statechart`, { waitUntil: 'domcontentloaded' });
        expect(response?.status()).to.equal(200);
        await mkdir(ARTIFACTS, { recursive: true });
        await page.screenshot({ path: `${ARTIFACTS}statechart-first-paint.png` });
        expect(await page.locator('#chart').textContent()).not.to.include('Drawing the chart');
        const labels = await page.locator('#chart svg .state[data-state] text').allTextContents();
        expect(labels.sort()).to.deep.equal(orderGraph.states.map((st) => st.id).sort());
        const edgeLabels = await page.locator('#chart svg .transition[data-transition] .edge-label text').allTextContents();
        expect(edgeLabels).to.have.length(orderGraph.transitions.length);
        for (const state of orderGraph.states) {
          expect(await page.locator(`#chart .state[data-state="${state.id}"] text`).isVisible(), state.id).to.equal(true);
        }
        const box = (await page.locator('#chart svg').boundingBox())!;
        expect(box.x, 'left edge').to.be.at.least(0);
        expect(box.y, 'top edge').to.be.at.least(0);
        expect(box.x + box.width, 'right edge').to.be.at.most(1400);
        expect(box.y + box.height, 'bottom edge').to.be.at.most(900);
        const scroll = (await page.evaluate(
          '({ width: document.documentElement.scrollWidth, height: document.documentElement.scrollHeight })',
        )) as { width: number; height: number };
        expect(scroll, 'the page does not scroll').to.deep.equal({ width: 1400, height: 900 });
        expect(await page.locator('#transitions tr').count(), 'the table too').to.equal(orderGraph.transitions.length);
        expect(await page.locator('#machine-info').textContent()).to.include(`${orderGraph.states.length} states`);
      } finally {
        await bare.close();
      }
    });

    it('draws the same picture as docs/order-lifecycle.svg (one layout module for both)', async () => {
      const { page } = await openPage(context, `${baseUrl}/statechart`);
      const onPage = await page.evaluate(`(${DRAWING_JS})(document.querySelector('#chart svg'))`);
      const docsSvg = await readFile(SVG_PATH, 'utf8');
      const inDocs = await page.evaluate(
        `(${DRAWING_JS})(new DOMParser().parseFromString(${JSON.stringify(docsSvg)}, 'image/svg+xml').documentElement)`,
      );
      expect(onPage).to.deep.equal(inDocs);
      expect((onPage as { states: string[] }).states).to.have.length(orderGraph.states.length);
    });

    it('lets keyboard users reach every state, and names each for screen readers', async () => {
      const { page } = await openPage(context, `${baseUrl}/statechart`);
      const reached = new Set<string>();
      for (let i = 0; i < 40 && reached.size < orderGraph.states.length; i += 1) {
        await page.keyboard.press('Tab');
        const focused = await page.evaluate(() => document.activeElement?.getAttribute('data-state') ?? null);
        if (focused) reached.add(focused);
      }
      expect([...reached]).to.have.members(orderGraph.states.map((s) => s.id));
      for (const state of orderGraph.states) {
        const item = page.getByRole('listitem', { name: new RegExp(`^State ${state.id}\\b`) });
        expect(await item.count(), `accessible name of ${state.id}`).to.equal(1);
      }
      const cooking = await page.locator('#chart [data-state="cooking"]').getAttribute('aria-label');
      expect(cooking).to.equal('State cooking, commands: finish-cooking to cooked.');
    });

    it('serves the graph as JSON and the page with its assets, without a token', async () => {
      const graph = await fetch(`${baseUrl}/machines/order`);
      expect(graph.status).to.equal(200);
      expect(graph.headers.get('content-type')).to.match(/^application\/json/);
      const { versions, ...drawn } = await graph.json();
      expect(drawn).to.deep.equal(JSON.parse(JSON.stringify(orderGraph)));
      expect(versions).to.have.length(1);
      expect(versions[0]).to.include({ version: 1, current: true, known: true });

      const html = await fetch(`${baseUrl}/statechart?orderId=anything`);
      expect(html.status).to.equal(200);
      expect(html.headers.get('content-type')).to.match(/^text\/html/);
      expect(html.headers.get('content-security-policy')).to.include("connect-src 'self'");
      const etag = html.headers.get('etag');
      // cache: 'no-cache' revalidates the way a browser does (fetch's default adds Cache-Control: no-cache).
      const again = await fetch(`${baseUrl}/statechart`, { cache: 'no-cache', headers: { 'If-None-Match': etag! } });
      expect(again.status).to.equal(304);

      const page = await (await fetch(`${baseUrl}/statechart`)).text();
      const embedded = /<script type="application\/json" id="machine-graph">([^<]*)<\/script>/.exec(page);
      expect(JSON.parse(embedded![1]!), 'the graph the chart was drawn from').to.deep.equal(JSON.parse(JSON.stringify(orderGraph)));
      const chart = await fetch(`${baseUrl}/statechart/assets/chart.js`);
      expect(chart.status).to.equal(200);
      expect(chart.headers.get('content-type')).to.match(/^text\/javascript/);
      // The server lays the chart out: the browser no longer needs the layout engine.
      expect((await fetch(`${baseUrl}/statechart/assets/elk.bundled.js`)).status).to.equal(404);
      expect((await fetch(`${baseUrl}/statechart/assets/nope.js`)).status).to.equal(404);
      expect((await fetch(`${baseUrl}/statechart/assets/..%2Fstatechart.routes.ts`)).status).to.equal(404);
    });

    it('draws a version asked for by number and links every version', async () => {
      const { page } = await openPage(context, `${baseUrl}/statechart?version=1`);
      expect(await page.locator('#versions a').allTextContents()).to.deep.equal(['version 1 (current)']);
      expect(await page.locator('#versions a[aria-current="page"]').textContent()).to.equal('version 1 (current)');
      await page.waitForSelector('#versions [data-orders="1"]:has-text("order")', { timeout: WAIT_MS });
    });
  });

  it('embeds the graph and its names in the page without letting them out of their elements', async () => {
    const hostile = '</script><img src=x onerror=alert(1)>';
    const graph = { ...orderGraph, id: hostile };
    const html = await renderStatechartPage(graph);
    expect(html).not.to.include(hostile);
    const embedded = /<script type="application\/json" id="machine-graph">([^<]*)<\/script>/.exec(html);
    expect(JSON.parse(embedded![1]!)).to.deep.equal(JSON.parse(JSON.stringify(graph)));
    expect(html).to.include('&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;');
    expect(html).not.to.match(/<!--(chart|graph|transitions|machine-info)-->/);
  });

  describe('a service that runs order machine versions 1 and 2', () => {
    let system: TestSystem;
    let v1: AppInstance;
    let p: Parties;

    before(async () => {
      system = await startSystem({ name: 'statechart_versions', machines: ORDER_MACHINES_V2 });
      v1 = await system.startReplica({ machines: SHIPPED_ORDER_MACHINES });
      p = await system.newParties();
    });
    after(async () => {
      await system?.close();
    });

    it('draws the current version and links the older one, each with its order counts', async () => {
      await system.placeOrder(p);
      const { page, errors } = await openPage(context, `${system.baseUrl}/statechart`);
      expect(await page.locator('#versions a').allTextContents()).to.deep.equal(['version 1', 'version 2 (current)']);
      expect(await page.locator('#chart [data-state="expired"]').count()).to.equal(1);
      expect(await page.locator('#machine-info').textContent()).to.include('(version 2, the current one)');
      await page.waitForSelector('#versions [data-orders="2"]:has-text("order")', { timeout: WAIT_MS });
      // The first order of this service's own database, placed on version 2.
      expect(await page.locator('#versions [data-orders="2"]').textContent()).to.equal('1 order, 1 active');
      expect(await page.locator('#versions [data-orders="1"]').textContent()).to.equal('no orders');
      await page.locator('#versions a[data-version="1"]').click();
      await page.waitForURL(/version=1/, { timeout: WAIT_MS });
      expect(await page.locator('#chart [data-state="expired"]').count(), 'version 1 has no expired state').to.equal(0);
      expect(await page.locator('#chart .state[data-state]').count()).to.equal(orderV1.statuses.length);
      expect(errors).to.deep.equal([]);
      const missing = await system.request('GET', '/statechart?version=3');
      expect(missing.status).to.equal(404);
      expect(missing.body.error.code).to.equal('not_found');
      expect((await system.request('GET', '/statechart?version=one')).body.error.code).to.equal('invalid_body');
    });

    it('follows an order on the chart of the version it runs, and moves to the new chart when the order moves', async () => {
      const placed = await v1.request('POST', '/orders', { token: p.customer, body: { storeId: p.storeId, items: [{ foodId: 'bibimbap', qty: 1 }], address: { area: p.area, line: '1 Teheran-ro' } } });
      expect(placed.body.machineVersion).to.equal(1);
      const orderId = placed.body.id as string;
      // Opened on version 2's chart: the page finds the order on version 1 and draws that one.
      const { page, errors } = await openPage(context, `${system.baseUrl}/statechart?version=2&orderId=${orderId}#token=${encodeURIComponent(p.customer)}`);
      await page.waitForURL(/version=1/, { timeout: WAIT_MS });
      await page.waitForSelector('#chart .state.current[data-state="awaitingPayment"]', { timeout: WAIT_MS });
      expect(await page.locator('#order-machine').textContent()).to.equal('version 1');
      expect(await page.locator('#versions a[aria-current="page"]').textContent()).to.equal('version 1');

      // Its next command, on a version 2 replica, moves it to version 2: the page follows.
      const paid = await system.request('POST', `/orders/${orderId}/pay`, { token: p.customer });
      expect(paid.body).to.include({ status: 'paid', machineVersion: 2 });
      await page.waitForURL(/version=2/, { timeout: WAIT_MS });
      await page.waitForSelector('#chart .state.current[data-state="paid"]', { timeout: WAIT_MS });
      expect(await page.locator('#order-machine').textContent()).to.equal('version 2');
      expect(await page.locator('#chart [data-state="expired"]').count()).to.equal(1);
      const marks = await chartMarks(page);
      expect(marks.visited).to.deep.equal([orderV2.graph.transitions.find((t) => t.source === 'awaitingPayment' && t.command === 'pay')!.id]);
      expect(page.url()).not.to.include('token');
      expect(errors).to.deep.equal([]);
      await screenshot(page, 'statechart-follow-across-versions');
    });
  });

  describe('GET /statechart?orderId=… on the running system', () => {
    let system: TestSystem;
    let p: Parties;

    before(async () => {
      system = await sharedSystem();
    });
    beforeEach(async () => {
      p = await system.newParties();
    });

    const follow = (orderId: string, token: string) =>
      `${system.baseUrl}/statechart?orderId=${encodeURIComponent(orderId)}#token=${encodeURIComponent(token)}`;

    it('highlights where the order is, what it may do now and the path so far, as it moves', async () => {
      const order = await system.placeOrder(p);
      const { page, requests, errors } = await openPage(context, follow(order.id, p.customer));
      await page.waitForSelector('#chart .state.current[data-state="awaitingPayment"]', { timeout: WAIT_MS });
      expect(page.url(), 'the token is dropped from the address bar').not.to.include('token');
      expect(await chartMarks(page)).to.deep.equal({
        current: ['awaitingPayment'],
        visitedStates: [],
        allowed: order.allowed.map((c) => transitionId('awaitingPayment', c)).sort(),
        visited: [],
      });

      const path: string[] = [];
      let status: string = order.status;
      for (const command of ['pay', 'accept', 'start-cooking', 'finish-cooking', 'pick', 'confirm-delivery']) {
        path.push(transitionId(status, command));
        const view = await system.drive(p, order.id, [command]);
        await page.waitForSelector(`#chart .state.current[data-state="${view.status}"]`, { timeout: WAIT_MS });
        const marks = await chartMarks(page);
        expect(marks.current).to.deep.equal([view.status]);
        expect(marks.visited, `path after ${command}`).to.deep.equal([...path].sort());
        expect(marks.allowed, `allowed in ${view.status}`).to.deep.equal(
          view.allowed.map((c) => transitionId(view.status, c)).sort(),
        );
        status = view.status;
        if (status === 'cooking') {
          expect(marks.allowed.some((id) => id.includes(':cancel:')), 'cancel once cooking').to.equal(false);
          await screenshot(page, 'statechart-live-cooking');
        }
      }
      expect(status).to.equal('delivered');
      await page.waitForSelector('#order-summary:has-text("final state")', { timeout: WAIT_MS });
      expect(await page.locator('#order-path li').count()).to.equal(7);
      expect(await page.locator('#chart [data-state="delivered"]').getAttribute('aria-current')).to.equal('step');
      await screenshot(page, 'statechart-live-delivered');
      expect(requests.some((url) => url.includes(p.customer)), 'token in a URL').to.equal(false);
      expect(errors).to.deep.equal([]);
    });

    it("traces a cancelled order's path and shows that it is over", async () => {
      const order = await system.placeOrder(p);
      await system.drive(p, order.id, ['pay', 'cancel']);
      const { page } = await openPage(context, follow(order.id, p.customer));
      await page.waitForSelector('#chart .state.current[data-state="cancelled"]', { timeout: WAIT_MS });
      expect(await chartMarks(page)).to.deep.equal({
        current: ['cancelled'],
        visitedStates: ['awaitingPayment', 'paid'],
        allowed: [],
        visited: [transitionId('awaitingPayment', 'pay'), transitionId('paid', 'cancel')].sort(),
      });
      expect(await page.locator('#order-allowed').textContent()).to.equal('nothing');
    });

    it('follows an order whose token is pasted into the page', async () => {
      const order = await system.placeOrder(p);
      const { page } = await openPage(context, `${system.baseUrl}/statechart?orderId=${order.id}`);
      await page.waitForSelector('#error:has-text("Paste an access token")', { timeout: WAIT_MS });
      await page.getByLabel('Access token (JWT)').fill(p.customer);
      await page.getByRole('button', { name: 'Follow' }).click();
      await page.waitForSelector('#chart .state.current[data-state="awaitingPayment"]', { timeout: WAIT_MS });
      expect(await page.locator('#error').isHidden()).to.equal(true);
    });

    it("shows the API's refusal readably: a bad token (401), someone else's order (404)", async () => {
      const order = await system.placeOrder(p);
      const { page } = await openPage(context, follow(order.id, 'not-a-jwt'));
      const error = page.locator('#error');
      await error.waitFor({ state: 'visible', timeout: WAIT_MS });
      expect(await error.textContent()).to.match(/^401\b/);
      expect(await page.locator('#chart .state.current').count()).to.equal(0);
      await screenshot(page, 'statechart-error-401');

      const stranger = await system.token('customer', `someone-else-${order.id}`);
      const other = await openPage(context, follow(order.id, stranger));
      const otherError = other.page.locator('#error');
      await otherError.waitFor({ state: 'visible', timeout: WAIT_MS });
      expect(await otherError.textContent()).to.match(/^404\b/);
      expect(await otherError.textContent()).to.include('not yours');
    });
  });
});
