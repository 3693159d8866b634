// YAML exactly as rancher-metadata wrote it: `yaml.Marshal` of gopkg.in/yaml.v2 (the 2016–2017 line the
// original vendored) on the decoded answers. A port of the parts of its encoder and of libyaml's emitter
// that plain JSON values reach:
// - map keys sorted with yaml.v2's "natural" order (runs of digits compared as numbers, non-letters before
//   letters); block mappings and block sequences, a sequence inside a mapping not indented ("key:\n- a");
//   empty maps and lists as `{}` and `[]`;
// - strings: plain when they would read back as the same string; double-quoted when a plain scalar would
//   resolve to something else (`"true"`, `"42"`, `"1.5"`, `""`, `"~"`, `"yes"`, `"1:20"`…); a string with a
//   newline as a literal block scalar (`|-`, `|` or `|+` by its trailing newlines, content indented two more
//   spaces), unless it cannot be one (trailing spaces, tabs, other special characters: double-quoted);
//   single-quoted when only indicator characters prevent the plain style; long plain and quoted scalars folded
//   at spaces past column 80;
// - integers as integers, other numbers in Go's `%g` shortest form (`1.5`, `1.0737418247e+09`), `null`,
//   `true`/`false`; a trailing newline.
// Not ported (unreachable from JSON values): anchors, tags, flow styles other than the empty `[]`/`{}`.
// Timestamps are not quoted (that yaml.v2 version did not resolve them).
import type { JsonMap, JsonValue } from './answers.js';

const BEST_INDENT = 2;
const BEST_WIDTH = 80;

const isBreak = (c: number): boolean => c === 0x0a || c === 0x0d || c === 0x85 || c === 0x2028 || c === 0x2029;
const isBlank = (c: number): boolean => c === 0x20 || c === 0x09;
/** libyaml's is_printable (UTF-8 form): LF, 0x20–0x7E, U+00A0–U+D7FF, U+E000–U+FFFD but the BOM. */
const isPrintable = (c: number): boolean =>
  c === 0x0a || (c >= 0x20 && c <= 0x7e) || (c >= 0xa0 && c <= 0xd7ff) || (c >= 0xe000 && c <= 0xfffd && c !== 0xfeff);

interface ScalarAnalysis {
  multiline: boolean;
  flowPlainAllowed: boolean;
  blockPlainAllowed: boolean;
  singleQuotedAllowed: boolean;
  blockAllowed: boolean;
}

/** The code points of `s` (a lone surrogate stands for U+FFFD, as its UTF-8 encoding would). */
function codePoints(s: string): number[] {
  const out: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        out.push(((c - 0xd800) << 10) + (d - 0xdc00) + 0x10000);
        i++;
        continue;
      }
    }
    out.push(c >= 0xd800 && c <= 0xdfff ? 0xfffd : c);
  }
  return out;
}

