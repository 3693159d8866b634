import { jsonOrUndefined } from '../common/json-body.js';
import type * as Model from '../model/resources.js';

// The web UI's only way to the control plane: the public /v1 API with the user's API key (HTTP basic
// auth), exactly as the CLI calls it. The key is kept in sessionStorage: gone when the tab closes.

export interface Creds {
  accessKey: string;
  secretKey: string;
}

const SESSION_KEY = 'drover.session';

export function loadCreds(): Creds | null {
  try {
    const raw = sessionStorage.getItem(SESSION_KEY);
    if (!raw) return null;
    const v = JSON.parse(raw) as Partial<Creds>;
    return typeof v.accessKey === 'string' && typeof v.secretKey === 'string' ? { accessKey: v.accessKey, secretKey: v.secretKey } : null;
  } catch {
    return null;
  }
}

export function saveCreds(c: Creds | null): void {
  if (c) sessionStorage.setItem(SESSION_KEY, JSON.stringify(c));
  else sessionStorage.removeItem(SESSION_KEY);
}

/** An error resource of the API (status, code, the field it concerns), or a network failure (status 0). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly fieldName?: string,
    /** Compose errors: the file (docker-compose.yml / rancher-compose.yml) the problem is in. */
    readonly file?: string,
  ) {
    super(message);
  }
}

/** Any failure as an ApiError (what the pages show): API errors as they are, anything else as its text. */
export function toApiError(err: unknown): ApiError {
  return err instanceof ApiError ? err : new ApiError(0, 'Error', String(err));
}

let creds: Creds | null = loadCreds();
let onUnauthorized: () => void = () => undefined;

export function setCreds(c: Creds | null): void {
  creds = c;
  saveCreds(c);
}

export function whenUnauthorized(fn: () => void): void {
  onUnauthorized = fn;
}

export async function api<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json', 'x-drover-ui': '1' };
  if (creds) headers.authorization = 'Basic ' + btoa(`${creds.accessKey}:${creds.secretKey}`);
  if (body !== undefined) headers['content-type'] = 'application/json';
  let res: Response;
  try {
    res = await fetch(path, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}), ...(signal ? { signal } : {}) });
  } catch (err) {
    if (signal?.aborted) throw err;
    throw new ApiError(0, 'Unreachable', `the control plane did not answer (${err instanceof Error ? err.message : String(err)})`);
  }
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  const json = jsonOrUndefined(text);
  if (!res.ok) {
    const e = (json ?? {}) as { code?: string; message?: string; fieldName?: string; file?: string };
    if (res.status === 401) onUnauthorized();
    throw new ApiError(res.status, e.code ?? `HTTP${res.status}`, e.message ?? (text.slice(0, 200) || res.statusText), e.fieldName, e.file);
  }
  return json as T;
}

export interface Collection<T> {
  data: T[];
}

export interface Links {
  links?: Record<string, string>;
  actions?: Record<string, string>;
}

// The resources as the API answers them: the control plane's own model types (type-only imports, erased
// from the bundle), plus the links and actions every answer carries. The private key of a certificate is
// never in an answer.
export type Environment = Model.Environment & Links & { revision: number };
export type Host = Model.Host & Links;
export type Stack = Model.Stack & Links;
export type Service = Model.Service & Links;
export type Container = Model.Container & Links;
export type PortRule = Model.PortRule;
export type Certificate = Omit<Model.Certificate, 'key'> & Links;

export interface RegistrationToken {
  id: string;
  token: string;
  registrationUrl: string;
  command: string;
}

/** A streamed GET (container logs): calls `onText` with each decoded chunk until the end or `signal`. */
export async function streamText(path: string, onText: (s: string) => void, signal: AbortSignal): Promise<void> {
  const headers: Record<string, string> = { 'x-drover-ui': '1' };
  if (creds) headers.authorization = 'Basic ' + btoa(`${creds.accessKey}:${creds.secretKey}`);
  const res = await fetch(path, { headers, signal });
  if (!res.ok) {
    const e = ((await res.json().catch(() => ({}))) ?? {}) as { code?: string; message?: string };
    throw new ApiError(res.status, e.code ?? `HTTP${res.status}`, e.message ?? res.statusText);
  }
  if (!res.body) return;
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    onText(value);
  }
}

/** What `?action=execute|stats` answers: the websocket to open with its one-use token. */
export interface HostAccess {
  url: string;
  token: string;
}

export function openAccess(a: HostAccess): WebSocket {
  const ws = new WebSocket(`${a.url}${a.url.includes('?') ? '&' : '?'}token=${encodeURIComponent(a.token)}`);
  ws.binaryType = 'arraybuffer';
  return ws;
}
