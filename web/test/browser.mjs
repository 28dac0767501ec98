// Browser test of the dashboard against a running topcoins (API node with /dashboard and
// /v1/stream), in headless Chromium through playwright-core.
//
//   TOPCOINS_BASE=http://127.0.0.1:18080 TOPCOINS_KEY=tck_… SCREENSHOT_DIR=/tmp/shots \
//     node web/test/browser.mjs
//
// CHROMIUM names the browser (default /usr/bin/chromium). Prints one line per check passed;
// exits 1 with the reason at the first that fails. The market must move while it runs (the
// simulator stepping about every second), and the key's user may have anything on their
// watchlist: the test adds and removes one metric of its own.

import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const BASE = (process.env.TOPCOINS_BASE || 'http://127.0.0.1:8080').replace(/\/+$/, '');
const KEY = process.env.TOPCOINS_KEY || '';
const SHOTS = process.env.SCREENSHOT_DIR || fs.mkdtempSync(path.join(os.tmpdir(), 'topcoins-shots-'));
const FIRST_LOAD_BUDGET = 300 * 1024;
const ROWS_WITHIN_MS = 1000;

class CheckFailed extends Error {}
let passed = 0;
function ok(message) {
  passed++;
  console.log(`ok ${passed} - ${message}`);
}
function fail(message) {
  throw new CheckFailed(message);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function getJson(pathname, key) {
  const headers = { Accept: 'application/json' };
  if (key) headers.Authorization = `Bearer ${key}`;
  const r = await fetch(`${BASE}${pathname}`, { headers });
  if (!r.ok) fail(`GET ${pathname} answered ${r.status}: ${await r.text()}`);
  return r.json();
}

async function send(method, pathname, key) {
  const r = await fetch(`${BASE}${pathname}`, { method, headers: { Authorization: `Bearer ${key}` } });
  return r.status;
}

/** Candles as the page asks for them: the same query, following next_cursor as it does (4 pages at most). */
async function apiCandles(symbol, d) {
  let rows = [];
  let cursor = null;
  for (let page = 0; page < 4; page++) {
    const q = new URLSearchParams({ interval: d.interval, from: d.from, limit: d.limit });
    if (cursor) q.set('cursor', cursor);
    const body = await getJson(`/v1/coins/${encodeURIComponent(symbol)}/candles?${q}`);
    rows = rows.concat(body.data);
    cursor = body.meta.next_cursor;
    if (!cursor) break;
  }
  return rows;
}

// ---- what must not happen on any page ------------------------------------------------------

const problems = [];
const aborted = [];
function watch(page, label) {
  page.on('console', (msg) => {
    if (msg.type() === 'error' || msg.type() === 'warning') {
      problems.push(`${label}: console ${msg.type()}: ${msg.text()} (${msg.location().url || 'no url'})`);
    }
  });
  page.on('pageerror', (err) => problems.push(`${label}: page error: ${err.message}`));
  page.on('requestfailed', (req) => {
    const why = req.failure() ? req.failure().errorText : 'failed';
    // ERR_ABORTED is the page's own doing: leaving it (a reload, the next page) or the stream
    // following other symbols ends a request in flight. Anything else is a failure.
    if (why === 'net::ERR_ABORTED') {
      aborted.push(new URL(req.url()).pathname);
      return;
    }
    problems.push(`${label}: request failed: ${req.method()} ${req.url()}: ${why}`);
  });
  page.on('response', (res) => {
    if (res.status() >= 400) problems.push(`${label}: ${res.status()} for ${res.request().method()} ${res.url()}`);
  });
}

function rowSymbols(page) {
  return page.$$eval('#coins tbody tr', (trs) => trs.map((tr) => tr.dataset.symbol));
}

// ---- the checks ------------------------------------------------------------------------------

async function firstLoad(context) {
  const page = await context.newPage();
  watch(page, 'first load');
  const responses = [];
  page.on('response', (r) => responses.push(r));
  const started = Date.now();
  await page.goto(`${BASE}/dashboard`, { waitUntil: 'domcontentloaded' });
  await page.waitForSelector('#coins tbody tr', { timeout: 10_000 });
  const wallMs = Date.now() - started;
  await page.waitForLoadState('load');
  const markMs = await page.evaluate(() => {
    const m = performance.getEntriesByName('topcoins:rows')[0];
    return m ? m.startTime : null;
  });
  let bodies = 0;
  let headers = 0;
  const lines = [];
  for (const r of responses) {
    if (new URL(r.url()).pathname === '/v1/stream') continue; // never ends: not a load
    const s = await r.request().sizes();
    bodies += s.responseBodySize;
    headers += s.responseHeadersSize;
    lines.push(`${new URL(r.url()).pathname}${new URL(r.url()).search} ${s.responseBodySize} B (${r.headers()['content-encoding'] || 'identity'})`);
  }
  console.log(`# first load: ${lines.join(', ')}`);
  console.log(`# first load: ${bodies} B of bodies (+${headers} B of headers); rows after ${markMs === null ? '?' : markMs.toFixed(0)} ms from navigation start (${wallMs} ms wall clock)`);
  if (bodies > FIRST_LOAD_BUDGET) fail(`first load transferred ${bodies} B, over ${FIRST_LOAD_BUDGET}`);
  if (markMs === null) fail('the page set no topcoins:rows mark');
  if (markMs > ROWS_WITHIN_MS) fail(`the rows appeared ${markMs.toFixed(0)} ms after navigation start, over ${ROWS_WITHIN_MS}`);
  ok(`first load ${(bodies / 1024).toFixed(1)} KiB transferred (≤ 300 KB), rows within ${markMs.toFixed(0)} ms (≤ 1 s)`);
  return page;
}

async function topList(page) {
  let last = '';
  for (let attempt = 0; attempt < 20; attempt++) {
    const api = await getJson('/?limit=200');
    const want = api.data.map((e) => e.symbol);
    const shown = await rowSymbols(page);
    if (want.length !== 200) fail(`GET /?limit=200 gave ${want.length} coins; the test wants a market of 200 or more`);
    if (shown.length === want.length && shown.every((s, i) => s === want[i])) {
      ok(`/dashboard shows the 200 symbols of GET /?limit=200 in the same order (${want.slice(0, 3).join(', ')}, …)`);
      await page.screenshot({ path: path.join(SHOTS, 'dashboard.png'), fullPage: true });
      ok(`screenshot ${path.join(SHOTS, 'dashboard.png')}`);
      return;
    }
    const i = shown.findIndex((s, k) => s !== want[k]);
    last = `${shown.length} rows shown, GET / has ${want.length}; first difference at #${i + 1}: page ${shown[i]}, API ${want[i]}`;
    await sleep(500); // the ranking moved between the two reads: they meet again soon
  }
  fail(`the top list does not match GET /?limit=200: ${last}`);
}

async function livePrices(page) {
  await page.waitForSelector('#live[data-state="open"]', { timeout: 5000 })
    .catch(() => fail('the live stream did not connect within 5 s (#live is not "open")'));
  await page.evaluate(() => {
    window.__sameDocument = true;
    window.__prices = Object.fromEntries([...document.querySelectorAll('#coins tbody tr')]
      .map((tr) => [tr.dataset.symbol, tr.querySelector('.price').textContent]));
  });
  const started = Date.now();
  const changed = await page.waitForFunction(() => {
    const out = [];
    for (const tr of document.querySelectorAll('#coins tbody tr')) {
      const before = window.__prices[tr.dataset.symbol];
      const now = tr.querySelector('.price').textContent;
      if (before !== undefined && before !== now) out.push(`${tr.dataset.symbol} ${before} → ${now}`);
    }
    return out.length ? out : null;
  }, null, { timeout: 2000, polling: 50 }).catch(() => null);
  if (!changed) fail('no displayed price changed within 2 s');
  const list = await changed.jsonValue();
  const same = await page.evaluate(() => window.__sameDocument === true);
  if (!same) fail('the page was reloaded');
  ok(`a displayed price changed without a reload after ${Date.now() - started} ms (${list.length} rows, e.g. ${list[0]})`);
}

async function coinPage(context) {
  const page = await context.newPage();
  watch(page, 'coin');
  await page.goto(`${BASE}/dashboard/coins/BTC`);
  await compareChart(page, 'BTC');
  await page.click('button[data-interval="1d"]');
  await page.waitForFunction(() => {
    const d = document.querySelector('#chart').dataset;
    return d.interval === '1d' && d.state !== 'loading';
  }, null, { timeout: 10_000 });
  if (new URL(page.url()).searchParams.get('interval') !== '1d') fail('the interval is not in the address');
  await compareChart(page, 'BTC');
  await page.click('button[data-interval="1h"]');
  await compareChart(page, 'BTC');
  await page.waitForSelector('.coin-head h1 >> text=Bitcoin', { timeout: 5000 })
    .catch(() => fail('the coin header does not name Bitcoin'));
  await page.screenshot({ path: path.join(SHOTS, 'coin.png'), fullPage: true });
  ok(`screenshot ${path.join(SHOTS, 'coin.png')}`);
  await page.close();
}

async function compareChart(page, symbol) {
  await page.waitForFunction(() => {
    const d = document.querySelector('#chart')?.dataset;
    return d && d.state && d.state !== 'loading';
  }, null, { timeout: 10_000 }).catch(() => fail('the chart did not finish loading within 10 s'));
  let detail = '';
  // The open candle moves every second: read the page and the API close together, a few times.
  for (let attempt = 0; attempt < 15; attempt++) {
    const d = await page.$eval('#chart', (el) => ({ ...el.dataset }));
    if (d.state === 'error') fail(`the chart shows an error: ${await page.textContent('#chart-message')}`);
    const rows = await apiCandles(symbol, d);
    const last = rows[rows.length - 1];
    const bars = Number(d.bars);
    if (!rows.length && bars === 0) {
      ok(`${symbol} ${d.interval}: no candles from the API, and the page says so`);
      return;
    }
    if (bars === rows.length && String(rows[0].time) === d.firstTime && String(last.time) === d.lastTime
      && Number(d.lastClose) === last.close) {
      ok(`${symbol} ${d.interval} chart: ${bars} candles (limit ${d.limit}, from ${new Date(Number(d.from)).toISOString()}), last close ${last.close}, as GET …/candles answers`);
      return;
    }
    detail = `page ${bars} bars ${d.firstTime}..${d.lastTime} close ${d.lastClose}; API ${rows.length} rows ${rows[0]?.time}..${last?.time} close ${last?.close}`;
    await sleep(200);
  }
  fail(`the ${symbol} chart does not match the API: ${detail}`);
}

async function watchlist(context) {
  if (!KEY) fail('TOPCOINS_KEY is not set: the watchlist flow needs a user key');
  const exchanges = (await getJson('/v1/exchanges')).data;
  if (!exchanges.length || !exchanges[0].pairs.length) fail('GET /v1/exchanges lists no exchange with pairs');
  const exchange = exchanges[0].id;
  const pair = exchanges[0].pairs[0];
  const metric = 'volume';
  const id = `${exchange}:${pair}:${metric}`;
  const watched = async () => (await getJson('/v1/watchlist?limit=100', KEY)).data.map((w) => w.id);
  if ((await watched()).includes(id)) {
    // Left by an earlier run: start without it.
    const status = await send('DELETE', `/v1/watchlist/${exchange}/${pair}/${metric}`, KEY);
    if (status !== 204) fail(`could not clear ${id} before the test: ${status}`);
  }

  const page = await context.newPage();
  watch(page, 'watchlist');
  await page.goto(`${BASE}/dashboard/watchlist`);
  await page.evaluate(() => localStorage.removeItem('topcoins.key'));
  await page.reload();
  await page.fill('#api-key', KEY);
  await page.click('.key-form button[type="submit"]');
  await page.waitForSelector('#forget-key', { timeout: 5000 }).catch(() => fail('the key was not accepted'));
  const kept = await page.evaluate(() => localStorage.getItem('topcoins.key'));
  if (kept !== KEY) fail('the key is not kept in localStorage');
  ok('the key is accepted and kept in localStorage');

  await page.waitForSelector('#add-exchange', { timeout: 10_000 });
  await page.selectOption('#add-exchange', exchange);
  await page.selectOption('#add-pair', pair);
  await page.selectOption('#add-metric-kind', metric);
  await page.click('#add-metric button[type="submit"]');
  const card = `[data-metric-id="${id}"]`;
  await page.waitForSelector(`${card} .spark canvas`, { timeout: 10_000 })
    .catch(() => fail(`${id} did not appear with a chart`));
  if (!(await watched()).includes(id)) fail(`${id} is shown but GET /v1/watchlist does not have it`);
  // Its pair is polled from the exchange actors' next cycle: give the chart a point if it comes soon.
  const points = await page.waitForFunction((sel) => Number(document.querySelector(sel)?.dataset.points) > 0,
    `${card} .spark`, { timeout: 15_000 }).then(() => page.$eval(`${card} .spark`, (el) => el.dataset.points), () => '0');
  ok(`added ${id}: it is listed with a chart (${points} point${points === '1' ? '' : 's'} so far), and GET /v1/watchlist has it`);
  await page.screenshot({ path: path.join(SHOTS, 'watchlist.png'), fullPage: true });
  ok(`screenshot ${path.join(SHOTS, 'watchlist.png')}`);

  await page.click(`${card} button.remove`);
  await page.waitForSelector(card, { state: 'detached', timeout: 10_000 })
    .catch(() => fail(`${id} is still listed after Remove`));
  if ((await watched()).includes(id)) fail(`${id} is gone from the page but GET /v1/watchlist still has it`);
  ok(`removed ${id}: gone from the page and from GET /v1/watchlist`);

  // An alert rule: create one (NATS channel, so no receiver is needed), see it, delete it.
  const rules = async () => (await getJson('/v1/alerts/rules?limit=1000', KEY)).data;
  const before = new Set((await rules()).map((r) => r.id));
  await page.fill('#rule-metric', 'coin:BTC:price');
  await page.selectOption('#rule-type', 'price_above');
  await page.fill('#rule-level', '1000000000');
  await page.selectOption('#rule-channel', 'nats');
  await page.click('#add-rule button[type="submit"]');
  let rule = null;
  for (let i = 0; i < 50 && !rule; i++) {
    rule = (await rules()).find((r) => !before.has(r.id)) || null;
    if (!rule) await sleep(100);
  }
  if (!rule) fail('the new rule is not in GET /v1/alerts/rules');
  await page.waitForSelector(`tr[data-rule-id="${rule.id}"]`, { timeout: 5000 })
    .catch(() => fail(`rule ${rule.id} is not listed on the page`));
  await page.click(`tr[data-rule-id="${rule.id}"] button.danger`);
  await page.waitForSelector(`tr[data-rule-id="${rule.id}"]`, { state: 'detached', timeout: 5000 })
    .catch(() => fail(`rule ${rule.id} is still listed after Delete`));
  if ((await rules()).some((r) => r.id === rule.id)) fail(`rule ${rule.id} is still in GET /v1/alerts/rules`);
  ok(`alert rule ${rule.id} (coin:BTC:price above 1e9) created, listed and deleted`);
  await page.close();
}

async function phoneDark(context) {
  const page = await context.newPage();
  watch(page, 'phone');
  await page.setViewportSize({ width: 390, height: 844 });
  await page.emulateMedia({ colorScheme: 'dark' });
  await page.goto(`${BASE}/dashboard`);
  await page.waitForSelector('#coins tbody tr');
  const look = await page.evaluate(() => ({
    theme: document.documentElement.dataset.theme,
    volume: getComputedStyle(document.querySelector('#coins tbody td.col-volume')).display,
    wide: document.documentElement.scrollWidth,
  }));
  if (look.theme !== 'dark') fail(`the dark system preference gave theme ${look.theme}`);
  if (look.volume !== 'none') fail('the volume column is shown at phone width');
  if (look.wide > 390) fail(`the page is ${look.wide} px wide at a 390 px viewport`);
  await page.screenshot({ path: path.join(SHOTS, 'dashboard-phone-dark.png') });
  ok(`phone width, dark: no horizontal scroll, volume column hidden; screenshot ${path.join(SHOTS, 'dashboard-phone-dark.png')}`);

  // The toggle overrides the system and is kept across a reload.
  await page.click('#theme');
  await page.reload();
  await page.waitForSelector('#coins tbody tr');
  const theme = await page.evaluate(() => document.documentElement.dataset.theme);
  await page.evaluate(() => localStorage.removeItem('topcoins.theme'));
  if (theme !== 'light') fail(`after the toggle and a reload the theme is ${theme}`);
  ok('the theme toggle switches to light and is kept across a reload');
  await page.close();
}

async function deepLinkAndKeyboard(context) {
  const page = await context.newPage();
  watch(page, 'navigation');
  await page.goto(`${BASE}/dashboard`);
  await page.waitForSelector('#coins tbody tr');
  await page.keyboard.press('Tab');
  const first = await page.evaluate(() => document.activeElement && document.activeElement.textContent);
  if (!/skip/i.test(first || '')) fail(`the first Tab focuses ${JSON.stringify(first)}, not the skip link`);
  await page.click('#coins a[href="/dashboard/coins/ETH"]');
  await page.waitForFunction(() => location.pathname === '/dashboard/coins/ETH');
  await page.waitForSelector('#chart[data-state]:not([data-state="loading"])');
  const same = await page.evaluate(() => performance.getEntriesByType('navigation').length === 1
    && document.activeElement && document.activeElement.tagName === 'H1');
  if (!same) fail('opening a coin did not move the focus to its heading');
  await page.goBack();
  await page.waitForSelector('#coins tbody tr');
  const back = await page.evaluate(() => document.activeElement && document.activeElement.textContent);
  if (back !== 'Top coins') fail(`after Back the focus is on ${JSON.stringify(back)}`);
  ok('the first Tab reaches the skip link; a symbol link opens its coin page in place (focus on its heading); Back returns to the list');
  await page.close();
}

async function main() {
  fs.mkdirSync(SHOTS, { recursive: true });
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'topcoins-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 800 },
    colorScheme: 'light',
  });
  try {
    const page = await firstLoad(context);
    await topList(page);
    await livePrices(page);
    await page.close();
    await coinPage(context);
    await watchlist(context);
    await phoneDark(context);
    await deepLinkAndKeyboard(context);
    if (problems.length) fail(`console messages or failed requests:\n  ${problems.join('\n  ')}`);
    const streams = aborted.filter((p) => p === '/v1/stream').length;
    ok(`no console errors or warnings, no failed requests (ended by leaving a page: ${streams} live streams${aborted.length > streams ? `, ${aborted.filter((p) => p !== '/v1/stream').join(', ')}` : ''})`);
  } finally {
    await context.close().catch(() => {});
    fs.rmSync(profile, { recursive: true, force: true });
  }
  console.log(`${passed} passed, 0 failed`);
}

main().catch((e) => {
  if (e instanceof CheckFailed) console.error(`FAIL: ${e.message}`);
  else console.error(`FAIL: ${e.stack || e}`);
  console.log(`${passed} passed, 1 failed`);
  process.exit(1);
});
