// The Rancher answers file (rancher-dns's input, spec "Standalone mode"): JSON or YAML, validated with
// zod, then normalised into the prepared form the renderer reads.
//
//   { "<client ip>" | "default": { search, recurse, authoritative, a, cname, ptr, txt } }
//
// Keys are lower-case FQDNs with the trailing dot in the original; we accept any case with or without
// the dot. PTR keys may be plain IPv4 addresses. Unknown section keys are ignored (as the original did).
import { readFile } from 'node:fs/promises';
import { isIP, isIPv4 } from 'node:net';
import { z } from 'zod';
import YAML from 'yaml';
import { ValidationError } from '../common/errors.js';
import { parseUpstream, type Upstream } from './data.js';
import { normalizeName, reverseName } from './wire.js';

const LABEL = /^(?!-)[a-z0-9_*-]{1,63}(?<!-)$/i;

function isDomain(s: string): boolean {
  const n = s.endsWith('.') ? s.slice(0, -1) : s;
  if (n.length === 0 || n.length > 253) return false;
  return n.split('.').every((l) => LABEL.test(l));
}

const Domain = z.string().refine(isDomain, { message: 'not a domain name' });
const Ttl = z.number().int().min(0).max(2147483647);
const Ipv4 = z.string().refine((s) => isIPv4(s), { message: 'not an IPv4 address' });

const AEntry = z.object({ answer: z.array(Ipv4), ttl: Ttl.optional() });
const NameEntry = z.object({ answer: Domain, ttl: Ttl.optional() });
const TxtEntry = z.object({
  answer: z.union([z.string(), z.array(z.string())]).transform((v) => (typeof v === 'string' ? [v] : v)),
  ttl: Ttl.optional(),
});

// Record keys are checked in superRefine (zod reports a bad record key only as "Invalid key").
export const AnswersSection = z
  .object({
    search: z.array(Domain).default([]),
    recurse: z
      .array(z.string().refine((s) => parseUpstream(s) !== undefined, { message: 'not an IP address or IP:port' }))
      .default([]),
    authoritative: z.array(Domain).default([]),
    a: z.record(z.string(), AEntry).default({}),
    cname: z.record(z.string(), NameEntry).default({}),
    ptr: z.record(z.string(), NameEntry).default({}),
    txt: z.record(z.string(), TxtEntry).default({}),
  })
  .superRefine((s, ctx) => {
    for (const kind of ['a', 'cname', 'txt'] as const) {
      for (const k of Object.keys(s[kind])) {
        if (!isDomain(k)) ctx.addIssue({ code: 'custom', path: [kind, k], message: `${JSON.stringify(k)} is not a domain name` });
      }
    }
    for (const k of Object.keys(s.ptr)) {
      if (!isIPv4(k) && !isDomain(k)) ctx.addIssue({ code: 'custom', path: ['ptr', k], message: `${JSON.stringify(k)} is not an IPv4 address or a domain name` });
    }
    const names = new Set(Object.keys(s.a).map(normalizeName));
    for (const k of Object.keys(s.cname)) {
      if (names.has(normalizeName(k))) ctx.addIssue({ code: 'custom', path: ['cname', k], message: 'a name cannot have both A and CNAME records' });
    }
  });
export type AnswersSection = z.infer<typeof AnswersSection>;

export const AnswersFile = z.record(z.string(), AnswersSection).superRefine((file, ctx) => {
  for (const k of Object.keys(file)) {
    if (k !== 'default' && isIP(k) === 0) ctx.addIssue({ code: 'custom', path: [k], message: `${JSON.stringify(k)}: keys are client IPs or "default"` });
  }
});
export type AnswersFile = z.infer<typeof AnswersFile>;

/** Parses answers text (JSON or YAML; JSON is tried when the text starts with `{`). */
export function parseAnswers(text: string, source = 'answers'): AnswersFile {
  let raw: unknown;
  try {
    raw = text.trimStart().startsWith('{') ? JSON.parse(text) : YAML.parse(text);
  } catch (err) {
    throw new ValidationError('InvalidAnswers', `${source}: not valid JSON or YAML: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (raw === null || raw === undefined) raw = {};
  const r = AnswersFile.safeParse(raw);
  if (!r.success) throw new ValidationError('InvalidAnswers', `${source}: ${z.prettifyError(r.error)}`);
  return r.data;
}

export async function loadAnswersFile(path: string): Promise<AnswersFile> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new ValidationError('InvalidAnswers', `${path}: cannot read: ${err instanceof Error ? err.message : String(err)}`);
  }
  return parseAnswers(text, path);
}

// ---------------------------------------------------------------------------------------------------
// Prepared form

export interface RecordSpec {
  a?: { ips: string[]; ttl: number | undefined };
  cname?: { target: string; ttl: number | undefined };
  ptr?: { target: string; ttl: number | undefined };
  txt?: { texts: string[]; ttl: number | undefined };
}

export interface PreparedSection {
  /** Lower-case, no trailing dots. */
  search: string[];
  recurse: Upstream[];
  authoritative: string[];
  /** By lower-case name without trailing dot; PTR keys already in in-addr.arpa form. */
  records: Map<string, RecordSpec>;
}

export interface PreparedAnswers {
  default: PreparedSection;
  clients: Map<string, PreparedSection>;
}

function entry(records: Map<string, RecordSpec>, name: string): RecordSpec {
  let e = records.get(name);
  if (!e) records.set(name, (e = {}));
  return e;
}

function prepareSection(s: AnswersSection): PreparedSection {
  const records = new Map<string, RecordSpec>();
  for (const [k, v] of Object.entries(s.a)) entry(records, normalizeName(k)).a = { ips: [...v.answer], ttl: v.ttl };
  for (const [k, v] of Object.entries(s.cname)) entry(records, normalizeName(k)).cname = { target: normalizeName(v.answer), ttl: v.ttl };
  for (const [k, v] of Object.entries(s.ptr)) {
    const name = isIPv4(k) ? reverseName(k)! : normalizeName(k);
    entry(records, name).ptr = { target: normalizeName(v.answer), ttl: v.ttl };
  }
  for (const [k, v] of Object.entries(s.txt)) entry(records, normalizeName(k)).txt = { texts: [...v.answer], ttl: v.ttl };
  const recurse: Upstream[] = [];
  for (const r of s.recurse) {
    const u = parseUpstream(r);
    if (u && !recurse.some((x) => x.key === u.key)) recurse.push(u);
  }
  return {
    search: [...new Set(s.search.map(normalizeName))],
    recurse,
    authoritative: [...new Set(s.authoritative.map(normalizeName))],
    records,
  };
}

const EMPTY_SECTION: AnswersSection = AnswersSection.parse({});

export function prepareAnswers(file: AnswersFile): PreparedAnswers {
  const clients = new Map<string, PreparedSection>();
  for (const [k, v] of Object.entries(file)) if (k !== 'default') clients.set(k, prepareSection(v));
  return { default: prepareSection(file.default ?? EMPTY_SECTION), clients };
}
