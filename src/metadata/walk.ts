// Path walking, as rancher-metadata does it: `/<version>/<seg>/<seg>…`, each segment URL-query-unescaped,
// maps by key, arrays by index or by the `name` (then `uuid`) of an element ("magic keys"), and one retry
// with every segment lower-cased.
import type { JsonValue } from './answers.js';

export class PathError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PathError';
  }
}

/**
 * The raw (still escaped) segments of a request path: the leading `/` stripped, trailing `/`s ignored,
 * split on `/`. `/` gives `[]`; `/latest/self/` gives `['latest', 'self']`.
 */
export function splitPath(rawPath: string): string[] {
  let end = rawPath.length;
  while (end > 0 && rawPath.charCodeAt(end - 1) === 0x2f) end--;
  const start = rawPath.charCodeAt(0) === 0x2f ? 1 : 0;
  if (end <= start) return [];
  return rawPath.slice(start, end).split('/');
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  return -1;
}

/**
 * URL-query-unescapes one segment like Go's `url.QueryUnescape`: `%XX` → byte, `+` → space. A `%` not
 * followed by two hex digits throws PathError (`invalid URL escape "%zz"`).
 */
export function unescapeSegment(seg: string): string {
  if (seg.indexOf('%') < 0 && seg.indexOf('+') < 0) return seg;
  const bytes: number[] = [];
  const raw = Buffer.from(seg, 'utf8');
  for (let i = 0; i < raw.length; i++) {
    const b = raw[i] as number;
    if (b === 0x25) {
      const hi = i + 1 < raw.length ? hexValue(raw[i + 1] as number) : -1;
      const lo = i + 2 < raw.length ? hexValue(raw[i + 2] as number) : -1;
      if (hi < 0 || lo < 0) {
        throw new PathError(`invalid URL escape ${JSON.stringify(raw.subarray(i, i + 3).toString('utf8'))}`);
      }
      bytes.push(hi * 16 + lo);
      i += 2;
    } else if (b === 0x2b) {
      bytes.push(0x20);
    } else {
      bytes.push(b);
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

/** Unescapes every segment (throws PathError on the first bad escape). */
export function unescapeSegments(raw: readonly string[]): string[] {
  return raw.map(unescapeSegment);
}

const INDEX_RE = /^[+-]?[0-9]{1,18}$/;

/** The array element a segment names: an index (`0`), else the first element whose `name`, then `uuid`, is it. */
function arrayChild(arr: readonly JsonValue[], key: string): JsonValue | undefined {
  if (INDEX_RE.test(key)) {
    // Like Go's ParseInt: a number is an index and never a magic key, even when out of range.
    const idx = Number(key);
    return idx >= 0 && idx < arr.length ? arr[idx] : undefined;
  }
  for (const magic of ['name', 'uuid']) {
    for (const el of arr) {
      if (typeof el === 'object' && el !== null && !Array.isArray(el) && Object.hasOwn(el, magic) && el[magic] === key) {
        return el;
      }
    }
  }
  return undefined;
}

/** Walks `segments` (already unescaped) from `root`, without the lower-case retry. */
export function walkExact(root: JsonValue, segments: readonly string[]): JsonValue | undefined {
  let cur: JsonValue | undefined = root;
  for (const key of segments) {
    if (cur === null || typeof cur !== 'object') return undefined;
    if (Array.isArray(cur)) cur = arrayChild(cur, key);
    else cur = Object.hasOwn(cur, key) ? cur[key] : undefined;
    if (cur === undefined) return undefined;
  }
  return cur;
}

/**
 * The value at `segments` (unescaped), retrying once with every segment lower-cased when the exact walk
 * fails; `undefined` when neither finds it.
 */
export function lookup(root: JsonValue, segments: readonly string[]): JsonValue | undefined {
  const exact = walkExact(root, segments);
  if (exact !== undefined) return exact;
  const lower = segments.map((s) => s.toLowerCase());
  if (lower.every((s, i) => s === segments[i])) return undefined;
  return walkExact(root, lower);
}

/** Go's `url.PathUnescape` of a request path (`%XX` → byte, `+` stays); `undefined` on a bad escape. */
function pathUnescape(raw: string): string | undefined {
  if (raw.indexOf('%') < 0) return raw;
  try {
    return unescapeSegment(raw.replaceAll('+', '%2B'));
  } catch {
    return undefined;
  }
}

/** Go's `path.Clean` of a rooted path: no empty, `.` or `..` elements (`..` at the root is dropped). Linear. */
export function cleanPath(p: string): string {
  const out: string[] = [];
  for (const seg of p.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') out.pop();
    else out.push(seg);
  }
  return `/${out.join('/')}`;
}

const PATH_KEEP = /^[A-Za-z0-9\-_.~$&+,/:;=@]*$/;

/** Go's `url.URL.EscapedPath` for a path without a raw form: what a `Location` header carries. */
export function escapePath(p: string): string {
  if (PATH_KEEP.test(p)) return p;
  let out = '';
  for (const b of Buffer.from(p, 'utf8')) {
    const ch = String.fromCharCode(b);
    out += b < 0x80 && PATH_KEEP.test(ch) ? ch : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/**
 * Where the original's router (gorilla/mux) redirected a request path with `301 Moved Permanently`: the
 * URL-decoded path cleaned (no `//`, `.` or `..` elements; a trailing `/` kept), when that differs from
 * the decoded path. `undefined` when the path is clean, or does not decode (the request answers 400 later).
 */
export function muxRedirect(rawPath: string): string | undefined {
  // Fast path (nearly every request): nothing to decode and nothing to clean.
  if (rawPath.indexOf('%') < 0 && rawPath.indexOf('//') < 0 && rawPath.indexOf('/.') < 0) return undefined;
  const decoded = pathUnescape(rawPath);
  if (decoded === undefined) return undefined;
  let clean = cleanPath(decoded);
  if (decoded.endsWith('/') && clean !== '/') clean += '/';
  return clean === decoded ? undefined : escapePath(clean);
}
