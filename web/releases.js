// releases.js — the release views:
//
//   #/apps/<app>/<channel>                     the releases of a channel, with their
//                                              state, rollout, devices, sizes, deltas
//   #/apps/<app>/<channel>/releases/<version>  one release: its facts, approvals,
//                                              rollout figures, charts and the actions
//                                              the token's scopes allow
//
// Each view returns {refresh}: the page calls it every few seconds (and on
// the Refresh button), so a halt by the guardrail or another operator's
// change shows without reloading.  Refreshing rebuilds only what shows data,
// never a form being filled in.

import { api, enc } from './api.js';
import { el, clear, fmtBytes, fmtPercentBp, timeEl, shortId } from './dom.js';
import { releaseState, offeredShare, approvalsText } from './state.js';
import { ReleaseCharts } from './charts.js';
import { confirmAction, perform, describe } from './actions.js';

const LIST_LIMIT = 100;

export function releaseHref(app, channel, version) {
  return `#/apps/${enc(app)}/${enc(channel)}/releases/${enc(version)}`;
}

function channelHref(app, channel) {
  return `#/apps/${enc(app)}/${enc(channel)}`;
}

// Who published it: the token's name (admins can read names) and id.
function publisherEl(id, ctx) {
  if (!id) return el('span', {}, '—');
  const name = ctx.tokenNames && ctx.tokenNames.get(id);
  return name ? el('span', { title: `token ${id}` }, name, ' ', shortId(id, 6)) : shortId(id);
}

function stateEl(state, rollout) {
  const badge = el('span', { class: ['badge', `state-${state.key}`] }, state.label);
  const reason = rollout && rollout.reason && (state.key === 'halted' || state.key === 'paused')
    ? el('span', { class: 'reason' }, rollout.reason) : null;
  return [badge, reason];
}

function offeredEl(release, rollout) {
  const share = offeredShare(release, rollout);
  if (share === '—') return share;
  const bp = rollout ? rollout.percent_bp : 10000;
  return el('span', { class: 'offered' },
    el('meter', { min: 0, max: 10000, value: bp, title: share }), ' ', el('span', {}, share));
}

function devicesText(rollout) {
  const d = rollout && rollout.devices;
  if (!d) return '—';
  return `${d.installed} installed, ${d.failed} failed, ${d.rolled_back} rolled back`;
}

function deltasText(deltas) {
  if (!deltas || !(deltas.made || deltas.pending || deltas.too_large || deltas.failed)) return '—';
  const parts = [`${deltas.made} made, ${fmtBytes(deltas.bytes)}`];
  if (deltas.pending) parts.push(`${deltas.pending} pending`);
  if (deltas.too_large) parts.push(`${deltas.too_large} too large`);
  if (deltas.failed) parts.push(`${deltas.failed} failed`);
  return parts.join(', ');
}

function guardrailText(g) {
  return `Guardrail: a rollout is halted by the server once more than ${fmtPercentBp(g.rate_bp)} ` +
    `of the devices that tried it failed or rolled back (at least ${g.min_devices} devices).`;
}

// The app (from the route or the first), its channels, and the channel.
async function appAndChannel(params) {
  const apps = (await api('GET', '/apps')).apps;
  if (!apps.length) return { apps };
  const name = params.app && apps.some((a) => a.name === params.app) ? params.app : apps[0].name;
  const info = await api('GET', `/apps/${enc(name)}`);
  const chans = info.channels.map((c) => c.name);
  const channel = params.channel && chans.includes(params.channel) ? params.channel
    : chans.includes('stable') ? 'stable' : chans[0] || null;
  return { apps, app: info.app, channels: chans, channel };
}

// ---- the list ------------------------------------------------------------------

const COLUMNS = ['Version', 'Code', 'State', 'Offered to', 'Devices', 'Published by', 'Approvals',
  'Size', 'Deltas', 'Published', 'Notes'];

function releaseRow(r, rollout, app, channel, ctx) {
  const state = releaseState(r, rollout);
  const approvals = app.signing === 'publisher'
    ? (approvalsText(r.approvals) || (r.state === 'published' ? 'approved' : '—'))
    : 'signed by the server';
  return el('tr', { dataset: { version: r.version, code: String(r.version_code), state: state.key } },
    el('td', { class: 'c-version' },
      el('a', { href: releaseHref(app.name, channel, r.version) }, r.version),
      r.rollback_of ? el('span', { class: 'sub' }, `rollback to ${r.rollback_of.version}`) : null),
    el('td', { class: 'c-code num' }, String(r.version_code)),
    el('td', { class: 'c-state' }, stateEl(state, rollout)),
    el('td', { class: 'c-rollout' }, offeredEl(r, rollout)),
    el('td', { class: 'c-devices' }, devicesText(rollout)),
    el('td', { class: 'c-by' }, publisherEl(r.created_by, ctx)),
    el('td', { class: 'c-approvals' }, approvals),
    el('td', { class: 'c-size num' }, fmtBytes(r.bytes), el('span', { class: 'sub' }, `${r.files} files`)),
    el('td', { class: 'c-deltas' }, deltasText(r.deltas)),
    el('td', { class: 'c-time' }, timeEl(r.created_at)),
    el('td', { class: 'c-notes' }, r.notes == null ? '' : r.notes));
}

