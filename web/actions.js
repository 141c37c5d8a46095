// actions.js — the changes an operator can make from the dashboard, each
// asked for in a confirmation dialog (<dialog id="confirm">) and then sent
// to the management API, which checks the token's scope, records the change
// in the audit log with the token's id, and re-signs what devices read.
//
//   rollout   PUT  /apps/<app>/releases/<v>/rollout  {channel, percent_bp | state, reason?}
//             raise or lower, pause ("paused"), resume ("active"), halt ("halted")
//   promote   POST /apps/<app>/releases/<v>/promote  {channel}
//   rollback  POST /apps/<app>/rollback              {target, channels}
//
// perform() is the one place a change is sent: the buttons call it after
// the dialog, and it shows the outcome itself: a notice on success, the
// server's refusal (status, code, message, e.g. "403 forbidden: ... lacks
// the scope 'rollout'") as an error.  Approvals need a release key, so they
// are not here: `livepush approve` gives them.

import { api, enc, ApiError } from './api.js';
import { showError, showNotice, clearError, clearNotice } from './notify.js';
import { fmtPercentBp } from './dom.js';

// Opens the dialog; resolves to {reason} when confirmed, null when not.
// withReason: offer the optional reason field (rollout changes).
export function confirmAction({ title, text, confirmLabel = 'Confirm', withReason = false }) {
  const dlg = document.getElementById('confirm');
  const reason = document.getElementById('confirm-reason');
  document.getElementById('confirm-title').textContent = title;
  document.getElementById('confirm-text').textContent = text;
  document.getElementById('confirm-ok').textContent = confirmLabel;
  document.getElementById('confirm-reason-row').hidden = !withReason;
  reason.value = '';
  dlg.returnValue = '';
  return new Promise((resolve) => {
    dlg.addEventListener('close', () => {
      if (dlg.returnValue !== 'ok') return resolve(null);
      const r = reason.value.trim();
      return resolve({ reason: withReason && r ? r : null });
    }, { once: true });
    dlg.showModal();
    document.getElementById('confirm-cancel').focus();
  });
}

export function dialogOpen() {
  return document.getElementById('confirm').open;
}

// What an action does, in words (for the dialog and the messages).
export function describe(a) {
  switch (a.kind) {
    case 'rollout': {
      const b = a.body;
      const what = b.state === 'paused' ? 'Pause'
        : b.state === 'active' ? 'Resume'
          : b.state === 'halted' ? 'Halt'
            : `Set to ${fmtPercentBp(b.percent_bp)}`;
      return `${what}: the rollout of ${a.version} on ${a.channel}`;
    }
    case 'promote':
      return `Promote ${a.version} to channel ${a.channel}`;
    case 'rollback':
      return `Publish a rollback to ${a.target} on ${a.channels.join(', ')}`;
    default:
      return 'Unknown action';
  }
}

function request(a) {
  const app = enc(a.app);
  switch (a.kind) {
    case 'rollout':
      return ['PUT', `/apps/${app}/releases/${enc(a.version)}/rollout`,
        { channel: a.channel, ...a.body }];
    case 'promote':
      return ['POST', `/apps/${app}/releases/${enc(a.version)}/promote`, { channel: a.channel }];
    case 'rollback':
      return ['POST', `/apps/${app}/rollback`, { target: a.target, channels: a.channels }];
    default:
      throw new Error(`unknown action ${a.kind}`);
  }
}

// Sends the action; resolves to the answer, or null when it was refused
// (the refusal is shown).
export async function perform(a) {
  const what = describe(a);
  clearError();
  clearNotice();
  try {
    const [method, path, body] = request(a);
    const answer = await api(method, path, body);
    let done = `${what}: done.`;
    if (a.kind === 'rollback' && answer.release && answer.release.state === 'pending')
      done = `${what}: prepared as ${answer.release.version}; it waits for approvals ` +
        '(livepush approve).';
    else if (a.kind === 'rollback' && answer.release)
      done = `${what}: published as version code ${answer.release.version_code}.`;
    showNotice(done);
    return answer;
  } catch (e) {
    showError(`${what}: refused: ${e instanceof ApiError ? e.describe() : e.message}`);
    return null;
  }
}
