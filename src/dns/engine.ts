// Query handling (spec "Query handling"): from a query's bytes and its source address to the reply's
// bytes. Transport-free, so tests and tools can drive it directly.
//
// Local answers are built synchronously (no promise on the hot path); only recursion that misses the
// cache returns a promise.
import type { Logger } from '../common/log.js';
import { decodedAnswers, decodedAuthority, remainingTtl, replyFromAnswer, type CachedAnswer } from './cache.js';
import type { ClientView, DnsData, NameRecords, NameTarget, SuffixEntry, Upstream, Zone } from './data.js';
import type { DnsMetrics } from './metrics.js';
import { Recursor } from './recursor.js';
import {
  CLASS_IN,
  MAX_MESSAGE,
  MIN_UDP,
  parseQuery,
  QNAME_PTR,
  questionOf,
  RCODE,
  ReplyBuilder,
  TYPE,
  type Query,
  type SoaFields,
} from './wire.js';

export const MAX_CNAME_CHAIN = 10;

export type Reply = Buffer | null;

const underScratch: (readonly SuffixEntry[] | undefined)[] = [];

/** The local records for qname in a view: exact name first, then name.<suffix> for each search suffix. */
export function lookup(view: ClientView, qname: string, zones: readonly Zone[]): NameRecords | undefined {
  const passes = view.passes;
  let expand: boolean | undefined;
  for (let i = 0; i < passes.length; i++) {
    const pass = passes[i]!;
    const tables = pass.tables;
    const nt = tables.length;
    for (let t = 0; t < nt; t++) {
      const r = tables[t]!.get(qname);
      if (r) return r;
    }
    // Never append a suffix to a name already under an authoritative suffix (or to the root).
    expand ??= qname !== '' && zoneOf(zones, qname) === undefined;
    if (!expand) continue;
    let any = false;
    for (let t = 0; t < nt; t++) {
      const u = tables[t]!.under(qname);
      underScratch[t] = u;
      if (u) any = true;
    }
    if (!any) continue;
    const search = pass.search;
    for (let s = 0; s < search.length; s++) {
      const suffix = search[s]!;
      for (let t = 0; t < nt; t++) {
        const u = underScratch[t];
        if (!u) continue;
        for (let k = 0; k < u.length; k++) if (u[k]!.suffix === suffix) return u[k]!.records;
      }
    }
  }
  return undefined;
}

/** The records of an exact name in any of the view's tables (CNAME targets are never expanded). */
export function lookupExact(view: ClientView, name: string): NameRecords | undefined {
  for (const pass of view.passes) {
    for (const t of pass.tables) {
      const r = t.get(name);
      if (r) return r;
    }
  }
  return undefined;
}

export function zoneOf(zones: readonly Zone[], name: string): Zone | undefined {
  for (let i = 0; i < zones.length; i++) {
    const z = zones[i]!;
    if (name === z.name || name.endsWith(z.dotted)) return z;
  }
  return undefined;
}

export interface EngineOptions {
  recursor: Recursor;
  metrics: DnsMetrics;
  log: Logger;
  /** Largest UDP reply, whatever the client's EDNS size says. */
  maxUdpSize: number;
  /** Whether an upstream may be asked (the loop guard). */
  allowUpstream: (u: Upstream) => boolean;
  /** The host's resolvers, asked after a client's own. */
  hostResolvers: () => readonly Upstream[];
  now: () => number;
}

interface UpstreamList {
  readonly list: readonly Upstream[];
  readonly id: number;
}

export class QueryEngine {
  private data: DnsData;
  private readonly b = new ReplyBuilder();
  private lists = new WeakMap<readonly Upstream[], UpstreamList>();
  private readonly listIds = new Map<string, number>();
  private nextListId = 0;

  private soaFields: SoaFields;

  constructor(
    data: DnsData,
    private readonly opts: EngineOptions,
  ) {
    this.data = data;
    this.soaFields = QueryEngine.soaOf(data);
  }

  private static soaOf(data: DnsData): SoaFields {
    return { serial: data.serial, refresh: 3600, retry: 600, expire: 86400, minimum: data.ttl };
  }

  get current(): DnsData {
    return this.data;
  }

  setData(d: DnsData): void {
    this.soaFields = QueryEngine.soaOf(d);
    this.data = d;
  }

  /** Forget memoised upstream lists (the host's resolvers or the loop guard changed). */
  upstreamsChanged(): void {
    this.lists = new WeakMap();
  }

