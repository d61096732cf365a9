// The state chart page: the server sends the chart already drawn (with chart.js, as the page could)
// and the graph it was drawn from; this script follows one order on it (page-follow.js) when given
// the order's id and a token (page-address.js), and shows each version's order counts.
import { addressedOrder, initialToken, keepToken, pageUrl } from './page-address.js';
import { follow, stopFollowing } from './page-follow.js';
import { $, highlight, showError } from './page-view.js';

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

function wireForm(chart) {
  const form = $('follow-form');
  const idInput = $('order-id');
  const tokenInput = $('token');
  const orderId = addressedOrder();
  const token = initialToken();
  const version = chart.graph.version;
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
    keepToken(tok);
    history.replaceState(history.state, '', pageUrl({ version, orderId: id }));
    follow(chart, id, tok);
  });
  $('stop').addEventListener('click', () => {
    stopFollowing();
    document.body.classList.remove('following');
    $('stop').hidden = true;
    $('order').hidden = true;
    highlight(chart, null);
    history.replaceState(history.state, '', pageUrl({ version }));
  });

  if (orderId && token) follow(chart, orderId, token);
  else if (orderId) {
    showError(`Paste an access token to follow order ${orderId}.`);
    tokenInput.focus();
  }
}

function main() {
  let chart;
  try {
    const graph = JSON.parse($('machine-graph').textContent);
    const svg = $('chart').querySelector('svg.statechart');
    if (!svg) throw new Error('the page arrived without its chart');
    /** The machine versions this page can draw (the links of #versions). */
    const versions = [...document.querySelectorAll('#versions [data-version]')].map((a) => Number(a.dataset.version));
    chart = { graph, svg, versions };
  } catch (error) {
    showError('Could not read the chart.', 'Reload the page.', String(error?.message ?? error));
    return;
  }
  wireForm(chart);
  void showOrderCounts();
  document.body.dataset.ready = 'true';
}

main();
