// The state chart page: the server sends the chart already drawn (with chart.js, as below) and the
// graph it was drawn from; this script follows one order on it when given the order's id and a
// token. The token arrives pasted into the form or in the URL fragment (#token=…), which browsers
// never send to the server; it is kept in this tab's sessionStorage and sent only as a header.
import { describeState, tracePath } from './chart.js';

const POLL_MS = 1000;
const MAX_BACKOFF_MS = 10_000;
const TOKEN_KEY = 'baedal.statechart.token';

const $ = (id) => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`page is missing #${id}`);
  return el;
};

let graph;
let svg;
/** The machine versions this page can draw (the links of #versions). */
let versions = [];
/** The order being followed; replaced (and the old one abandoned) on every new follow. */
let following = null;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const child of children) node.append(child);
  return node;
}

function showError(title, hint, details) {
  const box = $('error');
  box.replaceChildren(el('strong', {}, title));
  if (hint) box.append(el('p', {}, hint));
  if (details) box.append(el('pre', {}, details));
  box.hidden = false;
}

function clearError() {
  $('error').hidden = true;
  $('error').replaceChildren();
}

/** Reads an API error body `{ error: { code, message, details } }` into readable text. */
async function describeFailure(res) {
  let code = '';
  let message = res.statusText;
  let details = '';
  try {
    const body = await res.json();
    if (body && typeof body === 'object' && body.error) {
      code = body.error.code ?? '';
      message = body.error.message ?? message;
      const extra = body.error.details;
      if (extra !== undefined && extra !== null && !(typeof extra === 'object' && Object.keys(extra).length === 0)) {
        details = JSON.stringify(extra, null, 2);
      }
    }
  } catch {
    // Not JSON: the status line is all there is.
  }
  const hint =
    res.status === 401
      ? 'The token was refused: paste a valid, unexpired token.'
      : res.status === 403
        ? 'This token may not see that order.'
        : res.status === 404
          ? 'No such order, or it is not yours to see.'
          : '';
  const title = `${res.status}${code ? ` ${code}` : ''}: ${message}`;
  return { title, hint, details };
}

