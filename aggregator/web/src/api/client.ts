// The only module that talks to the server. It owns fetch, the access
// token (kept in memory only), its refresh with the rotating refresh token,
// and the API's envelope {code, message, data}. Pages call the functions of
// api/index.ts and never fetch themselves.
//
// The refresh token is kept in sessionStorage so that a reload of the tab
// does not log the operator out; it is rotated at every use (the server
// ends the session if an old one is replayed) and the strict
// Content-Security-Policy the aggregator sends keeps foreign script out.
import { signal } from '@preact/signals';
import { locale } from '../i18n';

export const API_BASE = '/api/v1';

/** The API's error: its HTTP status, stable code, localized message and data. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly data: Record<string, unknown> | null = null,
  ) {
    super(message);
    this.name = 'ApiError';
  }

  /** fields are the validation errors, when the API sent any. */
  get fields(): { field: string; code: string; message: string }[] {
    const f = this.data?.fields;
    return Array.isArray(f) ? (f as { field: string; code: string; message: string }[]) : [];
  }
}

/** Codes of this client's own failures (no answer, not an envelope). */
export const CODE_NETWORK = 'NETWORK_ERROR';
export const CODE_BAD_RESPONSE = 'BAD_RESPONSE';

export interface Tokens {
  access_token: string;
  token_type: string;
  expires_at: string;
  refresh_token: string;
  refresh_expires_at: string;
  session_id: string;
}

/** Session state: unknown until restore() has run. */
export type SessionState = 'unknown' | 'in' | 'out';
export const session = signal<SessionState>('unknown');
/** Why the last session ended without a logout (an API error code), for the login page. */
export const sessionEnded = signal<string | null>(null);

const REFRESH_KEY = 'vmpulse.refresh';
// Refresh this long before the access token expires.
const REFRESH_MARGIN_MS = 30_000;

let accessToken: string | null = null;
let accessExpires = 0;
let refreshing: Promise<boolean> | null = null;

function storedRefresh(): string | null {
  try {
    return sessionStorage.getItem(REFRESH_KEY);
  } catch {
    return null;
  }
}

function keep(tok: Tokens): void {
  accessToken = tok.access_token;
  accessExpires = Date.parse(tok.expires_at) || Date.now() + 60_000;
  try {
    sessionStorage.setItem(REFRESH_KEY, tok.refresh_token);
  } catch {
    // kept in memory only: a reload asks for the password again
    memoryRefresh = tok.refresh_token;
  }
  session.value = 'in';
  sessionEnded.value = null;
}
let memoryRefresh: string | null = null;

function forget(reason: string | null): void {
  accessToken = null;
  accessExpires = 0;
  memoryRefresh = null;
  try {
    sessionStorage.removeItem(REFRESH_KEY);
  } catch {
    // nothing stored
  }
  session.value = 'out';
  sessionEnded.value = reason;
}

export type Query = Record<string, string | number | boolean | null | undefined | readonly (string | number)[]>;

/** buildURL makes an API URL; empty, null and undefined values are left out. */
export function buildURL(path: string, query?: Query): string {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(query ?? {})) {
    if (v === undefined || v === null || v === '') continue;
    if (Array.isArray(v)) for (const x of v) p.append(k, String(x));
    else p.append(k, String(v));
  }
  const qs = p.toString();
  return API_BASE + path + (qs ? '?' + qs : '');
}

async function send(method: string, url: string, body: unknown, auth: boolean, signal?: AbortSignal): Promise<Response> {
  const headers: Record<string, string> = { Accept: 'application/json', 'Accept-Language': locale.value };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (auth && accessToken) headers.Authorization = 'Bearer ' + accessToken;
  try {
    return await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'omit',
      cache: 'no-store',
      signal,
    });
  } catch (e) {
    if (e instanceof DOMException && e.name === 'AbortError') throw e;
    throw new ApiError(0, CODE_NETWORK, String(e));
  }
}

async function envelope<T>(res: Response): Promise<T> {
  let env: { code?: unknown; message?: unknown; data?: unknown };
  try {
    env = await res.json();
  } catch {
    throw new ApiError(res.status, CODE_BAD_RESPONSE, res.statusText);
  }
  if (res.ok && env.code === 0) return env.data as T;
  const code = typeof env.code === 'string' ? env.code : CODE_BAD_RESPONSE;
  const data = env.data && typeof env.data === 'object' ? (env.data as Record<string, unknown>) : null;
  throw new ApiError(res.status, code, typeof env.message === 'string' ? env.message : res.statusText, data);
}

