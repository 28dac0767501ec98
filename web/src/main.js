// The dashboard's entry: theme, the live stream (one for the whole app), and client-side
// routing with the History API:
//   /dashboard                 the top list          (list.js)
//   /dashboard/coins/{SYMBOL}  a coin's page          (coin.js)
//   /dashboard/watchlist       watchlist and alerts   (watch.js, needs an API key)
// The server answers every /dashboard/… path that is not a file with index.html, so each of
// these can be opened directly, bookmarked and shared.

import { LiveStream } from './stream.js';
import { storedKey } from './api.js';
import { h, fill } from './dom.js';
import { initTheme } from './theme.js';
import { mountList } from './list.js';
import { mountCoin } from './coin.js';
import { mountWatch } from './watch.js';
import * as fmt from './format.js';

const BASE = '/dashboard';
const FILES = new Set(['/dashboard/app.js', '/dashboard/app.css', '/dashboard/LICENSES.txt']);

const stream = new LiveStream();
const main = document.getElementById('main');
let unmount = null;

function route(pathname) {
  const path = pathname.replace(/\/+$/, '') || '/';
  if (path === BASE) return { page: 'list', mount: mountList, params: {} };
  if (path === `${BASE}/watchlist`) return { page: 'watchlist', mount: mountWatch, params: {} };
  const m = path.match(/^\/dashboard\/coins\/([^/]+)$/);
  if (m) {
    try {
      return { page: 'coin', mount: mountCoin, params: { symbol: decodeURIComponent(m[1]) } };
    } catch {
      // A malformed escape: not a page.
    }
  }
  return { page: 'missing', mount: mountMissing, params: {} };
}

function mountMissing(el) {
  fill(el, h('section', { class: 'page' },
    h('h1', { tabindex: '-1' }, 'No such page'),
    h('p', null, 'Try the ', h('a', { href: BASE }, 'top coins'), ' or the ', h('a', { href: `${BASE}/watchlist` }, 'watchlist'), '.')));
  document.title = 'Not found · topcoins';
  return () => {};
}

function render({ focus }) {
  if (unmount) unmount();
  const r = route(location.pathname);
  document.title = 'topcoins';
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (a.dataset.nav === r.page) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  unmount = r.mount(main, { stream, params: r.params });
  if (focus) {
    const h1 = main.querySelector('h1');
    (h1 || main).focus({ preventScroll: true });
    window.scrollTo(0, 0);
  }
}

export function navigate(href, { replace = false } = {}) {
  if (replace) history.replaceState(null, '', href);
  else history.pushState(null, '', href);
  render({ focus: true });
}

function isAppPath(url) {
  return url.origin === location.origin
    && (url.pathname === BASE || url.pathname.startsWith(`${BASE}/`))
    && !FILES.has(url.pathname);
}

document.addEventListener('click', (e) => {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const a = e.target.closest && e.target.closest('a[href]');
  if (!a || a.target || a.hasAttribute('download')) return;
  const url = new URL(a.href, location.href);
  if (!isAppPath(url)) return;
  e.preventDefault();
  if (url.pathname + url.search === location.pathname + location.search) return;
  navigate(url.pathname + url.search);
});

window.addEventListener('popstate', () => render({ focus: true }));

// ---- the header: connection state and alerts from the stream ----------------------------

const live = document.getElementById('live');
const LIVE_TEXT = {
  idle: 'offline', connecting: 'connecting…', open: 'live', closed: 'reconnecting…', unavailable: 'no live updates',
};
stream.onState((state, detail) => {
  live.textContent = LIVE_TEXT[state] || state;
  live.dataset.state = state;
  live.title = detail || (state === 'open' ? 'Live updates are connected' : '');
});

const toasts = h('div', { class: 'toasts', id: 'toasts', role: 'status', 'aria-live': 'polite' });
document.body.append(toasts);
stream.on((ev) => {
  if (ev.type !== 'alert' || !ev.data || typeof ev.data !== 'object') return;
  // The stream's alert: {id, rule_id, metric, kind, time, value, average}.
  const d = ev.data;
  const many = '';
  const kind = String(d.kind || 'alert');
  const toast = h('div', { class: 'toast' },
    h('strong', null, `Alert ${kind}: `), `${d.metric || ''} ${fmt.num(d.value)}${many} `,
    h('a', { href: `${BASE}/watchlist` }, 'history'),
    h('button', { type: 'button', class: 'close', 'aria-label': 'Dismiss', onclick: () => toast.remove() }, '×'));
  toasts.append(toast);
  setTimeout(() => toast.remove(), 15_000);
});

initTheme(document.getElementById('theme'));
// Alerts follow the visitor on every page when a key is kept.
stream.key = storedKey();
render({ focus: false });
