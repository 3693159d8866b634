// The DNS server: UDP and TCP transports around the query engine (engine.ts).
//
// Every transport hands the raw bytes of a query to engine.handle (wire.ts's parser, linear in the
// bytes received) and writes back the bytes it returns; no client byte goes through dns2.
// - TCP: our own transport (tcp.ts; RFC 7766). Not dns2's TCPServer: it ran dns2's bit-level Packet
//   parser on every frame (a 14-byte header claiming 0xFFFF records per section blocked the event loop
//   for ~1.3 s), its `send` returns undefined where its typings promise a Promise, and it has no
//   backpressure, frame deadline or connection cap. Defaults (DnsServerOptions.tcp, see tcp.ts):
//   idle timeout 10 s (reset by complete queries only), frame deadline 5 s, 512 connections (64 per
//   client address; over the cap the connection idle the longest is closed, else the new one is
//   refused), reading paused at 64 queries in flight or 64 KiB of unread replies per connection,
//   global budget 2,048 queries in flight and 16 MiB of queued replies (over it: the heaviest
//   connection is closed), at most 16 frames or 16 KiB per connection per event-loop turn (fairness).
//   A zero-length frame is skipped without a reply (tcp.ts says why).
// - UDP: the batched transport (udp-batch.ts, native/udp-batch: recvmmsg/sendmmsg, one call into
//   JavaScript per batch of up to 64 datagrams; in bench/dns.ts 1.8–2.2× the queries/s and 2.4–2.7×
//   the queries per CPU-second of the dgram socket), with a plain dgram socket as the fallback when the addon is not built.
//   Not dns2's UDPServer, which is the bottleneck twice over: it decodes
//   every datagram with its bit-level Packet parser (~20 µs; with its encoder, a ceiling near 15k
//   queries/s), and it creates its socket from a type string, so it cannot take socket options. The
//   option that matters is `lookup`: by default every `send()` to an address string goes through
//   dns.lookup, which defers the send by a tick; a synchronous lookup for the IP literals we always
//   send to measured +35% replies/s on this machine (echo server under dnsperf, one core). Parsing
//   and reply sizing (512 bytes or the EDNS size, additional dropped first, then TC=1) are wire.ts's.
//   On both UDP transports a datagram from source port 0 (which only a raw socket can send, and no
//   reply can be addressed to) is dropped and counted (drover_dns_dropped_total{reason="udp-port-zero"}),
//   and a send that fails is counted, never thrown.
// Nothing in a transport throws out of an event handler: calls into the engine, dns2-free sockets and
// the native addon are wrapped at the edge and their errors logged.
// dns2 serves as the independent encoder/decoder in the codec tests, as the client of the TCP tests and
// as the upstream server in the integration tests.
//
// Recursion loop guard: never asks 169.254.169.250, nor any address:port this server listens on
// (for a wildcard listener: loopback and local addresses on its port). Loopback upstreams are otherwise
// allowed — a host's resolver may be a local stub (127.0.0.53), and tests run upstreams on loopback —
// unless `rejectLoopbackUpstreams` is set. Containers' own `dns` entries on 127/8 are already dropped
// by the renderer (they point into the container's own network namespace).
import dgram from 'node:dgram';
import net from 'node:net';
import os from 'node:os';
import type { Registry } from 'prom-client';
import { errorMessage, ValidationError } from '../common/errors.js';
import { silentLogger, type Logger } from '../common/log.js';
import { AnswerCache } from './cache.js';
import { emptyDnsData, parseUpstream, type DnsData, type Upstream } from './data.js';
import { QueryEngine, type Reply } from './engine.js';
import { DnsMetrics } from './metrics.js';
import { ipLiteralLookup } from './lookup.js';
import { Recursor } from './recursor.js';
import { plainIp } from '../model/cidr.js';
import { TcpTransport, type TcpLimits } from './tcp.js';
import { BatchedUdpSocket, batchedUdpAddon } from './udp-batch.js';
import { UpstreamClient } from './upstream.js';
import { METADATA_IP } from './view.js';

