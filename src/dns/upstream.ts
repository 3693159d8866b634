// Exchanges with upstream resolvers: UDP first, TCP when the UDP reply is truncated.
//
// Why not dns2's UDPClient/TCPClient: they decode replies into dns2 Packets (slow, and lossy for the
// TTL patching the cache does) and open a socket per query. Here a small pool of UDP sockets per
// address family (random source ports, random 16-bit ids, replies accepted only from the address and
// port asked and only when the question matches) serves every upstream query; TCP is one connection
// per exchange (rare: truncated replies only).
import dgram from 'node:dgram';
import net from 'node:net';
import { randomInt } from 'node:crypto';
import { errorMessage } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import type { Upstream } from './data.js';
import type { DnsMetrics } from './metrics.js';
import { buildQuery, FLAG_TC, parseResponse, type ParsedResponse } from './wire.js';
import { ipLiteralLookup } from './lookup.js';

/** What we advertise to upstreams: fits an unfragmented IPv6 packet (DNS flag day 2020). */
export const UPSTREAM_UDP_PAYLOAD = 1232;
const POOL_SIZE = 4;

export interface Exchange {
  readonly buf: Buffer;
  readonly parsed: ParsedResponse;
  readonly transport: 'udp' | 'tcp';
}

export class UpstreamError extends Error {
  constructor(
    message: string,
    readonly kind: 'timeout' | 'network' | 'malformed',
  ) {
    super(message);
  }
}

interface Pending {
  up: Upstream;
  qname: string;
  qtype: number;
  qclass: number;
  timer: NodeJS.Timeout;
  resolve: (r: { buf: Buffer; parsed: ParsedResponse } | 'truncated') => void;
  reject: (e: Error) => void;
}

class PooledSocket {
  readonly pending = new Map<number, Pending>();
  closed = false;

  constructor(
    readonly sock: dgram.Socket,
    onDead: (s: PooledSocket, err: Error) => void,
  ) {
    sock.on('message', (msg, rinfo) => this.onMessage(msg, rinfo));
    sock.on('error', (err) => onDead(this, err));
    sock.unref();
  }

  private onMessage(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (msg.length < 12) return;
    const p = this.pending.get(msg.readUInt16BE(0));
    if (!p || rinfo.address !== p.up.host || rinfo.port !== p.up.port) return;
    if (msg.readUInt16BE(2) & FLAG_TC) {
      this.settle(msg.readUInt16BE(0), p);
      p.resolve('truncated');
      return;
    }
    let parsed: ParsedResponse;
    try {
      parsed = parseResponse(msg);
    } catch {
      return; // not the reply (or a broken one): keep waiting until the timeout
    }
    if (parsed.qname !== p.qname || parsed.qtype !== p.qtype || parsed.qclass !== p.qclass) return;
    this.settle(parsed.id, p);
    p.resolve({ buf: msg, parsed });
  }

  settle(id: number, p: Pending): void {
    clearTimeout(p.timer);
    this.pending.delete(id);
  }

  failAll(err: Error): void {
    for (const [id, p] of this.pending) {
      this.settle(id, p);
      p.reject(err);
    }
  }
}

export interface UpstreamClientOptions {
  timeoutMs: number;
  log: Logger;
  metrics?: DnsMetrics;
}

export class UpstreamClient {
  private readonly pools: { 4: PooledSocket[]; 6: PooledSocket[] } = { 4: [], 6: [] };
  private closed = false;

  constructor(private readonly opts: UpstreamClientOptions) {}

  get timeoutMs(): number {
    return this.opts.timeoutMs;
  }

  set timeoutMs(ms: number) {
    this.opts.timeoutMs = ms;
  }

  private socket(family: 4 | 6): PooledSocket {
    const pool = this.pools[family];
    if (pool.length < POOL_SIZE) {
      const sock = dgram.createSocket({ type: family === 4 ? 'udp4' : 'udp6', lookup: ipLiteralLookup });
      const ps = new PooledSocket(sock, (s, err) => this.dead(family, s, err));
      pool.push(ps);
      return ps;
    }
    return pool[randomInt(pool.length)]!;
  }

  private dead(family: 4 | 6, s: PooledSocket, err: Error): void {
    this.opts.log.warn({ err: err.message }, 'upstream UDP socket failed; replacing it');
    const pool = this.pools[family];
    const i = pool.indexOf(s);
    if (i >= 0) pool.splice(i, 1);
    s.failAll(new UpstreamError(err.message, 'network'));
    if (!s.closed) {
      s.closed = true;
      try {
        s.sock.close();
      } catch {
        // already closed
      }
    }
  }

