// A load client for zero-drop tests and benchmarks: HTTP/1.1 GET requests at a FIXED rate (open loop:
// request k is due at start + k / rate, whether or not earlier ones have answered), each on a NEW TCP
// connection (`Connection: close`, raw node:net, no agent, no pooling), for a duration or until stopped.
//
// Per request it records ok or the kind of failure — refused (ECONNREFUSED), reset (ECONNRESET/EPIPE),
// timeout (no complete answer in `timeoutMs`), closed (the connection ended before a complete response:
// what a listener closed with connections in its queue looks like), status (not 2xx), body (`expectBody`
// said no), error (anything else) — with its time since the start, and the latency of the ok ones.
//
// The client must not be the bottleneck: the result says how many requests were due, how many were sent,
// how many were shed because `maxInFlight` were already open (never silently: `shed` > 0 means the rate
// was not offered), the achieved rate (sent ÷ duration) and the worst scheduling lag (how late the event
// loop sent a due request). A caller that needs a rate asserts `achievedRate` and `shed === 0`.
import { connect } from 'node:net';
import { performance } from 'node:perf_hooks';

export type LoadFailureKind = 'refused' | 'reset' | 'timeout' | 'closed' | 'status' | 'body' | 'error';

export interface LoadFailure {
  /** Milliseconds since the load started (when the request was sent). */
  atMs: number;
  kind: LoadFailureKind;
  message: string;
}

export interface LoadOptions {
  port: number;
  /** Address to connect to; default 127.0.0.1. */
  address?: string;
  /** Source address (e.g. another 127.0.0.x to spread ephemeral ports); default: the kernel's choice. */
  localAddress?: string;
  /** Host header; default `localhost`. */
  host?: string;
  /** Request path, or a function of the request's index; default `/`. */
  path?: string | ((index: number) => string);
  /** Requests per second, scheduled by time. */
  rate: number;
  /** Stop scheduling after this long; absent: until stop(). */
  durationMs?: number;
  /** At most this many requests open at once; a due request beyond it is shed (counted). Default max(256, rate). */
  maxInFlight?: number;
  /** A request without a complete answer after this long fails as `timeout`; default 5000. */
  timeoutMs?: number;
  /** A 2xx response whose body this rejects fails as `body`. */
  expectBody?: RegExp | ((body: string) => boolean);
  /** Failures kept in `failures` (all are counted); default 1000. */
  keepFailures?: number;
  /** An ok request at least this slow is counted in `slow` (default 1000 ms: the kernel's first SYN
   * retransmission, i.e. a connection attempt that was dropped once and retried). */
  slowMs?: number;
}

export interface LoadResult {
  targetRate: number;
  /** Requests due by the schedule. */
  due: number;
  sent: number;
  /** Due but not sent: `maxInFlight` were open. */
  shed: number;
  ok: number;
  failed: number;
  durationMs: number;
  /** sent ÷ duration, per second. */
  achievedRate: number;
  /** The latest a due request was sent after its due time (event-loop lag), ms. */
  maxLagMs: number;
  /** Latency of the ok requests (connect to complete response), ms. */
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Ok requests that took at least `slowMs`, with the time they were sent (first `keepFailures`). */
  slow: number;
  slowMs: number;
  slowAtMs: number[];
  kinds: Partial<Record<LoadFailureKind, number>>;
  /** The first `keepFailures` failures, in the order they happened. */
  failures: LoadFailure[];
}

export interface LoadRun {
  /** Stops scheduling, waits for the open requests, returns the result. */
  stop(): Promise<LoadResult>;
  /** Resolves when `durationMs` has passed and every request has ended (never, without a duration, until stop()). */
  done: Promise<LoadResult>;
  /** Counts so far. */
  progress(): { sent: number; ok: number; failed: number; shed: number; inFlight: number };
}

type Outcome = { ok: true; ms: number } | { ok: false; kind: LoadFailureKind; message: string };

interface Parsed {
  status: number;
  body: string;
}

