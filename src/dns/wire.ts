// DNS wire format (RFC 1035, RFC 6891): the query parser, the reply builder and the upstream-response
// reader used by the server.
//
// Why our own codec rather than dns2's `Packet`: dns2's Reader/Writer move one *bit* at a time through
// JS arrays. Measured on the target machine, `Packet.parse` of a one-question query costs ~19 µs and
// `toBuffer()` of a one-answer reply ~47 µs — a ceiling of ~15k queries/s before any lookup, against a
// goal of ≥ 0.62× dnsmasq (~50k/s here). It also drops unknown EDNS options, cannot emit pre-encoded
// record bytes, and cannot patch TTLs of a cached message in place. So the hot path works on bytes:
// the question is echoed verbatim, local answers are copied from RR bytes prepared when the data
// changed (owner = a compression pointer to the question), and cached upstream replies are copied with
// the id, question case and TTLs patched. dns2 still provides the transports (see server.ts).
//
// Everything here is synchronous and single-threaded: the builder writes into one module-level scratch
// buffer and copies the finished message out, so a reply costs one allocation of its exact size.

export const TYPE = {
  A: 1,
  NS: 2,
  CNAME: 5,
  SOA: 6,
  PTR: 12,
  MX: 15,
  TXT: 16,
  AAAA: 28,
  SRV: 33,
  DNAME: 39,
  OPT: 41,
  IXFR: 251,
  AXFR: 252,
  ANY: 255,
} as const;

export const TYPE_NAMES: ReadonlyMap<number, string> = new Map(Object.entries(TYPE).map(([k, v]) => [v, k]));

export const RCODE = {
  NOERROR: 0,
  FORMERR: 1,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  NOTIMP: 4,
  REFUSED: 5,
  /** Extended (OPT) rcode 16: the query's EDNS version is not supported. */
  BADVERS: 16,
} as const;

export const RCODE_NAMES: ReadonlyMap<number, string> = new Map(Object.entries(RCODE).map(([k, v]) => [v, k]));

export const CLASS_IN = 1;
export const HEADER_LEN = 12;
export const MAX_MESSAGE = 65535;
export const MIN_UDP = 512;

export const FLAG_QR = 0x8000;
export const FLAG_AA = 0x0400;
export const FLAG_TC = 0x0200;
export const FLAG_RD = 0x0100;
export const FLAG_RA = 0x0080;
/** Authentic data (DNSSEC): never set by us, we do not validate. */
export const FLAG_AD = 0x0020;
/** Checking disabled (DNSSEC): copied from the query into the reply. */
export const FLAG_CD = 0x0010;
const OPCODE_MASK = 0x7800;

/**
 * The header flags of every reply to a query with these flags: QR, the query's opcode, RD and CD copied,
 * RA=1. AA (our own zones only), TC and the rcode are the caller's.
 */
export function replyFlags(queryFlags: number): number {
  return FLAG_QR | (queryFlags & (OPCODE_MASK | FLAG_RD | FLAG_CD)) | FLAG_RA;
}

/** The UDP payload size we advertise in our OPT records. */
export const OUR_UDP_PAYLOAD = 4096;
const OPT_LEN = 11;

export interface Edns {
  readonly udpSize: number;
  readonly version: number;
}

export interface Query {
  readonly kind: 'query';
  readonly id: number;
  /** The query's raw flags word. */
  readonly flags: number;
  readonly opcode: number;
  readonly qdcount: number;
  /** The query message; its first question (offset 12 to questionEnd) is echoed verbatim in replies. */
  readonly msg: Buffer;
  readonly questionEnd: number;
  /** Lower-case presentation form without the trailing dot; '' is the root. */
  readonly qname: string;
  /** Number of labels in qname. */
  readonly labels: number;
  /**
   * A label holds a '.', a space, a control or a non-ASCII byte: such a name never matches local data
   * (its presentation form would be ambiguous) and upstream answers for it are not cached.
   */
  readonly exotic: boolean;
  readonly qtype: number;
  readonly qclass: number;
  readonly edns: Edns | null;
}

/** A message we must answer with FORMERR (no usable question). */
export interface FormErr {
  readonly kind: 'formerr';
  readonly id: number;
  readonly flags: number;
  readonly edns: Edns | null;
}

export class WireError extends Error {}

// ---------------------------------------------------------------------------------------------------
// Names

const nameScratch = Buffer.allocUnsafe(1024);

