// Catalog answers files, in the formats users have them in:
// - the Rancher CLI's / rancher-compose `--env-file` form: shell-style `KEY=VALUE` lines, `export ` allowed,
//   `#` comment lines, values in double quotes (escapes \" \\ \$ \n; may run over several lines) or single
//   quotes (literal; may run over several lines), unquoted values taken to the end of the line;
// - a YAML or JSON map (`KEY: value`), values turned into strings.
// Errors name the file and line (a quote left open names the line it was opened on).
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { ValidationError } from '../common/errors.js';

const SHELL_LINE = /^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)=(.*)$/;

/** Reads an answers file (see the top of this file for the formats). */
export function readAnswersFile(path: string): Record<string, string> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ValidationError('InvalidAnswers', `${path}: cannot read the answers file (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  return parseAnswers(path, text);
}

export function parseAnswers(path: string, text: string): Record<string, string> {
  const first = text.split('\n').find((l) => l.trim() !== '' && !l.trim().startsWith('#'));
  if (first === undefined) return {};
  if (SHELL_LINE.test(first)) return parseShellAnswers(path, text);
  let obj: unknown;
  try {
    obj = parseYaml(text);
  } catch (err) {
    throw new ValidationError('InvalidAnswers', `${path}: neither KEY=VALUE lines nor a YAML/JSON map (${(err as Error).message.split('\n')[0] ?? ''})`);
  }
  if (!obj || typeof obj !== 'object' || Array.isArray(obj)) {
    throw new ValidationError('InvalidAnswers', `${path}: expected KEY=VALUE lines or a map of answers`);
  }
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(obj as Record<string, unknown>)) {
    if (v !== null && typeof v === 'object') throw new ValidationError('InvalidAnswers', `${path}: answer "${k}" must be a string, number or boolean`);
    out[k] = v === null ? '' : String(v);
  }
  return out;
}

/** Shell-style KEY=VALUE lines; linear in the text (one pass over its characters). */
export function parseShellAnswers(path: string, text: string): Record<string, string> {
  const out: Record<string, string> = {};
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] as string).replace(/\r$/, '');
    if (!line.trim() || line.trim().startsWith('#')) continue;
    const m = SHELL_LINE.exec(line);
    if (!m) throw new ValidationError('InvalidAnswers', `${path}:${i + 1}: expected KEY=VALUE (the Rancher CLI's answers format), got "${line.slice(0, 60)}"`);
    const key = m[1] as string;
    let rest = m[2] as string;
    const q = rest[0];
    if (q !== '"' && q !== "'") {
      out[key] = rest.trim();
      continue;
    }
    // A quoted value, possibly over several lines.
    const opened = i + 1;
    let value = '';
    rest = rest.slice(1);
    for (;;) {
      let closed = -1;
      for (let j = 0; j < rest.length; j++) {
        const ch = rest[j] as string;
        if (q === '"' && ch === '\\' && j + 1 < rest.length) {
          const nx = rest[j + 1] as string;
          value += nx === 'n' ? '\n' : nx === '"' || nx === '\\' || nx === '$' || nx === '`' ? nx : `\\${nx}`;
          j++;
          continue;
        }
        if (ch === q) {
          closed = j;
          break;
        }
        value += ch;
      }
      if (closed >= 0) {
        const after = rest.slice(closed + 1).trim();
        if (after && !after.startsWith('#')) {
          throw new ValidationError('InvalidAnswers', `${path}:${i + 1}: unexpected "${after.slice(0, 30)}" after the quoted value of ${key}`);
        }
        break;
      }
      i++;
      if (i >= lines.length) throw new ValidationError('InvalidAnswers', `${path}:${opened}: the value of ${key} opens a ${q === '"' ? 'double' : 'single'} quote that is never closed`);
      value += '\n';
      rest = (lines[i] as string).replace(/\r$/, '');
    }
    out[key] = value;
  }
  return out;
}