  /** The reply to msg from clientIp, or null when nothing must be sent. */
  handle(msg: Buffer, clientIp: string, tcp: boolean): Reply | Promise<Reply> {
    const q = parseQuery(msg);
    if (q === null) {
      this.opts.metrics.drop('not-a-query');
      return null;
    }
    if (q.kind === 'formerr') {
      this.opts.metrics.query(0, RCODE.FORMERR);
      return this.b.beginBare(q.id, q.flags, RCODE.FORMERR).finish(MIN_UDP, null);
    }
    const limit = tcp ? MAX_MESSAGE : q.edns ? Math.max(MIN_UDP, Math.min(q.edns.udpSize, this.opts.maxUdpSize)) : MIN_UDP;
    if (q.edns && q.edns.version > 0) return this.error(q, RCODE.BADVERS, limit);
    if (q.opcode !== 0) return this.error(q, RCODE.NOTIMP, limit);
    if (q.qdcount > 1) return this.error(q, RCODE.SERVFAIL, limit);
    if (q.qclass !== CLASS_IN) return this.error(q, RCODE.NOTIMP, limit);
    const t = q.qtype;
    if (t === TYPE.ANY || t === TYPE.AXFR || t === TYPE.IXFR) return this.error(q, RCODE.NOTIMP, limit);

    const data = this.data;
    const view = data.clients.get(clientIp) ?? data.fallback;
    if (!q.exotic) {
      const rec = lookup(view, q.qname, data.zones);
      if (rec) return this.local(q, rec, view, data, limit);
      const z = zoneOf(data.zones, q.qname);
      if (z) return this.missing(q, z, data, limit);
    }
    return this.recurse(q, view, limit);
  }

  private done(q: Query, reply: Buffer, rcode: number): Buffer {
    this.opts.metrics.query(q.qtype, rcode);
    return reply;
  }

  private finish(q: Query, limit: number): Buffer {
    return this.done(q, this.b.finish(limit, q.edns), this.b.rcodeValue);
  }

  private error(q: Query, rcode: number, limit: number): Buffer {
    this.b.begin(q, rcode).nonAuthoritative();
    return this.finish(q, limit);
  }

  private soa(data: DnsData): SoaFields {
    return data === this.data ? this.soaFields : QueryEngine.soaOf(data);
  }

  /** NOERROR with no answer, and the zone's SOA when the name is under one. */
  private nodata(q: Query, data: DnsData, limit: number): Buffer {
    this.b.begin(q, RCODE.NOERROR);
    const z = zoneOf(data.zones, q.qname);
    if (z) this.b.authority().soaRecord(z.name, z.labels, data.ttl, this.soa(data));
    return this.finish(q, limit);
  }

  /** A name under an authoritative suffix that this client does not have. */
  private missing(q: Query, z: Zone, data: DnsData, limit: number): Buffer {
    if (q.qname === z.name) {
      this.b.begin(q, RCODE.NOERROR);
      if (q.qtype === TYPE.SOA) this.b.soaRecord(z.name, z.labels, data.ttl, this.soa(data));
      else this.b.authority().soaRecord(z.name, z.labels, data.ttl, this.soa(data));
      return this.finish(q, limit);
    }
    this.b.begin(q, RCODE.NXDOMAIN).authority().soaRecord(z.name, z.labels, data.ttl, this.soa(data));
    return this.finish(q, limit);
  }

  private local(q: Query, rec: NameRecords, view: ClientView, data: DnsData, limit: number): Reply | Promise<Reply> {
    const t = q.qtype;
    const b = this.b;
    if (t === TYPE.A && rec.a) {
      b.begin(q, RCODE.NOERROR).aRecords(rec.a.tails, QNAME_PTR, true);
      return this.finish(q, limit);
    }
    // AAAA of a local name: NODATA, never NXDOMAIN (musl and nginx give up on NXDOMAIN).
    if (t === TYPE.AAAA) return this.nodata(q, data, limit);
    if (t === TYPE.CNAME) {
      if (!rec.cname) return this.nodata(q, data, limit);
      b.begin(q, RCODE.NOERROR).nameRecord(QNAME_PTR, TYPE.CNAME, rec.cname.ttl, rec.cname.target);
      return this.finish(q, limit);
    }
    if (rec.cname) return this.chase(q, rec.cname, view, data, limit);
    b.begin(q, RCODE.NOERROR);
    if (!this.writeOwn(rec, t, QNAME_PTR)) return this.nodata(q, data, limit);
    return this.finish(q, limit);
  }

  /** Writes rec's records of type t with the given owner; false when it has none. */
  private writeOwn(rec: NameRecords, t: number, owner: number): boolean {
    const b = this.b;
    switch (t) {
      case TYPE.A:
        if (!rec.a) return false;
        b.aRecords(rec.a.tails, owner, true);
        return true;
      case TYPE.PTR:
        if (!rec.ptr) return false;
        b.nameRecord(owner, TYPE.PTR, rec.ptr.ttl, rec.ptr.target);
        return true;
      case TYPE.TXT:
        if (!rec.txt) return false;
        for (const rd of rec.txt.rdata) b.rawRecord(owner, TYPE.TXT, CLASS_IN, rec.txt.ttl, rd);
        return true;
      case TYPE.SRV: {
        const srv = rec.srv;
        if (!srv) return false;
        for (const r of srv.records) b.srvRecord(owner, srv.ttl, r.priority, r.weight, r.port, r.target);
        b.additional();
        for (const x of srv.additional) b.aRecordsNamed(x.a.tails, x.name);
        return true;
      }
      default:
        return false;
    }
  }

