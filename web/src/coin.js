// A coin's page (/dashboard/coins/{SYMBOL}): GET /v1/coins/{symbol} for the header, and
// GET /v1/coins/{symbol}/candles for a candlestick chart with a volume pane below it. The
// stream's `price` events for the coin move the header and the last candle (or open the next
// bucket once its time has come).
//
// For tests, #chart carries what was drawn: data-bars, data-last-close, data-last-time,
// data-first-time, data-interval, data-limit, data-from (the query used) and data-state
// (loading, ready, empty or error).

import { CandlestickSeries, HistogramSeries } from 'lightweight-charts';
import { api, query, seg } from './api.js';
import { h, fill, errorBox } from './dom.js';
import { themedChart, priceFormat, toTime } from './charts.js';
import { colors } from './theme.js';
import * as fmt from './format.js';

const MIN = 60_000;
// Each interval: its length, and how many candles to show (about a screenful).
export const INTERVALS = {
  '1m': { ms: MIN, limit: 360 },
  '5m': { ms: 5 * MIN, limit: 288 },
  '15m': { ms: 15 * MIN, limit: 384 },
  '1h': { ms: 60 * MIN, limit: 336 },
  '4h': { ms: 240 * MIN, limit: 360 },
  '1d': { ms: 1440 * MIN, limit: 365 },
};
const INTERVAL_KEY = 'topcoins.interval';
const MAX_PAGES = 4;

/** The candles query for `interval` now: `limit` buckets, the open one last. */
export function candlesQuery(interval, now = Date.now()) {
  const { ms, limit } = INTERVALS[interval];
  const from = Math.floor(now / ms) * ms - (limit - 1) * ms;
  return { interval, from, limit };
}

function savedInterval() {
  const fromUrl = new URL(location.href).searchParams.get('interval');
  if (fromUrl && INTERVALS[fromUrl]) return fromUrl;
  try {
    const s = localStorage.getItem(INTERVAL_KEY);
    if (s && INTERVALS[s]) return s;
  } catch {
    // No storage: the default.
  }
  return '1h';
}

