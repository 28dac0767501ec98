// What the pages share about TradingView Lightweight Charts: the theme's options, and the
// price precision a series needs. The library's attribution logo stays on (its default).

import { createChart } from 'lightweight-charts';
import { colors } from './theme.js';

export function themeOptions() {
  const c = colors();
  return {
    layout: {
      background: { type: 'solid', color: c.bg },
      textColor: c.fg,
      panes: { separatorColor: c.border, separatorHoverColor: c.grid },
    },
    grid: { vertLines: { color: c.grid }, horzLines: { color: c.grid } },
    rightPriceScale: { borderColor: c.border },
    timeScale: { borderColor: c.border },
  };
}

/** A chart that follows its container's size and the theme. Returns {chart, dispose}. */
export function themedChart(el, options = {}) {
  const chart = createChart(el, { autoSize: true, ...merge(themeOptions(), options) });
  const retheme = () => chart.applyOptions(themeOptions());
  document.addEventListener('themechange', retheme);
  return {
    chart,
    dispose() {
      document.removeEventListener('themechange', retheme);
      chart.remove();
    },
  };
}

function merge(a, b) {
  const out = { ...a };
  for (const [k, v] of Object.entries(b)) {
    out[k] = v && typeof v === 'object' && !Array.isArray(v) && a[k] ? merge(a[k], v) : v;
  }
  return out;
}

/** A price format that shows `value` with about five significant digits (two decimals at least). */
export function priceFormat(value) {
  const a = Math.abs(value);
  let precision = 2;
  if (Number.isFinite(a) && a > 0 && a < 100) {
    precision = Math.min(12, Math.max(2, 4 - Math.floor(Math.log10(a))));
  }
  return { type: 'price', precision, minMove: 10 ** -precision };
}

/** Unix ms to the library's time (whole seconds, UTC). */
export const toTime = (ms) => Math.floor(ms / 1000);

/** Points sorted and one per second at most (the library refuses equal times): the last wins. */
export function uniqueByTime(points) {
  const out = [];
  for (const p of points) {
    const last = out[out.length - 1];
    if (last && p.time < last.time) continue;
    if (last && last.time === p.time) out[out.length - 1] = p;
    else out.push(p);
  }
  return out;
}