/**
 * refresh exchanges the refresh token for new tokens, once at a time: every
 * caller waiting for a token shares one request (a second request with the
 * same token would be a reuse, which ends the session).
 */
function refresh(): Promise<boolean> {
  refreshing ??= (async () => {
    const rt = storedRefresh() ?? memoryRefresh;
    if (!rt) {
      forget(null);
      return false;
    }
    try {
      const res = await send('POST', buildURL('/auth/refresh'), { refresh_token: rt }, false);
      keep(await envelope<Tokens>(res));
      return true;
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) forget(e.code);
      else throw e;
      return false;
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

async function freshToken(): Promise<void> {
  if (accessToken && Date.now() < accessExpires - REFRESH_MARGIN_MS) return;
  if (refreshing || storedRefresh() || memoryRefresh) await refresh();
}

export interface RequestOptions {
  query?: Query;
  body?: unknown;
  signal?: AbortSignal;
}

/**
 * request calls the API and returns the envelope's data, or throws
 * ApiError. An expired access token is refreshed first; a 401 that says
 * the token is no longer good is refreshed and retried once.
 */
export async function request<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
  await freshToken();
  const url = buildURL(path, opts.query);
  let res = await send(method, url, opts.body, true, opts.signal);
  if (res.status === 401 && (storedRefresh() || memoryRefresh)) {
    const code = await res.clone().json().then((e: { code?: unknown }) => e.code, () => null);
    if (code === 'AUTH_UNAUTHENTICATED' && (await refresh())) res = await send(method, url, opts.body, true, opts.signal);
  }
  if (res.status === 401) {
    try {
      return await envelope<T>(res);
    } catch (e) {
      if (e instanceof ApiError && e.code === 'AUTH_UNAUTHENTICATED') forget(e.code);
      throw e;
    }
  }
  return envelope<T>(res);
}

/** login opens a session with a username or email and a password. */
export async function login(username: string, password: string): Promise<void> {
  const res = await send('POST', buildURL('/auth/login'), { username, password }, false);
  keep(await envelope<Tokens>(res));
}

/** logout ends the session on the server (best effort) and here. */
export async function logout(): Promise<void> {
  try {
    if (accessToken || storedRefresh()) await request('POST', '/auth/logout');
  } catch {
    // the session ends here whatever the server said
  }
  forget(null);
}

/** restore resumes the tab's session after a reload, if it has one. */
export async function restore(): Promise<void> {
  if (!storedRefresh()) {
    session.value = 'out';
    return;
  }
  try {
    await refresh();
  } catch {
    session.value = 'out';
  }
}

/**
 * download fetches a file the API streams (CSV exports need the bearer
 * token, so a plain link cannot fetch them) and hands it to the browser.
 */
export async function download(path: string, query: Query, filename: string): Promise<void> {
  await freshToken();
  const res = await send('GET', buildURL(path, query), undefined, true);
  if (!res.ok) await envelope(res);
  const blob = await res.blob();
  const href = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = href;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(href), 10_000);
}

/**
 * realtimeSocket opens the live feed (GET /realtime/ws). A browser cannot
 * set headers on a WebSocket, so the access token travels in
 * Sec-WebSocket-Protocol (never in the URL, which proxies log); the server
 * answers with the plain subprotocol. authMessage makes the
 * {"type":"auth"} message that replaces the token before it expires.
 */
export async function realtimeSocket(): Promise<{ ws: WebSocket; authMessage: () => Promise<string> }> {
  await freshToken();
  if (!accessToken) throw new ApiError(401, 'AUTH_UNAUTHENTICATED', '');
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const ws = new WebSocket(scheme + '//' + location.host + API_BASE + '/realtime/ws', ['vmpulse.v1', 'vmpulse.bearer.' + accessToken]);
  return {
    ws,
    authMessage: async () => {
      await freshToken();
      return JSON.stringify({ type: 'auth', token: accessToken ?? '' });
    },
  };
}
