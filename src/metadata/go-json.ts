// JSON exactly as rancher-metadata wrote it: Go's `encoding/json` `Marshal` of the decoded answers
// (map[string]interface{} / []interface{}), which
// - sorts object keys by their UTF-8 bytes,
// - escapes `"`, `\`, `\n`, `\r`, `\t`, other control characters as `\u00xx` (lower-case hex, so `\b` and `\f`
//   become `\u0008` and `\u000c`), the HTML characters `<`, `>`, `&` as `\u003c`, `\u003e`, `\u0026`, and
//   U+2028/U+2029 as `\u2028`/`\u2029`; invalid UTF-16 (a lone surrogate) becomes `\ufffd`,
// - writes no whitespace and no trailing newline.
// Numbers: the shortest representation that round-trips, `1e+21` and `1e-7` style outside [1e-6, 1e21) — the
// same as JavaScript's for every finite number (Go prints integers it decoded as integers, as JS does).
import type { JsonMap, JsonValue } from './answers.js';

const HEX = '0123456789abcdef';
// Control characters (U+0000–U+001F), quote, backslash, HTML characters, line/paragraph separators, surrogates.
// eslint-disable-next-line no-control-regex
const NEEDS_ESCAPE = /["\\\u0000-\u001f<>&\u2028\u2029\ud800-\udfff]/;

/** A JSON string literal as Go's encoder writes it (HTML-safe). */
export function goJsonString(s: string): string {
  if (!NEEDS_ESCAPE.test(s)) return `"${s}"`;
  let out = '"';
  let last = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    let rep: string;
    if (c < 0x20) {
      rep = c === 0x0a ? '\\n' : c === 0x0d ? '\\r' : c === 0x09 ? '\\t' : `\\u00${HEX[c >> 4] as string}${HEX[c & 15] as string}`;
    } else if (c === 0x22) rep = '\\"';
    else if (c === 0x5c) rep = '\\\\';
    else if (c === 0x3c) rep = '\\u003c';
    else if (c === 0x3e) rep = '\\u003e';
    else if (c === 0x26) rep = '\\u0026';
    else if (c === 0x2028) rep = '\\u2028';
    else if (c === 0x2029) rep = '\\u2029';
    else if (c >= 0xd800 && c <= 0xdfff) {
      const next = i + 1 < s.length ? s.charCodeAt(i + 1) : 0;
      if (c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
        i++; // a valid pair: written as it is
        continue;
      }
      rep = '\\ufffd';
    } else continue;
    out += s.slice(last, i) + rep;
    last = i + 1;
  }
  return `${out}${s.slice(last)}"`;
}

/**
 * Orders strings by their UTF-8 bytes (= code point order), as Go's `sort.Strings` does. JavaScript's `<`
 * compares UTF-16 code units, which differs only when one side is a surrogate (U+10000 and above) and the
 * other is in U+E000–U+FFFF.
 */
export function compareUtf8(a: string, b: string): number {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let ca = a.charCodeAt(i);
    let cb = b.charCodeAt(i);
    if (ca === cb) continue;
    if (ca >= 0xd800 && cb >= 0xd800) {
      // Surrogates (D800–DFFF) after E000–FFFF.
      ca = ca >= 0xe000 ? ca - 0x800 : ca + 0x2000;
      cb = cb >= 0xe000 ? cb - 0x800 : cb + 0x2000;
    }
    return ca - cb;
  }
  return a.length - b.length;
}

/** The keys of a map in Go's order (a copy; the common already-sorted case costs one pass). */
export function sortedKeys(m: JsonMap): string[] {
  const keys = Object.keys(m);
  for (let i = 1; i < keys.length; i++) {
    if (compareUtf8(keys[i - 1] as string, keys[i] as string) > 0) return keys.sort(compareUtf8);
  }
  return keys;
}

function write(v: JsonValue): string {
  if (v === null) return 'null';
  switch (typeof v) {
    case 'string':
      return goJsonString(v);
    case 'number':
      return String(v);
    case 'boolean':
      return v ? 'true' : 'false';
  }
  if (Array.isArray(v)) {
    if (v.length === 0) return '[]';
    let out = '[';
    for (let i = 0; i < v.length; i++) out += (i === 0 ? '' : ',') + write(v[i] as JsonValue);
    return `${out}]`;
  }
  const keys = sortedKeys(v);
  if (keys.length === 0) return '{}';
  let out = '{';
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i] as string;
    out += `${i === 0 ? '' : ','}${goJsonString(k)}:${write(v[k] as JsonValue)}`;
  }
  return `${out}}`;
}

/** `json.Marshal(v)` of Go, byte for byte (no trailing newline). */
export function goJson(v: JsonValue): string {
  return write(v);
}
