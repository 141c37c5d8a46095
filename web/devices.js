// devices.js — the devices of an app:
//
//   #/devices/<app>          search by device id (a whole id, or its first digits)
//   #/devices/<app>/<id>     one device: channel, the release it runs and the one
//                            it is on its way to, when it last checked in, and its
//                            newest events (GET .../devices/<id>)
//
// A search asks for the id itself (GET .../devices/<id>) and for the devices
// listed after it (GET .../devices?after=), keeping those whose id starts
// with what was typed: ids are sorted, so those come first.

import { api, enc, ApiError } from './api.js';
import { el, timeEl, fmtBytes } from './dom.js';

const ID_RE = /^[0-9a-f]{1,64}$/;
const ID_MIN = 16;
const SHOWN = 50;

function deviceHref(app, id) {
  return `#/devices/${enc(app)}/${enc(id)}`;
}

async function appsAndApp(params) {
  const apps = (await api('GET', '/apps')).apps;
  const app = params.app && apps.some((a) => a.name === params.app) ? params.app
    : apps.length ? apps[0].name : null;
  return { apps, app };
}

// version code -> version string, for the releases of the app (newest 1000).
async function versionNames(app) {
  const list = await api('GET', `/apps/${enc(app)}/releases?limit=1000`);
  return new Map(list.releases.map((r) => [r.version_code, r.version]));
}

function releaseName(code, names) {
  if (!code) return 'none reported';
  const v = names.get(code);
  return v ? `${v} (code ${code})` : `code ${code}`;
}

function eventText(e) {
  const parts = [e.type];
  if (e.version || e.version_code) parts.push(e.version || `code ${e.version_code}`);
  return parts.join(' ');
}

async function search(app, text) {
  const base = `/apps/${enc(app)}/devices`;
  const start = text.length >= ID_MIN ? text : text.padEnd(ID_MIN, '0');
  const found = [];
  try {
    const one = await api('GET', `${base}/${enc(start)}?events=1`);
    if (one.device.device_id.startsWith(text)) found.push(one.device);
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 404) throw e;
  }
  const after = await api('GET', `${base}?after=${enc(start)}&limit=${SHOWN}`);
  for (const d of after.devices) if (d.device_id.startsWith(text)) found.push(d);
  return found;
}

function resultsTable(app, devices, names) {
  return el('table', { class: 'data', id: 'device-results' },
    el('thead', {}, el('tr', {}, ['Device', 'Channel', 'Runs', 'Last check-in', 'Last event']
      .map((h) => el('th', { scope: 'col' }, h)))),
    el('tbody', {}, devices.map((d) => el('tr', { dataset: { device: d.device_id } },
      el('td', {}, el('a', { href: deviceHref(app, d.device_id) }, el('code', {}, d.device_id))),
      el('td', {}, d.channel || '—'),
      el('td', {}, releaseName(d.version_code, names)),
      el('td', {}, timeEl(d.last_seen)),
      el('td', {}, d.last_event ? eventText(d.last_event) : '—')))));
}

export async function devicesView(root, params, ctx) {
  const { apps, app } = await appsAndApp(params);
  root.append(el('h1', {}, 'Devices'));
  if (!app) {
    root.append(el('p', { class: 'empty' }, 'There is no app yet.'));
    return {};
  }
  const names = await versionNames(app);
  const input = el('input', { id: 'device-search', type: 'search', placeholder: 'device id or its first digits',
    spellcheck: false, autocomplete: 'off', value: params.id || '' });
  const results = el('div', { id: 'device-results-box' });
  const detail = el('div', { id: 'device-detail' });
  const appSelect = el('select', { 'aria-label': 'App', onchange: (e) => ctx.go(`#/devices/${enc(e.target.value)}`) },
    apps.map((a) => el('option', { value: a.name, selected: a.name === app }, a.name)));
  root.append(el('form', { class: 'row', id: 'device-form', onsubmit: async (e) => {
    e.preventDefault();
    const text = input.value.trim().toLowerCase();
    if (!ID_RE.test(text)) {
      results.replaceChildren(el('p', { class: 'hint' },
        'A device id is 16 to 64 hexadecimal digits (0-9, a-f); type one, or its first digits.'));
      return;
    }
    const found = await search(app, text);
    if (found.length === 1 && found[0].device_id === text) {
      ctx.go(deviceHref(app, text));
      return;
    }
    detail.replaceChildren();
    results.replaceChildren(found.length ? resultsTable(app, found, names)
      : el('p', { class: 'empty' }, `No device of ${app} has an id starting with ${text}.`));
  } }, el('label', { class: 'inline' }, 'App ', appSelect), input,
  el('button', { type: 'submit' }, 'Search')), results, detail);

  async function showDevice() {
    let one;
    try {
      one = await api('GET', `/apps/${enc(app)}/devices/${enc(params.id)}?events=20`);
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) {
        detail.replaceChildren(el('p', { class: 'empty' }, `${app} has no device ${params.id}.`));
        return;
      }
      throw e;
    }
    const d = one.device;
    const p = one.pending;
    detail.replaceChildren(
      el('h2', {}, 'Device ', el('code', {}, d.device_id)),
      el('dl', { class: 'facts', id: 'device-facts' },
        el('dt', {}, 'Channel'), el('dd', {}, d.channel || '—'),
        el('dt', {}, 'Runs'), el('dd', { id: 'device-current' }, releaseName(d.version_code, names)),
        el('dt', {}, 'On its way to'), el('dd', { id: 'device-pending' }, p
          ? [releaseName(p.version_code, names), `: ${p.step} `, timeEl(p.received_at)]
          : 'nothing'),
        el('dt', {}, 'Last check-in'), el('dd', {}, timeEl(d.last_seen)),
        el('dt', {}, 'First seen'), el('dd', {}, timeEl(d.first_seen)),
        el('dt', {}, 'Events it had to drop'), el('dd', {}, String(d.dropped))),
      el('h3', {}, 'Newest events'),
      el('table', { class: 'data', id: 'device-events' },
        el('thead', {}, el('tr', {}, ['Seq', 'Event', 'Release', 'From', 'When (device)', 'Received', 'Took', 'Fetched', 'Reason']
          .map((h) => el('th', { scope: 'col' }, h)))),
        el('tbody', {}, one.events.map((e) => el('tr', {},
          el('td', { class: 'num' }, String(e.seq)),
          el('td', {}, el('span', { class: ['badge', `ev-${e.type}`] }, e.type)),
          el('td', {}, e.version_code ? releaseName(e.version_code, names) : '—'),
          el('td', {}, e.from_version_code ? releaseName(e.from_version_code, names) : '—'),
          el('td', {}, timeEl(e.at)),
          el('td', {}, timeEl(e.received_at)),
          el('td', { class: 'num' }, e.duration_ms == null ? '—' : `${e.duration_ms} ms`),
          el('td', {}, e.bytes == null ? '—' : `${fmtBytes(e.bytes)}, ${e.files_fetched ?? 0} files`),
          el('td', { class: 'c-reason' }, e.reason || '')))),
      ));
  }
  if (params.id) {
    await showDevice();
    return { refresh: showDevice };
  }
  // without a search: the first devices of the app
  const first = await api('GET', `/apps/${enc(app)}/devices?limit=${SHOWN}`);
  results.replaceChildren(first.devices.length
    ? [el('p', { class: 'hint' }, first.next ? `The first ${SHOWN} devices by id:` : 'Every device:'),
      resultsTable(app, first.devices, names)]
    : el('p', { class: 'empty' }, `No device of ${app} has reported yet.`));
  return {};
}