/** yaml_emitter_analyze_scalar. */
function analyze(cps: readonly number[]): ScalarAnalysis {
  const n = cps.length;
  if (n === 0) {
    return { multiline: false, flowPlainAllowed: false, blockPlainAllowed: true, singleQuotedAllowed: true, blockAllowed: false };
  }
  let blockIndicators = false;
  let flowIndicators = false;
  let lineBreaks = false;
  let specialCharacters = false;
  let leadingSpace = false;
  let leadingBreak = false;
  let trailingSpace = false;
  let trailingBreak = false;
  let breakSpace = false;
  let spaceBreak = false;
  let previousSpace = false;
  let previousBreak = false;
  if (n >= 3 && ((cps[0] === 0x2d && cps[1] === 0x2d && cps[2] === 0x2d) || (cps[0] === 0x2e && cps[1] === 0x2e && cps[2] === 0x2e))) {
    blockIndicators = true;
    flowIndicators = true;
  }
  let precededByWhitespace = true;
  for (let i = 0; i < n; i++) {
    const c = cps[i] as number;
    const followedByWhitespace = i + 1 >= n || isBlank(cps[i + 1] as number);
    if (i === 0) {
      switch (c) {
        case 0x23: // #
        case 0x2c: // ,
        case 0x5b: // [
        case 0x5d: // ]
        case 0x7b: // {
        case 0x7d: // }
        case 0x26: // &
        case 0x2a: // *
        case 0x21: // !
        case 0x7c: // |
        case 0x3e: // >
        case 0x27: // '
        case 0x22: // "
        case 0x25: // %
        case 0x40: // @
        case 0x60: // `
          flowIndicators = true;
          blockIndicators = true;
          break;
        case 0x3f: // ?
        case 0x3a: // :
          flowIndicators = true;
          if (followedByWhitespace) blockIndicators = true;
          break;
        case 0x2d: // -
          if (followedByWhitespace) {
            flowIndicators = true;
            blockIndicators = true;
          }
          break;
      }
    } else {
      switch (c) {
        case 0x2c:
        case 0x3f:
        case 0x5b:
        case 0x5d:
        case 0x7b:
        case 0x7d:
          flowIndicators = true;
          break;
        case 0x3a:
          flowIndicators = true;
          if (followedByWhitespace) blockIndicators = true;
          break;
        case 0x23:
          if (precededByWhitespace) {
            flowIndicators = true;
            blockIndicators = true;
          }
          break;
      }
    }
    if (!isPrintable(c)) specialCharacters = true;
    if (c === 0x20) {
      if (i === 0) leadingSpace = true;
      if (i === n - 1) trailingSpace = true;
      if (previousBreak) breakSpace = true;
      previousSpace = true;
      previousBreak = false;
    } else if (isBreak(c)) {
      lineBreaks = true;
      if (i === 0) leadingBreak = true;
      if (i === n - 1) trailingBreak = true;
      if (previousSpace) spaceBreak = true;
      previousSpace = false;
      previousBreak = true;
    } else {
      previousSpace = false;
      previousBreak = false;
    }
    precededByWhitespace = isBlank(c) || isBreak(c) || c === 0;
  }
  const a: ScalarAnalysis = { multiline: lineBreaks, flowPlainAllowed: true, blockPlainAllowed: true, singleQuotedAllowed: true, blockAllowed: true };
  if (leadingSpace || leadingBreak || trailingSpace || trailingBreak) {
    a.flowPlainAllowed = false;
    a.blockPlainAllowed = false;
  }
  if (trailingSpace) a.blockAllowed = false;
  if (breakSpace) {
    a.flowPlainAllowed = false;
    a.blockPlainAllowed = false;
    a.singleQuotedAllowed = false;
  }
  if (spaceBreak || specialCharacters) {
    a.flowPlainAllowed = false;
    a.blockPlainAllowed = false;
    a.singleQuotedAllowed = false;
    a.blockAllowed = false;
  }
  if (lineBreaks) {
    a.flowPlainAllowed = false;
    a.blockPlainAllowed = false;
  }
  if (flowIndicators) a.flowPlainAllowed = false;
  if (blockIndicators) a.blockPlainAllowed = false;
  return a;
}

// ---- resolve: would this string, written plain, read back as something other than a string?

const RESOLVE_MAP = new Set([
  'y', 'Y', 'yes', 'Yes', 'YES', 'true', 'True', 'TRUE', 'on', 'On', 'ON',
  'n', 'N', 'no', 'No', 'NO', 'false', 'False', 'FALSE', 'off', 'Off', 'OFF',
  '', '~', 'null', 'Null', 'NULL',
  '.nan', '.NaN', '.NAN', '.inf', '.Inf', '.INF', '+.inf', '+.Inf', '+.INF', '-.inf', '-.Inf', '-.INF',
]);
const YAML_STYLE_FLOAT = /^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$/;
const BASE60_FLOAT = /^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$/;
const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;

