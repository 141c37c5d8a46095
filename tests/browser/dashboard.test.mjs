// dashboard.test.mjs — the web dashboard in Debian's Chromium (headless),
// driven by Playwright (playwright-core), against the real server that
// tests/e2e/dashboard.sh started and filled:
//
//   LP_URL          the server ("http://127.0.0.1:PORT")
//   LP_ADMIN_TOKEN  an admin token
//   LP_OPERATOR_TOKEN  a token with the rollout scope only
//   LP_READ_TOKEN   a token with the read scope only
//   LP_CHROMIUM     the browser (default /usr/bin/chromium)
//   LP_SHOTS        the folder for the screenshots
//
// The app "default" has 1.0 (notes with HTML in them, every device) and 1.1
// (staged at 10% on stable), and channels stable and beta.  Every change
// made in the browser is checked through the API with curl, and in the
// audit log.  Prints "ok N - ..." per step; on failure, "FAIL - ...", a
// screenshot fail.png in LP_SHOTS, and exit status 1.

import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { strict as assert } from 'node:assert';
import path from 'node:path';
import { chromium } from 'playwright-core';

const URL = process.env.LP_URL;
const ADMIN = process.env.LP_ADMIN_TOKEN;
const OPERATOR = process.env.LP_OPERATOR_TOKEN;
const VIEWER = process.env.LP_READ_TOKEN;
const SHOTS = process.env.LP_SHOTS;
const CHROMIUM = process.env.LP_CHROMIUM || '/usr/bin/chromium';
for (const [k, v] of Object.entries({ LP_URL: URL, LP_ADMIN_TOKEN: ADMIN,
  LP_OPERATOR_TOKEN: OPERATOR, LP_READ_TOKEN: VIEWER, LP_SHOTS: SHOTS }))
  if (!v) throw new Error(`${k} is not set (tests/e2e/dashboard.sh sets it)`);

const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
  "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
const NOTES = '<img src=x onerror=alert(1)><b>bold</b> & more';
const WAIT = { timeout: 15000 };

// ---- the API, through curl -------------------------------------------------------

// {status, body} of one request.
function curl(method, apiPath, token, body) {
  const args = ['-s', '-o', '-', '-w', '\n%{http_code}', '-X', method,
    '-H', `Authorization: Bearer ${token}`];
  if (body !== undefined) args.push('-H', 'Content-Type: application/json', '--data-binary', JSON.stringify(body));
  args.push(`${URL}${apiPath}`);
  const out = execFileSync('curl', args, { encoding: 'utf8' });
  const cut = out.lastIndexOf('\n');
  const text = out.slice(0, cut);
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    json = null;
  }
  return { status: Number(out.slice(cut + 1)), body: json, text };
}

function get(apiPath, token = ADMIN) {
  const r = curl('GET', apiPath, token);
  assert.equal(r.status, 200, `GET ${apiPath}: ${r.status} ${r.text}`);
  return r.body;
}

function rolloutOf(version, channel = 'stable') {
  return get(`/api/v1/apps/default/rollouts?channel=${channel}`).rollouts
    .find((r) => r.version === version);
}

function newestAudit(n = 20) {
  const head = get('/api/v1/audit?limit=1').head;
  return get(`/api/v1/audit?after=${Math.max(0, head - n)}&limit=${n}`).entries.reverse();
}

const adminId = get('/api/v1/whoami').token.id;

// device events over the device API (public by default)
function report(n, code, rolledBack) {
  const id = n.toString(16).padStart(32, '0');
  const events = [
    { seq: 1, type: 'checked', at: 1796000000, version: '1.1', version_code: code },
    { seq: 2, type: 'downloaded', at: 1796000001, version: '1.1', version_code: code },
    { seq: 3, type: 'activated', at: 1796000002, version: '1.1', version_code: code, from_version_code: 1 },
    rolledBack
      ? { seq: 4, type: 'rolled_back', at: 1796000003, version_code: 1, from_version_code: code,
        reason: 'health check failed: <script>alert(1)</script>' }
      : { seq: 4, type: 'healthy', at: 1796000003, version_code: code },
  ];
  const out = execFileSync('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '-X', 'POST',
    '-H', 'Content-Type: application/json', '--data-binary',
    JSON.stringify({ device_id: id, channel: 'stable', events }),
    `${URL}/v1/apps/default/events`], { encoding: 'utf8' });
  assert.equal(out, '200', `events of device ${id}`);
  return id;
}