export function mountCoin(main, { stream, params }) {
  const symbol = params.symbol.toUpperCase();
  let interval = savedInterval();
  let coin = null;
  let bars = []; // what the chart holds, ascending
  let loadSeq = 0;
  let disposed = false;

  const title = h('h1', { tabindex: '-1' }, symbol);
  const facts = h('dl', { class: 'facts' });
  const headMessage = h('div', { class: 'message' });
  const buttons = Object.keys(INTERVALS).map((iv) => h('button', {
    type: 'button', class: 'seg', 'aria-pressed': String(iv === interval), dataset: { interval: iv },
    onclick: () => choose(iv),
  }, iv));
  const chartEl = h('div', { id: 'chart', class: 'chart', dataset: { state: 'loading' } });
  const chartMessage = h('div', { class: 'chart-message', id: 'chart-message', role: 'status' });

  fill(main, h('section', { class: 'page coin' },
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '/dashboard' }, 'Top coins'), ' › ', symbol),
    h('div', { class: 'coin-head' }, title, facts),
    headMessage,
    h('div', { class: 'toolbar' },
      h('div', { class: 'segmented', role: 'group', 'aria-label': 'Candle interval' }, buttons),
      h('span', { class: 'muted small' }, 'Times in UTC · drag to scroll, wheel or pinch to zoom'),
    ),
    h('div', { class: 'chart-box' }, chartEl, chartMessage),
  ));
  document.title = `${symbol} · topcoins`;

  const c = colors();
  const { chart, dispose } = themedChart(chartEl, {
    timeScale: { timeVisible: true, secondsVisible: false, rightOffset: 3 },
  });
  const candles = chart.addSeries(CandlestickSeries, {
    upColor: c.up, downColor: c.down, wickUpColor: c.up, wickDownColor: c.down, borderVisible: false,
  });
  const volume = chart.addSeries(HistogramSeries, {
    priceFormat: { type: 'volume' }, priceLineVisible: false, lastValueVisible: false,
  }, 1);
  chart.panes()[1].setHeight(90);
  const recolor = () => {
    const k = colors();
    candles.applyOptions({ upColor: k.up, downColor: k.down, wickUpColor: k.up, wickDownColor: k.down });
    volume.setData(bars.filter((b) => b.volume !== null && b.volume !== undefined).map(volumeBar));
  };
  document.addEventListener('themechange', recolor);

  function volumeBar(b) {
    const k = colors();
    return { time: toTime(b.time), value: b.volume, color: `${b.close >= b.open ? k.up : k.down}66` };
  }

  function choose(iv) {
    if (iv === interval) return;
    interval = iv;
    for (const b of buttons) b.setAttribute('aria-pressed', String(b.dataset.interval === iv));
    try {
      localStorage.setItem(INTERVAL_KEY, iv);
    } catch {
      // Not kept.
    }
    const u = new URL(location.href);
    u.searchParams.set('interval', iv);
    history.replaceState(history.state, '', u.pathname + u.search);
    loadCandles();
  }

  async function loadCoin() {
    try {
      coin = await api(`/v1/coins/${seg(symbol)}`);
      if (disposed) return;
      fill(headMessage);
      showCoin();
    } catch (e) {
      if (disposed) return;
      if (e.status === 404) {
        fill(headMessage, h('p', { class: 'note' }, `${symbol} is not in the top list.`));
      } else {
        fill(headMessage, errorBox(e, 'Could not load the coin'));
      }
    }
  }

  function showCoin() {
    fill(title, coin.name, ' ', h('span', { class: 'sym muted' }, coin.symbol));
    document.title = `${coin.symbol} ${fmt.price(coin.price_usd)} · topcoins`;
    const fact = (name, value, cls) => h('div', null, h('dt', null, name), h('dd', { class: cls }, value));
    fill(facts,
      fact('Rank', `#${coin.rank}`),
      fact('Price', fmt.price(coin.price_usd), 'price'),
      fact('24 h', fmt.pct(coin.change_24h_pct), `change ${fmt.direction(coin.change_24h_pct)}`),
      fact('Market cap', fmt.usdShort(coin.market_cap_usd)),
      fact('Volume 24 h', fmt.usdShort(coin.volume_24h_usd)),
      fact('As of', h('time', { datetime: coin.as_of }, new Date(coin.as_of).toLocaleTimeString()),
        coin.stale ? 'stale' : null),
    );
  }

  async function loadCandles() {
    const seq = ++loadSeq;
    const q = candlesQuery(interval);
    Object.assign(chartEl.dataset, { state: 'loading', interval: q.interval, limit: String(q.limit), from: String(q.from) });
    fill(chartMessage, 'Loading candles…');
    chartMessage.hidden = false;
    let rows = [];
    try {
      let cursor = null;
      for (let page = 0; page < MAX_PAGES; page++) {
        const body = await api(query(`/v1/coins/${seg(symbol)}/candles`, { ...q, cursor }));
        rows = rows.concat(body.data);
        cursor = body.meta && body.meta.next_cursor;
        if (!cursor) break;
      }
    } catch (e) {
      if (seq !== loadSeq || disposed) return;
      bars = [];
      draw();
      chartEl.dataset.state = 'error';
      const text = e.code === 'history_unavailable'
        ? 'No price history here: this server has no history database (or it is down).'
        : e.status === 404 ? `No history for ${symbol}.` : null;
      fill(chartMessage, text ? h('p', { class: 'note' }, text) : errorBox(e, 'Could not load candles'));
      return;
    }
    if (seq !== loadSeq || disposed) return;
    bars = rows.map((r) => ({ time: r.time, open: r.open, high: r.high, low: r.low, close: r.close, volume: r.volume }));
    draw();
    chart.timeScale().fitContent();
    if (bars.length) {
      chartMessage.hidden = true;
      fill(chartMessage);
    } else {
      fill(chartMessage, h('p', { class: 'note' }, `No ${interval} candles for ${symbol} yet.`));
    }
  }

  function draw() {
    if (bars.length) {
      const { minMove } = priceFormat(bars[bars.length - 1].close);
      candles.applyOptions({ priceFormat: { type: 'custom', formatter: fmt.price, minMove } });
    }
    candles.setData(bars.map((b) => ({ time: toTime(b.time), open: b.open, high: b.high, low: b.low, close: b.close })));
    volume.setData(bars.filter((b) => b.volume !== null && b.volume !== undefined).map(volumeBar));
    expose();
  }

  function expose() {
    const last = bars[bars.length - 1];
    Object.assign(chartEl.dataset, {
      state: bars.length ? 'ready' : 'empty',
      bars: String(bars.length),
      lastClose: last ? String(last.close) : '',
      lastTime: last ? String(last.time) : '',
      firstTime: bars.length ? String(bars[0].time) : '',
    });
    chartEl.setAttribute('aria-label', last
      ? `${symbol} ${interval} candles: ${bars.length}, last close ${fmt.price(last.close)}`
      : `${symbol} ${interval} candles: none`);
  }

  /** A live price: the header, and the last candle (or a new one). */
  function onPrice(ev) {
    if (!ev || String(ev.symbol).toUpperCase() !== symbol || typeof ev.price_usd !== 'number') return;
    if (coin) {
      coin.price_usd = ev.price_usd;
      if ('change_24h_pct' in ev) coin.change_24h_pct = ev.change_24h_pct;
      if (ev.rank) coin.rank = ev.rank;
      if (ev.as_of) coin.as_of = ev.as_of;
      showCoin();
    }
    const t = Date.parse(ev.as_of);
    if (!Number.isFinite(t) || chartEl.dataset.state !== 'ready') return;
    const { ms } = INTERVALS[interval];
    const bucket = Math.floor(t / ms) * ms;
    const last = bars[bars.length - 1];
    const p = ev.price_usd;
    let bar;
    if (bucket === last.time) {
      bar = last;
      bar.close = p;
      bar.high = Math.max(bar.high, p);
      bar.low = Math.min(bar.low, p);
    } else if (bucket > last.time) {
      bar = { time: bucket, open: p, high: p, low: p, close: p, volume: null };
      bars.push(bar);
    } else {
      return; // an old price: the chart is newer already
    }
    candles.update({ time: toTime(bar.time), open: bar.open, high: bar.high, low: bar.low, close: bar.close });
    if (bar.volume !== null && bar.volume !== undefined) volume.update(volumeBar(bar)); // its colour follows
    expose();
  }

  const offEvents = stream.on((ev) => {
    if (ev.type === 'price') onPrice(ev.data);
    else if (ev.type === 'resync') {
      loadCoin();
      loadCandles();
    }
  });
  stream.configure({ symbols: [symbol], metrics: [] });

  loadCoin();
  loadCandles();

  return () => {
    disposed = true;
    loadSeq++;
    offEvents();
    document.removeEventListener('themechange', recolor);
    dispose();
  };
}