/** Reads a name without compression (a question), returning its end or throwing. */
function readQuestionName(buf: Buffer, off: number): { end: number; name: string; labels: number; exotic: boolean } {
  let n = 0;
  let labels = 0;
  let exotic = false;
  let p = off;
  for (;;) {
    if (p >= buf.length) throw new WireError('name runs past the message');
    const len = buf[p]!;
    if (len === 0) {
      p++;
      break;
    }
    if (len > 63) throw new WireError('compressed or invalid label in question');
    if (p + 1 + len > buf.length) throw new WireError('label runs past the message');
    if (n + len + 1 > 255) throw new WireError('name longer than 255 octets');
    if (labels > 0) nameScratch[n++] = 0x2e;
    for (let i = 1; i <= len; i++) {
      let c = buf[p + i]!;
      if (c >= 0x41 && c <= 0x5a) c |= 0x20;
      else if (c <= 0x20 || c >= 0x7f || c === 0x2e) exotic = true;
      nameScratch[n++] = c;
    }
    labels++;
    p += len + 1;
  }
  return { end: p, name: nameScratch.toString('latin1', 0, n), labels, exotic };
}

/** Skips a possibly compressed name, returning the offset after it. */
export function skipName(buf: Buffer, off: number): number {
  let p = off;
  for (;;) {
    if (p >= buf.length) throw new WireError('name runs past the message');
    const len = buf[p]!;
    if (len === 0) return p + 1;
    if ((len & 0xc0) === 0xc0) {
      if (p + 2 > buf.length) throw new WireError('pointer runs past the message');
      return p + 2;
    }
    if (len > 63) throw new WireError('invalid label length');
    p += len + 1;
  }
}

/** Reads a possibly compressed name into lower-case presentation form (no trailing dot). */
export function readName(buf: Buffer, off: number): { name: string; end: number } {
  let p = off;
  let end = -1;
  let n = 0;
  let jumps = 0;
  for (;;) {
    if (p >= buf.length) throw new WireError('name runs past the message');
    const len = buf[p]!;
    if (len === 0) {
      if (end < 0) end = p + 1;
      break;
    }
    if ((len & 0xc0) === 0xc0) {
      if (p + 2 > buf.length) throw new WireError('pointer runs past the message');
      if (end < 0) end = p + 2;
      if (++jumps > 64) throw new WireError('compression pointer loop');
      p = ((len & 0x3f) << 8) | buf[p + 1]!;
      continue;
    }
    if (len > 63) throw new WireError('invalid label length');
    if (p + 1 + len > buf.length) throw new WireError('label runs past the message');
    if (n + len + 1 > 255) throw new WireError('name longer than 255 octets');
    if (n > 0) nameScratch[n++] = 0x2e;
    for (let i = 1; i <= len; i++) {
      let c = buf[p + i]!;
      if (c >= 0x41 && c <= 0x5a) c |= 0x20;
      nameScratch[n++] = c;
    }
    p += len + 1;
  }
  return { name: nameScratch.toString('latin1', 0, n), end };
}

/** Encodes a presentation-form name (trailing dot optional) without compression. */
export function encodeName(name: string): Buffer {
  const bare = name.endsWith('.') ? name.slice(0, -1) : name;
  if (bare === '') return Buffer.from([0]);
  const labels = bare.split('.');
  const total = labels.reduce((s, l) => s + l.length + 1, 1);
  if (total > 255) throw new WireError(`name ${JSON.stringify(name)} is longer than 255 octets`);
  const out = Buffer.allocUnsafe(total);
  let p = 0;
  for (const l of labels) {
    const bytes = Buffer.from(l, 'latin1');
    if (bytes.length === 0 || bytes.length > 63) throw new WireError(`name ${JSON.stringify(name)} has an empty or over-long label`);
    out[p++] = bytes.length;
    bytes.copy(out, p);
    p += bytes.length;
  }
  out[p] = 0;
  return out;
}

/** Lower-cases and strips the trailing dot of a presentation-form name. */
export function normalizeName(name: string): string {
  const lower = name.toLowerCase();
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}

/** `10.42.1.5` → `5.1.42.10.in-addr.arpa` (IPv4 only; others → undefined). */
export function reverseName(ip: string): string | undefined {
  const v = ipv4ToInt(ip);
  if (v < 0) return undefined;
  return `${v & 255}.${(v >>> 8) & 255}.${(v >>> 16) & 255}.${v >>> 24}.in-addr.arpa`;
}

