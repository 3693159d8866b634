// Small helpers shared by the compose parsers: where a value came from, and narrowing of parsed YAML
// (`unknown`) into typed values with errors that say what was found and what is accepted.
import { parseDocument } from 'yaml';
import { ComposeError } from '../../common/errors.js';
import { LIMITS, jsonTreeProblem, type JsonPath } from '../../model/limits.js';

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

/** Nesting a compose file may have: the file's own structure around free-form metadata. */
const MAX_YAML_DEPTH = LIMITS.maxDocumentDepth;
/** Flow nesting ever handed to the YAML parser (it copes with a few thousand levels; not 100,000). */
const MAX_FLOW_DEPTH = 1000;
/** Alias expansions per file (the yaml package's count): enough for anchors, not for an alias bomb. */
export const MAX_YAML_ALIASES = 1000;

/**
 * The deepest nesting of flow collections (`[`, `{`) in the text, ignoring quoting: an upper bound of
 * what the YAML parser would recurse into. Linear; checked before parsing because the parser's cost
 * on very deep flow nesting is not bounded (100,000 levels exhaust its memory).
 */
function flowDepth(text: string, stopAt: number): number {
  let depth = 0;
  let max = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x5b || c === 0x7b) {
      if (++depth > max && (max = depth) > stopAt) return max;
    } else if ((c === 0x5d || c === 0x7d) && depth > 0) depth--;
  }
  return max;
}

/** Service and field of a path in a compose file (v1: `web.labels`, v2/v3: `services.web.labels`). */
function locate(file: string, path: JsonPath): { where: Where; field: string | undefined } {
  const fieldOf = (rest: JsonPath) => (rest.length ? rest.reduce<string>((f, k) => sub(f, k), '') : undefined);
  if (path[0] === 'services' && typeof path[1] === 'string') return { where: { file, service: path[1] }, field: fieldOf(path.slice(2)) };
  const top = path[0];
  if (typeof top === 'string' && !['version', '.catalog', 'catalog'].includes(top)) {
    return { where: { file, service: top }, field: fieldOf(path.slice(1)) };
  }
  return { where: { file }, field: fieldOf(path) };
}

/**
 * Parses one YAML file into plain data; syntax errors become ComposeErrors with line and column. Also
 * refused, by file, service and field: recursive aliases (`&w {labels: *w}`: the data would contain
 * itself), alias bombs (more than MAX_YAML_ALIASES expansions), nesting deeper than MAX_YAML_DEPTH and
 * `__proto__` keys.
 */
export function loadYaml(file: string, text: string): unknown {
  // Moderately deep input is parsed so that the error can name the service and field (below); far
  // deeper input never reaches the parser.
  if (flowDepth(text, MAX_FLOW_DEPTH) > MAX_FLOW_DEPTH) {
    fail({ file }, undefined, `invalid YAML: collections nested deeper than ${MAX_YAML_DEPTH} levels`, 'NestedTooDeep');
  }
  let doc: ReturnType<typeof parseDocument>;
  try {
    doc = parseDocument(text, { merge: true, uniqueKeys: true, prettyErrors: false });
  } catch (err) {
    return fail({ file }, undefined, `invalid YAML: ${err instanceof Error ? err.message : String(err)}`);
  }
  const error = doc.errors[0];
  if (error) {
    const pos = error.linePos?.[0] ?? (error.pos[0] >= 0 ? linePos(text, error.pos[0]) : undefined);
    const at = pos ? ` at line ${pos.line}, column ${pos.col}` : '';
    const raw = error.message.split('\n')[0] ?? error.message;
    const problem = /call stack/i.test(raw) ? `nested too deeply (at most ${MAX_YAML_DEPTH} levels)` : raw.replace(/ at line \d+, column \d+:?$/, '');
    fail({ file }, undefined, `invalid YAML${at}: ${problem}`, /call stack/i.test(raw) ? 'NestedTooDeep' : undefined);
  }
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: MAX_YAML_ALIASES });
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    if (/alias count/i.test(msg)) {
      return fail({ file }, undefined, `invalid YAML: aliases expand to too much data (more than ${MAX_YAML_ALIASES} expansions; an alias bomb?)`, 'AliasBomb');
    }
    return fail({ file }, undefined, `invalid YAML: ${/call stack/i.test(msg) ? `nested too deeply (at most ${MAX_YAML_DEPTH} levels)` : msg}`);
  }
  const p = jsonTreeProblem(value, { maxDepth: MAX_YAML_DEPTH, forbidProtoKey: true });
  if (p) {
    const { where, field } = locate(file, p.path);
    const problem =
      p.kind === 'cycle'
        ? 'a YAML alias refers to a node that contains it (recursive alias); the value would contain itself'
        : p.kind === 'protoKey'
          ? 'the key "__proto__" is reserved'
          : `nested deeper than ${MAX_YAML_DEPTH} levels`;
    fail(where, field, problem, p.kind === 'cycle' ? 'RecursiveAlias' : p.kind === 'protoKey' ? 'InvalidKey' : 'NestedTooDeep');
  }
  return value;
}

function linePos(text: string, offset: number): { line: number; col: number } {
  let line = 1;
  let start = 0;
  for (let i = text.indexOf('\n'); i >= 0 && i < offset; i = text.indexOf('\n', i + 1)) {
    line++;
    start = i + 1;
  }
  return { line, col: offset - start + 1 };
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
  if (value.length > LIMITS.maxString) fail(where, field, `is longer than ${LIMITS.maxString} characters`);
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
  if (typeof value === 'string') return asString(where, field, value);
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
  if (value.length > LIMITS.maxList) fail(where, field, `has ${value.length} entries (at most ${LIMITS.maxList})`);
  return value.map((item, i) => asNonEmptyString(where, sub(field, i), item));
}

/** `K=V` / `K` list or `K: V` map → record of strings (environment, labels). */
export function asStringRecord(where: Where, field: string, value: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (value === null || value === undefined) return out;
  const entries = Array.isArray(value) ? value.length : isMap(value) ? Object.keys(value).length : 0;
  if (entries > LIMITS.maxMap) fail(where, field, `has ${entries} entries (at most ${LIMITS.maxMap})`);
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
    if (key.length > LIMITS.maxString) fail(where, field, `a key is longer than ${LIMITS.maxString} characters`);
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
