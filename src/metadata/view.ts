// What one client sees: which answers apply to it and the complete response (status, body, ETag) for a
// path in a format. Pure functions of the answers; the server caches their results per answers update.
import { createHash } from 'node:crypto';
import { DEFAULT_CLIENT, listedVersions, type Answers, type JsonMap } from './answers.js';
import { CONTENT_TYPES, render, renderError, type Format } from './render.js';
import { lookup, PathError, unescapeSegments } from './walk.js';

export interface Rendered {
  readonly status: number;
  readonly body: Buffer;
  /** Strong, content-derived (status + body), quoted. */
  readonly etag: string;
  readonly contentType: string;
  /** The Content-Length header value. */
  readonly length: string;
  /** Approximate memory cost, for the cache. */
  readonly size: number;
}

export function etagOf(status: number, body: Buffer): string {
  const h = createHash('sha1');
  h.update(String(status));
  h.update(body);
  return `"${h.digest('base64url').slice(0, 22)}"`;
}

function rendered(status: number, text: string, format: Format): Rendered {
  const body = Buffer.from(text, 'utf8');
  return {
    status,
    body,
    etag: etagOf(status, body),
    contentType: CONTENT_TYPES[format],
    length: String(body.length),
    size: body.length + 200,
  };
}

/** Error responses are few and shared (the server does not cache them per path). */
const errors = new Map<string, Rendered>();
const ERRORS_MAX = 256;

export function errorResponse(format: Format, status: number, message: string): Rendered {
  const key = `${format}\u0000${status}\u0000${message}`;
  let r = errors.get(key);
  if (r === undefined) {
    r = rendered(status, renderError(format, status, message), format);
    // Messages may quote a client's bad escape: keep the memo small whatever they send.
    if (errors.size >= ERRORS_MAX) errors.clear();
    errors.set(key, r);
  }
  return r;
}

/** Go's `http.NotFound` (what the original answered for /favicon.ico): plain text whatever the Accept header. */
export const GO_NOT_FOUND: Rendered = rendered(404, '404 page not found\n', 'text');

/** `GET /`: `{"<version>": "/<version>", …}` (text: one version per line, sorted). */
export function renderVersions(answers: Answers, format: Format): Rendered {
  const m: JsonMap = {};
  for (const v of listedVersions(answers)) m[v] = `/${v}`;
  return rendered(200, render(m, format), format);
}

/**
 * The answers key serving `ip` in `version`: the IP's own entry, else `default`; `undefined` when the version
 * does not exist or has neither.
 */
export function clientKeyFor(answers: Answers, version: string, ip: string): string | undefined {
  if (!Object.hasOwn(answers, version)) return undefined;
  const clients = answers[version];
  if (clients === undefined) return undefined;
  if (Object.hasOwn(clients, ip)) return ip;
  if (Object.hasOwn(clients, DEFAULT_CLIENT)) return DEFAULT_CLIENT;
  return undefined;
}

/**
 * The response for `/<version>/<rawSegments…>` as seen by the client whose answers key is `clientKey`
 * (see clientKeyFor). `rawSegments` are still URL-escaped.
 */
export function renderPath(
  answers: Answers,
  version: string,
  clientKey: string | undefined,
  rawSegments: readonly string[],
  format: Format,
): Rendered {
  if (!Object.hasOwn(answers, version)) return errorResponse(format, 404, 'Invalid version');
  let segments: string[];
  try {
    segments = unescapeSegments(rawSegments);
  } catch (err) {
    if (err instanceof PathError) return errorResponse(format, 400, err.message);
    throw err;
  }
  const tree = clientKey === undefined ? undefined : answers[version]?.[clientKey];
  const value = tree === undefined ? undefined : lookup(tree, segments);
  if (value === undefined) return errorResponse(format, 404, 'Not found');
  return rendered(200, render(value, format), format);
}