/** Parses a dotted-quad IPv4 address into its 32-bit value, or -1. */
export function ipv4ToInt(ip: string): number {
  let v = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < ip.length; i++) {
    const c = ip.charCodeAt(i);
    if (c === 0x2e) {
      if (digits === 0 || ++dots > 3) return -1;
      v = v * 256 + part;
      part = 0;
      digits = 0;
    } else if (c >= 0x30 && c <= 0x39) {
      part = part * 10 + (c - 0x30);
      if (++digits > 3 || part > 255) return -1;
    } else return -1;
  }
  if (digits === 0 || dots !== 3) return -1;
  return v * 256 + part;
}

// ---------------------------------------------------------------------------------------------------
// Queries

function readOpt(buf: Buffer, off: number, an: number, ns: number, ar: number): Edns | null {
  let p = off;
  const total = an + ns + ar;
  for (let i = 0; i < total; i++) {
    p = skipName(buf, p);
    if (p + 10 > buf.length) throw new WireError('record header runs past the message');
    const type = buf.readUInt16BE(p);
    const rdlen = buf.readUInt16BE(p + 8);
    if (i >= an + ns && type === TYPE.OPT) {
      return { udpSize: buf.readUInt16BE(p + 2), version: buf[p + 5]! };
    }
    p += 10 + rdlen;
    if (p > buf.length) throw new WireError('rdata runs past the message');
  }
  return null;
}

/**
 * Parses a query. Returns null for what must not be answered at all (shorter than a header, or a
 * response), a FormErr when no question can be read.
 */
export function parseQuery(buf: Buffer): Query | FormErr | null {
  if (buf.length < HEADER_LEN) return null;
  const id = buf.readUInt16BE(0);
  const flags = buf.readUInt16BE(2);
  if (flags & FLAG_QR) return null;
  const qdcount = buf.readUInt16BE(4);
  const an = buf.readUInt16BE(6);
  const ns = buf.readUInt16BE(8);
  const ar = buf.readUInt16BE(10);
  if (qdcount === 0) return { kind: 'formerr', id, flags, edns: null };
  let q;
  try {
    q = readQuestionName(buf, HEADER_LEN);
  } catch {
    return { kind: 'formerr', id, flags, edns: null };
  }
  const qend = q.end + 4;
  if (qend > buf.length) return { kind: 'formerr', id, flags, edns: null };
  const qtype = buf.readUInt16BE(q.end);
  const qclass = buf.readUInt16BE(q.end + 2);
  let edns: Edns | null = null;
  // A query with several questions is refused anyway; its OPT does not matter.
  if (ar > 0 && qdcount === 1) {
    try {
      edns = readOpt(buf, qend, an, ns, ar);
    } catch {
      return { kind: 'formerr', id, flags, edns: null };
    }
  }
  return {
    kind: 'query',
    id,
    flags,
    opcode: (flags >> 11) & 0xf,
    qdcount,
    msg: buf,
    questionEnd: qend,
    qname: q.name,
    labels: q.labels,
    exotic: q.exotic,
    qtype,
    qclass,
    edns,
  };
}

/** The wire form of a query's first question (name, type, class). */
export function questionOf(q: Query): Buffer {
  return q.msg.subarray(HEADER_LEN, q.questionEnd);
}

/** Encodes a question (name, type, class IN). */
export function encodeQuestion(name: string, qtype: number, qclass = CLASS_IN): Buffer {
  const n = encodeName(name);
  const out = Buffer.allocUnsafe(n.length + 4);
  n.copy(out, 0);
  out.writeUInt16BE(qtype, n.length);
  out.writeUInt16BE(qclass, n.length + 2);
  return out;
}

/** Builds a query message: the given id, RD=1, one question, and an OPT record when udpSize > 0. */
export function buildQuery(id: number, question: Buffer, udpSize: number): Buffer {
  const out = Buffer.allocUnsafe(HEADER_LEN + question.length + (udpSize > 0 ? OPT_LEN : 0));
  out.writeUInt16BE(id, 0);
  out.writeUInt16BE(FLAG_RD, 2);
  out.writeUInt16BE(1, 4);
  out.writeUInt32BE(0, 6);
  out.writeUInt16BE(udpSize > 0 ? 1 : 0, 10);
  question.copy(out, HEADER_LEN);
  if (udpSize > 0) writeOpt(out, HEADER_LEN + question.length, udpSize, 0);
  return out;
}

function writeOpt(buf: Buffer, p: number, udpSize: number, extRcode: number): void {
  buf[p] = 0;
  buf.writeUInt16BE(TYPE.OPT, p + 1);
  buf.writeUInt16BE(udpSize, p + 3);
  buf[p + 5] = extRcode;
  buf[p + 6] = 0; // version
  buf.writeUInt16BE(0, p + 7); // DO and Z
  buf.writeUInt16BE(0, p + 9); // rdlength
}

