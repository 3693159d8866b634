// Upstream answers and their cache.
//
// An answer is kept as the upstream's bytes (OPT removed) plus the offsets of its TTL fields, so a
// cache hit is a copy with the id, the question's letter case and the TTLs patched — no decoding.
// Cached per (upstream list, name, type) for min(configured max, the record's TTL); negative answers
// for min(max, SOA TTL, SOA minimum) and only when they carry an SOA. SERVFAIL, REFUSED and timeouts
// never get here. The cache is an LRU bounded by entry count.
import {
  decodeRecords,
  FLAG_AA,
  FLAG_TC,
  replyFlags,
  HEADER_LEN,
  MAX_MESSAGE,
  OUR_UDP_PAYLOAD,
  RCODE,
  TYPE,
  type DecodedRecord,
  type ParsedResponse,
  type Query,
} from './wire.js';

export interface CachedAnswer {
  /** The upstream reply: id 0, OPT (and anything after it) removed, ARCOUNT adjusted. */
  readonly msg: Buffer;
  readonly rcode: number;
  readonly an: number;
  readonly ns: number;
  readonly ar: number;
  readonly questionEnd: number;
  readonly answerEnd: number;
  readonly authorityEnd: number;
  readonly ttlOffsets: Uint32Array;
  readonly ttls: Uint32Array;
  /** A records in the answer section. */
  readonly aCount: number;
  /** The upstream set AA (passed on in the reply to the query that fetched it, never from the cache). */
  readonly aa: boolean;
  /** When it was received (ms, the server's clock). */
  readonly storedAt: number;
  /** How long it may be served from the cache (s); 0: not cacheable. */
  readonly ttl: number;
  readonly expiresAt: number;
  /** Answer records decoded on first need (CNAME chains merge them into a local reply). */
  decoded?: DecodedRecord[];
  /** Authority records decoded on first need (a CNAME chain ending in an upstream NXDOMAIN/NODATA). */
  decodedAuthority?: DecodedRecord[];
  /** When the LRU order was last refreshed (ms). */
  touched?: number;
}

/** Builds the cache form of a parsed upstream reply. */
export function answerFromResponse(buf: Buffer, p: ParsedResponse, now: number, maxTtl: number): CachedAnswer {
  const msg = Buffer.from(buf.subarray(0, p.keptEnd));
  msg.writeUInt16BE(0, 0);
  msg.writeUInt16BE(p.ar, 10);
  let ttl = 0;
  if (p.rcode === RCODE.NOERROR && p.an > 0) ttl = Math.min(maxTtl, p.minAnswerTtl);
  else if ((p.rcode === RCODE.NXDOMAIN || p.rcode === RCODE.NOERROR) && p.negativeTtl !== undefined) ttl = Math.min(maxTtl, p.negativeTtl);
  ttl = Math.max(0, Math.floor(ttl));
  return {
    msg,
    rcode: p.rcode,
    an: p.an,
    ns: p.ns,
    ar: p.ar,
    questionEnd: p.questionEnd,
    answerEnd: p.answerEnd,
    authorityEnd: p.authorityEnd,
    ttlOffsets: p.ttlOffsets,
    ttls: p.ttls,
    aCount: p.aCount,
    aa: (p.flags & FLAG_AA) !== 0,
    storedAt: now,
    ttl,
    expiresAt: now + ttl * 1000,
  };
}

/** The same answer with another rcode (AAAA NXDOMAIN for a name with A records → NODATA). */
export function withRcode(a: CachedAnswer, rcode: number): CachedAnswer {
  const { decoded: _decoded, decodedAuthority: _decodedAuthority, touched: _touched, ...rest } = a;
  return { ...rest, rcode };
}

/** Seconds left of a record TTL, counting down from when the answer was received. */
export function remainingTtl(a: CachedAnswer, recordTtl: number, now: number): number {
  let v = a.ttl > 0 && recordTtl > a.ttl ? a.ttl : recordTtl;
  v -= Math.floor((now - a.storedAt) / 1000);
  return v < 0 ? 0 : v;
}

export function decodedAnswers(a: CachedAnswer): DecodedRecord[] {
  return (a.decoded ??= decodeRecords(a.msg, a.questionEnd, a.an));
}

/** The authority records (the SOA of a negative answer), decoded on first need. */
export function decodedAuthority(a: CachedAnswer): DecodedRecord[] {
  return (a.decodedAuthority ??= decodeRecords(a.msg, a.answerEnd, a.ns));
}

/**
 * The reply to q from a cached (or just received) answer, within limit bytes: over it, the additional
 * section goes first, then everything but the question with TC=1.
 *
 * Flags (spec "Query handling" 1): drover is not authoritative for forwarded names, so AA is the
 * upstream's on the reply to the query that fetched the answer (fresh) and clear on replies from the
 * cache (as Unbound and dnsmasq do: a cached copy whose TTLs we count down is not the authority's
 * answer). RD and CD come from the query, RA=1; AD is never set (we do not validate DNSSEC, and our
 * queries to upstreams ask for no DNSSEC data).
 */
