// app.js — the dashboard's entry point: sign-in, navigation and the views.
//
// Signing in: the operator pastes an API token; the page asks
// GET /api/v1/whoami with it, keeps it in sessionStorage (api.js) and shows
// what the token's scopes allow: the releases and devices for any token that
// can read, the actions for rollout (and upload, for rollbacks) tokens, the
// audit log for admins.  A 401 at any time (the token was revoked) signs out.
//
// Views are chosen by the URL's fragment (#/apps/<app>/<channel>,
// #/apps/<app>/<channel>/releases/<version>, #/devices/<app>[/<id>],
// #/audit[/<app>]); each is a function that fills the view's element and
// returns {refresh, destroy}.  While a view is shown and the tab is visible,
// refresh runs every REFRESH_MS (and on the Refresh button), so what the
// server does by itself, such as a guardrail halting a rollout, appears
// without reloading the page.  No refresh runs while the confirmation
// dialog is open.

import { api, abilities, storedToken, storeToken, forgetToken, onUnauthorized, ApiError } from './api.js';
import { el, fmtTime } from './dom.js';
import { initNotify, showError, clearError, clearNotice } from './notify.js';
import { dialogOpen } from './actions.js';
import { releasesView, releaseView } from './releases.js';
import { devicesView } from './devices.js';
import { auditView } from './audit.js';

const REFRESH_MS = 2000;

const page = {
  ctx: null,       // {who, can, tokenNames, go, fail} once signed in
  view: null,      // the shown view's {refresh, destroy}
  seq: 0,          // increases with each navigation, so a late answer is dropped
  timer: 0,
  refreshing: false,
};

const $ = (id) => document.getElementById(id);

function fail(e) {
  showError(e instanceof ApiError ? e.describe() : String(e && e.message ? e.message : e));
}

// ---- sign-in ---------------------------------------------------------------------

function showSignIn(message) {
  stopView();
  $('view').hidden = true;
  $('nav').hidden = true;
  $('who').hidden = true;
  $('signin').hidden = false;
  $('signin-message').textContent = message || '';
  $('token').value = '';
  $('token').focus();
}

async function signIn(token) {
  storeToken(token);
  let who;
  try {
    who = (await api('GET', '/whoami')).token;
  } catch (e) {
    forgetToken();
    showSignIn(e instanceof ApiError && e.status === 401
      ? 'The server does not know this token (or it was revoked).'
      : `Could not sign in: ${e instanceof ApiError ? e.describe() : e.message}`);
    return false;
  }
  const can = abilities(who.scopes);
  let tokenNames = null;
  if (can.admin) {
    try {
      const list = await api('GET', '/tokens');
      tokenNames = new Map(list.tokens.map((t) => [t.id, t.name]));
    } catch {
      tokenNames = null;
    }
  }
  page.ctx = { who, can, tokenNames, go, fail };
  $('signin').hidden = true;
  $('who-text').replaceChildren(
    el('span', { class: 'who-name' }, who.name), ' ',
    el('span', { class: 'who-scopes', id: 'who-scopes' }, who.scopes.join(', ')));
  $('who').hidden = false;
  $('nav').hidden = !can.read;
  $('nav-audit').hidden = !can.admin;
  $('view').hidden = false;
  return true;
}

function signOut(message) {
  forgetToken();
  page.ctx = null;
  showSignIn(message);
}

// ---- views -----------------------------------------------------------------------

function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function parseRoute() {
  const parts = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean).map((p) => {
    try {
      return decodeURIComponent(p);
    } catch {
      return '';
    }
  });
  const [top, a, b, c, d] = parts;
  // `hash` is the address the view was routed from: a view may rewrite the
  // address into its canonical form only while it is still this one.
  const hash = location.hash;
  if (top === 'apps' && c === 'releases' && d) return { view: releaseView, nav: 'apps', app: a, channel: b, version: d, hash };
  if (top === 'apps') return { view: releasesView, nav: 'apps', app: a, channel: b, hash };
  if (top === 'devices') return { view: devicesView, nav: 'devices', app: a, id: b, hash };
  if (top === 'audit') return { view: auditView, nav: 'audit', app: a, hash };
  return { view: releasesView, nav: 'apps', hash };
}

function stopView() {
  clearInterval(page.timer);
  page.timer = 0;
  if (page.view && page.view.destroy) page.view.destroy();
  page.view = null;
  page.seq++;
}

async function refreshNow() {
  const v = page.view;
  if (!v || !v.refresh || page.refreshing || dialogOpen() || document.hidden) return;
  page.refreshing = true;
  try {
    await v.refresh();
    $('updated').textContent = `updated ${fmtTime(Math.floor(Date.now() / 1000))}`;
  } catch (e) {
    fail(e);
  } finally {
    page.refreshing = false;
  }
}

async function route() {
  if (!page.ctx) return;
  stopView();
  clearError();
  clearNotice();
  const seq = page.seq;
  const r = parseRoute();
  for (const a of document.querySelectorAll('#nav a'))
    a.classList.toggle('current', a.dataset.nav === r.nav);
  // Each route renders into its own container. A route superseded while its
  // view is still loading (a second hashchange, a sign-in racing the initial
  // route) then writes into a detached element and never into the page.
  const root = el('div', { class: 'view-root' });
  $('view-body').replaceChildren(root);
  if (!page.ctx.can.read) {
    root.append(el('p', { class: 'hint' }, `This token (${page.ctx.who.scopes.join(', ')}) cannot ` +
      'read the management API: sign in with a token that has the read scope (or one that implies it).'));
    return;
  }
  root.setAttribute('aria-busy', 'true');
  try {
    const v = await r.view(root, r, page.ctx);
    if (seq !== page.seq) {
      if (v && v.destroy) v.destroy();
      return;
    }
    page.view = v || {};
    $('refresh').hidden = !page.view.refresh;
    $('updated').textContent = page.view.refresh ? `updated ${fmtTime(Math.floor(Date.now() / 1000))}` : '';
    if (page.view.refresh) page.timer = setInterval(refreshNow, REFRESH_MS);
  } catch (e) {
    if (seq === page.seq) fail(e);
  } finally {
    root.removeAttribute('aria-busy');
  }
}

// ---- start -----------------------------------------------------------------------

async function start() {
  initNotify();
  onUnauthorized(() => signOut('The server refused the token (it may have been revoked): sign in again.'));
  $('signin-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const token = $('token').value.trim();
    if (token && await signIn(token)) route();
  });
  $('sign-out').addEventListener('click', () => signOut('Signed out.'));
  $('refresh').addEventListener('click', () => refreshNow());
  window.addEventListener('hashchange', route);
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) refreshNow();
  });
  const token = storedToken();
  if (token && await signIn(token)) route();
  else if (!token) showSignIn('');
  document.body.dataset.ready = 'true';
}

start().catch(fail);