// ---------------------------------------------------------------------------------------------------
// Prepared record bytes

/** Bytes of an A record after its owner: type, class, ttl, rdlength, address (14 bytes). */
export const A_TAIL = 14;

export function encodeATails(ips: readonly string[], ttl: number): Buffer {
  const out = Buffer.allocUnsafe(A_TAIL * ips.length);
  ips.forEach((ip, i) => {
    const v = ipv4ToInt(ip);
    if (v < 0) throw new WireError(`not an IPv4 address: ${ip}`);
    const p = i * A_TAIL;
    out.writeUInt16BE(TYPE.A, p);
    out.writeUInt16BE(CLASS_IN, p + 2);
    out.writeUInt32BE(ttl >>> 0, p + 4);
    out.writeUInt16BE(4, p + 8);
    out.writeUInt32BE(v >>> 0, p + 10);
  });
  return out;
}

/** TXT rdata: the strings as character-strings (long ones split at 255 bytes). */
export function encodeTxtRdata(text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  const chunks: Buffer[] = [];
  for (let i = 0; i < bytes.length || i === 0; i += 255) {
    const c = bytes.subarray(i, i + 255);
    chunks.push(Buffer.from([c.length]), c);
    if (bytes.length === 0) break;
  }
  return Buffer.concat(chunks);
}

export interface SoaFields {
  serial: number;
  refresh: number;
  retry: number;
  expire: number;
  minimum: number;
}

// ---------------------------------------------------------------------------------------------------
// Reply builder

const SCRATCH_SIZE = MAX_MESSAGE + 1024;
const scratch = Buffer.allocUnsafe(SCRATCH_SIZE);
const perm = new Uint16Array(8192);

/** Where the owner of a record comes from: a compression pointer (offset) or a name to write. */
export type Owner = number | string;

/** The question's owner pointer in every reply we build (the question starts at offset 12). */
export const QNAME_PTR = HEADER_LEN;

/**
 * Builds one reply in the shared scratch buffer. Use: begin → records (answer, then authority, then
 * additional) → finish, with no await in between. Records that would not fit in 64 KiB are dropped and
 * the reply is marked truncated.
 */
export class ReplyBuilder {
  private pos = 0;
  private an = 0;
  private ns = 0;
  private ar = 0;
  private section = 0;
  private questionEnd = 0;
  private answerEnd = 0;
  private authorityEnd = 0;
  private overflowSection = -1;
  private flags = 0;
  private rcode = 0;
  private hasQuestion = false;
  private q: Query | null = null;
  private readonly names = new Map<string, number>();
  private seeded = false;

  /**
   * Starts a reply to q: AA=1 (an answer from our own data; see nonAuthoritative), RA=1, RD and CD
   * copied, the question echoed.
   */
  begin(q: Query, rcode: number): this {
    this.reset();
    this.q = q;
    this.flags = replyFlags(q.flags) | FLAG_AA;
    this.rcode = rcode;
    scratch.writeUInt16BE(q.id, 0);
    q.msg.copy(scratch, HEADER_LEN, HEADER_LEN, q.questionEnd);
    this.pos = q.questionEnd;
    this.questionEnd = this.pos;
    this.hasQuestion = true;
    return this;
  }

  /** Clears AA: an error (SERVFAIL, NOTIMP…) speaks for no zone. */
  nonAuthoritative(): this {
    this.flags &= ~FLAG_AA;
    return this;
  }

  /** Starts a reply without a question section (FORMERR, not authoritative). */
  beginBare(id: number, queryFlags: number, rcode: number): this {
    this.reset();
    this.flags = replyFlags(queryFlags);
    this.rcode = rcode;
    scratch.writeUInt16BE(id, 0);
    this.pos = HEADER_LEN;
    this.questionEnd = this.pos;
    return this;
  }

  private reset(): void {
    this.an = this.ns = this.ar = 0;
    this.section = 0;
    this.overflowSection = -1;
    if (this.names.size > 0) this.names.clear();
    this.seeded = false;
    this.q = null;
    this.hasQuestion = false;
  }

  setRcode(rcode: number): this {
    this.rcode = rcode;
    return this;
  }

  get rcodeValue(): number {
    return this.rcode;
  }

  /** Moves to the authority section. */
  authority(): this {
    if (this.section < 1) {
      this.answerEnd = this.pos;
      this.section = 1;
    }
    return this;
  }

