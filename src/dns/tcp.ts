// DNS over TCP (RFC 1035 §4.2.2 framing, RFC 7766 connection handling), our own transport: every
// complete frame goes as raw bytes to the same handler as a UDP datagram (engine.handle with tcp=true),
// so no client byte reaches a parser whose cost is not linear in the bytes received (dns2's TCPServer,
// used before, ran its bit-level Packet parser on every frame: a 14-byte header claiming 0xFFFF records
// per section blocked the event loop for over a second).
//
// Framing: a two-byte length, then the message. Bytes are copied once into the frame being assembled
// (memory follows what was received, not what a length prefix claims). A zero-length frame, or one
// shorter than a DNS header, is a malformed message: skipped without a reply (a FORMERR must echo the
// query's ID and there is none; a reply with ID 0 could be matched by a pipelining client to its own
// query 0) and counted (drover_dns_dropped_total{reason="tcp-empty-frame"|"not-a-query"}); the queries
// pipelined behind it are answered.
//
// Limits (defaults in TCP_DEFAULTS, all settable through DnsServerOptions.tcp; modelled on Unbound's):
// - idle timeout (10 s, Unbound's tcp-idle-timeout): a connection is closed when no complete query has
//   arrived for that long and none is in flight. Only a complete query restarts it, not any byte;
// - frame deadline (5 s): a frame, once its first byte has arrived, must be complete within it;
// - at most 512 concurrent connections, 64 per client address. A new connection over the total cap
//   closes the connection idle the longest (nothing in flight, no frame started) or, if there is
//   none, is refused; over the per-address cap it is refused;
// - backpressure per connection: reading stops (socket.pause) while 64 queries are in flight or more
//   than 64 KiB of replies wait for the client to read them, and resumes below half of that;
// - a global budget (2,048 queries in flight, 16 MiB of queued replies): over it, every connection
//   stops reading new frames, and when it is the queued bytes that are over, the connection holding
//   the most is closed (a client that pipelines and never reads cannot pin the server's memory).
// - fairness: a connection gets at most 16 frames or 16 KiB per turn of the event loop, then waits for
//   the next turn (so one fast pipeliner cannot delay the other clients by more than that).
// Pipelined queries are answered as they are ready, so out of order when some need recursion
// (RFC 7766 §6.2.1.1). A client's FIN (half-close) after its queries still gets every answer, then
// our side closes. A reset, a write to a closed socket or an error on it closes that connection only;
// nothing here throws out of an event handler.
import net from 'node:net';
import { errorMessage } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { plainIp } from '../model/cidr.js';
import type { Reply } from './engine.js';
import type { DnsMetrics } from './metrics.js';
import { MAX_MESSAGE } from './wire.js';

export interface TcpLimits {
  /** Close a connection when no complete query arrived for this long and none is in flight (ms). */
  idleTimeoutMs: number;
  /** A frame, once started, must be complete within this (ms). */
  frameTimeoutMs: number;
  /** Concurrent connections, all clients together. */
  maxConnections: number;
  /** Concurrent connections from one client address. */
  maxConnectionsPerClient: number;
  /** Queries of one connection handed to the engine and not answered yet; reading stops at this. */
  maxInFlightPerConnection: number;
  /** Reply bytes of one connection not yet taken by the kernel; reading stops above this. */
  maxQueuedBytesPerConnection: number;
  /** All connections' queries in flight; every connection stops reading above this. */
  maxInFlightTotal: number;
  /** All connections' queued reply bytes; above it reading stops and the heaviest connection is closed. */
  maxQueuedBytesTotal: number;
}

export const TCP_DEFAULTS: Readonly<TcpLimits> = {
  idleTimeoutMs: 10_000,
  frameTimeoutMs: 5_000,
  maxConnections: 512,
  maxConnectionsPerClient: 64,
  maxInFlightPerConnection: 64,
  maxQueuedBytesPerConnection: 64 * 1024,
  maxInFlightTotal: 2048,
  maxQueuedBytesTotal: 16 * 1024 * 1024,
};

