// The batched UDP transport (native/udp-batch): one recvmmsg per up to 64 queued datagrams, one call into
// JavaScript per batch, one sendmmsg for the replies. Linux only; when the addon is not built the DNS
// server uses node's dgram socket (server.ts decides, see `udpTransport`).
//
// The addon reads into and writes from Buffers allocated here (layout in native/udp-batch/src/udp_batch.c):
// a query is copied out of its slot before the engine sees it (the slot is reused by the next batch, and
// a query waiting for an upstream keeps its bytes), a synchronous reply is copied into the out slot of
// the same index with the same peer, and a reply that comes later (recursion) is sent on its own.
//
// Nothing may throw out of onBatch: the addon turns an exception in its callback into a fatal one (the
// process ends). Datagrams from source port 0 (only a raw socket can send one) are dropped unanswered
// and counted; the engine's and the addon's calls are each guarded.
import { createRequire } from 'node:module';
import { isIPv6 } from 'node:net';
import { errorMessage } from '../common/errors.js';
import type { Reply } from './engine.js';

/** The engine's answer to one query: a reply now, none, or a reply later. */
export type QueryHandler = (msg: Buffer, clientIp: string) => Reply | Promise<Reply>;

interface Addon {
  readonly BATCH: number;
  readonly SLOT: number;
  readonly META: number;
  open(
    family: number,
    address: string,
    port: number,
    rcvbuf: number,
    sndbuf: number,
    inData: Buffer,
    inMeta: Buffer,
    outData: Buffer,
    outMeta: Buffer,
    onBatch: (n: number) => number,
  ): unknown;
  port(handle: unknown): number;
  sendOne(handle: unknown, data: Buffer, length: number, meta: Buffer): boolean;
  stats(handle: unknown): number[];
  close(handle: unknown): void;
}

/** Where the built addon is, from this module (src/dns or dist/dns); DROVER_UDP_BATCH_ADDON overrides it. */
const ADDON_PATH = '../../native/udp-batch/build/Release/udp_batch.node';

let loaded: { addon: Addon } | { error: string } | undefined;

function isAddon(v: unknown): v is Addon {
  if (typeof v !== 'object' || v === null) return false;
  const o = v as Record<string, unknown>;
  return (
    typeof o.open === 'function' &&
    typeof o.port === 'function' &&
    typeof o.sendOne === 'function' &&
    typeof o.stats === 'function' &&
    typeof o.close === 'function' &&
    typeof o.BATCH === 'number' &&
    typeof o.SLOT === 'number' &&
    typeof o.META === 'number'
  );
}

/** The addon, or why it cannot be used (not built, not Linux). Loaded once. */
export function batchedUdpAddon(): { addon: Addon } | { error: string } {
  if (loaded) return loaded;
  if (process.platform !== 'linux') return (loaded = { error: `batched UDP needs Linux (this is ${process.platform})` });
  try {
    const mod: unknown = createRequire(import.meta.url)(process.env.DROVER_UDP_BATCH_ADDON || ADDON_PATH);
    loaded = isAddon(mod) ? { addon: mod } : { error: 'native/udp-batch does not export the expected functions (rebuild it: npm run build:native)' };
  } catch (err) {
    loaded = { error: `native/udp-batch is not built (npm run build:native): ${errorMessage(err)}` };
  }
  return loaded;
}

export interface BatchedUdpStats {
  /** recvmmsg calls that returned datagrams. */
  batches: number;
  /** Datagrams received. */
  received: number;
  /** Replies the kernel refused (send buffer full, unreachable destination). */
  sendErrors: number;
  /** Datagrams larger than a slot (4,096 bytes), dropped. */
  truncated: number;
}

const V4_NAMES_MAX = 65_536;

function hex16(b: Uint8Array, i: number): number {
  return ((b[i] as number) << 8) | (b[i + 1] as number);
}

/** RFC 5952 text form of 16 address bytes (what node reports as a peer address). */
export function formatIPv6(b: Uint8Array): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(hex16(b, i));
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (from: number, to: number): string => groups.slice(from, to).map((g) => g.toString(16)).join(':');
  if (bestStart < 0) return hex(0, 8);
  return `${hex(0, bestStart)}::${hex(bestStart + bestLen, 8)}`;
}

export class BatchedUdpSocket {
  private readonly addon: Addon;
  private readonly handle: unknown;
  private readonly inData: Buffer;
  private readonly inMeta: Buffer;
  private readonly inMeta32: Uint32Array;
  private readonly outData: Buffer;
  private readonly outMeta: Buffer;
  private readonly outMeta32: Uint32Array;
  private readonly v4Names = new Map<number, string>();
  private closed = false;
  /** Reply slots filled in the current batch (what is sent if the batch stops half-way). */
  private filled = 0;
  readonly port: number;