  /** Moves to the additional section. */
  additional(): this {
    this.authority();
    if (this.section < 2) {
      this.authorityEnd = this.pos;
      this.section = 2;
    }
    return this;
  }

  private room(n: number): boolean {
    if (this.pos + n <= MAX_MESSAGE - OPT_LEN) return true;
    if (this.overflowSection < 0) this.overflowSection = this.section;
    return false;
  }

  private count(): void {
    if (this.section === 0) this.an++;
    else if (this.section === 1) this.ns++;
    else this.ar++;
  }

  /** Writes a name with compression; returns the offset where it starts. */
  writeName(name: string): number {
    if (!this.seeded) this.seed();
    const start = this.pos;
    if (name === '') {
      scratch[this.pos++] = 0;
      return start;
    }
    let from = 0;
    for (;;) {
      const suffix = from === 0 ? name : name.slice(from);
      const ptr = this.names.get(suffix);
      if (ptr !== undefined) {
        scratch.writeUInt16BE(0xc000 | ptr, this.pos);
        this.pos += 2;
        return start;
      }
      if (this.pos < 0x3fff) this.names.set(suffix, this.pos);
      const dot = name.indexOf('.', from);
      const end = dot < 0 ? name.length : dot;
      const len = end - from;
      scratch[this.pos++] = len;
      for (let i = from; i < end; i++) scratch[this.pos++] = name.charCodeAt(i) & 0xff;
      if (dot < 0) {
        scratch[this.pos++] = 0;
        return start;
      }
      from = dot + 1;
    }
  }

  /** Registers the question name's suffixes for compression (lazily: the A fast path never needs it). */
  private seed(): void {
    this.seeded = true;
    const q = this.q;
    if (!q || q.exotic || q.qname === '') return;
    let off = HEADER_LEN;
    let idx = 0;
    const name = q.qname;
    while (idx <= name.length) {
      this.names.set(idx === 0 ? name : name.slice(idx), off);
      off += scratch[off]! + 1;
      const dot = name.indexOf('.', idx);
      if (dot < 0) break;
      idx = dot + 1;
    }
  }

  private writeOwner(owner: Owner): void {
    if (typeof owner === 'number') {
      scratch.writeUInt16BE(0xc000 | owner, this.pos);
      this.pos += 2;
    } else {
      this.writeName(owner);
    }
  }

  /**
   * Copies prepared A records (see encodeATails) with the given owner pointer, in a random order when
   * shuffle is set.
   */
  aRecords(tails: Buffer, ownerPtr: number, shuffle: boolean): this {
    const n = (tails.length / A_TAIL) | 0;
    if (!this.room(n * (A_TAIL + 2))) return this;
    const hi = 0xc0 | (ownerPtr >> 8);
    const lo = ownerPtr & 0xff;
    const m = Math.min(n, perm.length);
    if (shuffle && m > 1) {
      for (let i = 0; i < m; i++) perm[i] = i;
      for (let i = m - 1; i > 0; i--) {
        const j = (Math.random() * (i + 1)) | 0;
        const t = perm[i]!;
        perm[i] = perm[j]!;
        perm[j] = t;
      }
    }
    // Byte loops: for 14-byte records they beat Buffer#copy's per-call overhead several times over.
    let p = this.pos;
    for (let i = 0; i < m; i++) {
      let k = (shuffle && m > 1 ? perm[i]! : i) * A_TAIL;
      scratch[p++] = hi;
      scratch[p++] = lo;
      for (let e = k + A_TAIL; k < e; k++) scratch[p++] = tails[k]!;
    }
    this.pos = p;
    if (this.section === 0) this.an += m;
    else if (this.section === 1) this.ns += m;
    else this.ar += m;
    return this;
  }

  /** Prepared A records owned by a name (compressed against earlier names), in the given order. */
  aRecordsNamed(tails: Buffer, owner: string): this {
    const n = (tails.length / A_TAIL) | 0;
    for (let i = 0; i < n; i++) {
      if (!this.room(2 + 255 + A_TAIL)) return this;
      this.writeName(owner);
      tails.copy(scratch, this.pos, i * A_TAIL, i * A_TAIL + A_TAIL);
      this.pos += A_TAIL;
      this.count();
    }
    return this;
  }

