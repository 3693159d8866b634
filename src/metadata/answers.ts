// The metadata answers: what the service serves, per API version and per client.
//
// Shape (the Rancher answers-file format): `{ "<version>": { "<clientIp>" | "default": <tree> } }`.
// A client is identified by its source IP; `default` is served to anyone without an entry of their own.
// Answers are treated as immutable once built: the server caches renderings of them.
import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { ValidationError } from '../common/errors.js';

export type JsonPrimitive = string | number | boolean | null;
export type JsonValue = JsonPrimitive | JsonValue[] | JsonMap;
export interface JsonMap {
  [key: string]: JsonValue;
}

/** Client key (`<ip>` or `default`) → that client's tree. */
export type VersionAnswers = Record<string, JsonMap>;
/** API version (`2015-07-25`, …, `latest`) → the answers of that version. */
export type Answers = Record<string, VersionAnswers>;

export const DEFAULT_CLIENT = 'default';
export const LATEST_VERSION = 'latest';

/** Deeper trees than this are refused (they would only come from a broken or hostile file). */
const MAX_DEPTH = 256;

/**
 * Why `value` is not a plain JSON value (finite numbers, strings, booleans, null, arrays, plain objects;
 * no cycles), as `<path>: <problem>`; `undefined` when it is one. Shared sub-trees (YAML aliases) are fine.
 */
export function jsonProblem(value: unknown, path = '$'): string | undefined {
  const ancestors = new Set<object>();
  const visit = (v: unknown, at: string, depth: number): string | undefined => {
    switch (typeof v) {
      case 'string':
      case 'boolean':
        return undefined;
      case 'number':
        return Number.isFinite(v) ? undefined : `${at}: numbers must be finite (got ${String(v)})`;
      case 'object': {
        if (v === null) return undefined;
        if (depth > MAX_DEPTH) return `${at}: nested more than ${MAX_DEPTH} levels deep`;
        if (ancestors.has(v)) return `${at}: refers to itself (recursive alias)`;
        const proto: unknown = Object.getPrototypeOf(v);
        const isArray = Array.isArray(v);
        if (!isArray && proto !== Object.prototype && proto !== null) {
          return `${at}: unsupported value of type ${v.constructor?.name ?? 'object'}`;
        }
        ancestors.add(v);
        try {
          if (isArray) {
            for (let i = 0; i < v.length; i++) {
              const p = visit(v[i], `${at}[${i}]`, depth + 1);
              if (p) return p;
            }
          } else {
            for (const [k, child] of Object.entries(v)) {
              const p = visit(child, `${at}.${JSON.stringify(k)}`, depth + 1);
              if (p) return p;
            }
          }
        } finally {
          ancestors.delete(v);
        }
        return undefined;
      }
      default:
        return `${at}: unsupported value of type ${typeof v}`;
    }
  };
  return visit(value, path, 0);
}

const ClientTree = z.unknown().superRefine((v, ctx) => {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    ctx.addIssue({ code: 'custom', message: 'must be a map (the tree served to that client)' });
    return;
  }
  const problem = jsonProblem(v, 'tree');
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});

/** The edge schema of an answers file (the trees themselves are checked by `jsonProblem`, not copied). */
export const AnswersFileSchema = z.record(
  z.string(),
  z.record(z.string(), ClientTree, { error: 'must be a map of "<clientIp>" | "default" to a tree' }),
  { error: 'must be a map of "<version>" to a map of clients' },
);

/** A bad answers file (the CLI reports its message and exits 2). */
export class AnswersError extends ValidationError {
  constructor(message: string) {
    super('InvalidAnswers', message);
  }
}

const FORMAT_HINT = 'expected {"<version>": {"<clientIp>" | "default": {…tree…}}}';

function describeIssues(error: z.ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((i) => {
      const where = i.path.map((p) => JSON.stringify(String(p))).join(' → ');
      return where ? `${where}: ${i.message}` : i.message;
    })
    .join('; ');
}

/**
 * Validates parsed answers, fills in `default` keys into client entries and the `latest` alias.
 * Throws AnswersError with a message naming the offending version/client.
 */
export function validateAnswers(raw: unknown): Answers {
  const res = AnswersFileSchema.safeParse(raw);
  if (!res.success) throw new AnswersError(`invalid answers (${FORMAT_HINT}): ${describeIssues(res.error)}`);
  return normalizeAnswers(res.data as Answers);
}

