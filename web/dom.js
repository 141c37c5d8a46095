// dom.js — building the page from data without ever parsing data as HTML.
//
// el(tag, props, ...children) makes an element: text children become text
// nodes, `text` sets textContent, `on<event>` adds a listener, `class`,
// `dataset` and a few properties are set directly, other props become
// attributes.  No string is ever parsed as markup anywhere in the
// dashboard (tests/unit/test_api_dashboard.c checks the scripts for the
// calls that would), so a release note such as "<img src=x onerror=...>"
// is shown as those characters.  Attribute names that could carry script or style (on...,
// style, srcdoc) are refused outright; links are only ever built by the
// dashboard itself ("#/..." with encoded parts).
//
// The formatters turn API values (bytes, basis points, Unix seconds) into
// the text shown.

const PROPERTIES = new Set(['value', 'checked', 'disabled', 'hidden', 'selected', 'open',
  'type', 'min', 'max', 'step', 'htmlFor', 'title', 'id', 'name', 'placeholder', 'required',
  'maxLength', 'rows', 'colSpan', 'readOnly', 'autocomplete', 'spellcheck']);

export function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = Array.isArray(v) ? v.filter(Boolean).join(' ') : v;
    else if (k === 'text') e.textContent = String(v);
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
    else if (PROPERTIES.has(k)) e[k] = v;
    else if (/^(on|style$|srcdoc$)/i.test(k)) throw new Error(`el: attribute ${k} is not allowed`);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  append(e, children);
  return e;
}

export function append(parent, children) {
  for (const c of [children].flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    parent.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return parent;
}

export function clear(node) {
  node.replaceChildren();
  return node;
}

// ---- formatting ---------------------------------------------------------------

export function fmtBytes(n) {
  if (typeof n !== 'number' || !Number.isFinite(n)) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[u]}`;
}

// Basis points (1000 = 10%) as "10%" / "12.5%".
export function fmtPercentBp(bp) {
  if (typeof bp !== 'number') return '—';
  return `${Number((bp / 100).toFixed(2))}%`;
}

// Unix seconds as "2026-11-30 08:56:50 UTC"; null/0 as "never".
export function fmtTime(t) {
  if (!t) return 'never';
  return `${new Date(t * 1000).toISOString().replace('T', ' ').slice(0, 19)} UTC`;
}

// Unix seconds as "3 min ago" (relative to now).
export function fmtAgo(t) {
  if (!t) return 'never';
  const s = Math.round(Date.now() / 1000 - t);
  if (s < 5) return 'just now';
  if (s < 90) return `${s} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 129600) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} days ago`;
}

// A time element: absolute time shown, relative time as its title.
export function timeEl(t) {
  return el('time', t ? { datetime: new Date(t * 1000).toISOString(), title: fmtAgo(t) } : {},
    fmtTime(t));
}

// The first n characters of an id, with the whole id as the title.
export function shortId(id, n = 12) {
  if (typeof id !== 'string') return el('span', {}, '—');
  return el('code', { title: id }, id.length > n ? `${id.slice(0, n)}…` : id);
}
