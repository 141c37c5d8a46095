// audit.js — the audit log (#/audit, #/audit/<app>; admin tokens only, as
// GET /api/v1/audit): every management action and every decision the server
// took by itself, newest first, with who did it (token:<id>, or "server",
// e.g. a guardrail halt) and its details.
//
// The API lists entries oldest first after a seq, and says the seq of the
// newest entry ("head").  Entries are numbered without gaps, so the newest
// page of the whole log is after=head-50; for one app the page looks back
// over a window of seqs that grows until it holds a page's worth.
// "Older" goes on from the oldest entry shown.

import { api, enc } from './api.js';
import { el, timeEl, shortId } from './dom.js';

const PAGE = 50;
const MAX_WINDOWS = 12;

// Up to PAGE entries with seq < before (newest first); app may be null.
async function newestBefore(app, before) {
  const filter = app ? `&app=${enc(app)}` : '';
  let span = PAGE;
  let found = [];
  for (let round = 0; round < MAX_WINDOWS; round++) {
    const after = Math.max(0, before - 1 - span);
    found = [];
    let cursor = after;
    for (;;) {
      const page = await api('GET', `/audit?after=${cursor}&limit=1000${filter}`);
      for (const e of page.entries) if (e.seq < before) found.push(e);
      const last = page.entries.length ? page.entries[page.entries.length - 1].seq : before;
      if (page.next === null || last >= before - 1) break;
      cursor = page.next;
    }
    if (found.length >= PAGE || after === 0) break;
    span *= 4;
  }
  return found.slice(-PAGE).reverse();
}

// "token <id>" with the token's name when the page knows it (admins do).
function actorEl(actor, names) {
  if (typeof actor === 'string' && actor.startsWith('token:')) {
    const id = actor.slice(6);
    const name = names && names.get(id);
    return el('span', {}, name ? `${name} ` : 'token ', shortId(id));
  }
  return el('span', {}, actor || '—');
}

function entryRow(e, names) {
  return el('tr', { dataset: { seq: String(e.seq), action: e.action || '' } },
    el('td', { class: 'num' }, String(e.seq)),
    el('td', {}, timeEl(e.at)),
    el('td', {}, actorEl(e.actor, names)),
    el('td', {}, el('code', {}, e.action || '')),
    el('td', {}, e.app || '—'),
    el('td', {}, e.subject || '—'),
    el('td', { class: 'details' }, el('code', {}, JSON.stringify(e.details))));
}

export async function auditView(root, params, ctx) {
  root.append(el('h1', {}, 'Audit log'));
  if (!ctx.can.admin) {
    root.append(el('p', { class: 'hint' }, 'Reading the audit log needs an admin token.'));
    return {};
  }
  const apps = (await api('GET', '/apps')).apps;
  const app = params.app || null;
  const head = (await api('GET', '/audit?limit=1')).head;
  const tbody = el('tbody');
  const more = el('button', { type: 'button', id: 'audit-older' }, 'Older');
  let oldest = head + 1;
  async function load() {
    const entries = await newestBefore(app, oldest);
    tbody.append(...entries.map((e) => entryRow(e, ctx.tokenNames)));
    if (entries.length) oldest = entries[entries.length - 1].seq;
    more.hidden = entries.length < PAGE || oldest <= 1;
  }
  more.addEventListener('click', () => load().catch(ctx.fail));
  root.append(
    el('div', { class: 'row' }, el('label', { class: 'inline' }, 'App ',
      el('select', { id: 'audit-app', onchange: (e) =>
        ctx.go(e.target.value ? `#/audit/${enc(e.target.value)}` : '#/audit') },
      el('option', { value: '' }, 'every app and none'),
      apps.map((a) => el('option', { value: a.name, selected: a.name === app }, a.name)))),
    el('span', { class: 'hint' }, `${head} entries in all; `,
      'the chain of hashes is checked by livepush audit verify.')),
    el('div', { class: 'scroll' }, el('table', { class: 'data', id: 'audit' },
      el('thead', {}, el('tr', {}, ['Seq', 'When', 'Who', 'Action', 'App', 'Subject', 'Details']
        .map((h) => el('th', { scope: 'col' }, h)))), tbody)),
    more);
  await load();
  return {};
}