export interface DnsServerOptions {
  data?: DnsData;
  log?: Logger;
  /** Metrics go here (a private registry otherwise). */
  registry?: Registry;
  /** The host's resolvers (`ip`, `ip:port`, `[v6]:port`), asked after a client's own. */
  hostResolvers?: readonly string[];
  /** Per-upstream timeout (ms, default 2000). */
  recurserTimeoutMs?: number;
  /** Ask the next upstream too after this much silence (ms, default 500). */
  hedgeMs?: number;
  /** Upstream answer cache size (entries, default 10000). */
  cacheMaxEntries?: number;
  /** Longest time an upstream answer is cached (s, default 300). */
  cacheMaxTtl?: number;
  /** Largest UDP reply whatever the client's EDNS size (default 4096). */
  maxUdpSize?: number;
  /** Also refuse upstreams on 127.0.0.0/8 and ::1 (default false; see the header comment). */
  rejectLoopbackUpstreams?: boolean;
  /** TCP limits (tcp.ts TCP_DEFAULTS: idle timeout, frame deadline, connection caps, backpressure bounds). */
  tcp?: Partial<TcpLimits>;
  /**
   * UDP transport: `batched` (native/udp-batch: recvmmsg/sendmmsg, one call into JavaScript per batch),
   * `dgram` (node's socket, one datagram at a time), or `auto` (batched when the addon is built, else
   * dgram). Default: the DROVER_DNS_UDP environment variable, else `auto`.
   */
  udpTransport?: UdpTransport;
}

export const UDP_TRANSPORTS = ['auto', 'batched', 'dgram'] as const;
export type UdpTransport = (typeof UDP_TRANSPORTS)[number];

export function isUdpTransport(v: string): v is UdpTransport {
  return (UDP_TRANSPORTS as readonly string[]).includes(v);
}

export interface ListenAddress {
  address: string;
  port: number;
}

/** Socket buffers for bursts of ~1-2k queries (more only adds queueing delay under overload; the kernel caps them at net.core.[rw]mem_max). */
const UDP_BUFFER_BYTES = 1024 * 1024;

interface Listener {
  address: string;
  port: number;
  udp: dgram.Socket | BatchedUdpSocket;
  tcp: TcpTransport;
}

function isLoopback(host: string): boolean {
  return host.startsWith('127.') || host === '::1';
}

function isWildcard(addr: string): boolean {
  return addr === '0.0.0.0' || addr === '::';
}

function localAddresses(): Set<string> {
  const out = new Set<string>();
  for (const list of Object.values(os.networkInterfaces())) for (const a of list ?? []) out.add(a.address);
  return out;
}

export class DnsServer {
  readonly metrics: DnsMetrics;
  private readonly log: Logger;
  private readonly engine: QueryEngine;
  private readonly cache: AnswerCache;
  private readonly client: UpstreamClient;
  private readonly listeners: Listener[] = [];
  private hostResolvers: Upstream[] = [];
  private readonly rejectLoopback: boolean;
  private readonly maxUdpSize: number;
  private readonly batched: boolean;
  private readonly tcpLimits: Partial<TcpLimits>;
  private local = new Set<string>();
  private readonly sweeper: NodeJS.Timeout;
  private closed = false;

