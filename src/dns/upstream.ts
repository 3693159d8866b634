// Exchanges with upstream resolvers: UDP first, TCP when the UDP reply is truncated.
//
// Every exchange has its own sockets. The UDP query leaves from a fresh socket bound to an ephemeral
// port the kernel picks at random, carries a random 16-bit id, and is connect()ed to the upstream, so
// the kernel drops datagrams from any other address or port (and an ICMP "port unreachable" fails the
// exchange at once instead of after the timeout). A reply is accepted only when its source address and
// port, its id and its question (name compared without regard to case, type, class) are the query's;
// anything else is ignored and the exchange keeps waiting until its timeout. The socket is closed as
// soon as the exchange settles. A spoofer who cannot see the query must guess port and id (≈ 30
// bits), not just the id against a handful of long-lived pooled ports (≈ 18 bits) as before. TCP (only
// after a truncated UDP reply) is one connection per exchange, with its own random id.
//
// Why not dns2's UDPClient/TCPClient: they decode replies into dns2 Packets (slow, and lossy for the
// TTL patching the cache does).
//
// Sockets cost file descriptors, and a flood of cache misses must not exhaust them: at most
// `maxSockets` exchanges are in flight at once; beyond that an exchange fails at once (the query gets
// SERVFAIL, nothing is cached) and is counted in drover_dns_upstream_rejected_total{reason="busy"}.
// A socket that cannot be opened (EMFILE, ENFILE, ENOBUFS…) fails its exchange the same way
// (reason "socket-error") and never the process.
import dgram from 'node:dgram';
import net from 'node:net';
import { randomInt } from 'node:crypto';
import { Counter, Gauge } from 'prom-client';
import { errorMessage } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import type { Upstream } from './data.js';
import type { DnsMetrics } from './metrics.js';
import { buildQuery, FLAG_QR, FLAG_TC, HEADER_LEN, parseResponse, responseQuestion, type ParsedResponse } from './wire.js';
import { ipLiteralLookup } from './lookup.js';

/** What we advertise to upstreams: fits an unfragmented IPv6 packet (DNS flag day 2020). */
export const UPSTREAM_UDP_PAYLOAD = 1232;
/** Default bound of exchanges (so sockets) in flight at once. */
export const DEFAULT_MAX_UPSTREAM_SOCKETS = 1024;

export interface Exchange {
  readonly buf: Buffer;
  readonly parsed: ParsedResponse;
  readonly transport: 'udp' | 'tcp';
}

export type UpstreamErrorKind = 'timeout' | 'network' | 'malformed' | 'busy';

export class UpstreamError extends Error {
  constructor(
    message: string,
    readonly kind: UpstreamErrorKind,
  ) {
    super(message);
  }
}

type UdpResult = { buf: Buffer; parsed: ParsedResponse } | 'truncated';

export interface UpstreamClientOptions {
  timeoutMs: number;
  log: Logger;
  metrics?: DnsMetrics;
  /** Exchanges in flight at once (default 1024); more fail at once with kind 'busy'. */
  maxSockets?: number;
}

/** Whether a reply's question is the one sent: name (case-insensitive), type and class. */
function sameQuestion(p: { readonly qname: string; readonly qtype: number; readonly qclass: number }, qname: string, qtype: number, qclass: number): boolean {
  return p.qname === qname && p.qtype === qtype && p.qclass === qclass;
}

/** The exchange's counters, registered once per metrics registry. */
interface UpstreamCounters {
  rejected: Counter<'reason'>;
}

function countersOf(metrics: DnsMetrics | undefined, open: () => number): UpstreamCounters | undefined {
  if (!metrics) return undefined;
  const reg = metrics.registry;
  const name = 'drover_dns_upstream_rejected_total';
  const existing = reg.getSingleMetric(name);
  const rejected =
    existing instanceof Counter
      ? (existing as Counter<'reason'>)
      : new Counter({
          name,
          help: 'Upstream exchanges not attempted, by reason (busy: the in-flight bound was reached; socket-error: no socket could be opened, e.g. EMFILE)',
          labelNames: ['reason'],
          registers: [reg],
        });
  if (!reg.getSingleMetric('drover_dns_upstream_sockets')) {
    new Gauge({
      name: 'drover_dns_upstream_sockets',
      help: 'Upstream exchanges (one socket each) in flight',
      registers: [reg],
      collect() {
        this.set(open());
      },
    });
  }
  return { rejected };
}

export class UpstreamClient {
  private readonly live = new Set<(err: Error) => void>();
  private readonly maxSockets: number;
  private readonly counters: UpstreamCounters | undefined;
  private inFlight = 0;
  private closed = false;
  private lastSocketWarn = -Infinity;
  private socketWarnsSuppressed = 0;

  constructor(private readonly opts: UpstreamClientOptions) {
    this.maxSockets = Math.max(1, Math.floor(opts.maxSockets ?? DEFAULT_MAX_UPSTREAM_SOCKETS));
    this.counters = countersOf(opts.metrics, () => this.inFlight);
  }

  get timeoutMs(): number {
    return this.opts.timeoutMs;
  }

  set timeoutMs(ms: number) {
    this.opts.timeoutMs = ms;
  }

  /** Exchanges in flight (each holds one socket). */
  get openSockets(): number {
    return this.inFlight;
  }

