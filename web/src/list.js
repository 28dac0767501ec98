// The top list (/dashboard): GET /?limit=N, kept live by the stream's `price` events (a row's
// price and change, flashed) and `top` events (a new ranking: fetched again, debounced). It is
// fetched again at least every SAFETY_REFETCH_MS too, for `meta.stale` and what events missed.

import { api, query, seg } from './api.js';
import { h, fill, errorBox } from './dom.js';
import * as fmt from './format.js';

const LIMITS = [50, 100, 200, 500];
const DEFAULT_LIMIT = 200;
const REFETCH_DEBOUNCE_MS = 300;
const FLASH_MS = 1000;
// Beyond this the symbols would not fit the API's 2 KiB query: follow every coin instead.
const MAX_SYMBOLS_QUERY = 1500;
const REFOLLOW_MS = 5_000;
const SAFETY_REFETCH_MS = 30_000;

let firstRowsMarked = false;

export function mountList(main, { stream }) {
  const url = new URL(location.href);
  let limit = Number(url.searchParams.get('limit'));
  if (!LIMITS.includes(limit)) limit = DEFAULT_LIMIT;
  let search = url.searchParams.get('q') || '';

  let rows = new Map(); // symbol -> {tr, rank, price, change, volume (cells), entry, flashTimer}
  let meta = null;
  let asOf = NaN; // the newest price time known, Unix ms
  let fetchSeq = 0;
  let refetchTimer = 0;
  let retryTimer = 0;
  let pending = new Map(); // symbol -> price event, applied in the next frame
  let frame = 0;
  let followed = null; // the symbols the stream follows (a Set), null before the first list
  let followingAll = false;
  let lastFollow = 0;
  let followTimer = 0;

  const limitSelect = h('select', { id: 'limit', onchange: () => {
    limit = Number(limitSelect.value);
    followed = null;
    followingAll = false;
    remember();
    load();
  } }, LIMITS.map((n) => h('option', { value: n, selected: n === limit }, String(n))));
  const searchInput = h('input', {
    id: 'search', type: 'search', value: search, placeholder: 'Symbol or name',
    autocomplete: 'off', spellcheck: 'false',
    oninput: () => {
      search = searchInput.value;
      remember();
      applySearch();
    },
  });
  const age = h('span', { class: 'age', id: 'age' }, 'loading…');
  const staleBadge = h('span', { class: 'badge stale', id: 'stale', hidden: true }, 'stale');
  const shown = h('span', { class: 'shown muted', id: 'shown' });
  const message = h('div', { class: 'message', id: 'list-message' });
  const tbody = h('tbody');
  const table = h('table', { class: 'coins', id: 'coins' },
    h('caption', { class: 'sr-only' }, 'Top coins by 24 h volume, with price in USD and 24 h change'),
    h('thead', null, h('tr', null,
      h('th', { scope: 'col', class: 'num col-rank' }, '#'),
      h('th', { scope: 'col' }, 'Symbol'),
      h('th', { scope: 'col', class: 'col-name' }, 'Name'),
      h('th', { scope: 'col', class: 'num' }, 'Price'),
      h('th', { scope: 'col', class: 'num' }, '24 h'),
      h('th', { scope: 'col', class: 'num col-volume' }, 'Volume 24 h'),
    )),
    tbody);

  fill(main, h('section', { class: 'page list' },
    h('div', { class: 'toolbar' },
      h('h1', { tabindex: '-1' }, 'Top coins'),
      h('label', { class: 'field' }, 'Show ', limitSelect),
      h('label', { class: 'field grow' }, h('span', { class: 'sr-only' }, 'Search '), searchInput),
      h('span', { class: 'status' }, age, ' ', staleBadge),
    ),
    message,
    table, // not in a scrolling box: its header sticks to the top of the page
    shown,
  ));

  function remember() {
    const u = new URL(location.href);
    if (limit === DEFAULT_LIMIT) u.searchParams.delete('limit');
    else u.searchParams.set('limit', String(limit));
    if (search) u.searchParams.set('q', search);
    else u.searchParams.delete('q');
    history.replaceState(history.state, '', u.pathname + u.search);
  }

  let lastLoad = 0;

  async function load() {
    const seq = ++fetchSeq;
    lastLoad = Date.now();
    clearTimeout(retryTimer);
    try {
      const top = await api(query('/', { limit }));
      if (seq !== fetchSeq) return;
      fill(message);
      render(top);
    } catch (e) {
      if (seq !== fetchSeq) return;
      const text = e.code === 'no_data'
        ? 'No data yet: the server has not received its first snapshots. Trying again…'
        : null;
      fill(message, text ? h('p', { class: 'note' }, text) : errorBox(e, 'Could not load the top list'));
      retryTimer = setTimeout(load, e.status === 0 ? 5000 : 2000);
    }
  }

  function render(top) {
    meta = top.meta;
    // Rows are kept across fetches (their flashes too); only what changed is touched.
    const fresh = new Map();
    const order = [];
    for (const entry of top.data) {
      if (fresh.has(entry.symbol)) continue;
      const row = rows.get(entry.symbol) || makeRow(entry);
      updateRow(row, entry, true);
      fresh.set(entry.symbol, row);
      order.push(row.tr);
    }
    rows = fresh;
    const current = tbody.children;
    const same = current.length === order.length && order.every((tr, i) => current[i] === tr);
    if (!same) tbody.replaceChildren(...order);
    Object.assign(table.dataset, {
      count: String(meta.count),
      rankingHash: meta.ranking_hash,
      pricesHash: meta.prices_hash,
    });
    newer(Date.parse(meta.prices_as_of));
    applySearch();
    tick();
    showStale();
    follow();
    if (!firstRowsMarked && top.data.length) {
      firstRowsMarked = true;
      performance.mark('topcoins:rows');
    }
  }

  function makeRow(entry) {
    const row = {
      rank: h('td', { class: 'num col-rank' }),
      price: h('td', { class: 'num price' }),
      change: h('td', { class: 'num change' }),
      volume: h('td', { class: 'num col-volume' }),
      entry: { ...entry, price_usd: undefined },
    };
    row.tr = h('tr', { dataset: { symbol: entry.symbol } },
      row.rank,
      h('td', { class: 'sym' }, h('a', { href: `/dashboard/coins/${seg(entry.symbol)}` }, entry.symbol)),
      h('td', { class: 'col-name' }, entry.name),
      row.price, row.change, row.volume);
    return row;
  }

  /** Puts `entry`'s figures in the row; flashes it when its price moved. */
  function updateRow(row, entry, full) {
    const before = row.entry.price_usd;
    if (full) {
      row.rank.textContent = String(entry.rank);
      row.volume.textContent = fmt.usdShort(entry.volume_24h_usd);
    }
    if (before !== entry.price_usd) row.price.textContent = fmt.price(entry.price_usd);
    const change = fmt.pct(entry.change_24h_pct);
    if (row.change.textContent !== change) {
      row.change.textContent = change;
      row.change.className = `num change ${fmt.direction(entry.change_24h_pct)}`;
    }
    Object.assign(row.entry, entry);
    if (typeof before === 'number' && typeof entry.price_usd === 'number' && before !== entry.price_usd) {
      flash(row, entry.price_usd > before ? 'flash-up' : 'flash-down');
    }
  }

  function flash(row, cls) {
    row.tr.classList.remove('flash-up', 'flash-down');
    // Restarting the animation needs a frame without the class.
    requestAnimationFrame(() => row.tr.classList.add(cls));
    clearTimeout(row.flashTimer);
    row.flashTimer = setTimeout(() => row.tr.classList.remove(cls), FLASH_MS + 50);
  }

  function newer(t) {
    if (Number.isFinite(t) && !(t <= asOf)) asOf = Math.min(t, Date.now());
  }

  // The stream follows the shown coins. Coins move in and out of the top N all the time, so it
  // follows every coin it has shown (while they fit the query) and reconnects at most every
  // REFOLLOW_MS when a shown coin is not followed.
  function follow() {
    if (followingAll) return;
    const shown = [...rows.keys()];
    if (followed && shown.every((s) => followed.has(s))) return;
    const wait = lastFollow + REFOLLOW_MS - Date.now();
    if (followed && wait > 0) {
      if (!followTimer) followTimer = setTimeout(() => {
        followTimer = 0;
        follow();
      }, wait);
      return;
    }
    let next = new Set([...(followed || []), ...shown]);
    if (queryLength(next) > MAX_SYMBOLS_QUERY) next = new Set(shown);
    lastFollow = Date.now();
    if (queryLength(next) > MAX_SYMBOLS_QUERY) {
      followingAll = true;
      stream.configure({ symbols: null, metrics: [] });
      return;
    }
    followed = next;
    stream.configure({ symbols: [...next].sort(), metrics: [] });
  }

  function queryLength(symbols) {
    let n = 0;
    for (const s of symbols) n += encodeURIComponent(s).length + 1;
    return n;
  }

  function applySearch() {
    const q = search.trim().toLowerCase();
    let n = 0;
    for (const { tr, entry } of rows.values()) {
      const hit = !q || entry.symbol.toLowerCase().includes(q) || entry.name.toLowerCase().includes(q);
      tr.hidden = !hit;
      if (hit) n++;
    }
    fill(shown, q ? `${n} of ${rows.size} coins match “${search.trim()}”` : `${rows.size} coins`);
  }

  function tick() {
    age.textContent = Number.isFinite(asOf) ? `updated ${fmt.ago(asOf)}` : 'loading…';
    if (Number.isFinite(asOf)) age.title = new Date(asOf).toISOString();
  }

  function showStale() {
    const reasons = [];
    if (meta && meta.stale) reasons.push('the server says its data is stale');
    if (stream.state === 'closed' || stream.state === 'unavailable') reasons.push('live updates are not connected');
    staleBadge.hidden = reasons.length === 0;
    staleBadge.title = reasons.join('; ');
  }

  function onPrice(ev) {
    pending.set(ev.symbol, ev);
    if (!frame) frame = requestAnimationFrame(flush);
  }

  function flush() {
    frame = 0;
    for (const ev of pending.values()) {
      const row = rows.get(ev.symbol);
      if (!row) continue;
      const entry = { price_usd: ev.price_usd };
      if ('change_24h_pct' in ev) entry.change_24h_pct = ev.change_24h_pct;
      else entry.change_24h_pct = row.entry.change_24h_pct;
      updateRow(row, entry, false);
      newer(Date.parse(ev.as_of));
    }
    pending = new Map();
    tick();
  }

  function refetchSoon() {
    clearTimeout(refetchTimer);
    refetchTimer = setTimeout(load, REFETCH_DEBOUNCE_MS);
  }

  const offEvents = stream.on((ev) => {
    if (ev.type === 'price' && ev.data && typeof ev.data === 'object') onPrice(ev.data);
    else if (ev.type === 'top') {
      const d = ev.data && typeof ev.data === 'object' ? ev.data : {};
      newer(Date.parse(d.prices_as_of));
      // New prices alone come as `price` events; a new ranking (order, names, volumes) needs
      // the list again. (A coin new to the list is followed within REFOLLOW_MS, and the
      // reconnection fetches the list once more.)
      const ranking = !meta || d.ranking_hash !== meta.ranking_hash || (Array.isArray(d.moved) && d.moved.length > 0);
      if (ranking) refetchSoon();
    } else if (ev.type === 'resync') refetchSoon();
  });
  // What a reconnection missed comes again (Last-Event-ID), or a `resync` says to refetch.
  const offState = stream.onState(showStale);
  const ticker = setInterval(() => {
    tick();
    if (meta && Date.now() - lastLoad > SAFETY_REFETCH_MS) load();
  }, 1000);

  load();

  return () => {
    fetchSeq++;
    offEvents();
    offState();
    clearInterval(ticker);
    clearTimeout(refetchTimer);
    clearTimeout(retryTimer);
    clearTimeout(followTimer);
    if (frame) cancelAnimationFrame(frame);
    for (const row of rows.values()) clearTimeout(row.flashTimer);
  };
}
