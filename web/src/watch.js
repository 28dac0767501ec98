// The watchlist (/dashboard/watchlist), behind an API key kept in localStorage:
// - the caller's watched metrics (GET /v1/watchlist: value, rank and the last 24 h of records
//   in one call), each with a small line chart, kept live by the stream's `metric` events;
//   add one (POST /v1/watchlist, exchange and pair from GET /v1/exchanges), remove one
//   (DELETE /v1/watchlist/{exchange}/{pair}/{metric});
// - alert rules (GET/POST /v1/alerts/rules, DELETE and test-fire one);
// - what fired (GET /v1/alerts), fetched again when the stream brings an `alert`.

import { LineSeries } from 'lightweight-charts';
import { api, query, seg, storedKey, storeKey } from './api.js';
import { h, fill, errorBox } from './dom.js';
import { themedChart, priceFormat, toTime, uniqueByTime } from './charts.js';
import { colors } from './theme.js';
import * as fmt from './format.js';

export const METRIC_KINDS = ['price', 'high', 'low', 'change_pct', 'change_abs', 'volume', 'volume_quote'];
const METRIC_LABELS = {
  price: 'price (last trade)', high: 'high (24 h)', low: 'low (24 h)', change_pct: 'change % (24 h)',
  change_abs: 'change (24 h)', volume: 'volume (base)', volume_quote: 'volume (quote)',
};
const CONDITIONS = {
  price_above: { label: 'value above', level: 'threshold', levelLabel: 'Threshold', example: '100000' },
  price_below: { label: 'value below', level: 'threshold', levelLabel: 'Threshold', example: '50000' },
  above_average: { label: 'above factor × average', level: 'factor', levelLabel: 'Factor', example: '3' },
  below_average: { label: 'below average ÷ factor', level: 'factor', levelLabel: 'Factor', example: '3' },
  change_pct: { label: 'moves more than % (either way)', level: 'percent', levelLabel: 'Percent', example: '5' },
};
const WINDOW_PATTERN = '([1-9][0-9]{0,3}m|([1-9]|[1-9][0-9]|1[0-5][0-9]|16[0-8])h|[1-7]d)';
const DAY_MS = 86_400_000;

