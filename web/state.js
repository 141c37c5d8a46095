// state.js — what the dashboard calls the state of a release on a channel,
// derived from the release (GET .../releases) and its rollout row on the
// channel (GET .../rollouts, docs/rollouts.md):
//
//   pending approval  the release waits for its publisher's approvals
//                     (release.state "pending"; approvals say how many)
//   withdrawn         cancelled while pending; never published
//   halted            the rollout was halted (by an operator, or by the
//                     guardrail: the rollout's reason says why); final
//   paused            no new installs until resumed
//   rolling out       active, offered to fewer than 100% of the devices
//   complete          offered to every device: active at 100%, or no
//                     rollout row (released to all at once)

import { fmtPercentBp } from './dom.js';

export function releaseState(release, rollout) {
  if (release.state === 'pending') return { key: 'pending', label: 'pending approval' };
  if (release.state === 'withdrawn') return { key: 'withdrawn', label: 'withdrawn' };
  if (!rollout) return { key: 'complete', label: 'complete' };
  if (rollout.state === 'halted') return { key: 'halted', label: 'halted' };
  if (rollout.state === 'paused') return { key: 'paused', label: 'paused' };
  if (rollout.percent_bp < 10000) return { key: 'rolling', label: 'rolling out' };
  return { key: 'complete', label: 'complete' };
}

// The share offered: "10%", or "100%" without a rollout row.
export function offeredShare(release, rollout) {
  if (release.state !== 'published') return '—';
  return fmtPercentBp(rollout ? rollout.percent_bp : 10000);
}

// "1 of 2 (1 missing)" for a release of an app whose publisher signs.
export function approvalsText(approvals) {
  if (!approvals) return null;
  const missing = approvals.missing ? ` (${approvals.missing} missing)` : '';
  return `${approvals.present} of ${approvals.required}${missing}`;
}
