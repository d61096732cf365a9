// Following one order on the state chart page: polls the order and, when it moved, its journal,
// with the user's token, and shows where it is until it is final or refused.
import { tracePath } from './chart.js';
import { pageUrl } from './page-address.js';
import { $, clearError, highlight, showError, showOrder } from './page-view.js';

const POLL_MS = 1000;
const MAX_BACKOFF_MS = 10_000;

/** The order being followed; replaced (and the old one abandoned) on every new follow. */
let following = null;

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

async function api(path, token, signal) {
  return fetch(path, {
    headers: { Authorization: `Bearer ${token}`, Accept: 'application/json' },
    cache: 'no-store',
    signal,
  });
}

/** Abandons the order being followed, if any. */
export function stopFollowing() {
  following?.stop();
  following = null;
}

/** Polls one order until it is final, the token or id is refused, or another follow starts. */
export function follow(chart, orderId, token) {
  const { graph, versions } = chart;
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
          highlight(chart, null);
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
        highlight(chart, {
          current: order.status,
          visited: trace.states.filter((s) => s !== order.status),
          transitions: trace.transitions,
          allowed: order.allowed,
        });
        showOrder(chart, order, events, trace);
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
