// Number and time formatting shared by the pages.

const usd2 = new Intl.NumberFormat('en-US', {
  style: 'currency', currency: 'USD', minimumFractionDigits: 2, maximumFractionDigits: 2,
});
const usd4 = new Intl.NumberFormat('en-US', {
  style: 'currency', currency: 'USD', minimumFractionDigits: 2, maximumFractionDigits: 4,
});
const usdSmall = new Intl.NumberFormat('en-US', {
  style: 'currency', currency: 'USD', maximumSignificantDigits: 4,
});
const usdCompact = new Intl.NumberFormat('en-US', {
  style: 'currency', currency: 'USD', notation: 'compact', maximumFractionDigits: 2,
});
const plain = new Intl.NumberFormat('en-US', { maximumSignificantDigits: 6 });
const compact = new Intl.NumberFormat('en-US', { notation: 'compact', maximumFractionDigits: 2 });

/** A price in USD: cents for large prices, four significant digits for tiny ones. */
export function price(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return '—';
  const a = Math.abs(v);
  if (a >= 1000) return usd2.format(v);
  if (a >= 1) return usd4.format(v);
  if (a === 0) return usd2.format(0);
  if (a < 1e-6) return `$${v.toExponential(3)}`;
  return usdSmall.format(v);
}

/** A large USD amount, compact: $15.57B. */
export function usdShort(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return '—';
  return usdCompact.format(v);
}

/** A percent change with its sign: +1.23 %. */
export function pct(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return '—';
  const s = Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(2);
  return `${v > 0 ? '+' : ''}${s} %`;
}

/** 'up', 'down' or '' for a change. */
export function direction(v) {
  if (v === null || v === undefined || !Number.isFinite(v) || v === 0) return '';
  return v > 0 ? 'up' : 'down';
}

/** A metric's value: compact when large. */
export function num(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return '—';
  return Math.abs(v) >= 1e6 ? compact.format(v) : plain.format(v);
}

/** How long ago `ms` (Unix ms) was: '3 s ago', '5 min ago'. */
export function ago(ms, now = Date.now()) {
  if (!Number.isFinite(ms)) return 'never';
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

/** Unix ms as local date and time, to the second. */
export function dateTime(ms) {
  if (!Number.isFinite(ms)) return '—';
  return new Date(ms).toLocaleString(undefined, {
    year: 'numeric', month: 'short', day: 'numeric',
    hour: '2-digit', minute: '2-digit', second: '2-digit',
  });
}