export async function releasesView(root, params, ctx) {
  const where = await appAndChannel(params);
  if (!where.app) {
    root.append(el('h1', {}, 'Releases'), el('p', { class: 'empty' }, 'There is no app yet.'));
    return {};
  }
  const { app, channel } = where;
  // Canonical address (#/apps/<app>/<channel>), unless the user has moved on
  // while the app list loaded: a superseded view must not rewrite the address.
  if ((params.app !== app.name || params.channel !== channel) && location.hash === params.hash)
    history.replaceState(null, '', channel ? channelHref(app.name, channel) : `#/apps/${enc(app.name)}`);

  const appSelect = el('select', { id: 'app-select', 'aria-label': 'App',
    onchange: (e) => ctx.go(`#/apps/${enc(e.target.value)}`) },
  where.apps.map((a) => el('option', { value: a.name, selected: a.name === app.name }, a.name)));
  const tabs = el('nav', { class: 'tabs', 'aria-label': 'Channels' },
    where.channels.map((c) => el('a', { href: channelHref(app.name, c),
      class: c === channel ? 'current' : null, 'aria-current': c === channel ? 'page' : null }, c)));
  const guard = el('p', { class: 'guardrail' });
  const tbody = el('tbody');
  const table = el('table', { id: 'releases', class: 'data' },
    el('thead', {}, el('tr', {}, COLUMNS.map((c) => el('th', { scope: 'col' }, c)))), tbody);
  root.append(
    el('div', { class: 'view-head' }, el('h1', {}, 'Releases'),
      el('label', { class: 'inline' }, 'App ', appSelect),
      el('span', { class: 'signing' }, app.signing === 'publisher'
        ? 'the publisher signs its releases' : 'the server signs its releases')),
    tabs, guard, el('div', { class: 'scroll' }, table));

  if (!channel) {
    tbody.append(el('tr', {}, el('td', { colSpan: COLUMNS.length, class: 'empty' },
      'This app has no channel yet.')));
    return {};
  }
  async function refresh() {
    const [rels, rolls] = await Promise.all([
      api('GET', `/apps/${enc(app.name)}/releases?channel=${enc(channel)}&limit=${LIST_LIMIT}`),
      api('GET', `/apps/${enc(app.name)}/rollouts?channel=${enc(channel)}`),
    ]);
    const byCode = new Map(rolls.rollouts.filter((r) => r.channel === channel)
      .map((r) => [r.version_code, r]));
    guard.textContent = guardrailText(rolls.guardrail);
    const rows = rels.releases.map((r) => releaseRow(r, byCode.get(r.version_code), app, channel, ctx));
    if (!rows.length)
      rows.push(el('tr', {}, el('td', { colSpan: COLUMNS.length, class: 'empty' },
        `No release on ${channel} yet.`)));
    tbody.replaceChildren(...rows);
  }
  await refresh();
  return { refresh };
}

// ---- one release ---------------------------------------------------------------

function fact(term, ...value) {
  return [el('dt', {}, term), el('dd', {}, ...value)];
}

function approvalsEl(approvals) {
  if (!approvals) return '—';
  return el('div', {}, el('span', { class: 'approvals-count' }, approvalsText(approvals)),
    el('ul', { class: 'keys' }, approvals.keys.map((k) => el('li', {},
      shortId(k.keyid, 16), ' ', k.approved ? 'approved' : 'not yet'))),
    approvals.missing ? el('p', { class: 'hint' },
      'Approvals need a release key: give them with livepush approve.') : null);
}

function figuresEl(rollout) {
  const d = rollout && rollout.devices;
  if (!d) return '—';
  const names = [['offered', 'offered'], ['downloaded', 'downloaded'], ['installed', 'installed'],
    ['healthy', 'healthy'], ['failed', 'failed'], ['rolled_back', 'rolled back'], ['tried', 'tried'],
    ['bad', 'failed or rolled back']];
  return el('ul', { class: 'figures' }, names.map(([k, label]) =>
    el('li', { dataset: { figure: k } }, el('strong', {}, String(d[k])), ` ${label}`)));
}