  /** One exchange with one upstream: UDP, then TCP if the UDP reply is truncated. */
  async exchange(up: Upstream, question: Buffer, qname: string, qtype: number, qclass: number): Promise<Exchange> {
    const t0 = performance.now();
    let transport: 'udp' | 'tcp' = 'udp';
    try {
      const r = await this.udp(up, question, qname, qtype, qclass);
      if (r !== 'truncated') {
        this.observe('udp', 'ok', t0);
        return { ...r, transport };
      }
      transport = 'tcp';
      const t = await this.tcp(up, question, qname, qtype, qclass);
      this.observe('tcp', 'ok', t0);
      return { ...t, transport };
    } catch (err) {
      this.observe(transport, err instanceof UpstreamError ? err.kind : 'network', t0);
      throw err;
    }
  }

  private observe(transport: string, outcome: string, t0: number): void {
    this.opts.metrics?.upstreamDuration.labels(transport, outcome).observe((performance.now() - t0) / 1000);
  }

  private udp(up: Upstream, question: Buffer, qname: string, qtype: number, qclass: number): Promise<{ buf: Buffer; parsed: ParsedResponse } | 'truncated'> {
    if (this.closed) return Promise.reject(new UpstreamError('client closed', 'network'));
    const ps = this.socket(up.family);
    let id = randomInt(0x10000);
    for (let i = 0; ps.pending.has(id) && i < 16; i++) id = randomInt(0x10000);
    if (ps.pending.has(id)) return Promise.reject(new UpstreamError('too many queries in flight', 'network'));
    const msg = buildQuery(id, question, UPSTREAM_UDP_PAYLOAD);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        ps.pending.delete(id);
        reject(new UpstreamError(`no answer from ${up.key} within ${this.opts.timeoutMs} ms`, 'timeout'));
      }, this.opts.timeoutMs);
      ps.pending.set(id, { up, qname, qtype, qclass, timer, resolve, reject });
      ps.sock.send(msg, up.port, up.host, (err) => {
        if (!err) return;
        const p = ps.pending.get(id);
        if (p) {
          ps.settle(id, p);
          reject(new UpstreamError(`send to ${up.key}: ${err.message}`, 'network'));
        }
      });
    });
  }

  private tcp(up: Upstream, question: Buffer, qname: string, qtype: number, qclass: number): Promise<{ buf: Buffer; parsed: ParsedResponse }> {
    const id = randomInt(0x10000);
    const msg = buildQuery(id, question, 0);
    const frame = Buffer.allocUnsafe(2 + msg.length);
    frame.writeUInt16BE(msg.length, 0);
    msg.copy(frame, 2);
    return new Promise((resolve, reject) => {
      const sock = net.connect({ host: up.host, port: up.port });
      let buf: Buffer = Buffer.alloc(0);
      let done = false;
      const finish = (err: Error | null, r?: { buf: Buffer; parsed: ParsedResponse }): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        sock.destroy();
        if (err) reject(err);
        else resolve(r!);
      };
      const timer = setTimeout(
        () => finish(new UpstreamError(`no TCP answer from ${up.key} within ${this.opts.timeoutMs} ms`, 'timeout')),
        this.opts.timeoutMs,
      );
      sock.on('connect', () => sock.write(frame));
      sock.on('data', (chunk: Buffer) => {
        buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
        if (buf.length < 2) return;
        const len = buf.readUInt16BE(0);
        if (buf.length < 2 + len) return;
        const body = buf.subarray(2, 2 + len);
        try {
          const parsed = parseResponse(body);
          if (parsed.id !== id || parsed.qname !== qname || parsed.qtype !== qtype || parsed.qclass !== qclass) {
            finish(new UpstreamError(`TCP reply from ${up.key} does not match the query`, 'malformed'));
          } else {
            finish(null, { buf: Buffer.from(body), parsed });
          }
        } catch (err) {
          finish(new UpstreamError(`bad TCP reply from ${up.key}: ${errorMessage(err)}`, 'malformed'));
        }
      });
      sock.on('error', (err) => finish(new UpstreamError(`TCP ${up.key}: ${err.message}`, 'network')));
      sock.on('close', () => finish(new UpstreamError(`TCP ${up.key} closed before answering`, 'network')));
    });
  }

  close(): void {
    this.closed = true;
    for (const fam of [4, 6] as const) {
      for (const s of this.pools[fam]) {
        s.failAll(new UpstreamError('client closed', 'network'));
        s.closed = true;
        try {
          s.sock.close();
        } catch {
          // already closed
        }
      }
      this.pools[fam] = [];
    }
  }
}