/** A connection's share of one turn of the event loop (see TcpTransport.shareUsed). */
const FRAMES_PER_TURN = 16;
const BYTES_PER_TURN = 16 * 1024;

/** The engine's answer to one query (the same handler as for UDP, with tcp=true). */
export type TcpQueryHandler = (msg: Buffer, clientIp: string) => Reply | Promise<Reply>;

export type TcpCloseReason = 'idle' | 'frame-timeout' | 'over-cap' | 'client-cap' | 'evicted' | 'shed' | 'error' | 'shutdown';

class Conn {
  /** Bytes of the frame being assembled (its length prefix excluded). */
  parts: Buffer[] = [];
  have = 0;
  /** Length of the frame being assembled; -1: reading the prefix. */
  need = -1;
  /** First byte of a split length prefix; -1 when none. */
  hi = -1;
  /** When the frame being assembled started (ms, performance.now()); 0 when none. */
  frameStart = 0;
  /** Last complete query (or the connection's start). */
  lastQuery: number;
  inFlight = 0;
  queued = 0;
  paused = false;
  /** Stopped until the next turn of the event loop (its share of this turn is used up). */
  yielding = false;
  /** Frames and bytes handled in turn `turn` of the transport. */
  turn = -1;
  turnFrames = 0;
  turnBytes = 0;
  /** Unprocessed rest of a chunk received when reading had to stop. */
  backlog: Buffer | null = null;
  peerEnded = false;
  closed = false;

  constructor(
    readonly socket: net.Socket,
    readonly ip: string,
    now: number,
  ) {
    this.lastQuery = now;
  }

  /** Nothing started, nothing owed: may be closed to make room. */
  get idle(): boolean {
    return this.inFlight === 0 && this.queued === 0 && this.frameStart === 0 && this.backlog === null;
  }
}

export class TcpTransport {
  private readonly server: net.Server;
  private readonly conns = new Set<Conn>();
  private readonly perClient = new Map<string, number>();
  private readonly waitingForBudget = new Set<Conn>();
  private readonly limits: TcpLimits;
  private readonly sweeper: NodeJS.Timeout;
  private inFlight = 0;
  private queued = 0;
  /** Turns of the event loop (see shareUsed). */
  private turn = 0;
  private turnScheduled = false;
  private closing = false;

  constructor(
    private readonly handler: TcpQueryHandler,
    private readonly metrics: DnsMetrics,
    private readonly log: Logger,
    limits: Partial<TcpLimits> = {},
  ) {
    this.limits = { ...TCP_DEFAULTS, ...limits };
    this.server = net.createServer({ allowHalfOpen: true }, (s) => this.guard('connection', () => this.onConnection(s)));
    this.server.on('error', (err) => this.log.warn({ err: err.message }, 'TCP server error'));
    const tick = Math.max(20, Math.min(1000, Math.floor(Math.min(this.limits.idleTimeoutMs, this.limits.frameTimeoutMs) / 4)));
    this.sweeper = setInterval(() => this.guard('sweep', () => this.sweep()), tick);
    this.sweeper.unref();
  }