function factsEl(app, release, rollout, channel, ctx) {
  const rows = [
    fact('Version code', String(release.version_code)),
    fact('Channels', release.channels.join(', ')),
    fact('Published', timeEl(release.created_at), ' by ', publisherEl(release.created_by, ctx)),
    fact('Approvals', app.signing === 'publisher' ? approvalsEl(release.approvals)
      : 'signed by the server (no approvals needed)'),
    fact('Size', `${fmtBytes(release.bytes)} in ${release.files} files`),
    fact('Deltas to it', deltasText(release.deltas)),
    fact(`Rollout on ${channel}`, offeredShare(release, rollout),
      rollout ? ` of the devices, ${rollout.state}` +
        `${rollout.weight ? `, A/B weight ${rollout.weight}` : ''}` : ' (no staged rollout: every device)',
      rollout && rollout.updated_at ? [', changed ', timeEl(rollout.updated_at)] : null),
    fact('Devices', figuresEl(rollout)),
  ];
  if (release.rollback_of) rows.push(fact('Rollback to', release.rollback_of.version));
  if (release.mandatory) rows.push(fact('Mandatory', 'yes'));
  if (release.targeting) rows.push(fact('Targeting', el('code', {}, JSON.stringify(release.targeting))));
  rows.push(fact('Manifest', shortId(release.manifest && release.manifest.sha256, 16)));
  return el('dl', { class: 'facts', id: 'release-facts' }, rows);
}

// The action controls the token may use, for the release's current state.
function actionsEl(where, release, rollout, ctx, after) {
  const { app, channel, channels, newestCode } = where;
  const state = releaseState(release, rollout);
  const box = el('section', { id: 'actions', class: 'actions' }, el('h2', {}, 'Actions'));
  const run = async (a, withReason, detail) => {
    const ok = await confirmAction({ title: describe(a), text: detail, withReason });
    if (!ok) return;
    if (a.kind === 'rollout' && ok.reason) a.body.reason = ok.reason;
    if (await perform(a)) await after();
  };
  const base = { kind: 'rollout', app: app.name, version: release.version, channel };
  let offered = 0;
  if (ctx.can.rollout && release.state === 'published' && state.key !== 'halted') {
    const pct = el('input', { type: 'number', id: 'rollout-percent', min: 0, max: 100, step: 0.01,
      value: String((rollout ? rollout.percent_bp : 10000) / 100), required: true });
    const form = el('form', { class: 'row', id: 'rollout-form', onsubmit: (e) => {
      e.preventDefault();
      const v = Number(pct.value);
      if (!Number.isFinite(v) || v < 0 || v > 100) return;
      const bp = Math.round(v * 100);
      run({ ...base, body: { percent_bp: bp } }, true,
        `Offer ${release.version} on ${channel} to ${fmtPercentBp(bp)} of the devices ` +
        `(now ${offeredShare(release, rollout)}). Raising only adds devices; lowering stops ` +
        'offering it to the devices above the new share that have not installed it.');
    } }, el('label', { htmlFor: 'rollout-percent' }, 'Offer to'), pct,
    el('span', {}, '% of the devices'), el('button', { type: 'submit', id: 'action-set' }, 'Set'));
    const buttons = el('div', { class: 'row' });
    if (state.key === 'paused')
      buttons.append(el('button', { type: 'button', id: 'action-resume', onclick: () =>
        run({ ...base, body: { state: 'active' } }, true,
          `Resume the rollout of ${release.version} on ${channel}: devices in its share get it again.`) },
      'Resume'));
    else
      buttons.append(el('button', { type: 'button', id: 'action-pause', onclick: () =>
        run({ ...base, body: { state: 'paused' } }, true,
          `Pause the rollout of ${release.version} on ${channel}: no device starts installing it ` +
          'until it is resumed.') }, 'Pause'));
    buttons.append(el('button', { type: 'button', id: 'action-halt', class: 'danger', onclick: () =>
      run({ ...base, body: { state: 'halted' } }, true,
        `Halt the rollout of ${release.version} on ${channel}. A halt is final: no device will ` +
        'start installing it again; devices that have it keep it unless a rollback is published.') },
    'Halt'));
    box.append(form, buttons);
    offered++;
  }
  const others = channels.filter((c) => !release.channels.includes(c));
  if (ctx.can.rollout && release.state === 'published' && app.signing === 'server' &&
      state.key !== 'halted' && others.length) {
    const sel = el('select', { id: 'promote-channel', 'aria-label': 'Channel' },
      others.map((c) => el('option', { value: c }, c)));
    box.append(el('form', { class: 'row', id: 'promote-form', onsubmit: (e) => {
      e.preventDefault();
      const a = { kind: 'promote', app: app.name, version: release.version, channel: sel.value };
      run(a, false, `Add channel ${sel.value} to release ${release.version}: its devices are ` +
        'offered it too (the release is signed again with the new channel).');
    } }, el('label', {}, 'Promote to channel ', sel),
    el('button', { type: 'submit', id: 'action-promote' }, 'Promote')));
    offered++;
  }
  if (ctx.can.upload && release.state === 'published' && newestCode > release.version_code) {
    box.append(el('div', { class: 'row' }, el('button', { type: 'button', id: 'action-rollback',
      onclick: () => run({ kind: 'rollback', app: app.name, target: release.version,
        channels: [channel] }, false,
      `Publish ${release.version}'s files again as a new release on ${channel}, so that devices ` +
      'on a later release move back to them (their version code still goes up).') },
    `Publish a rollback to ${release.version}`)));
    offered++;
  }
  if (!ctx.can.rollout && !ctx.can.upload)
    box.append(el('p', { class: 'hint', id: 'actions-none' },
      `This token (${ctx.who.scopes.join(', ')}) may only look: changing a rollout needs the ` +
      'rollout scope, a rollback the upload scope.'));
  else if (state.key === 'halted')
    box.append(el('p', { class: 'hint', id: 'actions-none' }, 'The rollout is halted, which is ' +
      'final. To move the devices that installed it back, publish a rollback from the page of ' +
      'an earlier release.'));
  else if (!offered)
    box.append(el('p', { class: 'hint', id: 'actions-none' }, 'Nothing to do for this release.'));
  return box;
}