export function mountWatch(main, { stream }) {
  let key = storedKey();
  let disposed = false;
  const cards = new Map(); // metric id -> {el, entry, series, chart, value, rank, records}
  let alertsTimer = 0;

  const keySection = h('section', { class: 'panel', 'aria-labelledby': 'key-h' });
  const body = h('div', { class: 'watch-body' });
  fill(main, h('section', { class: 'page watch' },
    h('h1', { tabindex: '-1' }, 'Watchlist and alerts'),
    keySection,
    body,
  ));
  document.title = 'Watchlist · topcoins';

  // ---- the key ----------------------------------------------------------------------------

  function showKey(error) {
    if (!key) {
      const input = h('input', {
        id: 'api-key', type: 'password', autocomplete: 'off', spellcheck: 'false', required: true,
        placeholder: 'tck_…', 'aria-describedby': 'key-help',
      });
      const form = h('form', { class: 'key-form', onsubmit: async (e) => {
        e.preventDefault();
        const k = input.value.trim();
        if (!k) return;
        try {
          await api('/v1/watchlist?limit=1', { key: k }); // checks the key
        } catch (err) {
          showKey(err);
          return;
        }
        key = k;
        storeKey(k);
        showKey();
        start();
      } },
      h('label', { for: 'api-key' }, 'API key'),
      h('div', { class: 'row' }, input, h('button', { type: 'submit' }, 'Use key')),
      h('p', { id: 'key-help', class: 'muted small' },
        'Your key (tck_…) is kept in this browser only (localStorage) and sent as a bearer token.'),
      error ? errorBox(error, 'The key was not accepted') : null);
      fill(keySection, h('h2', { id: 'key-h' }, 'API key'), form);
      fill(body);
      stream.configure({ key: '', metrics: [] });
    } else {
      fill(keySection,
        h('h2', { id: 'key-h', class: 'sr-only' }, 'API key'),
        h('p', { class: 'row' },
          h('span', null, 'Using key ', h('code', null, `${key.slice(0, 12)}…`)),
          h('button', { type: 'button', id: 'forget-key', class: 'secondary', onclick: forget }, 'Forget key')),
        error ? errorBox(error) : null);
    }
  }

  function forget() {
    key = '';
    storeKey('');
    disposeCards();
    showKey();
    keySection.querySelector('input')?.focus();
  }

  // ---- the watchlist ------------------------------------------------------------------------

  const listMessage = h('div', { class: 'message', id: 'watch-message' });
  const cardsEl = h('div', { class: 'cards', id: 'watchlist' });
  const addForm = h('form', { class: 'add-form', id: 'add-metric' });
  const addMessage = h('div', { class: 'message', role: 'status' });
  const rulesEl = h('div', { id: 'rules' });
  const ruleForm = h('form', { class: 'rule-form', id: 'add-rule' });
  const ruleMessage = h('div', { class: 'message', role: 'status' });
  const alertsEl = h('div', { id: 'alerts' });

  function start() {
    fill(body,
      h('section', { class: 'panel', 'aria-labelledby': 'wl-h' },
        h('h2', { id: 'wl-h' }, 'Watched metrics'),
        listMessage, cardsEl,
        h('h3', null, 'Add a metric'), addForm, addMessage),
      h('section', { class: 'panel', 'aria-labelledby': 'rules-h' },
        h('h2', { id: 'rules-h' }, 'Alert rules'),
        rulesEl,
        h('h3', null, 'New rule'), ruleForm, ruleMessage),
      h('section', { class: 'panel', 'aria-labelledby': 'alerts-h' },
        h('h2', { id: 'alerts-h' }, 'Alert history'),
        alertsEl),
    );
    buildAddForm();
    buildRuleForm();
    loadWatchlist();
    loadRules();
    loadAlerts();
  }

  /** A call with the key; a refused key sends the visitor back to the key form. */
  async function call(path, options = {}) {
    try {
      return await api(path, { ...options, key });
    } catch (e) {
      if (e.status === 401 && key && !disposed) {
        key = '';
        storeKey('');
        disposeCards();
        showKey(e);
      }
      throw e;
    }
  }

  async function loadWatchlist() {
    let entries = [];
    try {
      let cursor = null;
      do {
        const page = await call(query('/v1/watchlist', { limit: 100, cursor }));
        entries = entries.concat(page.data);
        cursor = page.meta && page.meta.next_cursor;
      } while (cursor);
    } catch (e) {
      if (!disposed && key) fill(listMessage, errorBox(e, 'Could not load the watchlist'));
      return;
    }
    if (disposed) return;
    fill(listMessage, entries.length ? null : h('p', { class: 'note' }, 'Nothing watched yet: add a metric below.'));
    const ids = new Set(entries.map((e) => e.id));
    for (const [id, card] of cards) {
      if (!ids.has(id)) removeCard(id, card);
    }
    for (const entry of entries) {
      const card = cards.get(entry.id);
      if (card) updateCard(card, entry, true);
      else addCard(entry);
    }
    // Keep the cards in id order, as the API lists them; fit the charts once they have a size.
    cardsEl.replaceChildren(...entries.map((e) => cards.get(e.id).el));
    requestAnimationFrame(() => {
      for (const card of cards.values()) card.chart.timeScale().fitContent();
    });
    stream.configure({ metrics: entries.map((e) => e.id).sort(), key, symbols: [] });
    refreshRuleMetrics();
  }

  function addCard(entry) {
    const value = h('span', { class: 'value' });
    const rank = h('span', { class: 'rank muted' });
    const note = h('p', { class: 'chart-note muted small' });
    const chartEl = h('div', { class: 'spark' });
    const remove = h('button', {
      type: 'button', class: 'secondary remove', 'aria-label': `Remove ${entry.id}`,
      onclick: () => unwatch(entry),
    }, 'Remove');
    const el = h('article', { class: 'card', dataset: { metricId: entry.id } },
      h('header', null,
        h('h3', null, `${entry.exchange} ${entry.pair.toUpperCase()} `, h('span', { class: 'muted' }, METRIC_LABELS[entry.metric] || entry.metric)),
        remove),
      h('p', { class: 'figures' }, value, ' ', rank),
      h('div', { class: 'spark-box' }, chartEl, note),
    );
    const { chart, dispose } = themedChart(chartEl, {
      handleScroll: false,
      handleScale: false,
      timeScale: { timeVisible: true, secondsVisible: false },
      rightPriceScale: { scaleMargins: { top: 0.15, bottom: 0.1 } },
      crosshair: { horzLine: { visible: false } },
    });
    const series = chart.addSeries(LineSeries, { color: colors().accent, lineWidth: 2, priceLineVisible: false });
    const card = { el, entry, value, rank, note, chartEl, chart, dispose, series, records: [] };
    cards.set(entry.id, card);
    updateCard(card, entry, true);
    return card;
  }

  function updateCard(card, entry, withRecords) {
    Object.assign(card.entry, entry);
    const e = card.entry;
    card.value.textContent = fmt.num(e.value);
    card.value.title = e.as_of ? `as of ${new Date(e.as_of).toLocaleString()}` : 'not polled yet';
    card.rank.textContent = e.rank ? `rank ${e.rank.position} of ${e.rank.of}` : 'not ranked yet';
    card.rank.title = e.rank && e.rank.stddev_24h !== null && e.rank.stddev_24h !== undefined
      ? `by its standard deviation over 24 h (${fmt.num(e.rank.stddev_24h)}), largest first`
      : '';
    if (withRecords && entry.records) {
      card.records = uniqueByTime(entry.records.map((r) => ({ time: toTime(r.time), value: r.value })));
      if (card.records.length) setFormat(card, card.records[card.records.length - 1].value);
      card.series.setData(card.records);
      card.chart.timeScale().fitContent();
    }
    card.chartEl.dataset.points = String(card.records.length);
    card.note.textContent = card.records.length ? '' : 'No records in the last 24 h yet: they arrive with each poll.';
    card.note.hidden = card.records.length > 0;
  }

  function setFormat(card, value) {
    card.series.applyOptions({ priceFormat: { type: 'custom', formatter: fmt.num, minMove: priceFormat(value).minMove } });
  }

  /** A `metric` event: the card's value, rank, and one more point. */
  function onMetric(m) {
    const card = m && cards.get(m.id);
    if (!card) return;
    updateCard(card, { value: m.value, as_of: m.as_of, rank: m.rank }, false);
    const t = toTime(Date.parse(m.as_of));
    if (!Number.isFinite(t) || typeof m.value !== 'number') return;
    const last = card.records[card.records.length - 1];
    if (last && t < last.time) return;
    const point = { time: t, value: m.value };
    if (last && last.time === t) card.records[card.records.length - 1] = point;
    else card.records.push(point);
    const cutoff = toTime(Date.now() - DAY_MS);
    while (card.records.length && card.records[0].time < cutoff) card.records.shift();
    if (card.records.length === 1) {
      setFormat(card, m.value);
      card.series.setData(card.records);
    } else card.series.update(point);
    card.chart.timeScale().fitContent();
    card.chartEl.dataset.points = String(card.records.length);
    card.note.hidden = true;
  }

  function removeCard(id, card) {
    card.dispose();
    card.el.remove();
    cards.delete(id);
  }

  function disposeCards() {
    for (const [id, card] of cards) removeCard(id, card);
  }

  async function unwatch(entry) {
    const card = cards.get(entry.id);
    const button = card && card.el.querySelector('button.remove');
    if (button) button.disabled = true;
    try {
      await call(`/v1/watchlist/${seg(entry.exchange)}/${seg(entry.pair)}/${seg(entry.metric)}`, { method: 'DELETE' });
    } catch (e) {
      if (button) button.disabled = false;
      if (!disposed && key) fill(listMessage, errorBox(e, `Could not remove ${entry.id}`));
      return;
    }
    if (disposed) return;
    fill(addMessage, h('p', { class: 'ok' }, `Removed ${entry.id}.`));
    await loadWatchlist();
    addForm.querySelector('button')?.focus();
  }

  // ---- adding a metric ----------------------------------------------------------------------

  async function buildAddForm() {
    fill(addForm, h('p', { class: 'muted' }, 'Loading exchanges…'));
    let exchanges;
    try {
      exchanges = (await api('/v1/exchanges')).data;
    } catch (e) {
      if (!disposed) fill(addForm, errorBox(e, 'Could not load the exchanges'));
      return;
    }
    if (disposed) return;
    if (!exchanges.length) {
      fill(addForm, h('p', { class: 'note' }, 'No exchange has listed its pairs yet. Try again in a minute.'));
      return;
    }
    const exchange = h('select', { id: 'add-exchange', name: 'exchange' },
      exchanges.map((x) => h('option', { value: x.id }, x.id)));
    const pair = h('select', { id: 'add-pair', name: 'pair' });
    const metric = h('select', { id: 'add-metric-kind', name: 'metric' },
      METRIC_KINDS.map((k) => h('option', { value: k, selected: k === 'price' }, METRIC_LABELS[k])));
    const fillPairs = () => {
      const x = exchanges.find((e) => e.id === exchange.value);
      fill(pair, (x ? x.pairs : []).map((p) => h('option', { value: p }, p)));
    };
    exchange.addEventListener('change', fillPairs);
    fillPairs();
    const submit = h('button', { type: 'submit' }, 'Add');
    fill(addForm,
      h('label', { class: 'field' }, 'Exchange ', exchange),
      h('label', { class: 'field' }, 'Pair ', pair),
      h('label', { class: 'field' }, 'Metric ', metric),
      submit);
    addForm.onsubmit = async (e) => {
      e.preventDefault();
      submit.disabled = true;
      const body = { exchange: exchange.value, pair: pair.value, metric: metric.value };
      try {
        const added = await call('/v1/watchlist', { method: 'POST', body });
        if (!disposed) fill(addMessage, h('p', { class: 'ok' }, `Watching ${added.id}. Its pair is polled from the next cycle on.`));
      } catch (err) {
        if (!disposed && key) fill(addMessage, errorBox(err, 'Could not add the metric'));
        return;
      } finally {
        submit.disabled = false;
      }
      if (!disposed) await loadWatchlist();
    };
  }

  // ---- alert rules -------------------------------------------------------------------------

  const metricOptions = h('datalist', { id: 'rule-metrics' });

  function refreshRuleMetrics() {
    const ids = [...cards.keys(), 'coin:BTC:price', 'coin:ETH:price'];
    fill(metricOptions, ids.map((id) => h('option', { value: id })));
  }

  function buildRuleForm() {
    const metric = h('input', {
      id: 'rule-metric', name: 'metric', list: 'rule-metrics', required: true, autocomplete: 'off',
      spellcheck: 'false', placeholder: 'kraken:btc-usd:price or coin:BTC:price', value: 'coin:BTC:price',
    });
    const type = h('select', { id: 'rule-type', name: 'type' },
      Object.entries(CONDITIONS).map(([k, c]) => h('option', { value: k }, c.label)));
    const levelLabel = h('span', null, 'Threshold');
    const level = h('input', {
      id: 'rule-level', name: 'level', type: 'number', step: 'any', required: true, inputmode: 'decimal', size: 10,
    });
    const windowInput = h('input', {
      id: 'rule-window', name: 'window', value: '1h', pattern: WINDOW_PATTERN, size: 5,
      title: 'minutes (1m-9999m), hours (1h-168h) or days (1d-7d)',
    });
    const channel = h('select', { id: 'rule-channel', name: 'channel' },
      ['webhook', 'slack', 'email', 'nats'].map((k) => h('option', { value: k }, k)));
    const targetLabel = h('span', null, 'URL');
    const target = h('input', { id: 'rule-target', name: 'target', type: 'url', required: true, placeholder: 'https://example.com/hook' });
    const targetField = h('label', { class: 'field grow' }, targetLabel, ' ', target);
    const sync = () => {
      levelLabel.textContent = CONDITIONS[type.value].levelLabel;
      level.placeholder = CONDITIONS[type.value].example;
      const c = channel.value;
      targetField.hidden = c === 'nats';
      target.required = c !== 'nats';
      target.type = c === 'email' ? 'email' : 'url';
      targetLabel.textContent = c === 'email' ? 'To' : 'URL';
      target.placeholder = c === 'email' ? 'ops@example.com' : c === 'slack' ? 'https://hooks.slack.com/services/…' : 'https://example.com/hook';
    };
    type.addEventListener('change', sync);
    channel.addEventListener('change', sync);
    const submit = h('button', { type: 'submit' }, 'Create rule');
    fill(ruleForm,
      metricOptions,
      h('label', { class: 'field grow' }, 'Metric ', metric),
      h('label', { class: 'field' }, 'When ', type),
      h('label', { class: 'field' }, levelLabel, ' ', level),
      h('label', { class: 'field' }, 'Window ', windowInput),
      h('label', { class: 'field' }, 'Channel ', channel),
      targetField,
      submit);
    sync();
    refreshRuleMetrics();
    ruleForm.onsubmit = async (e) => {
      e.preventDefault();
      const c = CONDITIONS[type.value];
      const condition = { type: type.value, [c.level]: Number(level.value) };
      if (windowInput.value.trim()) condition.window = windowInput.value.trim();
      const ch = { type: channel.value };
      if (channel.value === 'email') ch.to = target.value.trim();
      else if (channel.value !== 'nats') ch.url = target.value.trim();
      submit.disabled = true;
      try {
        const created = await call('/v1/alerts/rules', {
          method: 'POST', body: { metric: metric.value.trim(), condition, channel: ch },
        });
        if (disposed) return;
        fill(ruleMessage, h('div', { class: 'ok' },
          h('p', null, `Rule ${created.id} created.`),
          created.secret && channel.value !== 'nats' && channel.value !== 'email'
            ? h('p', null, 'Its signing secret, shown this once: ', h('code', { class: 'secret' }, created.secret))
            : null));
        loadRules();
      } catch (err) {
        if (!disposed && key) fill(ruleMessage, errorBox(err, 'Could not create the rule'));
      } finally {
        submit.disabled = false;
      }
    };
  }

  function describe(cond) {
    const c = CONDITIONS[cond.type];
    const lvl = cond[c ? c.level : 'threshold'];
    let text;
    switch (cond.type) {
      case 'price_above': text = `above ${fmt.num(lvl)}`; break;
      case 'price_below': text = `below ${fmt.num(lvl)}`; break;
      case 'above_average': text = `above ${lvl} × its ${cond.window} average`; break;
      case 'below_average': text = `below its ${cond.window} average ÷ ${lvl}`; break;
      case 'change_pct': text = `moves ${lvl} % within ${cond.window}`; break;
      default: text = cond.type;
    }
    if (cond.for) text += `, for ${cond.for}`;
    return text;
  }

  async function loadRules() {
    let rules;
    try {
      rules = (await call(query('/v1/alerts/rules', { limit: 1000 }))).data;
    } catch (e) {
      if (!disposed && key) fill(rulesEl, errorBox(e, 'Could not load the rules'));
      return;
    }
    if (disposed) return;
    if (!rules.length) {
      fill(rulesEl, h('p', { class: 'note' }, 'No rules yet.'));
      return;
    }
    fill(rulesEl, h('div', { class: 'table-wrap' }, h('table', { class: 'rules' },
      h('thead', null, h('tr', null,
        ['Metric', 'Condition', 'Channel', 'Created', ''].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', null, rules.map((r) => h('tr', { dataset: { ruleId: r.id } },
        h('td', null, h('code', null, r.metric)),
        h('td', null, describe(r.condition)),
        h('td', null, r.channel.type, r.channel.url || r.channel.to ? ` → ${r.channel.url || r.channel.to}` : '',
          r.channel.disabled ? h('span', { class: 'badge stale' }, 'disabled') : null),
        h('td', null, fmt.dateTime(r.created)),
        h('td', { class: 'actions' },
          h('button', { type: 'button', class: 'secondary', 'aria-label': `Send a test alert for rule ${r.id}`, onclick: () => testRule(r) }, 'Test'),
          ' ',
          h('button', { type: 'button', class: 'secondary danger', 'aria-label': `Delete rule ${r.id}`, onclick: () => deleteRule(r) }, 'Delete')),
      ))),
    )));
  }

  async function deleteRule(r) {
    try {
      await call(`/v1/alerts/rules/${seg(r.id)}`, { method: 'DELETE' });
      if (!disposed) fill(ruleMessage, h('p', { class: 'ok' }, `Rule ${r.id} deleted.`));
    } catch (e) {
      if (!disposed && key) fill(ruleMessage, errorBox(e, 'Could not delete the rule'));
    }
    if (!disposed) loadRules();
  }

  async function testRule(r) {
    try {
      await call(`/v1/alerts/rules/${seg(r.id)}/test`, { method: 'POST' });
      if (!disposed) fill(ruleMessage, h('p', { class: 'ok' }, `A test alert for ${r.id} is on its way.`));
      loadAlertsSoon();
    } catch (e) {
      if (!disposed && key) fill(ruleMessage, errorBox(e, 'Could not test the rule'));
    }
  }

  // ---- alert history -----------------------------------------------------------------------

  async function loadAlerts() {
    let alerts;
    try {
      alerts = (await call(query('/v1/alerts', { limit: 50 }))).data;
    } catch (e) {
      if (!disposed && key) fill(alertsEl, errorBox(e, 'Could not load the alerts'));
      return;
    }
    if (disposed) return;
    if (!alerts.length) {
      fill(alertsEl, h('p', { class: 'note' }, 'Nothing has fired yet.'));
      return;
    }
    fill(alertsEl, h('div', { class: 'table-wrap' }, h('table', { class: 'alerts' },
      h('thead', null, h('tr', null,
        ['Time', 'Metric', 'Kind', 'Value', 'Average', 'Delivery'].map((t, i) => h('th', { scope: 'col', class: i >= 3 && i <= 4 ? 'num' : null }, t)))),
      h('tbody', null, alerts.map((a) => {
        const d = a.delivery;
        const last = d.attempts[d.attempts.length - 1];
        return h('tr', null,
          h('td', null, fmt.dateTime(a.time)),
          h('td', null, h('code', null, a.metric)),
          h('td', null, a.kind),
          h('td', { class: 'num' }, fmt.num(a.value)),
          h('td', { class: 'num' }, fmt.num(a.average)),
          h('td', { title: last ? `attempt ${last.attempt}: ${last.outcome}${last.status_code ? ` (${last.status_code})` : ''}` : '' },
            h('span', { class: `badge ${d.status}` }, d.status),
            ` ${d.attempts.length} attempt${d.attempts.length === 1 ? '' : 's'}`,
            d.next_attempt ? `, next ${fmt.dateTime(d.next_attempt)}` : ''));
      })),
    )));
  }

  function loadAlertsSoon() {
    clearTimeout(alertsTimer);
    alertsTimer = setTimeout(loadAlerts, 1000);
  }

  // ---- live --------------------------------------------------------------------------------

  const offEvents = stream.on((ev) => {
    if (!key) return;
    if (ev.type === 'metric') onMetric(ev.data);
    else if (ev.type === 'alert') loadAlertsSoon();
    else if (ev.type === 'resync') {
      loadWatchlist();
      loadAlertsSoon();
    }
  });

  // No coin prices here: `symbols=` (empty) asks for none.
  stream.configure({ symbols: [], metrics: [] });
  showKey();
  if (key) start();

  return () => {
    disposed = true;
    offEvents();
    clearTimeout(alertsTimer);
    disposeCards();
  };
}