/** A complete HTTP/1.x response in `buf`, or undefined (incomplete). `ended`: no more bytes will come. */
export function parseResponse(buf: Buffer, ended: boolean): Parsed | undefined {
  const headEnd = buf.indexOf('\r\n\r\n');
  if (headEnd < 0) return undefined;
  const head = buf.subarray(0, headEnd).toString('latin1');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(head);
  if (!m) throw new Error(`not an HTTP response: ${JSON.stringify(head.slice(0, 40))}`);
  const status = Number(m[1]);
  const rest = buf.subarray(headEnd + 4);
  const cl = /\r\ncontent-length:\s*(\d+)/i.exec(head);
  if (cl) {
    const n = Number(cl[1]);
    return rest.length >= n ? { status, body: rest.subarray(0, n).toString('utf8') } : undefined;
  }
  if (/\r\ntransfer-encoding:[^\r]*chunked/i.test(head)) {
    const parts: Buffer[] = [];
    let at = 0;
    for (;;) {
      const eol = rest.indexOf('\r\n', at);
      if (eol < 0) return undefined;
      const size = parseInt(rest.subarray(at, eol).toString('latin1'), 16);
      if (!Number.isFinite(size)) throw new Error('bad chunk size');
      if (size === 0) return { status, body: Buffer.concat(parts).toString('utf8') };
      if (rest.length < eol + 2 + size + 2) return undefined;
      parts.push(rest.subarray(eol + 2, eol + 2 + size));
      at = eol + 2 + size + 2;
    }
  }
  if (status === 204 || status === 304 || (status >= 100 && status < 200)) return { status, body: '' };
  // Delimited by the end of the connection.
  return ended ? { status, body: rest.toString('utf8') } : undefined;
}

function errKind(err: NodeJS.ErrnoException): LoadFailureKind {
  if (err.code === 'ECONNREFUSED') return 'refused';
  if (err.code === 'ECONNRESET' || err.code === 'EPIPE') return 'reset';
  return 'error';
}

function oneRequest(o: LoadOptions, path: string): Promise<Outcome> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const chunks: Buffer[] = [];
    let settled = false;
    const s = connect({ port: o.port, host: o.address ?? '127.0.0.1', ...(o.localAddress ? { localAddress: o.localAddress } : {}), noDelay: true });
    const finish = (r: Outcome): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      s.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => finish({ ok: false, kind: 'timeout', message: `no complete response within ${o.timeoutMs ?? 5000} ms` }), o.timeoutMs ?? 5000);
    const check = (ended: boolean): void => {
      if (settled) return;
      const buf = Buffer.concat(chunks);
      let p: Parsed | undefined;
      try {
        p = parseResponse(buf, ended);
      } catch (err) {
        finish({ ok: false, kind: 'error', message: (err as Error).message });
        return;
      }
      if (!p) {
        if (ended) finish({ ok: false, kind: 'closed', message: buf.length ? `connection closed after ${buf.length} bytes of an incomplete response` : 'connection closed without a response' });
        return;
      }
      if (p.status < 200 || p.status > 299) finish({ ok: false, kind: 'status', message: `HTTP ${p.status}: ${p.body.slice(0, 80)}` });
      else if (o.expectBody && !(o.expectBody instanceof RegExp ? o.expectBody.test(p.body) : o.expectBody(p.body))) {
        finish({ ok: false, kind: 'body', message: `unexpected body ${JSON.stringify(p.body.slice(0, 80))}` });
      } else finish({ ok: true, ms: performance.now() - t0 });
    };
    s.on('connect', () => {
      s.write(`GET ${path} HTTP/1.1\r\nHost: ${o.host ?? 'localhost'}\r\nUser-Agent: drover-load\r\nConnection: close\r\n\r\n`);
    });
    s.on('data', (d: Buffer) => {
      chunks.push(d);
      check(false);
    });
    s.on('end', () => check(true));
    s.on('error', (err: NodeJS.ErrnoException) => finish({ ok: false, kind: errKind(err), message: `${err.code ?? ''} ${err.message}`.trim() }));
    s.on('close', () => check(true));
  });
}

function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? NaN;
}