/** Go's strconv.ParseInt(s, 0, 64) or ParseUint(s, 0, 64) succeeds (Go before 1.13: 0x, 0 octal, decimal). */
function parsesAsGoInt(s: string): boolean {
  const m = /^([-+]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/.exec(s);
  if (!m) return false;
  const body = m[2] as string;
  const mag = body.length > 1 && body[0] === '0' && (body[1] === 'x' || body[1] === 'X') ? BigInt(body) : body[0] === '0' ? BigInt(`0o${body.slice(1) || '0'}`) : BigInt(body);
  if (m[1] === '-') return mag <= INT64_MAX + 1n;
  if (m[1] === '+') return mag <= INT64_MAX;
  return mag <= UINT64_MAX;
}

function parsesAsBinary(digits: string, negative: boolean): boolean {
  if (!/^[01]+$/.test(digits)) return false;
  const v = BigInt(`0b${digits}`);
  return negative ? v <= INT64_MAX : v <= UINT64_MAX;
}

/** Whether `s` written as a plain scalar reads back as the string `s` (yaml.v2's resolve, plus base-60 floats). */
export function plainIsString(s: string): boolean {
  if (s === '') return false;
  const c = s.charCodeAt(0);
  const hint =
    c === 0x2b || c === 0x2d ? 'S' : c >= 0x30 && c <= 0x39 ? 'D' : 'yYnNtTfFoO~'.includes(s[0] as string) ? 'M' : c === 0x2e ? '.' : '';
  if (hint === '') return true;
  if (RESOLVE_MAP.has(s)) return false;
  if (hint === '.') return !(/^\.[0-9]+([eE][-+]?[0-9]+)?$/.test(s) && Number.isFinite(Number(s)));
  if (hint === 'S' || hint === 'D') {
    const plain = s.replaceAll('_', '');
    if (parsesAsGoInt(plain)) return false;
    if (YAML_STYLE_FLOAT.test(plain) && Number.isFinite(Number(plain))) return false;
    if (plain.startsWith('0b') && parsesAsBinary(plain.slice(2), false)) return false;
    if (plain.startsWith('-0b') && parsesAsBinary(plain.slice(3), true)) return false;
    if (s.includes(':') && BASE60_FLOAT.test(s)) return false;
  }
  return true;
}

// ---- numbers

/** Go's strconv.FormatFloat(n, 'g', -1, 64). */
export function goFormatG(n: number): string {
  if (n === 0) return Object.is(n, -0) ? '-0' : '0';
  const neg = n < 0;
  const e = Math.abs(n).toExponential(); // shortest round-trip digits: d[.ddd]e±x
  const ei = e.indexOf('e');
  const digits = e.slice(0, ei).replace('.', '');
  const exp = Number(e.slice(ei + 1));
  let out: string;
  if (exp < -4 || exp >= 6) {
    const mant = digits.length > 1 ? `${digits[0] as string}.${digits.slice(1)}` : digits;
    const ax = Math.abs(exp);
    out = `${mant}e${exp < 0 ? '-' : '+'}${ax < 10 ? '0' : ''}${ax}`;
  } else {
    const dp = exp + 1;
    if (dp <= 0) out = `0.${'0'.repeat(-dp)}${digits}`;
    else if (dp >= digits.length) out = digits + '0'.repeat(dp - digits.length);
    else out = `${digits.slice(0, dp)}.${digits.slice(dp)}`;
  }
  return neg ? `-${out}` : out;
}

function formatNumber(n: number): string {
  // Integers were decoded as (u)int64 and print as such; anything else as float64.
  if (Number.isInteger(n) && Math.abs(n) < 2 ** 64) return String(n); // String(-0) is "0", as int64 0 prints
  return goFormatG(n);
}

// ---- key order

const LETTER = /\p{L}/u;
const DIGIT = /\p{Nd}/u;

/** yaml.v2's keyList.Less for two string keys. */
function keyLess(a: string, b: string): boolean {
  const ar = Array.from(a);
  const br = Array.from(b);
  for (let i = 0; i < ar.length && i < br.length; i++) {
    const ac = ar[i] as string;
    const bc = br[i] as string;
    if (ac === bc) continue;
    const al = LETTER.test(ac);
    const bl = LETTER.test(bc);
    if (al && bl) return (ac.codePointAt(0) as number) < (bc.codePointAt(0) as number);
    if (al || bl) return bl;
    let an = 0n;
    let bn = 0n;
    if (ac === '0' || bc === '0') {
      for (let j = i - 1; j >= 0 && DIGIT.test(ar[j] as string); j--) {
        if (ar[j] !== '0') {
          an = 1n;
          bn = 1n;
          break;
        }
      }
    }
    let ai = i;
    for (; ai < ar.length && DIGIT.test(ar[ai] as string); ai++) an = BigInt.asIntN(64, an * 10n + BigInt((ar[ai] as string).codePointAt(0) as number) - 48n);
    let bi = i;
    for (; bi < br.length && DIGIT.test(br[bi] as string); bi++) bn = BigInt.asIntN(64, bn * 10n + BigInt((br[bi] as string).codePointAt(0) as number) - 48n);
    if (an !== bn) return an < bn;
    if (ai !== bi) return ai < bi;
    return (ac.codePointAt(0) as number) < (bc.codePointAt(0) as number);
  }
  return ar.length < br.length;
}

const PLAIN_KEY = /^[a-z_]+$/;

function compareKeys(a: string, b: string): number {
  // Fast path: lower-case ASCII letters and '_' only (nearly every key): no digit runs, '_' (a non-letter)
  // before letters, letters by code point.
  if (PLAIN_KEY.test(a) && PLAIN_KEY.test(b)) {
    const n = Math.min(a.length, b.length);
    for (let i = 0; i < n; i++) {
      const ca = a.charCodeAt(i);
      const cb = b.charCodeAt(i);
      if (ca === cb) continue;
      if (ca === 0x5f) return -1;
      if (cb === 0x5f) return 1;
      return ca - cb;
    }
    return a.length - b.length;
  }
  return keyLess(a, b) ? -1 : keyLess(b, a) ? 1 : 0;
}

/** The keys of a map in yaml.v2's order. */
export function yamlSortedKeys(m: JsonMap): string[] {
  return Object.keys(m).sort(compareKeys);
}

// ---- the emitter

type Style = 'plain' | 'single' | 'double' | 'literal';

class Emitter {
  out = '';
  private column = 0;
  private indent = -1;
  private readonly indents: number[] = [];
  private whitespace = true;
  private indention = true;
  private mappingContext = false;
  private simpleKeyContext = false;

  private put(ch: string): void {
    this.out += ch;
    this.column++;
  }

  private putBreak(): void {
    this.out += '\n';
    this.column = 0;
    this.indention = true;
  }

  /** Writes one code point (a break other than LF resets the column, as write_break does). */
  private writeChar(c: number): void {
    this.out += String.fromCodePoint(c);
    this.column++;
  }

  private writeBreak(c: number): void {
    if (c === 0x0a) {
      this.putBreak();
    } else {
      this.out += String.fromCodePoint(c);
      this.column = 0;
      this.indention = true;
    }
  }

  writeIndent(): void {
    const indent = this.indent < 0 ? 0 : this.indent;
    if (!this.indention || this.column > indent || (this.column === indent && !this.whitespace)) this.putBreak();
    while (this.column < indent) this.put(' ');
    this.whitespace = true;
    this.indention = true;
  }

  private writeIndicator(ind: string, needWhitespace: boolean, isWhitespace: boolean, isIndention: boolean): void {
    if (needWhitespace && !this.whitespace) this.put(' ');
    this.out += ind;
    this.column += ind.length;
    this.whitespace = isWhitespace;
    this.indention = this.indention && isIndention;
  }

  private increaseIndent(flow: boolean, indentless: boolean): void {
    this.indents.push(this.indent);
    if (this.indent < 0) this.indent = flow ? BEST_INDENT : 0;
    else if (!indentless) this.indent += BEST_INDENT;
  }

  private popIndent(): void {
    this.indent = this.indents.pop() as number;
  }

  node(v: JsonValue, mapping: boolean, simpleKey: boolean): void {
    this.mappingContext = mapping;
    this.simpleKeyContext = simpleKey;
    if (v === null || typeof v !== 'object') {
      this.scalar(v);
      return;
    }
    if (Array.isArray(v)) {
      if (v.length === 0) this.emptyFlow('[', ']');
      else this.blockSequence(v);
      return;
    }
    const keys = yamlSortedKeys(v);
    if (keys.length === 0) this.emptyFlow('{', '}');
    else this.blockMapping(v, keys);
  }

  private emptyFlow(open: string, close: string): void {
    this.writeIndicator(open, true, true, false);
    this.increaseIndent(true, false);
    this.popIndent();
    this.writeIndicator(close, false, false, false);
  }

  private blockSequence(items: readonly JsonValue[]): void {
    this.increaseIndent(false, this.mappingContext && !this.indention);
    for (const item of items) {
      this.writeIndent();
      this.writeIndicator('-', true, false, true);
      this.node(item, false, false);
    }
    this.popIndent();
  }

  private blockMapping(m: JsonMap, keys: readonly string[]): void {
    this.increaseIndent(false, false);
    for (const k of keys) {
      this.writeIndent();
      const key = scalarOf(k);
      // yaml_emitter_check_simple_key: not multi-line, at most 128 bytes.
      if (!key.analysis.multiline && Buffer.byteLength(k, 'utf8') <= 128) {
        this.mappingContext = true;
        this.simpleKeyContext = true;
        this.writeScalar(key);
        this.writeIndicator(':', false, false, false);
      } else {
        this.writeIndicator('?', true, false, true);
        this.mappingContext = true;
        this.simpleKeyContext = false;
        this.writeScalar(key);
        this.writeIndent();
        this.writeIndicator(':', true, false, true);
      }
      this.node(m[k] as JsonValue, true, false);
    }
    this.popIndent();
  }

  private scalar(v: string | number | boolean | null): void {
    if (typeof v === 'string') this.writeScalar(scalarOf(v));
    else {
      const text = v === null ? 'null' : typeof v === 'boolean' ? (v ? 'true' : 'false') : formatNumber(v);
      const cps = codePoints(text);
      this.writeScalar({ cps, analysis: analyze(cps), style: 'plain' });
    }
  }

  /** yaml_emitter_emit_scalar: select the style, indent, write. */
  private writeScalar(s: Scalar): void {
    const a = s.analysis;
    let style = s.style;
    if (this.simpleKeyContext && a.multiline) style = 'double';
    if (style === 'plain') {
      if (!a.blockPlainAllowed) style = 'single';
      if (s.cps.length === 0 && this.simpleKeyContext) style = 'single';
    }
    if (style === 'single' && !a.singleQuotedAllowed) style = 'double';
    if (style === 'literal' && (!a.blockAllowed || this.simpleKeyContext)) style = 'double';
    this.increaseIndent(true, false);
    const allowBreaks = !this.simpleKeyContext;
    switch (style) {
      case 'plain':
        this.writePlain(s.cps, allowBreaks);
        break;
      case 'single':
        this.writeSingleQuoted(s.cps, allowBreaks);
        break;
      case 'double':
        this.writeDoubleQuoted(s.cps, allowBreaks);
        break;
      case 'literal':
        this.writeLiteral(s.cps);
        break;
    }
    this.popIndent();
  }

  private writePlain(cps: readonly number[], allowBreaks: boolean): void {
    if (!this.whitespace) this.put(' ');
    let spaces = false;
    let breaks = false;
    for (let i = 0; i < cps.length; i++) {
      const c = cps[i] as number;
      if (c === 0x20) {
        if (allowBreaks && !spaces && this.column > BEST_WIDTH && cps[i + 1] !== 0x20) this.writeIndent();
        else this.writeChar(c);
        spaces = true;
      } else if (isBreak(c)) {
        if (!breaks && c === 0x0a) this.putBreak();
        this.writeBreak(c);
        this.indention = true;
        breaks = true;
      } else {
        if (breaks) this.writeIndent();
        this.writeChar(c);
        this.indention = false;
        spaces = false;
        breaks = false;
      }
    }
    this.whitespace = false;
    this.indention = false;
  }

  private writeSingleQuoted(cps: readonly number[], allowBreaks: boolean): void {
    this.writeIndicator("'", true, false, false);
    let spaces = false;
    let breaks = false;
    for (let i = 0; i < cps.length; i++) {
      const c = cps[i] as number;
      if (c === 0x20) {
        if (allowBreaks && !spaces && this.column > BEST_WIDTH && i > 0 && i < cps.length - 1 && cps[i + 1] !== 0x20) this.writeIndent();
        else this.writeChar(c);
        spaces = true;
      } else if (isBreak(c)) {
        if (!breaks && c === 0x0a) this.putBreak();
        this.writeBreak(c);
        this.indention = true;
        breaks = true;
      } else {
        if (breaks) this.writeIndent();
        if (c === 0x27) this.put("'");
        this.writeChar(c);
        this.indention = false;
        spaces = false;
        breaks = false;
      }
    }
    this.writeIndicator("'", false, false, false);
    this.whitespace = false;
    this.indention = false;
  }

  private writeDoubleQuoted(cps: readonly number[], allowBreaks: boolean): void {
    let spaces = false;
    this.writeIndicator('"', true, false, false);
    for (let i = 0; i < cps.length; i++) {
      const c = cps[i] as number;
      if (!isPrintable(c) || c === 0xfeff || isBreak(c) || c === 0x22 || c === 0x5c) {
        this.put('\\');
        const short = DOUBLE_ESCAPES.get(c);
        if (short !== undefined) this.put(short);
        else {
          const [letter, width] = c <= 0xff ? ['x', 2] : c <= 0xffff ? ['u', 4] : ['U', 8];
          this.put(letter);
          for (const d of c.toString(16).toUpperCase().padStart(width, '0')) this.put(d);
        }
        spaces = false;
      } else if (c === 0x20) {
        if (allowBreaks && !spaces && this.column > BEST_WIDTH && i > 0 && i < cps.length - 1) {
          this.writeIndent();
          if (cps[i + 1] === 0x20) this.put('\\');
        } else this.writeChar(c);
        spaces = true;
      } else {
        this.writeChar(c);
        spaces = false;
      }
    }
    this.writeIndicator('"', false, false, false);
    this.whitespace = false;
    this.indention = false;
  }

  private writeLiteral(cps: readonly number[]): void {
    this.writeIndicator('|', true, false, false);
    // yaml_emitter_write_block_scalar_hints
    const first = cps[0] as number;
    if (first === 0x20 || isBreak(first)) this.writeIndicator(String(BEST_INDENT), false, false, false);
    const last = cps.length - 1;
    let chomp = '';
    if (!isBreak(cps[last] as number)) chomp = '-';
    else if (last === 0 || isBreak(cps[last - 1] as number)) chomp = '+';
    if (chomp) this.writeIndicator(chomp, false, false, false);
    this.putBreak();
    this.indention = true;
    this.whitespace = true;
    let breaks = true;
    for (const c of cps) {
      if (isBreak(c)) {
        this.writeBreak(c);
        this.indention = true;
        breaks = true;
      } else {
        if (breaks) this.writeIndent();
        this.writeChar(c);
        this.indention = false;
        breaks = false;
      }
    }
  }
}

const DOUBLE_ESCAPES = new Map<number, string>([
  [0x00, '0'],
  [0x07, 'a'],
  [0x08, 'b'],
  [0x09, 't'],
  [0x0a, 'n'],
  [0x0b, 'v'],
  [0x0c, 'f'],
  [0x0d, 'r'],
  [0x1b, 'e'],
  [0x22, '"'],
  [0x5c, '\\'],
  [0x85, 'N'],
  [0xa0, '_'],
  [0x2028, 'L'],
  [0x2029, 'P'],
]);

interface Scalar {
  cps: number[];
  analysis: ScalarAnalysis;
  style: Style;
}

/** yaml.v2's encoder for a string: the requested style (literal with a newline, plain if it resolves to a string, else double-quoted). */
function scalarOf(s: string): Scalar {
  const cps = codePoints(s);
  const style: Style = s.includes('\n') ? 'literal' : plainIsString(s) ? 'plain' : 'double';
  return { cps, analysis: analyze(cps), style };
}

/** `yaml.Marshal(v)` of gopkg.in/yaml.v2, byte for byte. */
export function goYaml(v: JsonValue): string {
  const e = new Emitter();
  e.node(v, false, false);
  // Document end (implicit): a final line break.
  e.writeIndent();
  return e.out;
}
