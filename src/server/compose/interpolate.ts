// Variable substitution in compose values, with libcompose's semantics: `$VAR`, `${VAR}`,
// `${VAR:-default}` (default when unset or empty), `${VAR-default}` (default when unset), `$$` → `$`.
// Defaults are literal (not substituted again). An unset variable becomes the empty string, as in
// docker-compose. Applied to string scalars only, never to map keys.

/** Variable values by name (catalog answers, with question defaults applied). */
export type Variables = ReadonlyMap<string, string>;

/** A malformed `$` expression; the caller adds where it was. */
export class InterpolationError extends Error {}

const NAME_START = /^[A-Za-z_][A-Za-z0-9_]*/;
const BRACED = /^([A-Za-z_][A-Za-z0-9_]*)(?:(:-|-)([\s\S]*))?$/;
const SYNTAX = 'variables are written $NAME, ${NAME}, ${NAME:-default} or ${NAME-default}; write $$ for a literal $';

function braced(expr: string, vars: Variables, text: string): string {
  const m = BRACED.exec(expr);
  if (!m) throw new InterpolationError(`invalid interpolation "\${${expr}}" in ${JSON.stringify(text)}: ${SYNTAX}`);
  const [, name = '', op, fallback = ''] = m;
  const value = vars.get(name);
  if (op === ':-') return value === undefined || value === '' ? fallback : value;
  if (op === '-') return value ?? fallback;
  return value ?? '';
}

export function interpolateString(text: string, vars: Variables): string {
  let out = '';
  let i = 0;
  while (i < text.length) {
    const dollar = text.indexOf('$', i);
    if (dollar < 0) return out + text.slice(i);
    out += text.slice(i, dollar);
    const next = text[dollar + 1];
    if (next === '$') {
      out += '$';
      i = dollar + 2;
    } else if (next === '{') {
      const end = text.indexOf('}', dollar + 2);
      if (end < 0) throw new InterpolationError(`unterminated "\${" in ${JSON.stringify(text)}: ${SYNTAX}`);
      out += braced(text.slice(dollar + 2, end), vars, text);
      i = end + 1;
    } else {
      const name = NAME_START.exec(text.slice(dollar + 1))?.[0];
      if (name === undefined) throw new InterpolationError(`invalid "$" in ${JSON.stringify(text)}: ${SYNTAX}`);
      out += vars.get(name) ?? '';
      i = dollar + 1 + name.length;
    }
  }
  return out;
}

export type ValuePath = (string | number)[];

/** Maps every string scalar inside `value` (lists and maps, not keys) through `fn`. */
function mapStrings(value: unknown, fn: (s: string, path: ValuePath) => string, path: ValuePath): unknown {
  if (typeof value === 'string') return fn(value, path);
  if (Array.isArray(value)) return value.map((item: unknown, i) => mapStrings(item, fn, [...path, i]));
  if (typeof value === 'object' && value !== null) {
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) out[key] = mapStrings(item, fn, [...path, key]);
    return out;
  }
  return value;
}

/**
 * Substitutes variables in every string scalar of `value`. A malformed expression calls `onError` with
 * the path of the offending scalar (relative to `value`).
 */
export function interpolateValue(
  value: unknown,
  vars: Variables,
  onError: (path: ValuePath, message: string) => never,
): unknown {
  return mapStrings(
    value,
    (s, path) => {
      try {
        return interpolateString(s, vars);
      } catch (err) {
        if (err instanceof InterpolationError) return onError(path, err.message);
        throw err;
      }
    },
    [],
  );
}

/** `$` → `$$`, so that a substituted value survives being interpolated again. */
export function escapeString(text: string): string {
  return text.replaceAll('$', () => '$$');
}

/** Escapes every string scalar inside `value` (not keys). */
export function escapeValue(value: unknown): unknown {
  return mapStrings(value, escapeString, []);
}