/** Marks the followed order's position on the chart; `null` clears it. */
function highlight(live) {
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

function showOrder(order, events, trace) {
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

async function api(path, token, signal) {
  return fetch(path, {
    headers: { Authorization: `Bearer ${token}`, Accept: 'application/json' },
    cache: 'no-store',
    signal,
  });
}

/** Polls one order until it is final, the token or id is refused, or another follow starts. */
function follow(orderId, token) {
  following?.stop();
  const controller = new AbortController();
  const session = { stopped: false, timer: 0, stop() {} };
  session.stop = () => {
    session.stopped = true;
    clearTimeout(session.timer);
    controller.abort();
  };
  following = session;
  document.body.classList.add('following');
  $('stop').hidden = false;
  clearError();
  let shownVersion = null;
  let backoff = POLL_MS;

  const again = (ms) => {
    if (!session.stopped) session.timer = setTimeout(tick, ms);
  };
  const tick = async () => {
    if (session.stopped) return;
    if (document.hidden) {
      document.addEventListener('visibilitychange', () => again(0), { once: true });
      return;
    }
    try {
      const id = encodeURIComponent(orderId);
      const res = await api(`/orders/${id}`, token, controller.signal);
      if (!res.ok) {
        const { title, hint, details } = await describeFailure(res);
        showError(title, hint, details);
        if (res.status >= 400 && res.status < 500 && res.status !== 429) {
          $('stop').hidden = true;
          highlight(null);
          $('order').hidden = true;
          session.stop();
          return;
        }
        backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
        return again(backoff);
      }
      const order = await res.json();
      if (order.machineVersion !== graph.version) {
        // The order runs another version of the machine: draw that one, if this page has it.
        if (versions.includes(order.machineVersion)) {
          session.stop();
          location.assign(pageUrl({ version: order.machineVersion, orderId }));
          return;
        }
        showError(
          `Order ${orderId} runs version ${order.machineVersion} of the order machine; this chart is version ${graph.version}.`,
          'The service that drew this page does not have that version yet (a deploy is under way): reload in a moment.',
        );
        return again(POLL_MS);
      }
      if (order.version !== shownVersion) {
        const evRes = await api(`/orders/${id}/events`, token, controller.signal);
        if (!evRes.ok) {
          const { title, hint, details } = await describeFailure(evRes);
          showError(`Journal: ${title}`, hint, details);
          return again((backoff = Math.min(backoff * 2, MAX_BACKOFF_MS)));
        }
        const events = await evRes.json();
        if (session.stopped) return;
        const trace = tracePath(graph, events.map((e) => e.type));
        highlight({
          current: order.status,
          visited: trace.states.filter((s) => s !== order.status),
          transitions: trace.transitions,
          allowed: order.allowed,
        });
        showOrder(order, events, trace);
        $('announce').textContent =
          `Order is ${order.status}.` + (order.allowed.length > 0 ? ` Allowed now: ${order.allowed.join(', ')}.` : '');
        // The journal may have been read after a newer transition: look again next time.
        shownVersion = trace.state === order.status ? order.version : null;
      } else {
        $('order-checked').textContent = new Date().toLocaleTimeString();
      }
      clearError();
      backoff = POLL_MS;
      const final = graph.states.find((s) => s.id === order.status)?.final ?? false;
      if (final && shownVersion !== null) {
        $('stop').hidden = true;
        session.stop();
        return;
      }
      again(POLL_MS);
    } catch (error) {
      if (session.stopped) return;
      showError('Cannot reach the API; retrying.', String(error?.message ?? error));
      backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
      again(backoff);
    }
  };
  tick();
}

/** This page's address with the given machine version (the one drawn when absent) and order to follow. */
function pageUrl({ version = graph.version, orderId } = {}) {
  const params = new URLSearchParams();
  if (version !== undefined) params.set('version', String(version));
  if (orderId) params.set('orderId', orderId);
  return `${location.pathname}?${params}`;
}

/** Shows how many orders each drawn version has (best effort: the chart works without it). */
async function showOrderCounts() {
  try {
    const res = await fetch('/machines/order', { headers: { Accept: 'application/json' }, cache: 'no-store' });
    if (!res.ok) return;
    const body = await res.json();
    const uses = new Map((body.versions ?? []).map((use) => [use.version, use]));
    const count = (n, what) => `${n} ${what}${n === 1 ? '' : 's'}`;
    for (const slot of document.querySelectorAll('#versions [data-orders]')) {
      const use = uses.get(Number(slot.dataset.orders));
      // A version the service lists no orders for is not in use any more.
      slot.textContent = !use || use.orders === 0 ? 'no orders' : `${count(use.orders, 'order')}${use.active === null ? '' : `, ${use.active} active`}`;
    }
  } catch {
    // No counts: the links still work.
  }
}

/** Token from `#token=…` (then removed from the address bar and history) or from this tab. */
function initialToken() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const fromUrl = fragment.get('token');
  if (fromUrl) {
    sessionStorage.setItem(TOKEN_KEY, fromUrl);
    history.replaceState(history.state, '', location.pathname + location.search);
    return fromUrl;
  }
  return sessionStorage.getItem(TOKEN_KEY) ?? '';
}

function wireForm() {
  const form = $('follow-form');
  const idInput = $('order-id');
  const tokenInput = $('token');
  const orderId = new URLSearchParams(location.search).get('orderId') ?? '';
  const token = initialToken();
  idInput.value = orderId;
  tokenInput.value = token;

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const id = idInput.value.trim();
    const tok = tokenInput.value.trim();
    if (!id || !tok) {
      showError(!id ? 'Enter the order id.' : 'Paste an access token (JWT).');
      (!id ? idInput : tokenInput).focus();
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, tok);
    history.replaceState(history.state, '', pageUrl({ orderId: id }));
    follow(id, tok);
  });
  $('stop').addEventListener('click', () => {
    following?.stop();
    following = null;
    document.body.classList.remove('following');
    $('stop').hidden = true;
    $('order').hidden = true;
    highlight(null);
    history.replaceState(history.state, '', pageUrl());
  });

  if (orderId && token) follow(orderId, token);
  else if (orderId) {
    showError(`Paste an access token to follow order ${orderId}.`);
    tokenInput.focus();
  }
}

function main() {
  try {
    graph = JSON.parse($('machine-graph').textContent);
    svg = $('chart').querySelector('svg.statechart');
    if (!svg) throw new Error('the page arrived without its chart');
    versions = [...document.querySelectorAll('#versions [data-version]')].map((a) => Number(a.dataset.version));
  } catch (error) {
    showError('Could not read the chart.', 'Reload the page.', String(error?.message ?? error));
    return;
  }
  wireForm();
  void showOrderCounts();
  document.body.dataset.ready = 'true';
}

main();
