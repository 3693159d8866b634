// The prepared form of DNS data: what the server's hot path reads. Built by the renderers in view.ts
// whenever the environment (or the answers file) changes, then swapped in whole. The environment renderer
// keeps its shared tables up to date change by change (NameTable.set/delete, between queries: one thread).
//
// Lookup cost is what shapes it: names are lower-case keys without the trailing dot; A records carry
// their wire bytes (all but the owner, which is a pointer to the question); search-suffix expansion
// uses per-suffix indexes built here, so `db` + `app.rancher.internal` is two Map lookups and no string
// concatenation per query. Views are layered (a small per-client overlay over shared tables), so 10k
// containers do not mean 10k copies of the environment's names.
import { isIPv4, isIPv6 } from 'node:net';
import { encodeATails, encodeName, encodeTxtRdata, normalizeName } from './wire.js';

export interface ARecords {
  readonly ips: readonly string[];
  readonly ttl: number;
  /** encodeATails(ips, ttl). */
  readonly tails: Buffer;
}

export interface NameTarget {
  /** Lower-case, no trailing dot. */
  readonly target: string;
  readonly ttl: number;
}

export interface TxtRecords {
  readonly texts: readonly string[];
  readonly ttl: number;
  readonly rdata: readonly Buffer[];
}

export interface SrvTarget {
  readonly priority: number;
  readonly weight: number;
  readonly port: number;
  /** Lower-case, no trailing dot. */
  readonly target: string;
}

export interface SrvRecords {
  readonly records: readonly SrvTarget[];
  readonly ttl: number;
  /** A records of the targets, for the additional section. */
  readonly additional: readonly { readonly name: string; readonly a: ARecords }[];
}

/** Everything a name has. An empty object is a name that exists with no records (NODATA). */
export interface NameRecords {
  readonly a?: ARecords;
  readonly cname?: NameTarget;
  readonly ptr?: NameTarget;
  readonly txt?: TxtRecords;
  readonly srv?: SrvRecords;
}

export function aRecords(ips: readonly string[], ttl: number): ARecords {
  return { ips, ttl, tails: encodeATails(ips, ttl) };
}

export function nameTarget(target: string, ttl: number): NameTarget {
  const t = normalizeName(target);
  encodeName(t); // validates
  return { target: t, ttl };
}

export function txtRecords(texts: readonly string[], ttl: number): TxtRecords {
  return { texts, ttl, rdata: texts.map(encodeTxtRdata) };
}

export interface SuffixEntry {
  readonly suffix: string;
  readonly records: NameRecords;
}

/**
 * A table of names, plus an index for search-suffix expansion: for each name under one of the
 * suffixes the table was built for, prefix → (suffix, records). A short name then costs one Map
 * lookup per table whatever the number of suffixes, and a name that is no prefix (most recursed
 * names) is rejected by that one lookup.
 */
export class NameTable {
  readonly exact: ReadonlyMap<string, NameRecords>;
  private readonly byPrefix = new Map<string, SuffixEntry[]>();
  private readonly wanted: ReadonlySet<string>;
  private readonly zoneName: string | undefined;
  private readonly zoneDotted: string | undefined;

  /**
   * `suffixes`: the search suffixes to index. `indexZone`: also index every suffix under (or equal to) this
   * zone, so that tables kept up to date change by change (view.ts) never need re-indexing when a client
   * with a new stack or service search suffix appears. Extra indexed suffixes change no answer: lookups
   * only ever ask for the client's own suffixes.
   */
  constructor(entries: ReadonlyMap<string, NameRecords>, suffixes: Iterable<string> = [], indexZone?: string) {
    this.exact = entries;
    this.wanted = new Set(suffixes);
    this.zoneName = indexZone;
    this.zoneDotted = indexZone === undefined ? undefined : `.${indexZone}`;
    if (this.wanted.size === 0 && indexZone === undefined) return;
    for (const [name, records] of entries) this.index(name, records);
  }

  private indexed(suffix: string): boolean {
    if (this.wanted.has(suffix)) return true;
    return this.zoneName !== undefined && (suffix === this.zoneName || suffix.endsWith(this.zoneDotted!));
  }

  /** Enters name under every indexed suffix it ends with (records), or takes it out (undefined). */
  private index(name: string, records: NameRecords | undefined): void {
    let i = name.indexOf('.');
    while (i >= 0) {
      const suffix = name.slice(i + 1);
      if (this.indexed(suffix)) {
        const prefix = name.slice(0, i);
        const list = this.byPrefix.get(prefix);
        const at = list ? list.findIndex((e) => e.suffix === suffix) : -1;
        if (records) {
          if (!list) this.byPrefix.set(prefix, [{ suffix, records }]);
          else if (at < 0) list.push({ suffix, records });
          else list[at] = { suffix, records };
        } else if (list && at >= 0) {
          list.splice(at, 1);
          if (list.length === 0) this.byPrefix.delete(prefix);
        }
      }
      i = name.indexOf('.', i + 1);
    }
  }