const PERIODS = [[60, 'per minute'], [3600, 'per hour'], [86400, 'per day']];

export async function releaseView(root, params, ctx) {
  const where = await appAndChannel(params);
  const { app, channel } = where;
  if (!app || !channel) throw new Error(`no app ${params.app} with channel ${params.channel}`);
  const base = `/apps/${enc(app.name)}`;
  const version = params.version;
  const charts = el('div', { class: 'charts' });
  const chartView = new ReleaseCharts(charts);
  let period = 3600;
  const periodSel = el('select', { id: 'period', 'aria-label': 'Period', onchange: async (e) => {
    period = Number(e.target.value);
    await refresh();
  } }, PERIODS.map(([s, label]) => el('option', { value: String(s), selected: s === period }, label)));
  const title = el('h1', {});
  const stateLine = el('p', { class: 'state-line', id: 'release-state' });
  const factsBox = el('div');
  const actionsBox = el('div');
  const notes = el('pre', { class: 'notes', id: 'release-notes' });
  const guard = el('p', { class: 'guardrail' });
  root.append(
    el('p', { class: 'crumbs' }, el('a', { href: channelHref(app.name, channel) },
      `${app.name} / ${channel}`), ' / release'),
    title, stateLine, factsBox, actionsBox,
    el('section', { class: 'chart-box' }, el('div', { class: 'view-head' }, el('h2', {}, 'Devices over time'),
      el('label', { class: 'inline' }, 'Periods ', periodSel)), guard, charts),
    el('section', {}, el('h2', {}, 'Release notes'), notes));

  let actionsKey = null;
  async function refresh() {
    const [rel, rolls, newest, adoption] = await Promise.all([
      api('GET', `${base}/releases/${enc(version)}`),
      api('GET', `${base}/rollouts?channel=${enc(channel)}`),
      api('GET', `${base}/releases?channel=${enc(channel)}&limit=1`),
      api('GET', `${base}/releases/${enc(version)}/adoption?channel=${enc(channel)}&period=${period}`),
    ]);
    const release = rel.release;
    const rollout = rolls.rollouts.find((r) => r.channel === channel &&
      r.version_code === release.version_code);
    const state = releaseState(release, rollout);
    title.replaceChildren(`Release ${release.version}`);
    stateLine.replaceChildren(...stateEl(state, rollout).filter(Boolean));
    stateLine.dataset.state = state.key;
    factsBox.replaceChildren(factsEl(app, release, rollout, channel, ctx));
    notes.textContent = release.notes == null ? '(none)' : release.notes;
    guard.textContent = guardrailText(rolls.guardrail);
    const newestCode = newest.releases.length ? newest.releases[0].version_code : 0;
    const key = `${state.key}/${rollout ? rollout.percent_bp : 10000}/${release.channels.join(',')}/${newestCode}`;
    if (key !== actionsKey) {
      actionsKey = key;
      actionsBox.replaceChildren(actionsEl({ ...where, newestCode }, release, rollout, ctx, refresh));
    }
    chartView.update(adoption.points, period, rolls.guardrail.rate_bp);
  }
  await refresh();
  return { refresh, destroy: () => chartView.destroy() };
}
