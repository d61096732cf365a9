// The state chart page's address (machine version, order id) and the token it follows with. The
// token arrives pasted into the form or in the URL fragment (#token=…), which browsers never send
// to the server; it is kept in this tab's sessionStorage and sent only as a header.

const TOKEN_KEY = 'baedal.statechart.token';

/** This page's address with the given machine version and order to follow. */
export function pageUrl({ version, orderId }) {
  const params = new URLSearchParams();
  if (version !== undefined) params.set('version', String(version));
  if (orderId) params.set('orderId', orderId);
  return `${location.pathname}?${params}`;
}

/** The order id in the address, or ''. */
export function addressedOrder() {
  return new URLSearchParams(location.search).get('orderId') ?? '';
}

/** Keeps the token in this tab, for a reload or another version's chart. */
export function keepToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
}

/** Token from `#token=…` (then removed from the address bar and history) or from this tab. */
export function initialToken() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const fromUrl = fragment.get('token');
  if (fromUrl) {
    keepToken(fromUrl);
    history.replaceState(history.state, '', location.pathname + location.search);
    return fromUrl;
  }
  return sessionStorage.getItem(TOKEN_KEY) ?? '';
}