// ---- the browser -----------------------------------------------------------------

const consoleErrors = [];
const pageErrors = [];
let step = 0;
let page;

function ok(text) {
  step++;
  console.log(`ok ${step} - ${text}`);
}

async function shot(name) {
  await page.screenshot({ path: path.join(SHOTS, name), fullPage: true });
}

async function signIn(token, scopes) {
  await page.goto(`${URL}/dashboard#/apps`);
  await page.locator('#token').fill(token);
  await page.locator('#signin-form button[type=submit]').click();
  await page.locator('#who-scopes').filter({ hasText: scopes }).waitFor(WAIT);
}

async function signOut() {
  await page.locator('#sign-out').click();
  await page.locator('#signin').waitFor({ state: 'visible', ...WAIT });
}

// Answers the confirmation dialog (with a reason when given) and waits for
// the notice that the action was done (`done`: its text).
async function confirm(reason, done) {
  const dlg = page.locator('dialog#confirm');
  await dlg.waitFor({ state: 'visible', ...WAIT });
  if (reason) await page.locator('#confirm-reason').fill(reason);
  await page.locator('#confirm-ok').click();
  await dlg.waitFor({ state: 'hidden', ...WAIT });
  await page.locator('#notice').filter({ hasText: done }).waitFor(WAIT);
}

const releaseRow = (v) => page.locator(`#releases tr[data-version="${v}"]`);

async function main() {
  rmSync(path.join(SHOTS, 'fail.png'), { force: true });
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true });
  try {
    const context = await browser.newContext({ viewport: { width: 1360, height: 900 } });
    // Runs before the page's scripts (through DevTools, not as an inline script):
    // records every Content-Security-Policy violation the page reports.
    await context.addInitScript(() => {
      window.cspViolations = [];
      document.addEventListener('securitypolicyviolation', (e) => {
        window.cspViolations.push(`${e.violatedDirective}: ${e.blockedURI}`);
      });
    });
    page = await context.newPage();
    page.on('console', (m) => {
      if (m.type() === 'error') consoleErrors.push(m.text());
    });
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    page.on('dialog', (d) => {
      pageErrors.push(`a JavaScript dialog opened: ${d.message()}`);
      d.dismiss();
    });
    await run();
    const csp = await page.evaluate(() => window.cspViolations);
    assert.deepEqual(csp, [], `CSP violations: ${csp.join('; ')}`);
    assert.deepEqual(pageErrors, [], `page errors: ${pageErrors.join('; ')}`);
    // Chromium logs each failed request as a console error: the wrong token
    // at sign-in (401), the refused forced action (403) and a device id looked
    // up that does not exist (404) are expected; anything else (a script
    // error, a CSP report) is not.
    const unexpected = consoleErrors.filter((t) =>
      !/^Failed to load resource: the server responded with a status of (401|403|404) /.test(t));
    assert.deepEqual(unexpected, [], `console errors: ${unexpected.join('; ')}`);
    ok('no Content-Security-Policy violation, no script error, no other console error');
  } catch (e) {
    console.log(`FAIL - step ${step + 1}: ${e.stack || e}`);
    if (page) await page.screenshot({ path: path.join(SHOTS, 'fail.png'), fullPage: true }).catch(() => {});
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
}

