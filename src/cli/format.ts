// Output helpers shared by the CLI's listing commands: aligned tables for people, JSON for scripts.
import { InvalidArgumentError } from 'commander';
import { ValidationError } from '../common/errors.js';

export type OutputFormat = 'table' | 'json';

/** `--format`: table (the default; `text` is the same) or json. */
export function parseFormat(v: string | undefined): OutputFormat {
  if (v === undefined || v === 'table' || v === 'text') return 'table';
  if (v === 'json') return 'json';
  throw new ValidationError('InvalidArgument', `--format is table or json, got "${v}"`, 'format');
}

/**
 * Rows under a header, each column as wide as its widest cell, two spaces apart; the last column is not
 * padded (no trailing blanks). An empty or missing cell shows as "-", so every column has a word.
 */
export function table(header: string[], rows: (string | number | null | undefined)[][]): string {
  const cells = [header, ...rows.map((r) => header.map((_, i) => cellText(r[i])))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells
    .map((r) =>
      r
        .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
        .join('  ')
        .trimEnd(),
    )
    .map((l) => `${l}\n`)
    .join('');
}

function cellText(v: string | number | null | undefined): string {
  if (v === null || v === undefined || v === '') return '-';
  return String(v);
}

/** Labels as `k=v` pairs, comma-joined, sorted by key. */
export function labelList(labels: Record<string, string> | undefined): string {
  return Object.entries(labels ?? {})
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
}

/** Natural order: shop-web-2 before shop-web-10. */
export const naturalCompare = (a: string, b: string): number => a.localeCompare(b, undefined, { numeric: true });

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** A commander argument parser for an integer flag ≥ `min` (the error names the flag and the value). */
export const intOption = (flag: string, min: number) => (v: string): number => {
  if (!/^\d+$/.test(v) || Number(v) < min) throw new InvalidArgumentError(`${flag} must be an integer ≥ ${min}, got "${v}"`);
  return Number(v);
};
export const positiveInt = (flag: string) => intOption(flag, 1);
export const nonNegativeInt = (flag: string) => intOption(flag, 0);