/** Starts a fixed-rate, new-connection-per-request load (see the file comment). */
export function startLoad(o: LoadOptions): LoadRun {
  if (!(o.rate > 0)) throw new Error(`load client: rate must be > 0 (got ${o.rate})`);
  const maxInFlight = o.maxInFlight ?? Math.max(256, Math.ceil(o.rate));
  const keep = o.keepFailures ?? 1000;
  const pathOf = typeof o.path === 'function' ? o.path : () => (o.path as string | undefined) ?? '/';
  const start = performance.now();
  let due = 0;
  let sent = 0;
  let shed = 0;
  let ok = 0;
  let failed = 0;
  let maxLagMs = 0;
  let stoppedAt: number | undefined;
  let lat = new Float64Array(1024);
  const kinds: Partial<Record<LoadFailureKind, number>> = {};
  const failures: LoadFailure[] = [];
  const open = new Set<Promise<void>>();
  let timer: NodeJS.Timeout | undefined;

  const slowMs = o.slowMs ?? 1000;
  let slow = 0;
  const slowAtMs: number[] = [];
  const record = (r: Outcome, atMs: number): void => {
    if (r.ok) {
      if (r.ms >= slowMs) {
        slow++;
        if (slowAtMs.length < keep) slowAtMs.push(Math.round(atMs));
      }
      if (ok === lat.length) {
        const bigger = new Float64Array(lat.length * 2);
        bigger.set(lat);
        lat = bigger;
      }
      lat[ok++] = r.ms;
      return;
    }
    failed++;
    kinds[r.kind] = (kinds[r.kind] ?? 0) + 1;
    if (failures.length < keep) failures.push({ atMs: Math.round(atMs * 10) / 10, kind: r.kind, message: r.message });
  };

  const tick = (): void => {
    timer = undefined;
    const now = performance.now();
    const until = o.durationMs !== undefined ? Math.min(now, start + o.durationMs) : now;
    const shouldBe = Math.floor(((until - start) * o.rate) / 1000) + 1;
    while (due < shouldBe) {
      const dueAt = start + (due * 1000) / o.rate;
      due++;
      maxLagMs = Math.max(maxLagMs, now - dueAt);
      if (open.size >= maxInFlight) {
        shed++;
        continue;
      }
      const index = sent++;
      const atMs = now - start;
      const p = oneRequest(o, pathOf(index)).then((r) => record(r, atMs));
      open.add(p);
      void p.finally(() => open.delete(p));
    }
    if (o.durationMs !== undefined && now >= start + o.durationMs) {
      stoppedAt = start + o.durationMs;
      return;
    }
    if (stoppedAt === undefined) timer = setTimeout(tick, Math.max(1, Math.min(5, start + (due * 1000) / o.rate - performance.now())));
  };

  const result = (): LoadResult => {
    const end = stoppedAt ?? performance.now();
    const durationMs = end - start;
    const sorted = lat.slice(0, ok).sort();
    return {
      targetRate: o.rate,
      due,
      sent,
      shed,
      ok,
      failed,
      durationMs: Math.round(durationMs),
      achievedRate: Math.round((sent * 1000) / Math.max(1, durationMs)),
      maxLagMs: Math.round(maxLagMs * 10) / 10,
      p50Ms: Math.round(percentile(sorted, 0.5) * 1000) / 1000,
      p99Ms: Math.round(percentile(sorted, 0.99) * 1000) / 1000,
      maxMs: Math.round((sorted[sorted.length - 1] ?? NaN) * 1000) / 1000,
      slow,
      slowMs,
      slowAtMs: [...slowAtMs],
      kinds: { ...kinds },
      failures: [...failures],
    };
  };

  const drain = async (): Promise<LoadResult> => {
    while (open.size) await Promise.all([...open]);
    return result();
  };

  let resolveDone: (r: LoadResult) => void = () => undefined;
  const done = new Promise<LoadResult>((r) => (resolveDone = r));
  if (o.durationMs !== undefined) {
    const watch = (): void => {
      if (stoppedAt !== undefined) void drain().then(resolveDone);
      else setTimeout(watch, 20);
    };
    setTimeout(watch, o.durationMs);
  }
  tick();

  return {
    async stop() {
      if (stoppedAt === undefined) {
        if (timer) clearTimeout(timer);
        timer = undefined;
        stoppedAt = performance.now();
      }
      const r = await drain();
      resolveDone(r);
      return r;
    },
    done,
    progress: () => ({ sent, ok, failed, shed, inFlight: open.size }),
  };
}

/** One line: "N ok, M failed (kinds), X req/s achieved of Y, p50/p99". */
export function describeLoad(r: LoadResult): string {
  const kinds = Object.entries(r.kinds)
    .map(([k, n]) => `${k} ${n}`)
    .join(', ');
  return `${r.ok} ok, ${r.failed} failed${kinds ? ` (${kinds})` : ''}, ${r.achievedRate} req/s achieved of ${r.targetRate} (shed ${r.shed}, max lag ${r.maxLagMs} ms), p50 ${r.p50Ms} ms, p99 ${r.p99Ms} ms, max ${r.maxMs} ms, ${r.slow} slow (≥ ${r.slowMs} ms), over ${(r.durationMs / 1000).toFixed(1)} s`;
}