  /**
   * Follows a CNAME chain from the question: local hops, then the local records of the last name, or
   * NXDOMAIN when it is under an authoritative suffix, or the upstream's answer for it.
   */
  private chase(q: Query, first: NameTarget, view: ClientView, data: DnsData, limit: number): Reply | Promise<Reply> {
    const chain: NameTarget[] = [];
    const seen = [q.qname];
    let hop: NameTarget = first;
    for (;;) {
      if (seen.includes(hop.target) || chain.length >= MAX_CNAME_CHAIN) {
        this.opts.log.debug({ qname: q.qname, chain: seen }, 'CNAME loop or chain too long');
        return this.error(q, RCODE.SERVFAIL, limit);
      }
      chain.push(hop);
      seen.push(hop.target);
      const next = lookupExact(view, hop.target);
      if (!next) break;
      if (next.cname) {
        hop = next.cname;
        continue;
      }
      const owner = this.writeChain(q, chain);
      if (!this.writeOwn(next, q.qtype, owner)) {
        // The chain ends in a name without records of this type: NODATA (with the chain).
        const z = zoneOf(data.zones, hop.target);
        if (z) this.b.authority().soaRecord(z.name, z.labels, data.ttl, this.soa(data));
      }
      return this.finish(q, limit);
    }
    const target = hop.target;
    const z = zoneOf(data.zones, target);
    if (z) {
      this.writeChain(q, chain);
      this.b.setRcode(RCODE.NXDOMAIN).authority().soaRecord(z.name, z.labels, data.ttl, this.soa(data));
      return this.finish(q, limit);
    }
    const ups = this.upstreams(view);
    const now = this.opts.now();
    const cached = this.opts.recursor.cached(ups.id, q.qtype, target);
    if (cached) return this.chainReply(q, chain, cached, now, limit);
    return this.opts.recursor.resolve(ups.id, target, q.qtype, undefined, ups.list, true).then((r) => {
      if (!r.ok) return this.error(q, RCODE.SERVFAIL, limit);
      return this.chainReply(q, chain, r.answer, this.opts.now(), limit);
    });
  }

  /** Writes the CNAME records of a chain; returns the offset of the last target (the next owner). */
  private writeChain(q: Query, chain: readonly NameTarget[]): number {
    this.b.begin(q, RCODE.NOERROR);
    let owner = QNAME_PTR;
    for (const h of chain) {
      const at = this.b.nameRecord(owner, TYPE.CNAME, h.ttl, h.target);
      if (at < 0 || at >= 0x3fff) break;
      owner = at;
    }
    return owner;
  }

  /**
   * A local CNAME chain followed by the upstream's answer for its last target. AA stays set: it speaks
   * for the question's name, the first owner (RFC 1035 4.1.1), which is ours. A negative upstream
   * answer (NXDOMAIN, or NODATA) keeps its rcode and its authority section (the SOA), per RFC 6604.
   */
  private chainReply(q: Query, chain: readonly NameTarget[], a: CachedAnswer, now: number, limit: number): Buffer {
    this.writeChain(q, chain);
    const b = this.b;
    for (const rr of decodedAnswers(a)) b.rawRecord(rr.name, rr.type, rr.cls, remainingTtl(a, rr.ttl, now), rr.rdata);
    if (a.ns > 0 && (a.rcode === RCODE.NXDOMAIN || a.an === 0)) {
      b.authority();
      for (const rr of decodedAuthority(a)) b.rawRecord(rr.name, rr.type, rr.cls, remainingTtl(a, rr.ttl, now), rr.rdata);
    }
    b.setRcode(a.rcode);
    return this.finish(q, limit);
  }

  /** The client's upstreams followed by the host's, minus what the loop guard forbids (memoised). */
  private upstreams(view: ClientView): UpstreamList {
    let l = this.lists.get(view.recurse);
    if (l) return l;
    const list: Upstream[] = [];
    for (const u of [...view.recurse, ...this.opts.hostResolvers()]) {
      if (this.opts.allowUpstream(u) && !list.some((x) => x.key === u.key)) list.push(u);
    }
    const sig = list.map((u) => u.key).join(',');
    let id = this.listIds.get(sig);
    if (id === undefined) {
      id = this.nextListId++;
      // Bounded; a list seen again after a clear gets a fresh id (and a cold cache), never a reused one.
      if (this.listIds.size >= 10_000) this.listIds.clear();
      this.listIds.set(sig, id);
    }
    l = { list, id };
    this.lists.set(view.recurse, l);
    return l;
  }

  private recurse(q: Query, view: ClientView, limit: number): Reply | Promise<Reply> {
    const ups = this.upstreams(view);
    if (ups.list.length === 0) return this.error(q, RCODE.SERVFAIL, limit);
    const cacheable = !q.exotic;
    if (cacheable) {
      const a = this.opts.recursor.cached(ups.id, q.qtype, q.qname);
      if (a) return this.done(q, replyFromAnswer(q, a, this.opts.now(), limit, false), a.rcode);
    }
    return this.opts.recursor.resolve(ups.id, q.qname, q.qtype, questionOf(q), ups.list, cacheable).then((r) => {
      if (!r.ok) return this.error(q, RCODE.SERVFAIL, limit);
      return this.done(q, replyFromAnswer(q, r.answer, this.opts.now(), limit, r.fresh), r.answer.rcode);
    });
  }
}