  /** One exchange with one upstream: UDP, then TCP if the UDP reply is truncated. */
  async exchange(up: Upstream, question: Buffer, qname: string, qtype: number, qclass: number): Promise<Exchange> {
    if (this.closed) throw new UpstreamError('client closed', 'network');
    if (this.inFlight >= this.maxSockets) {
      this.counters?.rejected.labels('busy').inc();
      throw new UpstreamError(`${this.maxSockets} upstream queries already in flight`, 'busy');
    }
    this.inFlight++;
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
    } finally {
      this.inFlight--;
    }
  }

  private observe(transport: string, outcome: string, t0: number): void {
    this.opts.metrics?.upstreamDuration.labels(transport, outcome).observe((performance.now() - t0) / 1000);
  }

  private socketError(up: Upstream, what: string, err: Error, opened: boolean): UpstreamError {
    if (!opened) {
      this.counters?.rejected.labels('socket-error').inc();
      // At most one line per 5 s: under fd exhaustion every cache miss fails the same way.
      const now = performance.now();
      if (now - this.lastSocketWarn >= 5000) {
        this.opts.log.warn(
          { upstream: up.key, err: err.message, alsoSince: this.socketWarnsSuppressed },
          'cannot open an upstream socket (the query gets SERVFAIL); raise the open-files limit (ulimit -n) if this persists',
        );
        this.lastSocketWarn = now;
        this.socketWarnsSuppressed = 0;
      } else this.socketWarnsSuppressed++;
    }
    return new UpstreamError(`${what} ${up.key}: ${err.message}`, 'network');
  }

  private udp(up: Upstream, question: Buffer, qname: string, qtype: number, qclass: number): Promise<UdpResult> {
    const id = randomInt(0x10000);
    const msg = buildQuery(id, question, UPSTREAM_UDP_PAYLOAD);
    return new Promise<UdpResult>((resolve, reject) => {
      let sock: dgram.Socket;
      try {
        sock = dgram.createSocket({ type: up.family === 4 ? 'udp4' : 'udp6', lookup: ipLiteralLookup });
      } catch (err) {
        reject(this.socketError(up, 'UDP socket for', err instanceof Error ? err : new Error(String(err)), false));
        return;
      }
      let done = false;
      let connected = false;
      const finish = (err: Error | null, r?: UdpResult): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.live.delete(abort);
        try {
          sock.close();
        } catch {
          // never bound, or already closed
        }
        if (err) reject(err);
        else resolve(r!);
      };
      const abort = (err: Error): void => finish(err);
      this.live.add(abort);
      const timer = setTimeout(
        () => finish(new UpstreamError(`no answer from ${up.key} within ${this.opts.timeoutMs} ms`, 'timeout')),
        this.opts.timeoutMs,
      );
      sock.on('error', (err) => finish(this.socketError(up, connected ? 'UDP' : 'UDP socket for', err, connected)));
      sock.on('message', (reply, rinfo) => {
        if (rinfo.address !== up.host || rinfo.port !== up.port) return;
        if (reply.length < HEADER_LEN || reply.readUInt16BE(0) !== id) return;
        const flags = reply.readUInt16BE(2);
        if (!(flags & FLAG_QR)) return;
        if (flags & FLAG_TC) {
          // A truncated reply may be cut anywhere: only its question has to be readable and match.
          let q;
          try {
            q = responseQuestion(reply);
          } catch {
            return;
          }
          if (sameQuestion(q, qname, qtype, qclass)) finish(null, 'truncated');
          return;
        }
        let parsed: ParsedResponse;
        try {
          parsed = parseResponse(reply);
        } catch {
          return; // not the reply (or a broken one): keep waiting until the timeout
        }
        if (sameQuestion(parsed, qname, qtype, qclass)) finish(null, { buf: reply, parsed });
      });
      try {
        sock.connect(up.port, up.host, (err?: Error) => {
          if (done) return;
          if (err) {
            finish(this.socketError(up, 'UDP connect to', err, false));
            return;
          }
          connected = true;
          sock.send(msg, (e) => {
            if (e) finish(new UpstreamError(`send to ${up.key}: ${e.message}`, 'network'));
          });
        });
      } catch (err) {
        finish(this.socketError(up, 'UDP connect to', err instanceof Error ? err : new Error(String(err)), false));
      }
    });
  }

  private tcp(up: Upstream, question: Buffer, qname: string, qtype: number, qclass: number): Promise<{ buf: Buffer; parsed: ParsedResponse }> {
    const id = randomInt(0x10000);
    const msg = buildQuery(id, question, 0);
    const frame = Buffer.allocUnsafe(2 + msg.length);
    frame.writeUInt16BE(msg.length, 0);
    msg.copy(frame, 2);
    return new Promise((resolve, reject) => {
      if (this.closed) {
        reject(new UpstreamError('client closed', 'network'));
        return;
      }
      let sock: net.Socket;
      try {
        sock = net.connect({ host: up.host, port: up.port });
      } catch (err) {
        reject(this.socketError(up, 'TCP socket for', err instanceof Error ? err : new Error(String(err)), false));
        return;
      }
      let buf: Buffer = Buffer.alloc(0);
      let done = false;
      const finish = (err: Error | null, r?: { buf: Buffer; parsed: ParsedResponse }): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.live.delete(finish);
        sock.destroy();
        if (err) reject(err);
        else resolve(r!);
      };
      this.live.add(finish);
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
          if (parsed.id !== id || !sameQuestion(parsed, qname, qtype, qclass)) {
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

  /** Fails every exchange in flight and refuses new ones. */
  close(): void {
    this.closed = true;
    const err = new UpstreamError('client closed', 'network');
    for (const abort of [...this.live]) abort(err);
  }
}