  /** A record whose rdata is a single name (CNAME, PTR, NS); returns the offset of the target name. */
  nameRecord(owner: Owner, type: number, ttl: number, target: string): number {
    if (!this.room(2 + 255 + 10 + 255)) return -1;
    this.writeOwner(owner);
    scratch.writeUInt16BE(type, this.pos);
    scratch.writeUInt16BE(CLASS_IN, this.pos + 2);
    scratch.writeUInt32BE(ttl >>> 0, this.pos + 4);
    const rdlenAt = this.pos + 8;
    this.pos += 10;
    const at = this.writeName(target);
    scratch.writeUInt16BE(this.pos - at, rdlenAt);
    this.count();
    return at;
  }

  srvRecord(owner: Owner, ttl: number, priority: number, weight: number, port: number, target: string): this {
    if (!this.room(2 + 255 + 16 + 255)) return this;
    this.writeOwner(owner);
    scratch.writeUInt16BE(TYPE.SRV, this.pos);
    scratch.writeUInt16BE(CLASS_IN, this.pos + 2);
    scratch.writeUInt32BE(ttl >>> 0, this.pos + 4);
    const rdlenAt = this.pos + 8;
    scratch.writeUInt16BE(priority, this.pos + 10);
    scratch.writeUInt16BE(weight, this.pos + 12);
    scratch.writeUInt16BE(port, this.pos + 14);
    this.pos += 16;
    // RFC 2782: the target is not compressed; it is registered so later owners can point to it.
    if (!this.seeded) this.seed();
    const enc = encodeName(target);
    if (this.pos < 0x3fff && !this.names.has(target)) this.names.set(target, this.pos);
    enc.copy(scratch, this.pos);
    this.pos += enc.length;
    scratch.writeUInt16BE(this.pos - rdlenAt - 2, rdlenAt);
    this.count();
    return this;
  }

  /** A record with opaque rdata (TXT, or upstream records whose names are already expanded). */
  rawRecord(owner: Owner, type: number, cls: number, ttl: number, rdata: Buffer): this {
    if (!this.room(2 + 255 + 10 + rdata.length)) return this;
    this.writeOwner(owner);
    scratch.writeUInt16BE(type, this.pos);
    scratch.writeUInt16BE(cls, this.pos + 2);
    scratch.writeUInt32BE(ttl >>> 0, this.pos + 4);
    scratch.writeUInt16BE(rdata.length, this.pos + 8);
    rdata.copy(scratch, this.pos + 10);
    this.pos += 10 + rdata.length;
    this.count();
    return this;
  }

  /** An SOA for zone; the owner points into the question when the zone is one of its suffixes. */
  soaRecord(zone: string, zoneLabels: number, ttl: number, soa: SoaFields): this {
    if (!this.room(2 + 255 + 10 + 2 + 13 + 20 + 255)) return this;
    const ownerAt = this.pos;
    const q = this.q;
    let ptr = -1;
    if (q && !q.exotic && q.labels >= zoneLabels && (q.qname === zone || q.qname.endsWith(`.${zone}`))) {
      let off = HEADER_LEN;
      for (let i = 0; i < q.labels - zoneLabels; i++) off += scratch[off]! + 1;
      ptr = off;
    }
    let zoneAt: number;
    if (ptr >= 0) {
      scratch.writeUInt16BE(0xc000 | ptr, this.pos);
      this.pos += 2;
      zoneAt = ptr;
    } else {
      this.writeName(zone);
      zoneAt = ownerAt;
    }
    scratch.writeUInt16BE(TYPE.SOA, this.pos);
    scratch.writeUInt16BE(CLASS_IN, this.pos + 2);
    scratch.writeUInt32BE(ttl >>> 0, this.pos + 4);
    const rdlenAt = this.pos + 8;
    this.pos += 10;
    const rdStart = this.pos;
    const zptr = 0xc000 | zoneAt;
    if (zoneAt < 0x3fff) {
      // MNAME = the zone itself, RNAME = hostmaster.<zone>
      scratch.writeUInt16BE(zptr, this.pos);
      scratch[this.pos + 2] = 10;
      scratch.write('hostmaster', this.pos + 3, 'latin1');
      scratch.writeUInt16BE(zptr, this.pos + 13);
      this.pos += 15;
    } else {
      const z = encodeName(zone);
      z.copy(scratch, this.pos);
      this.pos += z.length;
      const h = encodeName(`hostmaster.${zone}`);
      h.copy(scratch, this.pos);
      this.pos += h.length;
    }
    scratch.writeUInt32BE(soa.serial >>> 0, this.pos);
    scratch.writeUInt32BE(soa.refresh >>> 0, this.pos + 4);
    scratch.writeUInt32BE(soa.retry >>> 0, this.pos + 8);
    scratch.writeUInt32BE(soa.expire >>> 0, this.pos + 12);
    scratch.writeUInt32BE(soa.minimum >>> 0, this.pos + 16);
    this.pos += 20;
    scratch.writeUInt16BE(this.pos - rdStart, rdlenAt);
    this.count();
    return this;
  }