  constructor(opts: DnsServerOptions = {}) {
    this.log = (opts.log ?? silentLogger()).child({ component: 'dns' });
    this.cache = new AnswerCache(opts.cacheMaxEntries ?? 10_000);
    this.metrics = new DnsMetrics(opts.registry, () => this.cache.size);
    this.client = new UpstreamClient({ timeoutMs: opts.recurserTimeoutMs ?? 2000, log: this.log, metrics: this.metrics });
    this.rejectLoopback = opts.rejectLoopbackUpstreams ?? false;
    this.maxUdpSize = Math.max(512, Math.min(opts.maxUdpSize ?? 4096, 65535));
    this.tcpLimits = opts.tcp ?? {};
    this.batched = this.chooseBatched(opts.udpTransport ?? process.env.DROVER_DNS_UDP ?? 'auto');
    const now = (): number => performance.now();
    const recursor = new Recursor({
      client: this.client,
      cache: this.cache,
      maxTtl: opts.cacheMaxTtl ?? 300,
      hedgeMs: opts.hedgeMs ?? 500,
      metrics: this.metrics,
      log: this.log,
      now,
    });
    this.engine = new QueryEngine(opts.data ?? emptyDnsData(), {
      recursor,
      metrics: this.metrics,
      log: this.log,
      maxUdpSize: this.maxUdpSize,
      allowUpstream: (u) => this.allowUpstream(u),
      hostResolvers: () => this.hostResolvers,
      now,
    });
    this.setHostResolvers(opts.hostResolvers ?? []);
    this.metrics.setUdpSource(() => {
      const sum = { batches: 0, received: 0, sendErrors: 0, truncated: 0 };
      for (const l of this.listeners) {
        if (!(l.udp instanceof BatchedUdpSocket)) continue;
        const st = l.udp.stats();
        sum.batches += st.batches;
        sum.received += st.received;
        sum.sendErrors += st.sendErrors;
        sum.truncated += st.truncated;
      }
      return sum;
    });
    this.metrics.setTcpSource(() => this.listeners.reduce((n, l) => n + l.tcp.connections, 0));
    this.sweeper = setInterval(() => this.cache.sweep(now()), 30_000);
    this.sweeper.unref();
  }

  private chooseBatched(transport: string): boolean {
    if (!isUdpTransport(transport)) {
      throw new ValidationError('InvalidUdpTransport', `unknown UDP transport "${transport}" (DROVER_DNS_UDP / udpTransport): use ${UDP_TRANSPORTS.join(', ')}`);
    }
    if (transport === 'dgram') return false;
    const addon = batchedUdpAddon();
    if ('addon' in addon) return true;
    if (transport === 'batched') throw new ValidationError('UdpTransportUnavailable', `UDP transport "batched" is not available: ${addon.error}`);
    this.log.info({ reason: addon.error }, 'DNS over UDP uses node dgram (batched transport unavailable)');
    return false;
  }

  /** Which UDP transport the listeners use. */
  get udpTransport(): 'batched' | 'dgram' {
    return this.batched ? 'batched' : 'dgram';
  }

  /** The data being served. */
  get data(): DnsData {
    return this.engine.current;
  }

  /** Replaces the data; the next query is answered from it. */
  setData(d: DnsData): void {
    this.engine.setData(d);
  }

  setHostResolvers(list: readonly string[]): void {
    const out: Upstream[] = [];
    for (const s of list) {
      const u = parseUpstream(s);
      if (!u) this.log.warn({ resolver: s }, 'ignoring a host resolver that is not an IP address');
      else if (!out.some((x) => x.key === u.key)) out.push(u);
    }
    this.hostResolvers = out;
    this.engine.upstreamsChanged();
  }

  set recurserTimeoutMs(ms: number) {
    this.client.timeoutMs = ms;
  }

  clearCache(): void {
    this.cache.clear();
  }

  /** Whether the loop guard lets us ask u. */
  allowUpstream(u: Upstream): boolean {
    if (u.host === METADATA_IP) return false;
    if (this.rejectLoopback && isLoopback(u.host)) return false;
    for (const l of this.listeners) {
      if (u.port !== l.port) continue;
      if (u.host === l.address) return false;
      if (isWildcard(l.address) && (isLoopback(u.host) || this.local.has(u.host))) return false;
    }
    return true;
  }

  /**
   * Answers one query as if it came from clientIp (tests and tools; the transports do the same):
   * synchronously unless it needs an upstream.
   */
  handleQuery(msg: Buffer, clientIp: string, transport: 'udp' | 'tcp' = 'udp'): Reply | Promise<Reply> {
    return this.engine.handle(msg, clientIp, transport === 'tcp');
  }

  addresses(): ListenAddress[] {
    return this.listeners.map((l) => ({ address: l.address, port: l.port }));
  }

