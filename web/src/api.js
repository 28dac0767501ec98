// The HTTP API, as the dashboard uses it. Every call answers parsed JSON (or null for a 204)
// or throws an ApiError carrying the API's {"error":{"code","message"}} shape.

const KEY_STORAGE = 'topcoins.key';

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status; // 0 when the request never got an answer
    this.code = code;
  }
}

/** The API key kept in this browser, or '' without one. */
export function storedKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) || '';
  } catch {
    return '';
  }
}

export function storeKey(key) {
  try {
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
  } catch {
    // Storage refused (private mode): the key lives until the page is closed.
  }
}

/**
 * Calls the API. `options`: method, body (sent as JSON), key (sent as a bearer token),
 * signal (an AbortSignal).
 */
export async function api(path, { method = 'GET', body, key, signal } = {}) {
  const headers = { Accept: 'application/json' };
  if (key) headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', 'The server could not be reached.');
  }
  if (response.status === 204) return null;
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    // Not JSON: handled below.
  }
  if (!response.ok) {
    const err = json && json.error;
    throw new ApiError(
      response.status,
      (err && err.code) || `http_${response.status}`,
      (err && err.message) || `${response.status} ${response.statusText}`.trim(),
    );
  }
  if (json === null) throw new ApiError(response.status, 'bad_body', 'The answer was not JSON.');
  return json;
}

/** `GET` with the query built from an object (undefined and null values left out). */
export function query(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

/** Path segments are encoded one by one (a symbol may hold odd characters). */
export const seg = encodeURIComponent;