export function replyFromAnswer(q: Query, a: CachedAnswer, now: number, limit: number, fresh: boolean): Buffer {
  const optLen = q.edns ? 11 : 0;
  const max = Math.min(limit, MAX_MESSAGE);
  let end = a.msg.length;
  let an = a.an;
  let ns = a.ns;
  let ar = a.ar;
  let tc = false;
  if (end + optLen > max) {
    if (ar > 0 && a.authorityEnd + optLen <= max) {
      end = a.authorityEnd;
      ar = 0;
    } else {
      end = a.questionEnd;
      an = ns = ar = 0;
      tc = true;
    }
  }
  const out = Buffer.allocUnsafe(end + optLen);
  a.msg.copy(out, 0, 0, end);
  out.writeUInt16BE(q.id, 0);
  const aa = fresh && a.aa ? FLAG_AA : 0;
  out.writeUInt16BE(replyFlags(q.flags) | aa | (tc ? FLAG_TC : 0) | (a.rcode & 0xf), 2);
  if (q.questionEnd === a.questionEnd) q.msg.copy(out, HEADER_LEN, HEADER_LEN, q.questionEnd);
  out.writeUInt16BE(1, 4);
  out.writeUInt16BE(an, 6);
  out.writeUInt16BE(ns, 8);
  out.writeUInt16BE(ar + (optLen ? 1 : 0), 10);
  const elapsed = Math.floor((now - a.storedAt) / 1000);
  const cap = a.ttl;
  const offs = a.ttlOffsets;
  const ttls = a.ttls;
  for (let i = 0; i < offs.length; i++) {
    const off = offs[i]!;
    if (off >= end) break;
    let v = ttls[i]!;
    if (cap > 0 && v > cap) v = cap;
    v -= elapsed;
    out.writeUInt32BE(v < 0 ? 0 : v, off);
  }
  if (optLen) {
    out[end] = 0;
    out.writeUInt16BE(TYPE.OPT, end + 1);
    out.writeUInt16BE(OUR_UDP_PAYLOAD, end + 3);
    out.writeUInt32BE(0, end + 5);
    out.writeUInt16BE(0, end + 9);
  }
  return out;
}

/**
 * The answer cache: per (upstream list, type) a Map by name, so a lookup is two Map gets on numbers
 * and the query's own name (no key string built per query), and one insertion-ordered Map of every
 * entry for the LRU order. Bounded by entry count.
 */
export class AnswerCache {
  private readonly buckets = new Map<number, Map<string, CachedAnswer>>();
  /** Every entry, least recently used first, with its bucket and name. */
  private readonly order = new Map<CachedAnswer, { bucket: Map<string, CachedAnswer>; name: string }>();

  constructor(readonly maxEntries: number) {}

  get size(): number {
    return this.order.size;
  }

  private static bucketKey(listId: number, qtype: number): number {
    return listId * 65536 + qtype;
  }

  /** The live entry (refreshing its recency), or undefined. */
  get(listId: number, qtype: number, name: string, now: number): CachedAnswer | undefined {
    const bucket = this.buckets.get(AnswerCache.bucketKey(listId, qtype));
    if (bucket === undefined) return undefined;
    const e = bucket.get(name);
    if (e === undefined) return undefined;
    if (now >= e.expiresAt) {
      bucket.delete(name);
      this.order.delete(e);
      return undefined;
    }
    // Approximate LRU: re-ordering on every hit costs two hash operations; once per second per
    // entry keeps hot entries away from eviction just as well.
    if (e.touched === undefined || now - e.touched >= 1000) {
      e.touched = now;
      const where = this.order.get(e);
      if (where) {
        this.order.delete(e);
        this.order.set(e, where);
      }
    }
    return e;
  }

  set(listId: number, qtype: number, name: string, e: CachedAnswer): void {
    if (e.ttl <= 0 || this.maxEntries <= 0) return;
    const key = AnswerCache.bucketKey(listId, qtype);
    let bucket = this.buckets.get(key);
    if (!bucket) this.buckets.set(key, (bucket = new Map()));
    const old = bucket.get(name);
    if (old) this.order.delete(old);
    bucket.set(name, e);
    this.order.set(e, { bucket, name });
    while (this.order.size > this.maxEntries) {
      const oldest = this.order.entries().next();
      if (oldest.done) break;
      const [entry, where] = oldest.value;
      this.order.delete(entry);
      if (where.bucket.get(where.name) === entry) where.bucket.delete(where.name);
    }
  }

  /** Drops expired entries (called now and then so that dead entries do not wait for eviction). */
  sweep(now: number): number {
    let n = 0;
    for (const [e, where] of this.order) {
      if (now >= e.expiresAt) {
        this.order.delete(e);
        if (where.bucket.get(where.name) === e) where.bucket.delete(where.name);
        n++;
      }
    }
    for (const [k, b] of this.buckets) if (b.size === 0) this.buckets.delete(k);
    return n;
  }

  clear(): void {
    this.buckets.clear();
    this.order.clear();
  }
}
