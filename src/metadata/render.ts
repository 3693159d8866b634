// Rendering of metadata values: plain text (byte for byte what rancher-metadata printed — templates and
// shell scripts depend on it), JSON and YAML; content negotiation and error bodies. Pure functions.
import type { JsonValue } from './answers.js';
import { goJson } from './go-json.js';
import { goYaml } from './go-yaml.js';

export type Format = 'text' | 'json' | 'yaml';

export const CONTENT_TYPES: Record<Format, string> = {
  text: 'text/plain; charset=utf-8',
  json: 'application/json',
  yaml: 'application/yaml; charset=utf-8',
};

/** `Accept` containing `json` → JSON, else containing `yaml` → YAML, else (`*\/*`, nothing) plain text. */
export function negotiate(accept: string | undefined): Format {
  if (!accept) return 'text';
  if (accept.includes('json')) return 'json';
  if (accept.includes('yaml')) return 'yaml';
  return 'text';
}

const UNRESERVED = /^[A-Za-z0-9\-_.~]*$/;
const HEX = '0123456789ABCDEF';

/** Go's `url.QueryEscape`: everything but `A-Za-z0-9-_.~` percent-encoded (UTF-8 bytes), space → `+`. */
export function queryEscape(s: string): string {
  if (UNRESERVED.test(s)) return s;
  let out = '';
  for (const b of Buffer.from(s, 'utf8')) {
    if (
      (b >= 0x41 && b <= 0x5a) ||
      (b >= 0x61 && b <= 0x7a) ||
      (b >= 0x30 && b <= 0x39) ||
      b === 0x2d ||
      b === 0x5f ||
      b === 0x2e ||
      b === 0x7e
    ) {
      out += String.fromCharCode(b);
    } else if (b === 0x20) {
      out += '+';
    } else {
      out += '%' + HEX[b >> 4] + HEX[b & 15];
    }
  }
  return out;
}

/**
 * A number as rancher-metadata printed it (every JSON number is a float64 there, printed with `%f` and
 * trailing zeros trimmed): `42` and `42.0` → `42`, `1.50` → `1.5`, `1e21` → `1000000000000000000000`,
 * at most six decimals (so a negative number closer to zero than that prints `-0`, as it did there).
 */
export function formatNumber(n: number): string {
  if (Number.isInteger(n)) {
    if (Object.is(n, -0)) return '-0';
    return Math.abs(n) < 1e21 ? String(n) : BigInt(n).toString();
  }
  const s = n.toFixed(6);
  let end = s.length;
  while (s.charCodeAt(end - 1) === 0x30) end--;
  if (s.charCodeAt(end - 1) === 0x2e) end--;
  return s.slice(0, end);
}

function isContainer(v: JsonValue | undefined): v is JsonValue[] | { [k: string]: JsonValue } {
  return typeof v === 'object' && v !== null;
}

/** The string `name`, else string `uuid`, of a map (what `i=<name>` lines and magic keys show). */
function magicName(el: { [k: string]: JsonValue }): string | undefined {
  if (Object.hasOwn(el, 'name') && typeof el.name === 'string') return el.name;
  if (Object.hasOwn(el, 'uuid') && typeof el.uuid === 'string') return el.uuid;
  return undefined;
}

/**
 * Plain text: scalars raw without a newline (`null` → empty); a map → its keys sorted, one per line, `/`
 * appended for map/array values, keys query-escaped; an array → `i=<name>` (element with a string `name`,
 * else `uuid`), `i/` (other maps and arrays) or `i`, one per line in order.
 */
export function renderText(v: JsonValue): string {
  if (v === null) return '';
  switch (typeof v) {
    case 'string':
      return v;
    case 'number':
      return formatNumber(v);
    case 'boolean':
      return v ? 'true' : 'false';
  }
  if (Array.isArray(v)) {
    let out = '';
    for (let i = 0; i < v.length; i++) {
      const el = v[i];
      if (isContainer(el) && !Array.isArray(el)) {
        const magic = magicName(el);
        out += magic !== undefined ? `${i}=${queryEscape(magic)}\n` : `${i}/\n`;
      } else {
        out += isContainer(el) ? `${i}/\n` : `${i}\n`;
      }
    }
    return out;
  }
  // Sorted as whole lines (byte order), exactly as the original sorted its output lines.
  const lines: string[] = [];
  for (const k of Object.keys(v)) {
    lines.push(isContainer(v[k]) ? `${queryEscape(k)}/\n` : `${queryEscape(k)}\n`);
  }
  lines.sort(compareBytes);
  return lines.join('');
}

/** Code-unit order equals byte order for the ASCII lines renderText sorts (keys are query-escaped). */
function compareBytes(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** JSON byte for byte as the original (Go's json.Marshal: sorted keys, HTML-safe escapes, no newline). */
export function renderJson(v: JsonValue): string {
  return goJson(v);
}

/**
 * YAML byte for byte as the original (gopkg.in/yaml.v2's Marshal: sorted keys, `|-` block scalars, quoting
 * of strings that would read back as something else; see go-yaml.ts). Shared sub-trees are written out in
 * full (no anchors or aliases).
 */
export function renderYaml(v: JsonValue): string {
  return goYaml(v);
}

export function render(v: JsonValue, format: Format): string {
  switch (format) {
    case 'text':
      return renderText(v);
    case 'json':
      return renderJson(v);
    case 'yaml':
      return renderYaml(v);
  }
}

/**
 * An error body: text `<message>\n`; JSON `{"code":…,"message":…,"type":"error"}\n`; YAML the same map.
 * (The original wrote every error with Go's `http.Error`, which appends the newline.)
 */
export function renderError(format: Format, status: number, message: string): string {
  switch (format) {
    case 'text':
      return `${message}\n`;
    case 'json':
      return `${goJson({ code: status, message, type: 'error' })}\n`;
    case 'yaml':
      return `${renderYaml({ code: status, message, type: 'error' })}\n`;
  }
}