  /**
   * Binds addr:port (0: a free port) and starts answering: `handler` gets every query with its client's
   * address (IPv4-mapped addresses as plain IPv4) and returns the reply.
   */
  constructor(
    addr: string,
    port: number,
    private readonly handler: QueryHandler,
    private readonly onError: (err: unknown, clientIp: string) => void,
    bufferBytes: number,
    private readonly onPortZero: () => void = () => undefined,
  ) {
    const a = batchedUdpAddon();
    if ('error' in a) throw new Error(a.error);
    this.addon = a.addon;
    const { BATCH, SLOT, META } = this.addon;
    this.inData = Buffer.alloc(BATCH * SLOT);
    this.inMeta = Buffer.alloc(BATCH * META * 4);
    this.outData = Buffer.alloc(BATCH * SLOT);
    this.outMeta = Buffer.alloc(BATCH * META * 4);
    this.inMeta32 = new Uint32Array(this.inMeta.buffer, this.inMeta.byteOffset, BATCH * META);
    this.outMeta32 = new Uint32Array(this.outMeta.buffer, this.outMeta.byteOffset, BATCH * META);
    this.handle = this.addon.open(
      isIPv6(addr) ? 6 : 4,
      addr,
      port,
      bufferBytes,
      bufferBytes,
      this.inData,
      this.inMeta,
      this.outData,
      this.outMeta,
      (n) => this.safeBatch(n),
    );
    this.port = this.addon.port(this.handle);
  }

  stats(): BatchedUdpStats {
    if (this.closed) return { batches: 0, received: 0, sendErrors: 0, truncated: 0 };
    const [batches = 0, received = 0, sendErrors = 0, truncated = 0] = this.addon.stats(this.handle);
    return { batches, received, sendErrors, truncated };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.addon.close(this.handle);
  }

  private clientIp(m: number): string {
    const meta = this.inMeta32;
    if (meta[m + 1] === 4) {
      const n = meta[m + 3] as number;
      let s = this.v4Names.get(n);
      if (s === undefined) {
        s = `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
        if (this.v4Names.size >= V4_NAMES_MAX) this.v4Names.clear();
        this.v4Names.set(n, s);
      }
      return s;
    }
    return formatIPv6(this.inMeta.subarray((m + 3) * 4, (m + 7) * 4));
  }

  /** onBatch, never throwing (an exception in the addon's callback is fatal): replies filled so far are sent. */
  private safeBatch(n: number): number {
    this.filled = 0;
    try {
      return this.onBatch(n);
    } catch (err) {
      this.onError(err, '');
      return this.filled;
    }
  }

  /** sendOne, never throwing. */
  private sendOne(buf: Buffer, peer: Buffer): void {
    if (this.closed) return;
    try {
      this.addon.sendOne(this.handle, buf, buf.length, peer);
    } catch (err) {
      this.onError(err, '');
    }
  }

  /** One batch: n datagrams in the in slots; returns how many reply slots are filled. */
  private onBatch(n: number): number {
    const { SLOT, META } = this.addon;
    const inMeta = this.inMeta32;
    const outMeta = this.outMeta32;
    let out = 0;
    for (let i = 0; i < n; i++) {
      const m = i * META;
      const len = inMeta[m] as number;
      if (len === 0 || len > SLOT) continue;
      if (inMeta[m + 2] === 0) {
        this.onPortZero();
        continue;
      }
      const off = i * SLOT;
      const msg = Buffer.from(this.inData.subarray(off, off + len));
      const ip = this.clientIp(m);
      let r: Reply | Promise<Reply>;
      try {
        r = this.handler(msg, ip);
      } catch (err) {
        this.onError(err, ip);
        continue;
      }
      if (r === null) continue;
      if (r instanceof Promise) {
        const peer = Buffer.from(this.inMeta.subarray(m * 4, (m + META) * 4));
        r.then(
          (buf) => {
            if (buf) this.sendOne(buf, peer);
          },
          (err: unknown) => this.onError(err, ip),
        );
        continue;
      }
      if (r.length > SLOT) {
        this.sendOne(r, this.inMeta.subarray(m * 4, (m + META) * 4));
        continue;
      }
      const o = out * META;
      r.copy(this.outData, out * SLOT);
      outMeta[o] = r.length;
      outMeta[o + 1] = inMeta[m + 1] as number;
      outMeta[o + 2] = inMeta[m + 2] as number;
      outMeta[o + 3] = inMeta[m + 3] as number;
      outMeta[o + 4] = inMeta[m + 4] as number;
      outMeta[o + 5] = inMeta[m + 5] as number;
      outMeta[o + 6] = inMeta[m + 6] as number;
      this.filled = ++out;
    }
    return out;
  }
}