async function run() {
  // The page and its headers.
  const res = await page.goto(`${URL}/`);
  assert.equal(new globalThis.URL(page.url()).pathname, '/dashboard');
  const h = res.headers();
  assert.equal(h['content-security-policy'], CSP);
  assert.equal(h['x-content-type-options'], 'nosniff');
  assert.equal(h['referrer-policy'], 'no-referrer');
  await page.locator('#signin').waitFor({ state: 'visible', ...WAIT });
  ok('/ leads to /dashboard, served with the CSP, nosniff and no-referrer; the sign-in form shows');

  await page.locator('#token').fill('lp_aaaaaaaaaaaa_notavalidtokenatall');
  await page.locator('#signin-form button[type=submit]').click();
  await page.locator('#signin-message').filter({ hasText: 'does not know this token' }).waitFor(WAIT);
  ok('a wrong token is refused at sign-in');

  // ---- admin: the list, the rollout at 10%, the notes as text ----
  await signIn(ADMIN, 'admin');
  await page.goto(`${URL}/dashboard#/apps/default/stable`);
  const row11 = releaseRow('1.1');
  await row11.waitFor(WAIT);
  assert.equal(await row11.getAttribute('data-state'), 'rolling');
  assert.match(await row11.locator('td.c-state').innerText(), /rolling out/);
  assert.match(await row11.locator('td.c-rollout').innerText(), /^10%$/);
  assert.equal(await releaseRow('1.0').getAttribute('data-state'), 'complete');
  assert.match(await row11.locator('td.c-by').innerText(), /admin/);
  ok('signed in as admin: 1.1 is rolling out at 10%, 1.0 complete, published by the admin token');

  const notes = releaseRow('1.0').locator('td.c-notes');
  assert.equal(await notes.textContent(), NOTES);
  assert.equal(await notes.locator('img, b, script').count(), 0);
  assert.equal(await page.locator('#view-body img').count(), 0);
  ok('the notes "<img src=x onerror=alert(1)><b>bold</b> & more" show as text: no <img> or <b> element');
  await shot('releases.png');

  // Two routes started before the first finished loading: only the second
  // may fill the page (a superseded view writes into a detached container).
  await page.evaluate(() => {
    location.hash = '#/apps/default';
    setTimeout(() => { location.hash = '#/apps/default/stable'; }, 0);
  });
  await page.waitForFunction(() => !document.querySelector('#view-body [aria-busy]') &&
    document.querySelectorAll('#releases tr[data-version="1.1"]').length > 0, null, WAIT);
  await page.waitForTimeout(300);
  assert.equal(await page.locator('#view-body > *').count(), 1);
  assert.equal(await page.locator('#releases tr[data-version="1.1"]').count(), 1);
  ok('two routes in quick succession leave one view with one row per release');

  // A view still loading when the user moves on must not rewrite the address
  // (the list canonicalises #/apps into #/apps/<app>/<channel>).
  const target = '#/apps/default/stable/releases/1.0';
  await page.evaluate((t) => {
    location.hash = '#/apps';
    setTimeout(() => { location.hash = t; }, 0);
  }, target);
  await page.locator('#release-state[data-state="complete"]').waitFor(WAIT);
  await page.waitForTimeout(300);
  assert.equal(await page.evaluate(() => location.hash), target);
  assert.equal(await page.locator('#releases').count(), 0);
  ok('moving on while the list loads: the address stays the release page, which alone shows');
  await page.goto(`${URL}/dashboard#/apps/default/stable`);
  await row11.waitFor(WAIT);

  // ---- admin: raise 1.1 to 50% (a cancelled dialog changes nothing) ----
  await row11.locator('td.c-version a').click();
  await page.locator('#release-state[data-state="rolling"]').waitFor(WAIT);
  await page.locator('#action-pause').click();
  await page.locator('dialog#confirm').waitFor({ state: 'visible', ...WAIT });
  await page.locator('#confirm-cancel').click();
  await page.locator('dialog#confirm').waitFor({ state: 'hidden', ...WAIT });
  assert.equal(rolloutOf('1.1').state, 'active');
  ok('Pause, then Cancel in the confirmation dialog: the API still says active');

  await page.locator('#rollout-percent').fill('50');
  await page.locator('#action-set').click();
  await confirm('error rate flat for a day', 'Set to 50%: the rollout of 1.1 on stable: done.');
  let r = rolloutOf('1.1');
  assert.equal(r.percent_bp, 5000);
  assert.equal(r.state, 'active');
  let e = newestAudit().find((x) => x.action === 'rollout.changed');
  assert.ok(e, 'no rollout.changed audit entry');
  assert.equal(e.actor, `token:${adminId}`);
  assert.equal(e.subject, '1.1@stable');
  assert.equal(e.details.percent_bp, 5000);
  assert.equal(e.details.reason, 'error rate flat for a day');
  await page.locator('#release-facts').filter({ hasText: '50%' }).waitFor(WAIT);
  ok('raised to 50% after the dialog: the API says 5000 bp, active; audit rollout.changed by the admin token with the reason');

  // ---- admin: pause ----
  await page.locator('#action-pause').click();
  await confirm(null, 'Pause: the rollout of 1.1 on stable: done.');
  r = rolloutOf('1.1');
  assert.equal(r.state, 'paused');
  assert.equal(r.percent_bp, 5000);
  e = newestAudit().find((x) => x.action === 'rollout.paused');
  assert.ok(e && e.subject === '1.1@stable' && e.actor === `token:${adminId}`, 'no rollout.paused entry');
  await page.locator('#release-state[data-state="paused"]').waitFor(WAIT);
  await page.locator('#action-resume').waitFor(WAIT);
  ok('paused after the dialog: the API says paused at 5000 bp, audit rollout.paused; the page offers Resume');

  // ---- devices report: 8 of 25 roll back; the guardrail halts by itself ----
  await page.evaluate(() => {
    window.notReloaded = true;
  });
  const devices = [];
  for (let n = 1; n <= 17; n++) devices.push(report(n, 2, false));
  for (let n = 18; n <= 25; n++) devices.push(report(n, 2, true));
  const t0 = Date.now();
  await page.locator('#release-state[data-state="halted"]').waitFor({ timeout: 20000 });
  const waited = Date.now() - t0;
  assert.equal(await page.evaluate(() => window.notReloaded), true, 'the page was reloaded');
  r = rolloutOf('1.1');
  assert.equal(r.state, 'halted');
  assert.match(r.reason, /^guardrail: \d+ of \d+ devices failed or rolled back \([\d.]+%\), above 5\.0% \(at least 20 devices\)$/);
  await page.locator('#release-state .reason').filter({ hasText: r.reason }).waitFor(WAIT);
  e = newestAudit().find((x) => x.action === 'rollout.halted');
  assert.ok(e && e.actor === 'server' && e.subject === '1.1@stable', 'no rollout.halted entry by server');
  assert.match(await page.locator('#actions-none').innerText(), /^The rollout is halted, which is final/);
  assert.equal(await page.locator('#actions button').count(), 0);
  ok(`8 of 25 devices rolled back: "halted" and the reason ("${r.reason}") appeared ` +
    `${waited} ms later without a reload (the page refreshes every 2 s); audit rollout.halted by server`);

  // charts: one period with 25 installs, rates against the 5% line
  await page.locator('#chart-adoption canvas').waitFor(WAIT);
  await page.locator('#chart-rates canvas').waitFor(WAIT);
  assert.match(await page.locator('#chart-rates .u-legend').innerText(), /rolled back/);
  assert.match(await page.locator('#chart-guardrail').innerText(), /guardrail, 5\.0%/);
  assert.equal((await page.locator('#release-notes').textContent()), 'Faster start; staged.');
  await page.locator('#release-facts [data-figure="installed"]').filter({ hasText: '25' }).waitFor(WAIT);
  ok('the release page shows the adoption and rate charts (with the guardrail line) and 25 installed');
  await shot('release.png');

  await page.goto(`${URL}/dashboard#/apps/default/stable`);
  await releaseRow('1.1').locator('td.c-state .reason').filter({ hasText: 'guardrail:' }).waitFor(WAIT);
  assert.equal(await releaseRow('1.1').getAttribute('data-state'), 'halted');
  ok('the release list shows 1.1 halted with the guardrail reason');

  // ---- devices ----
  await page.goto(`${URL}/dashboard#/devices/default`);
  const bad = devices[20];
  await page.locator('#device-search').fill(bad.slice(0, 30));
  await page.locator('#device-form button[type=submit]').click();
  await page.locator(`#device-results tr[data-device="${bad}"] a`).click();
  await page.locator('#device-facts').waitFor(WAIT);
  assert.match(await page.locator('#device-current').innerText(), /^1\.0 \(code 1\)$/);
  assert.equal(await page.locator('#device-pending').innerText(), 'nothing');
  const evText = await page.locator('#device-events').innerText();
  assert.match(evText, /rolled_back/);
  assert.match(evText, /health check failed: <script>alert\(1\)<\/script>/);
  assert.equal(await page.locator('#device-events script').count(), 0);
  ok('devices: a search by the first digits finds the device; it runs 1.0 after rolling back, its events show (the reason as text)');
  await shot('devices.png');

  // ---- audit ----
  await page.locator('#nav-audit').click();
  await page.locator('#audit tr[data-action="rollout.halted"]').waitFor(WAIT);
  assert.match(await page.locator('#audit tr[data-action="rollout.halted"]').innerText(), /server/);
  await page.locator('#audit tr[data-action="rollout.paused"]').waitFor(WAIT);
  ok('the audit log lists the halt by the server and the admin\'s pause, newest first');
  await shot('audit.png');
  await signOut();

  // ---- operator (rollout scope): rollout actions, no rollback, no audit ----
  await signIn(OPERATOR, 'rollout');
  assert.equal(await page.locator('#nav-audit').isVisible(), false);
  await page.goto(`${URL}/dashboard#/apps/default/stable/releases/1.0`);
  await page.locator('#release-state[data-state="complete"]').waitFor(WAIT);
  for (const id of ['#action-set', '#action-pause', '#action-halt', '#action-promote'])
    assert.equal(await page.locator(id).isVisible(), true, `${id} not offered to a rollout token`);
  assert.equal(await page.locator('#action-rollback').count(), 0);
  ok('a rollout token is offered Set, Pause, Halt and Promote, not a rollback (upload) nor the audit log');
  await signOut();

  // ---- viewer (read scope): nothing offered; a forced action refused ----
  await signIn(VIEWER, 'read');
  await page.goto(`${URL}/dashboard#/apps/default/stable/releases/1.0`);
  await page.locator('#release-state[data-state="complete"]').waitFor(WAIT);
  assert.equal(await page.locator('#actions button').count(), 0);
  assert.match(await page.locator('#actions-none').innerText(), /may only look/);
  assert.equal(await page.locator('#nav-audit').isVisible(), false);
  ok('a read-only token is offered no action, and no audit log');

  const before = rolloutOf('1.0');
  const answer = await page.evaluate(async () => {
    const m = await import('/dashboard/actions.js');
    return m.perform({ kind: 'rollout', app: 'default', version: '1.0', channel: 'stable',
      body: { state: 'paused' } });
  });
  assert.equal(answer, null);
  const shown = await page.locator('#error .message-text').innerText();
  assert.match(shown, /403 forbidden/);
  assert.match(shown, /rollout/);
  assert.deepEqual(rolloutOf('1.0'), before);
  const api = curl('PUT', '/api/v1/apps/default/releases/1.0/rollout', VIEWER,
    { channel: 'stable', state: 'paused' });
  assert.equal(api.status, 403);
  assert.equal(api.body.error.code, 'forbidden');
  const rb = curl('POST', '/api/v1/apps/default/rollback', VIEWER, { target: '1.0' });
  assert.equal(rb.status, 403);
  assert.equal(get('/api/v1/apps/default/releases?limit=5').releases.length, 2);
  ok(`forced through the page's own action code, the pause is refused and shown ("${shown.trim()}"); ` +
    'the API refuses it and a rollback with 403; nothing changed');
  await signOut();

  // ---- admin again: promote to another channel, publish a rollback ----
  await signIn(ADMIN, 'admin');
  await page.goto(`${URL}/dashboard#/apps/default/stable/releases/1.0`);
  await page.locator('#release-state[data-state="complete"]').waitFor(WAIT);
  await page.locator('#promote-channel').selectOption('beta');
  await page.locator('#action-promote').click();
  await confirm(null, 'Promote 1.0 to channel beta: done.');
  assert.deepEqual([...get('/api/v1/apps/default/releases/1.0').release.channels].sort(), ['beta', 'stable']);
  const promoted = newestAudit().find((x) => x.action === 'release.promoted');
  assert.ok(promoted, 'no release.promoted audit entry');
  assert.equal(promoted.actor, `token:${adminId}`);
  await page.locator('#promote-form').waitFor({ state: 'detached', ...WAIT });
  ok('promoted 1.0 to beta after the dialog: the API lists it on stable and beta, audit release.promoted ' +
    'by the admin token; no other channel is left to offer');

  await page.locator('#action-rollback').click();
  await confirm(null, 'Publish a rollback to 1.0 on stable: published as version code 3.');
  const rels = get('/api/v1/apps/default/releases?limit=5').releases;
  assert.equal(rels.length, 3);
  const rb3 = rels.find((x) => x.version_code === 3);
  assert.ok(rb3, 'no release with version code 3');
  assert.equal(rb3.version, '1.0');
  assert.deepEqual(rb3.rollback_of, { version: '1.0', version_code: 1 });
  assert.deepEqual(rb3.channels, ['stable']);
  const published = newestAudit().find((x) => x.action === 'rollback.published');
  assert.equal(published.actor, `token:${adminId}`);
  assert.equal(published.subject, '1.0');
  ok('published a rollback to 1.0 after the dialog: the API lists version code 3 restoring code 1 on ' +
    'stable; audit rollback.published by the admin token');
}

await main();