  /** Whether every suffix in `suffixes` is indexed (a table kept up to date must be rebuilt otherwise). */
  indexes(suffixes: Iterable<string>): boolean {
    for (const s of suffixes) if (!this.indexed(s)) return false;
    return true;
  }

  /**
   * Sets a name (tables built over a Map the caller owns and keeps up to date: view.ts's incremental
   * renderer). The server reads tables only between changes (one thread), so an update is never seen half-way.
   */
  set(name: string, records: NameRecords): void {
    (this.exact as Map<string, NameRecords>).set(name, records);
    this.index(name, records);
  }

  delete(name: string): void {
    if (!(this.exact as Map<string, NameRecords>).delete(name)) return;
    this.index(name, undefined);
  }

  get(name: string): NameRecords | undefined {
    return this.exact.get(name);
  }

  /** Every (suffix, records) such that `${prefix}.${suffix}` is in the table and suffix was indexed. */
  under(prefix: string): readonly SuffixEntry[] | undefined {
    return this.byPrefix.get(prefix);
  }

  /** The records of `${prefix}.${suffix}`, if suffix was one this table was indexed for. */
  getUnder(suffix: string, prefix: string): NameRecords | undefined {
    const list = this.byPrefix.get(prefix);
    if (!list) return undefined;
    for (const e of list) if (e.suffix === suffix) return e.records;
    return undefined;
  }
}

export const EMPTY_TABLE = new NameTable(new Map());

export interface LookupPass {
  /** Looked up in order: the first table that has a name wins. */
  readonly tables: readonly NameTable[];
  /** Lower-case suffixes without dots at either end, in order. */
  readonly search: readonly string[];
}

export interface Upstream {
  readonly host: string;
  readonly port: number;
  readonly family: 4 | 6;
  /** `host:port` (IPv6 in brackets): identity for de-duplication and logs. */
  readonly key: string;
}

/** Parses `1.2.3.4`, `1.2.3.4:5353`, `::1`, `[::1]:5353`; undefined when it is none of these. */
export function parseUpstream(s: string): Upstream | undefined {
  const t = s.trim();
  let host = t;
  let port = 53;
  const br = /^\[([^\]]+)\](?::(\d+))?$/.exec(t);
  if (br) {
    host = br[1]!;
    if (br[2] !== undefined) port = Number(br[2]);
  } else if (/^[^:]+:\d+$/.test(t)) {
    const i = t.lastIndexOf(':');
    host = t.slice(0, i);
    port = Number(t.slice(i + 1));
  }
  if (!Number.isInteger(port) || port < 1 || port > 65535) return undefined;
  if (isIPv4(host)) return { host, port, family: 4, key: `${host}:${port}` };
  if (isIPv6(host)) {
    // The form the OS reports as a reply's source address, so replies can be matched by string.
    let norm = host.toLowerCase();
    try {
      norm = new URL(`http://[${host}]/`).hostname.slice(1, -1);
    } catch {
      // zone ids and the like: keep as written
    }
    return { host: norm, port, family: 6, key: `[${norm}]:${port}` };
  }
  return undefined;
}

/** What one client (a source address) sees. */
export interface ClientView {
  /** Lookup passes in order (drover: one; standalone: client section, default with the client's search list, default). */
  readonly passes: readonly LookupPass[];
  /** The client's search list (what its resolv.conf carries). */
  readonly search: readonly string[];
  /** The client's own upstreams, in order; the server appends the host's resolvers. */
  readonly recurse: readonly Upstream[];
}

export interface Zone {
  /** Lower-case, no trailing dot, e.g. `rancher.internal`. */
  readonly name: string;
  /** `.${name}`: the suffix test without allocation. */
  readonly dotted: string;
  readonly labels: number;
}

export function zone(name: string): Zone {
  const n = normalizeName(name);
  return { name: n, dotted: `.${n}`, labels: n === '' ? 0 : n.split('.').length };
}

/** The whole prepared data set the server answers from. */
export interface DnsData {
  /** Changes with every render: the SOA serial. */
  readonly serial: number;
  /** TTL of local answers and of the SOA (seconds). */
  readonly ttl: number;
  /** Authoritative suffixes: names under them that do not exist get NXDOMAIN, never recursion. */
  readonly zones: readonly Zone[];
  /** Views by client address. */
  readonly clients: ReadonlyMap<string, ClientView>;
  /** The view of any other address. */
  readonly fallback: ClientView;
}

/** Data that answers nothing locally and recurses to nothing (until the first setData). */
export function emptyDnsData(): DnsData {
  const view: ClientView = { passes: [], search: [], recurse: [] };
  return { serial: 0, ttl: 1, zones: [], clients: new Map(), fallback: view };
}