  /** Listens on addr:port; rejects on a bind error (EADDRINUSE…). */
  listen(addr: string, port: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      this.server.once('error', onError);
      this.server.listen(port, addr, () => {
        this.server.off('error', onError);
        resolve();
      });
    });
  }

  /** Open connections. */
  get connections(): number {
    return this.conns.size;
  }

  /** Stops listening and closes every connection. */
  close(): Promise<void> {
    this.closing = true;
    clearInterval(this.sweeper);
    const done = new Promise<void>((resolve) => {
      if (!this.server.listening) return resolve();
      this.server.close(() => resolve());
    });
    for (const c of [...this.conns]) this.drop(c, 'shutdown');
    return done;
  }

  /** Runs an event handler's body; whatever it throws is logged, never rethrown into node's loop. */
  private guard(what: string, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.log.error({ err: errorMessage(err), in: what }, 'DNS TCP transport error (contained)');
    }
  }

  private onConnection(s: net.Socket): void {
    s.on('error', () => undefined); // reported through 'close'; attached first so nothing is unhandled
    const ip = plainIp(s.remoteAddress ?? '');
    if (this.closing || ip === '') {
      s.destroy();
      return;
    }
    const L = this.limits;
    const n = this.perClient.get(ip) ?? 0;
    if (n >= L.maxConnectionsPerClient) {
      this.metrics.tcpClosed.labels('client-cap').inc();
      s.destroy();
      return;
    }
    if (this.conns.size >= L.maxConnections && !this.evictIdlest()) {
      this.metrics.tcpClosed.labels('over-cap').inc();
      s.destroy();
      return;
    }
    const c = new Conn(s, ip, performance.now());
    this.conns.add(c);
    this.perClient.set(ip, n + 1);
    s.setNoDelay(true);
    s.on('data', (chunk: Buffer) => this.guard('data', () => this.onData(c, chunk)));
    s.on('end', () => this.guard('end', () => this.onEnd(c)));
    s.on('close', () => this.guard('close', () => this.forget(c)));
  }

  /** Closes the connection idle the longest; false when every connection is busy. */
  private evictIdlest(): boolean {
    let best: Conn | undefined;
    for (const c of this.conns) if (c.idle && (!best || c.lastQuery < best.lastQuery)) best = c;
    if (!best) return false;
    this.drop(best, 'evicted');
    return true;
  }

  private onData(c: Conn, chunk: Buffer): void {
    if (c.closed) return;
    if (c.paused || c.yielding) {
      // Data already read when reading stopped: keep it for later (at most a chunk or two).
      c.backlog = c.backlog ? Buffer.concat([c.backlog, chunk]) : chunk;
      return;
    }
    this.feed(c, chunk);
  }

  /**
   * Consumes bytes: assembles frames and hands each to the engine; stops (keeping the rest) when over a
   * bound. The synchronous replies to one chunk's frames go out in one write (corked).
   */
  private feed(c: Conn, chunk: Buffer): void {
    const s = c.socket;
    s.cork();
    try {
      this.feedFrames(c, chunk);
    } finally {
      s.uncork();
    }
  }

  private feedFrames(c: Conn, chunk: Buffer): void {
    let p = 0;
    const len = chunk.length;
    while (p < len) {
      if (c.closed) return;
      if (this.blocked(c)) {
        c.backlog = p === 0 ? chunk : chunk.subarray(p);
        this.pause(c);
        return;
      }
      if (this.shareUsed(c)) {
        c.backlog = p === 0 ? chunk : chunk.subarray(p);
        this.yieldTurn(c);
        return;
      }
      if (c.need < 0) {
        if (c.frameStart === 0) c.frameStart = performance.now();
        if (c.hi < 0) {
          if (p + 1 >= len) {
            c.hi = chunk[p]!;
            return;
          }
          c.need = (chunk[p]! << 8) | chunk[p + 1]!;
          p += 2;
        } else {
          c.need = (c.hi << 8) | chunk[p]!;
          c.hi = -1;
          p += 1;
        }
        if (c.need === 0) {
          this.metrics.drop('tcp-empty-frame');
          this.frameDone(c);
          continue;
        }
      }
      const take = Math.min(c.need - c.have, len - p);
      if (c.have === 0 && take === c.need) {
        // The whole frame in this chunk: one copy (the engine may keep it while recursing; the chunk is larger).
        const msg = Buffer.allocUnsafe(take);
        chunk.copy(msg, 0, p, p + take);
        p += take;
        this.frameDone(c);
        c.turnFrames++;
        c.turnBytes += take;
        this.dispatch(c, msg);
        continue;
      }
      const part = Buffer.allocUnsafe(take);
      chunk.copy(part, 0, p, p + take);
      c.parts.push(part);
      c.have += take;
      p += take;
      if (c.have === c.need) {
        const msg = c.parts.length === 1 ? c.parts[0]! : Buffer.concat(c.parts, c.have);
        this.frameDone(c);
        c.turnFrames++;
        c.turnBytes += msg.length;
        this.dispatch(c, msg);
      }
    }
  }

  /**
   * Fairness: a connection handles at most FRAMES_PER_TURN frames or BYTES_PER_TURN bytes per turn of
   * the event loop, then stops reading until the next turn (node would otherwise read up to 32 chunks
   * of 64 KiB from one socket in a row, and a client pipelining at full speed would delay every other
   * client, UDP included, by all of it).
   */
  private shareUsed(c: Conn): boolean {
    if (c.turn !== this.turn) {
      c.turn = this.turn;
      c.turnFrames = 0;
      c.turnBytes = 0;
      if (!this.turnScheduled) {
        this.turnScheduled = true;
        setImmediate(() => {
          this.turn++;
          this.turnScheduled = false;
        });
      }
      return false;
    }
    return c.turnFrames >= FRAMES_PER_TURN || c.turnBytes >= BYTES_PER_TURN;
  }

  private yieldTurn(c: Conn): void {
    c.yielding = true;
    c.socket.pause();
    setImmediate(() =>
      this.guard('turn', () => {
        c.yielding = false;
        this.flow(c);
      }),
    );
  }

  /** Reading again (not paused for backpressure, not yielding): the kept bytes first, then the socket. */
  private flow(c: Conn): void {
    if (c.closed || c.paused || c.yielding) return;
    const rest = c.backlog;
    c.backlog = null;
    if (rest) this.feed(c, rest);
    if (c.closed || c.paused || c.yielding) return;
    if (c.peerEnded) this.maybeFinish(c);
    else c.socket.resume();
  }

  private frameDone(c: Conn): void {
    c.parts = [];
    c.have = 0;
    c.need = -1;
    c.frameStart = 0;
    c.lastQuery = performance.now();
  }

  private blocked(c: Conn): boolean {
    const L = this.limits;
    return (
      c.inFlight >= L.maxInFlightPerConnection ||
      c.queued > L.maxQueuedBytesPerConnection ||
      this.inFlight >= L.maxInFlightTotal ||
      this.queued > L.maxQueuedBytesTotal
    );
  }

  private pause(c: Conn): void {
    if (c.paused) return;
    c.paused = true;
    c.socket.pause();
    const L = this.limits;
    const reason =
      c.inFlight >= L.maxInFlightPerConnection
        ? 'in-flight'
        : c.queued > L.maxQueuedBytesPerConnection
          ? 'queued-bytes'
          : 'global-budget';
    this.metrics.tcpPaused.labels(reason).inc();
    if (reason === 'global-budget') this.waitingForBudget.add(c);
  }

  /** Resumes reading when the connection is back under half of every bound. */
  private maybeResume(c: Conn): void {
    if (!c.paused || c.closed) return;
    const L = this.limits;
    if (c.inFlight > L.maxInFlightPerConnection / 2 || c.queued > L.maxQueuedBytesPerConnection / 2) return;
    if (this.overBudget()) {
      this.waitingForBudget.add(c); // its own bounds are fine now: it waits for the others
      return;
    }
    c.paused = false;
    this.waitingForBudget.delete(c);
    this.flow(c);
  }

  /**
   * Whether connections waiting for the global budget must keep waiting: in-flight queries with
   * hysteresis (they finish by themselves), queued bytes without (shed() keeps them under the budget,
   * and waiting for half of it could wait forever on clients that never read).
   */
  private overBudget(): boolean {
    return this.inFlight > this.limits.maxInFlightTotal / 2 || this.queued > this.limits.maxQueuedBytesTotal;
  }

  /** After the global budget frees up: let waiting connections read again. */
  private budgetFreed(): void {
    if (this.waitingForBudget.size === 0 || this.overBudget()) return;
    for (const c of [...this.waitingForBudget]) this.maybeResume(c);
  }

  private dispatch(c: Conn, msg: Buffer): void {
    c.inFlight++;
    this.inFlight++;
    let r: Reply | Promise<Reply>;
    try {
      r = this.handler(msg, c.ip);
    } catch (err) {
      this.log.error({ err: errorMessage(err), client: c.ip }, 'query handling failed');
      r = null;
    }
    if (!(r instanceof Promise)) {
      this.answered(c, r);
      return;
    }
    r.then(
      (buf) => this.guard('reply', () => this.answered(c, buf)),
      (err: unknown) =>
        this.guard('reply', () => {
          this.log.error({ err: errorMessage(err), client: c.ip }, 'query handling failed');
          this.answered(c, null);
        }),
    );
  }

  private answered(c: Conn, reply: Reply): void {
    c.inFlight--;
    this.inFlight--;
    if (reply && !c.closed) this.write(c, reply);
    if (!c.closed) {
      this.maybeFinish(c);
      this.maybeResume(c);
    }
    this.budgetFreed();
  }

  private write(c: Conn, reply: Buffer): void {
    const s = c.socket;
    if (reply.length > MAX_MESSAGE) {
      this.metrics.drop('tcp-oversized');
      return;
    }
    if (s.destroyed || !s.writable) {
      this.metrics.drop('tcp-closed');
      return;
    }
    const frame = Buffer.allocUnsafe(reply.length + 2);
    frame.writeUInt16BE(reply.length, 0);
    reply.copy(frame, 2);
    const n = frame.length;
    c.queued += n;
    this.queued += n;
    s.write(frame, () => this.guard('written', () => this.written(c, n)));
    if (this.queued > this.limits.maxQueuedBytesTotal) this.shed();
  }

  private written(c: Conn, n: number): void {
    if (c.closed) return; // forget() already took its bytes off the total
    c.queued -= n;
    this.queued -= n;
    this.maybeResume(c);
    this.budgetFreed();
  }

  /** Over the global reply budget: close the connections holding the most unread replies until under it. */
  private shed(): void {
    while (this.queued > this.limits.maxQueuedBytesTotal) {
      let heaviest: Conn | undefined;
      for (const c of this.conns) if (!heaviest || c.queued > heaviest.queued) heaviest = c;
      if (!heaviest || heaviest.queued === 0) return;
      this.drop(heaviest, 'shed');
    }
  }

  private onEnd(c: Conn): void {
    c.peerEnded = true;
    this.maybeFinish(c);
  }

  /** After the client's FIN: close our side once every query read has its answer written. */
  private maybeFinish(c: Conn): void {
    if (c.closed || !c.peerEnded || c.backlog !== null || c.paused || c.yielding) return;
    // All its bytes are read: a frame cut by the FIN cannot complete (the queries before it are answered).
    if (c.need >= 0 || c.hi >= 0) {
      c.parts = [];
      c.have = 0;
      c.need = -1;
      c.hi = -1;
      c.frameStart = 0;
    }
    if (c.inFlight === 0) c.socket.end();
  }

  private sweep(): void {
    const now = performance.now();
    const L = this.limits;
    for (const c of [...this.conns]) {
      if (c.frameStart !== 0 && now - c.frameStart > L.frameTimeoutMs) {
        this.drop(c, 'frame-timeout');
      } else if (now - c.lastQuery > L.idleTimeoutMs && c.inFlight === 0) {
        // Idle, or stopped because the client does not read its replies: either way it is done.
        this.drop(c, 'idle');
      }
    }
  }

  private drop(c: Conn, reason: TcpCloseReason): void {
    if (c.closed) return;
    this.metrics.tcpClosed.labels(reason).inc();
    const s = c.socket;
    this.forget(c);
    // Closing the descriptor: a FIN when everything it sent was read, else a reset (its data is void).
    s.destroy();
  }

  /** Takes a connection out of the books (on close, or when we drop it). */
  private forget(c: Conn): void {
    if (c.closed) return;
    c.closed = true;
    this.conns.delete(c);
    this.waitingForBudget.delete(c);
    const n = (this.perClient.get(c.ip) ?? 1) - 1;
    if (n <= 0) this.perClient.delete(c.ip);
    else this.perClient.set(c.ip, n);
    this.queued -= c.queued;
    c.backlog = null;
    c.parts = [];
    // Its in-flight queries still finish (and are taken off the total in answered()).
    this.budgetFreed();
  }
}
