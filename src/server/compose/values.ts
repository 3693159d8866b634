// Small helpers shared by the compose parsers: where a value came from, and narrowing of parsed YAML
// (`unknown`) into typed values with errors that say what was found and what is accepted.
import { parseDocument } from 'yaml';
import { ComposeError } from '../../common/errors.js';

/** Where the value being read lives: the file and, when known, the service. */
export interface Where {
  file: string;
  service?: string;
}

export function fail(where: Where, field: string | undefined, problem: string, code?: string): never {
  throw new ComposeError(where.file, where.service, field || undefined, problem, code);
}

export type YamlMap = Record<string, unknown>;

export function isMap(value: unknown): value is YamlMap {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A short description of a value for messages: `"abc"`, `12`, `a list`, `a map`, `null`. */
export function describe(value: unknown): string {
  if (value === null || value === undefined) return 'nothing (null)';
  if (Array.isArray(value)) return 'a list';
  if (isMap(value)) return 'a map';
  if (typeof value === 'string') return JSON.stringify(value);
  return String(value);
}

/** Joins a field path: `ports` + 1 → `ports[1]`, `health_check` + `port` → `health_check.port`. */
export function sub(field: string, key: string | number): string {
  if (typeof key === 'number') return `${field}[${key}]`;
  return field === '' ? key : `${field}.${key}`;
}

/** Parses one YAML file into plain data; syntax errors become ComposeErrors with line and column. */
export function loadYaml(file: string, text: string): unknown {
  const doc = parseDocument(text, { merge: true, uniqueKeys: true });
  const error = doc.errors[0];
  if (error) {
    const pos = error.linePos?.[0];
    const at = pos ? ` at line ${pos.line}, column ${pos.col}` : '';
    const problem = (error.message.split('\n')[0] ?? error.message).replace(/ at line \d+, column \d+:?$/, '');
    fail({ file }, undefined, `invalid YAML${at}: ${problem}`);
  }
  try {
    return doc.toJS({ maxAliasCount: 1000 });
  } catch (err) {
    return fail({ file }, undefined, `invalid YAML: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** Rejects keys of `map` that are not in `allowed` (used for the small nested maps). */
export function checkKeys(where: Where, field: string, map: YamlMap, allowed: readonly string[]): void {
  for (const key of Object.keys(map)) {
    if (!allowed.includes(key)) unknownKey(where, sub(field, key), key, allowed);
  }
}

export function asMap(where: Where, field: string, value: unknown): YamlMap {
  if (value === null || value === undefined) return {};
  if (!isMap(value)) fail(where, field, `expected a map, got ${describe(value)}`);
  return value;
}

export function asString(where: Where, field: string, value: unknown): string {
  if (typeof value !== 'string') fail(where, field, `expected a string, got ${describe(value)}`);
  return value;
}

export function asNonEmptyString(where: Where, field: string, value: unknown): string {
  const s = asString(where, field, value);
  if (s.trim() === '') fail(where, field, 'must not be empty');
  return s;
}

/** A scalar written as a string, number or boolean (environment values, labels, `user: 1000`). */
export function asScalarString(where: Where, field: string, value: unknown): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return fail(where, field, `expected a string, number or boolean, got ${describe(value)}`);
}

/** An integer, also from a string of digits (what `${VAR}` substitution produces). */
export function asInt(where: Where, field: string, value: unknown, min: number, max?: number): number {
  let n: number | undefined;
  if (typeof value === 'number' && Number.isInteger(value)) n = value;
  else if (typeof value === 'string' && /^[-+]?\d+$/.test(value.trim())) n = Number(value.trim());
  const range = max === undefined ? `≥ ${min}` : `between ${min} and ${max}`;
  if (n === undefined || n < min || (max !== undefined && n > max)) {
    fail(where, field, `expected an integer ${range}, got ${describe(value)}`);
  }
  return n;
}

/** `true` / `false`, also as strings (labels and `${VAR}` substitution produce strings). */
export function asBool(where: Where, field: string, value: unknown): boolean {
  if (value === true || value === 'true') return true;
  if (value === false || value === 'false') return false;
  return fail(where, field, `expected true or false, got ${describe(value)}`);
}

/** A list of strings; with `allowSingle`, a lone string means a one-element list. */
export function asStringList(where: Where, field: string, value: unknown, allowSingle = false): string[] {
  if (value === null || value === undefined) return [];
  if (allowSingle && typeof value === 'string') return [value];
  if (!Array.isArray(value)) {
    fail(where, field, `expected a list of strings${allowSingle ? ' or a string' : ''}, got ${describe(value)}`);
  }
  return value.map((item, i) => asNonEmptyString(where, sub(field, i), item));
}

/** `K=V` / `K` list or `K: V` map → record of strings (environment, labels). */
export function asStringRecord(where: Where, field: string, value: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (value === null || value === undefined) return out;
  if (Array.isArray(value)) {
    value.forEach((item, i) => {
      const entry = asScalarString(where, sub(field, i), item);
      const eq = entry.indexOf('=');
      const key = eq < 0 ? entry : entry.slice(0, eq);
      if (key.trim() === '') fail(where, sub(field, i), `${describe(item)} has no name (expected NAME=value or NAME)`);
      out[key] = eq < 0 ? '' : entry.slice(eq + 1);
    });
    return out;
  }
  if (!isMap(value)) fail(where, field, `expected a list of NAME=value or a map, got ${describe(value)}`);
  for (const [key, v] of Object.entries(value)) {
    // An empty key is what YAML makes of `null:`/`~:` keys (YAML 1.2 reads `NULL` as null, too).
    if (key.trim() === '') fail(where, field, `a key is empty or null (quote names like "NULL" or "~")`);
    out[key] = asScalarString(where, sub(field, key), v);
  }
  return out;
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

export function isIpv4(s: string): boolean {
  return IPV4.test(s);
}

/** Levenshtein distance, for "did you mean" suggestions. */
function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      cur.push(Math.min((prev[j] ?? 0) + 1, (cur[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + cost));
    }
    prev = cur;
  }
  return prev[b.length] ?? 0;
}

/** The closest candidate when it is close enough to be a likely typo. */
export function suggest(key: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const d = distance(key.toLowerCase(), candidate);
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return bestDistance <= Math.max(2, Math.floor(key.length / 3)) ? best : undefined;
}

/** The error for a key nobody knows: a suggestion when one is close, else the accepted keys. */
export function unknownKey(where: Where, field: string, key: string, accepted: readonly string[]): never {
  const guess = suggest(key, accepted);
  const hint = guess ? `; did you mean "${guess}"?` : ` (accepted: ${accepted.join(', ')})`;
  return fail(where, field, `unknown key "${key}"${hint}`, 'UnknownComposeKey');
}
