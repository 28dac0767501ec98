// A few lines of DOM building, so that pages read as markup and never use innerHTML with data.

/**
 * h('a', {href: '/x', class: 'y', onclick: f}, 'text', child…): an element. Attributes that
 * start with `on` become listeners, `dataset` an object of data-*; null/false are left out.
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k === 'class') el.className = v;
      else if (v === true) el.setAttribute(k, '');
      else el.setAttribute(k, String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

/** Replaces an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** An inline error message for an ApiError (or anything thrown). */
export function errorBox(e, prefix) {
  const code = e && e.code ? ` (${e.code})` : '';
  return h('p', { class: 'error', role: 'alert' },
    prefix ? `${prefix}: ` : '', (e && e.message) || String(e), code);
}