  /**
   * Finishes the reply within limit bytes: over the limit, the additional section is dropped first;
   * if that is not enough, the reply keeps only the question and gets TC=1. An OPT record is appended
   * when edns is given (the extended part of rcode goes there).
   */
  finish(limit: number, edns: Edns | null): Buffer {
    this.additional();
    const optLen = edns ? OPT_LEN : 0;
    let end = this.pos;
    let { an, ns, ar } = this;
    let tc = false;
    const max = Math.min(limit, MAX_MESSAGE);
    if (this.overflowSection >= 0 || end + optLen > max) {
      if (this.overflowSection !== 0 && this.overflowSection !== 1 && this.authorityEnd + optLen <= max) {
        end = this.authorityEnd;
        ar = 0;
      } else {
        end = this.questionEnd;
        an = ns = ar = 0;
        tc = true;
      }
    }
    const rcode = this.rcode;
    if (edns) {
      writeOpt(scratch, end, OUR_UDP_PAYLOAD, (rcode >> 4) & 0xff);
      end += OPT_LEN;
      ar++;
    }
    scratch.writeUInt16BE(this.flags | (tc ? FLAG_TC : 0) | (rcode & 0xf), 2);
    scratch.writeUInt16BE(this.hasQuestion ? 1 : 0, 4);
    scratch.writeUInt16BE(an, 6);
    scratch.writeUInt16BE(ns, 8);
    scratch.writeUInt16BE(ar, 10);
    const out = Buffer.allocUnsafe(end);
    scratch.copy(out, 0, 0, end);
    return out;
  }
}

// ---------------------------------------------------------------------------------------------------
// Upstream responses

export interface ParsedResponse {
  readonly id: number;
  readonly flags: number;
  /** Header rcode (4 bits). */
  readonly rcode: number;
  readonly qname: string;
  readonly qtype: number;
  readonly qclass: number;
  readonly questionEnd: number;
  readonly an: number;
  readonly ns: number;
  /** Additional records kept (OPT, and anything after it, left out). */
  readonly ar: number;
  readonly answerEnd: number;
  readonly authorityEnd: number;
  /** End of the kept records. */
  readonly keptEnd: number;
  /** Offset of every kept record's TTL field, and the TTL it had. */
  readonly ttlOffsets: Uint32Array;
  readonly ttls: Uint32Array;
  /** Lowest TTL in the answer section (Infinity if empty). */
  readonly minAnswerTtl: number;
  /** For negative answers: min(SOA TTL, SOA minimum) of the authority SOA, if one is there. */
  readonly negativeTtl: number | undefined;
  /** Answer records of type A. */
  readonly aCount: number;
}

/** The question of a response, without reading its records (a truncated reply may be cut anywhere). */
export function responseQuestion(buf: Buffer): { readonly qname: string; readonly qtype: number; readonly qclass: number } {
  if (buf.length < HEADER_LEN) throw new WireError('short response');
  if (buf.readUInt16BE(4) !== 1) throw new WireError(`response has ${buf.readUInt16BE(4)} questions`);
  const q = readQuestionName(buf, HEADER_LEN);
  if (q.end + 4 > buf.length) throw new WireError('question runs past the message');
  return { qname: q.name, qtype: buf.readUInt16BE(q.end), qclass: buf.readUInt16BE(q.end + 2) };
}

