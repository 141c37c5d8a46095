// api.js — the dashboard's only way to the server: the management API under
// /api/v1 (docs/api.md), with the token the operator signed in with.
//
// The token is kept in sessionStorage (gone when the tab closes, never in a
// cookie or a URL) and sent as "Authorization: Bearer"; requests carry no
// credentials otherwise and follow no redirects.  Every failure becomes an
// ApiError with the HTTP status and the server's error code and message
// ({"error":{"code","message"}}), so views show the server's own words,
// for example a 403 naming the scope a token lacks.
//
// What a token may do comes from GET /api/v1/whoami; `abilities` mirrors the
// server's rules (docs/tokens.md: admin implies every scope; upload, rollout
// and approve imply read).  The page uses it only to decide what to offer:
// the server checks every request itself.

const TOKEN_KEY = 'livepush.token';

export function storedToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function storeToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }

  // "403 forbidden: token ... lacks the scope 'rollout'"
  describe() {
    return this.status ? `${this.status} ${this.code}: ${this.message}` : this.message;
  }
}

// Listeners told when the server refuses the token itself (401).
const unauthorizedListeners = new Set();
export function onUnauthorized(fn) {
  unauthorizedListeners.add(fn);
}

// One request.  path is under /api/v1 ("/apps"); body, when given, is sent
// as JSON.  Resolves to the parsed answer; rejects with an ApiError.
export async function api(method, path, body) {
  const token = storedToken();
  const headers = { Accept: 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  const init = { method, headers, cache: 'no-store', credentials: 'omit', redirect: 'error' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(`/api/v1${path}`, init);
  } catch (e) {
    throw new ApiError(0, 'network', `the server did not answer ${method} ${path}: ${e.message}`);
  }
  let doc = null;
  try {
    doc = await res.json();
  } catch {
    doc = null;
  }
  if (!res.ok) {
    const e = doc && typeof doc.error === 'object' && doc.error ? doc.error : {};
    const err = new ApiError(
      res.status,
      typeof e.code === 'string' ? e.code : `http_${res.status}`,
      typeof e.message === 'string' ? e.message : `HTTP ${res.status} for ${method} ${path}`,
    );
    if (res.status === 401) for (const fn of unauthorizedListeners) fn(err);
    throw err;
  }
  return doc;
}

// A path segment or query value.
export const enc = encodeURIComponent;

// What the scopes of a token let it do (see the top of this file).
export function abilities(scopes) {
  const s = new Set(Array.isArray(scopes) ? scopes : []);
  const admin = s.has('admin');
  const upload = admin || s.has('upload');
  const rollout = admin || s.has('rollout');
  const approve = admin || s.has('approve');
  return {
    admin,
    upload,
    rollout,
    approve,
    read: admin || upload || rollout || approve || s.has('read'),
  };
}