  /** Listens on UDP and TCP at addr:port (port 0: one free port for both). Can be called again for more addresses. */
  async listen(addr: string, port: number): Promise<ListenAddress> {
    if (this.closed) throw new Error('server is closed');
    const type = net.isIPv6(addr) ? 'udp6' : 'udp4';
    for (let attempt = 0; ; attempt++) {
      const udp = this.batched ? this.openBatched(addr, port) : await this.openDgram(type, addr, port);
      const actual = udp instanceof BatchedUdpSocket ? udp.port : udp.address().port;
      const tcp = new TcpTransport((msg, ip) => this.engine.handle(msg, ip, true), this.metrics, this.log, this.tcpLimits);
      try {
        await tcp.listen(addr, actual);
      } catch (err) {
        udp.close();
        await tcp.close();
        if (port === 0 && (err as NodeJS.ErrnoException).code === 'EADDRINUSE' && attempt < 20) continue;
        throw err;
      }
      if (!(udp instanceof BatchedUdpSocket)) {
        const v6 = type === 'udp6';
        udp.on('error', (err) => this.log.warn({ err: err.message }, 'UDP socket error'));
        udp.on('message', (msg, rinfo) => this.onUdp(udp, v6, msg, rinfo));
      }
      this.listeners.push({ address: addr, port: actual, udp, tcp });
      if (isWildcard(addr)) this.local = localAddresses();
      this.engine.upstreamsChanged();
      this.log.info({ address: addr, port: actual, udp: this.udpTransport }, 'DNS server listening (UDP and TCP)');
      return { address: addr, port: actual };
    }
  }

  private async openDgram(type: 'udp4' | 'udp6', addr: string, port: number): Promise<dgram.Socket> {
    const udp = dgram.createSocket({ type, lookup: ipLiteralLookup });
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind(port, addr, () => {
        udp.off('error', reject);
        resolve();
      });
    });
    try {
      udp.setRecvBufferSize(UDP_BUFFER_BYTES);
      udp.setSendBufferSize(UDP_BUFFER_BYTES);
    } catch (err) {
      this.log.debug({ err: errorMessage(err) }, 'could not enlarge UDP socket buffers');
    }
    return udp;
  }

  private openBatched(addr: string, port: number): BatchedUdpSocket {
    return new BatchedUdpSocket(
      addr,
      port,
      (msg, ip) => this.engine.handle(msg, ip, false),
      (err, ip) => this.log.error({ err: errorMessage(err), client: ip }, 'query handling failed'),
      UDP_BUFFER_BYTES,
      () => this.metrics.drop('udp-port-zero'),
    );
  }

  private onUdp(sock: dgram.Socket, v6: boolean, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    // No reply can go to port 0 (node's send throws on it): only a raw socket sends such a datagram.
    if (rinfo.port === 0) {
      this.metrics.drop('udp-port-zero');
      return;
    }
    const ip = v6 ? plainIp(rinfo.address) : rinfo.address;
    let r: Reply | Promise<Reply>;
    try {
      r = this.engine.handle(msg, ip, false);
    } catch (err) {
      this.log.error({ err: errorMessage(err), client: ip }, 'query handling failed');
      return;
    }
    if (r === null) return;
    if (!(r instanceof Promise)) {
      this.sendUdp(sock, r, rinfo);
      return;
    }
    r.then(
      (buf) => {
        if (buf && !this.closed) this.sendUdp(sock, buf, rinfo);
      },
      (err: unknown) => this.log.error({ err: errorMessage(err), client: ip }, 'query handling failed'),
    );
  }

  /** dgram send that cannot throw: a synchronous throw (bad port, closed socket) or a failed send is counted. */
  private sendUdp(sock: dgram.Socket, buf: Buffer, rinfo: dgram.RemoteInfo): void {
    try {
      sock.send(buf, rinfo.port, rinfo.address, (err) => {
        if (err) this.metrics.drop('udp-send-failed');
      });
    } catch {
      this.metrics.drop('udp-send-failed');
    }
  }

  /** Stops listening, drops TCP connections and upstream sockets. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.sweeper);
    this.client.close();
    await Promise.all(
      this.listeners.map(async (l) => {
        const udp = l.udp;
        if (udp instanceof BatchedUdpSocket) udp.close();
        else await new Promise<void>((resolve) => udp.close(() => resolve()));
        await l.tcp.close();
      }),
    );
    this.listeners.length = 0;
    this.log.info('DNS server closed');
  }
}