/** Parses and checks an upstream response (one question, no pointer into the question). */
export function parseResponse(buf: Buffer): ParsedResponse {
  if (buf.length < HEADER_LEN) throw new WireError('short response');
  const flags = buf.readUInt16BE(2);
  if (!(flags & FLAG_QR)) throw new WireError('not a response');
  const qd = buf.readUInt16BE(4);
  const an = buf.readUInt16BE(6);
  const ns = buf.readUInt16BE(8);
  const arAll = buf.readUInt16BE(10);
  if (qd !== 1) throw new WireError(`response has ${qd} questions`);
  const q = readQuestionName(buf, HEADER_LEN);
  if (q.end + 4 > buf.length) throw new WireError('question runs past the message');
  const qtype = buf.readUInt16BE(q.end);
  const qclass = buf.readUInt16BE(q.end + 2);
  const questionEnd = q.end + 4;
  const ttlOffsets: number[] = [];
  const ttls: number[] = [];
  let p = questionEnd;
  let answerEnd = p;
  let authorityEnd = p;
  let keptEnd = p;
  let ar = 0;
  let minAnswerTtl = Infinity;
  let negativeTtl: number | undefined;
  let aCount = 0;
  const total = an + ns + arAll;
  for (let i = 0; i < total; i++) {
    const start = p;
    p = skipName(buf, p);
    if (p + 10 > buf.length) throw new WireError('record header runs past the message');
    const type = buf.readUInt16BE(p);
    let ttl = buf.readUInt32BE(p + 4);
    if (ttl > 0x7fffffff) ttl = 0;
    const rdlen = buf.readUInt16BE(p + 8);
    const rd = p + 10;
    const next = rd + rdlen;
    if (next > buf.length) throw new WireError('rdata runs past the message');
    if (i >= an + ns && type === TYPE.OPT) {
      // OPT is hop-by-hop: ours is added per reply. Records after it are dropped too, so that no kept
      // compression pointer can refer to bytes that moved.
      keptEnd = start;
      break;
    }
    ttlOffsets.push(p + 4);
    ttls.push(ttl);
    if (i < an) {
      if (ttl < minAnswerTtl) minAnswerTtl = ttl;
      if (type === TYPE.A) aCount++;
    } else if (i < an + ns && type === TYPE.SOA) {
      let r = skipName(buf, rd);
      r = skipName(buf, r);
      if (r + 20 <= next) {
        const minimum = buf.readUInt32BE(r + 16);
        negativeTtl = Math.min(ttl, minimum);
      }
    }
    p = next;
    if (i === an - 1) answerEnd = p;
    if (i === an + ns - 1) authorityEnd = p;
    if (i >= an + ns) ar++;
    keptEnd = p;
  }
  if (an === 0) answerEnd = questionEnd;
  if (ns === 0) authorityEnd = answerEnd;
  return {
    id: buf.readUInt16BE(0),
    flags,
    rcode: flags & 0xf,
    qname: q.name,
    qtype,
    qclass,
    questionEnd,
    an,
    ns,
    ar,
    answerEnd,
    authorityEnd,
    keptEnd,
    ttlOffsets: Uint32Array.from(ttlOffsets),
    ttls: Uint32Array.from(ttls),
    minAnswerTtl,
    negativeTtl,
    aCount,
  };
}

/** A record with names in its owner and rdata expanded (for re-encoding into another message). */
export interface DecodedRecord {
  readonly name: string;
  readonly type: number;
  readonly cls: number;
  readonly ttl: number;
  /** Uncompressed rdata. */
  readonly rdata: Buffer;
}

/** Decodes count records starting at off, expanding compressed names in well-known rdata. */
export function decodeRecords(buf: Buffer, off: number, count: number): DecodedRecord[] {
  const out: DecodedRecord[] = [];
  let p = off;
  for (let i = 0; i < count; i++) {
    const owner = readName(buf, p);
    p = owner.end;
    const type = buf.readUInt16BE(p);
    const cls = buf.readUInt16BE(p + 2);
    let ttl = buf.readUInt32BE(p + 4);
    if (ttl > 0x7fffffff) ttl = 0;
    const rdlen = buf.readUInt16BE(p + 8);
    const rd = p + 10;
    const next = rd + rdlen;
    if (next > buf.length) throw new WireError('rdata runs past the message');
    let rdata: Buffer;
    switch (type) {
      case TYPE.CNAME:
      case TYPE.NS:
      case TYPE.PTR:
      case TYPE.DNAME:
        rdata = encodeName(readName(buf, rd).name);
        break;
      case TYPE.MX: {
        const n = encodeName(readName(buf, rd + 2).name);
        rdata = Buffer.concat([buf.subarray(rd, rd + 2), n]);
        break;
      }
      case TYPE.SRV: {
        const n = encodeName(readName(buf, rd + 6).name);
        rdata = Buffer.concat([buf.subarray(rd, rd + 6), n]);
        break;
      }
      case TYPE.SOA: {
        const m = readName(buf, rd);
        const r = readName(buf, m.end);
        rdata = Buffer.concat([encodeName(m.name), encodeName(r.name), buf.subarray(r.end, r.end + 20)]);
        break;
      }
      default:
        rdata = Buffer.from(buf.subarray(rd, next));
    }
    out.push({ name: owner.name, type, cls, ttl, rdata });
    p = next;
  }
  return out;
}
