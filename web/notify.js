// notify.js — the two message lines under the header: errors (a refused
// action, a failed request: role="alert", stays until dismissed or the next
// action) and notices (what an action did, fades after a while).  Both are
// set with textContent.

const NOTICE_MS = 8000;

let noticeTimer = 0;

function parts(id) {
  const box = document.getElementById(id);
  return { box, text: box.querySelector('.message-text') };
}

export function showError(message) {
  const { box, text } = parts('error');
  text.textContent = message;
  box.hidden = false;
}

export function clearError() {
  const { box, text } = parts('error');
  text.textContent = '';
  box.hidden = true;
}

export function showNotice(message) {
  const { box, text } = parts('notice');
  text.textContent = message;
  box.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => {
    box.hidden = true;
  }, NOTICE_MS);
}

export function clearNotice() {
  clearTimeout(noticeTimer);
  parts('notice').box.hidden = true;
}

export function initNotify() {
  for (const id of ['error', 'notice']) {
    const { box } = parts(id);
    box.querySelector('button').addEventListener('click', () => {
      box.hidden = true;
    });
  }
}