/**
 * Parses an answers document. `.json` files are parsed as JSON, `.yml`/`.yaml` as YAML; other names are
 * tried as JSON when they look like it, else as YAML (a superset of JSON).
 */
export function parseAnswersText(text: string, fileName = 'answers'): Answers {
  const ext = extname(fileName).toLowerCase();
  let raw: unknown;
  const asJson = ext === '.json' || (ext !== '.yml' && ext !== '.yaml' && /^\s*[{[]/.test(text));
  try {
    raw = asJson
      ? JSON.parse(text)
      : // Aliases resolve to shared objects (no copies), so a generous alias budget is safe here.
        parseYaml(text, { maxAliasCount: 1_000_000, uniqueKeys: true });
  } catch (err) {
    const what = asJson ? 'JSON' : 'YAML';
    throw new AnswersError(`${fileName}: not valid ${what}: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (raw === null || raw === undefined) throw new AnswersError(`${fileName}: the file is empty`);
  try {
    return validateAnswers(raw);
  } catch (err) {
    throw new AnswersError(`${fileName}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** Reads and validates an answers file (JSON or YAML). */
export async function loadAnswersFile(path: string): Promise<Answers> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new AnswersError(`cannot read answers file ${path}: ${err instanceof Error ? err.message : String(err)}`);
  }
  return parseAnswersText(text, path);
}

/**
 * Shallow merge: `client` with every top-level key of `defaults` it lacks — a copy when keys are added,
 * `client` itself when it already has them all (so normalising twice costs nothing).
 */
export function mergeDefaults(client: JsonMap, defaults: JsonMap): JsonMap {
  let out: JsonMap | undefined;
  for (const k of Object.keys(defaults)) {
    if (Object.hasOwn(client, k)) continue;
    out ??= { ...client };
    out[k] = defaults[k] as JsonValue;
  }
  return out ?? client;
}

/** The version `latest` stands for when a file has no `latest`: the ASCII-betically highest one. */
export function highestVersion(versions: Iterable<string>): string | undefined {
  let best: string | undefined;
  for (const v of versions) if (best === undefined || v > best) best = v;
  return best;
}

/** Answers known to be normalised already (built by normalizeAnswers or declared so by their builder). */
const normalized = new WeakSet<Answers>();

/**
 * Declares answers as already normalised (every client entry has all of default's top-level keys, `latest`
 * is present), so normalizeAnswers returns them as they are. For builders that produce complete trees.
 */
export function markNormalized(answers: Answers): Answers {
  normalized.add(answers);
  return answers;
}

/**
 * Returns answers ready to serve: client entries merged with their version's `default` (shallow, new
 * objects; the input is not modified) and `latest` added when missing. Idempotent.
 */
export function normalizeAnswers(answers: Answers): Answers {
  if (normalized.has(answers)) return answers;
  const out: Answers = {};
  // Versions that share one object (YAML aliases, `latest`) keep sharing it.
  const done = new Map<VersionAnswers, VersionAnswers>();
  for (const [version, clients] of Object.entries(answers)) {
    let merged = done.get(clients);
    if (!merged) {
      merged = mergeVersion(clients);
      done.set(clients, merged);
    }
    out[version] = merged;
  }
  if (!Object.hasOwn(out, LATEST_VERSION)) {
    const highest = highestVersion(Object.keys(out));
    if (highest !== undefined) out[LATEST_VERSION] = out[highest] as VersionAnswers;
  }
  return markNormalized(out);
}

function mergeVersion(clients: VersionAnswers): VersionAnswers {
  const defaults = Object.hasOwn(clients, DEFAULT_CLIENT) ? clients[DEFAULT_CLIENT] : undefined;
  if (!defaults) return clients;
  let out: VersionAnswers | undefined;
  for (const [client, tree] of Object.entries(clients)) {
    if (client === DEFAULT_CLIENT) continue;
    const m = mergeDefaults(tree, defaults);
    if (m === tree) continue;
    out ??= { ...clients };
    out[client] = m;
  }
  return out ?? clients;
}

/** The versions a listing shows: every version of the answers, plus `latest` (always offered). */
export function listedVersions(answers: Answers): string[] {
  const vs = new Set(Object.keys(answers));
  vs.add(LATEST_VERSION);
  return [...vs].sort();
}
