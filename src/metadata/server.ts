// The metadata HTTP server (rancher-metadata compatible). Serves the current answers to clients identified
// by their TCP source address, with long polling (`?wait=true&value=`) and ETag waits
// (`?wait_for_change=true&last_etag=`). Responses are rendered once per answers update and cached.
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import Koa from 'koa';
import { Registry } from 'prom-client';
import type { Logger } from '../common/log.js';
import { plainIp } from '../model/cidr.js';
import { normalizeAnswers, type Answers } from './answers.js';
import { LruCache } from './cache.js';
import { metadataMetrics, type MetadataMetrics } from './metrics.js';
import { negotiate, type Format } from './render.js';
import { clientKeyFor, errorResponse, GO_NOT_FOUND, renderPath, renderVersions, type Rendered } from './view.js';
import { WaitQueue, type WakeReason } from './waiters.js';
import { muxRedirect, splitPath } from './walk.js';

export interface MetadataServerOptions {
  log: Logger;
  /** Metrics go here (a private registry when absent). */
  registry?: Registry;
  /** Initial answers (empty until setAnswers otherwise). */
  answers?: Answers;
  /**
   * Take the client address from `X-Forwarded-For` (its last entry: what the nearest proxy saw). Only for a
   * trusted proxy in front; by default requests carrying the header are refused (400), since anyone could
   * claim another container's identity with it.
   */
  trustForwardedFor?: boolean;
  /** When set, requests without this header (exact value) are refused with 403. */
  requireHeader?: { name: string; value: string };
  /** Upper bound (ms) of the window over which waiters woken by one change are spread. Default 50. */
  wakeSpreadMs?: number;
  /**
   * Rendered-response cache bounds, keys included (only 200 responses are cached; errors are shared).
   * Defaults: 20,000 entries, 64 MiB.
   */
  cacheMaxEntries?: number;
  cacheMaxBytes?: number;
  /** Long-polling requests parked at once, in total (more: 503). Default 20,000. */
  maxWaiters?: number;
  /** Long-polling requests parked at once per client address (more: 429). Default 1,000. */
  maxWaitersPerClient?: number;
  /**
   * Open connections per client address; requests on connections beyond it are answered 429 and the
   * connection is closed. Not applied with trustForwardedFor (every connection comes from the proxy).
   * Default 1,024.
   */
  maxConnectionsPerClient?: number;
  /** Time a client has to send a request head (ms; slow clients get 408). Default 10 s. */
  headersTimeoutMs?: number;
}

const DEFAULT_WAIT_S = 60;
const MAX_WAIT_S = 120;
/** Bounds of the per-generation memo of wait conditions (entries, and bytes of their keys). */
const MEMO_MAX = 100_000;
const MEMO_MAX_BYTES = 32 * 1024 * 1024;
/**
 * HTTP limits: request head at most 16 KiB (Node answers 431 beyond), received within 10 s (slow clients),
 * the whole request within 30 s (a long poll is a response wait, not a slow request).
 */
export const MAX_HEADER_BYTES = 16 * 1024;
const HEADERS_TIMEOUT_MS = 10_000;
const REQUEST_TIMEOUT_MS = 30_000;
/** How often Node checks those timeouts (its default, 30 s, would let a slow client hold on for 40 s). */
const TIMEOUT_CHECK_MS = 1_000;
/** How long a connection beyond the per-client limit may stay open without sending a request. */
const OVER_LIMIT_IDLE_MS = 5_000;
/** How long close() lets in-flight responses finish before dropping connections. */
const CLOSE_GRACE_MS = 2000;

/** `maxWait`/`timeout_sec` in ms: default 60 s when absent or not a positive number, capped at 120 s. */
export function waitMs(param: string | null): number {
  const n = param === null ? NaN : Number(param);
  const s = Number.isFinite(n) && n > 0 ? Math.min(n, MAX_WAIT_S) : DEFAULT_WAIT_S;
  return Math.round(s * 1000);
}

/** An ETag as a client may send it back (`W/"x"`, `"x"`, `x`) reduced to its opaque part. */
export function bareEtag(etag: string): string {
  let e = etag.trim();
  if (e.startsWith('W/')) e = e.slice(2);
  if (e.length >= 2 && e.startsWith('"') && e.endsWith('"')) e = e.slice(1, -1);
  return e;
}

export class MetadataServer {
  readonly app: Koa;
  private answers: Answers;
  private gen = 0;
  private readonly log: Logger;
  private readonly metrics: MetadataMetrics;
  private readonly statusCounters = new Map<number, { inc(): void }>();
  private readonly cache: LruCache<Rendered>;
  private readonly waiters: WaitQueue;
  private readonly trustXff: boolean;
  private readonly required: { name: string; value: string } | undefined;
  private server: Server | undefined;
  private closing = false;
  private readonly memo = new Map<string, boolean>();
  private memoBytes = 0;
  private memoGen = -1;
  private readonly maxWaiters: number;
  private readonly maxWaitersPerClient: number;
  private readonly maxConnectionsPerClient: number;
  private readonly headersTimeoutMs: number;
  private readonly waitersByClient = new Map<string, number>();
  private readonly connectionsByClient = new Map<string, number>();
  /** Connections opened beyond their client's limit: their requests are refused. */
  private readonly overLimit = new WeakSet<Socket>();
  private readonly removeWaitingSource: () => void;

  constructor(opts: MetadataServerOptions) {
    this.log = opts.log;
    this.metrics = metadataMetrics(opts.registry ?? new Registry());
    this.answers = normalizeAnswers(opts.answers ?? {});
    this.trustXff = opts.trustForwardedFor ?? false;
    this.required = opts.requireHeader
      ? { name: opts.requireHeader.name.toLowerCase(), value: opts.requireHeader.value }
      : undefined;
    this.cache = new LruCache(opts.cacheMaxEntries ?? 20_000, opts.cacheMaxBytes ?? 64 * 1024 * 1024);
    this.maxWaiters = opts.maxWaiters ?? 20_000;
    this.maxWaitersPerClient = opts.maxWaitersPerClient ?? 1_000;
    this.maxConnectionsPerClient = opts.maxConnectionsPerClient ?? 1_024;
    this.headersTimeoutMs = opts.headersTimeoutMs ?? HEADERS_TIMEOUT_MS;
    this.waiters = new WaitQueue({ spreadMs: opts.wakeSpreadMs ?? 50 });
    this.removeWaitingSource = this.metrics.addWaitingSource(() => this.waiters.size);
    this.app = new Koa();
    this.app.silent = true;
    this.app.on('error', (err: unknown) => this.log.error({ err }, 'metadata request failed'));
    this.app.use((ctx) => this.handle(ctx));
  }

  /** Bumped by every setAnswers (identifies the answers a cached response was rendered from). */
  get generation(): number {
    return this.gen;
  }

  /** Long-polling requests currently waiting. */
  get waiting(): number {
    return this.waiters.size;
  }

  getAnswers(): Answers {
    return this.answers;
  }

  /**
   * Replaces the answers (normalised: `default` merged into client entries, `latest` filled in). Cached
   * renderings are dropped (ETags are recomputed lazily on the next request) and waiters whose value or
   * ETag changed are woken, spread over a short window.
   */
  setAnswers(answers: Answers): void {
    this.answers = normalizeAnswers(answers);
    this.gen++;
    this.cache.clear();
    this.metrics.updates.inc();
    const woken = this.waiters.recheck();
    if (woken > 0) this.metrics.wakeups.inc(woken);
    this.log.debug({ generation: this.gen, woken, waiting: this.waiters.size }, 'metadata answers updated');
  }

  /** Starts listening; resolves with the bound address (port 0 picks a free one). */
  listen(host: string | undefined, port: number): Promise<AddressInfo> {
    if (this.server) return Promise.reject(new Error('metadata server is already listening'));
    // Koa's handler catches its own errors (ctx.onerror) and its promise never rejects.
    const handle = this.app.callback();
    const server = createServer(
      { maxHeaderSize: MAX_HEADER_BYTES, connectionsCheckingInterval: TIMEOUT_CHECK_MS },
      (req, res) => void handle(req, res),
    );
    // Long polls are answered within 120 s; idle keep-alive connections are kept a little longer than
    // typical client pools expect. A request head must arrive within 10 s, a whole request within 30 s.
    server.keepAliveTimeout = 65_000;
    server.headersTimeout = this.headersTimeoutMs;
    server.requestTimeout = Math.max(REQUEST_TIMEOUT_MS, this.headersTimeoutMs);
    if (!this.trustXff) server.on('connection', (socket: Socket) => this.track(socket));
    this.server = server;
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => {
        this.server = undefined;
        reject(err);
      };
      server.once('error', onError);
      server.listen(port, host, () => {
        server.off('error', onError);
        server.on('error', (err) => this.log.error({ err }, 'metadata server error'));
        const addr = server.address() as AddressInfo;
        this.log.info({ address: addr.address, port: addr.port }, 'metadata service listening');
        resolve(addr);
      });
    });
  }

  /** Answers every waiting request with the current value, stops listening and closes connections. */
  async close(): Promise<void> {
    this.closing = true;
    this.waiters.wakeAll();
    this.removeWaitingSource();
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    await new Promise<void>((resolve) => {
      const grace = setTimeout(() => server.closeAllConnections(), CLOSE_GRACE_MS);
      grace.unref();
      server.close(() => {
        clearTimeout(grace);
        resolve();
      });
      // Idle keep-alive connections now; busy ones end after their response (sent with Connection: close).
      server.closeIdleConnections();
    });
  }

  /** Counts a connection against its client address; one beyond the limit is marked (see overLimit). */
  private track(socket: Socket): void {
    const ip = plainIp(socket.remoteAddress ?? '');
    const n = (this.connectionsByClient.get(ip) ?? 0) + 1;
    this.connectionsByClient.set(ip, n);
    socket.once('close', () => {
      const left = (this.connectionsByClient.get(ip) ?? 1) - 1;
      if (left <= 0) this.connectionsByClient.delete(ip);
      else this.connectionsByClient.set(ip, left);
    });
    if (n > this.maxConnectionsPerClient) {
      this.overLimit.add(socket);
      socket.setTimeout(OVER_LIMIT_IDLE_MS, () => socket.destroy());
    }
  }

  private clientIp(req: IncomingMessage): string {
    if (this.trustXff) {
      const xff = req.headers['x-forwarded-for'];
      if (typeof xff === 'string' && xff.trim() !== '') {
        const parts = xff.split(',');
        return plainIp((parts[parts.length - 1] as string).trim());
      }
    }
    return plainIp(req.socket.remoteAddress ?? '');
  }

  /** The response for a path as seen by `ip`, from the cache or rendered now. */
  private entry(version: string, ip: string, raw: readonly string[], pathKey: string, format: Format): Rendered {
    const client = clientKeyFor(this.answers, version, ip);
    const key = `${version}\u0000${client ?? ''}\u0000${format}\u0000${pathKey}`;
    let r = this.cache.get(key);
    if (r === undefined) {
      r = renderPath(this.answers, version, client, raw, format);
      // Only found values are cached: errors are shared objects, and caching them per path would let
      // anyone fill the cache with unique missing paths.
      if (r.status === 200) this.cache.set(key, r);
    }
    return r;
  }

  private versionsEntry(format: Format): Rendered {
    const key = `\u0000/\u0000${format}`;
    let r = this.cache.get(key);
    if (r === undefined) {
      r = renderVersions(this.answers, format);
      this.cache.set(key, r);
    }
    return r;
  }

  /**
   * Writes a response. The rendered bytes and header values are precomputed, so this bypasses Koa's response
   * handling (`ctx.respond = false`): one writeHead with a flat header list and one end.
   */
  private send(ctx: Koa.Context, r: Rendered, extraHeaders?: readonly string[]): void {
    ctx.respond = false;
    const headers = ['ETag', r.etag, 'Content-Type', r.contentType, 'Content-Length', r.length];
    if (extraHeaders) headers.push(...extraHeaders);
    if (this.closing) headers.push('Connection', 'close');
    const res = ctx.res;
    res.writeHead(r.status, headers);
    if (ctx.req.method === 'HEAD') res.end();
    else res.end(r.body);
    this.countStatus(r.status);
  }

  /** Counts a response by status (the labelled children are bound once: labels() per request is slow). */
  private countStatus(status: number): void {
    let c = this.statusCounters.get(status);
    if (c === undefined) {
      c = this.metrics.requests.labels(String(status));
      this.statusCounters.set(status, c);
    }
    c.inc();
  }

  private refuse(ctx: Koa.Context, format: Format, status: number, message: string, extraHeaders?: readonly string[]): void {
    this.send(ctx, errorResponse(format, status, message), extraHeaders);
    // Refusals come in floods (that is what they are for): build the log line only when it is written.
    if (this.log.isLevelEnabled('debug')) this.log.debug({ client: this.clientIp(ctx.req), status, url: ctx.req.url }, message);
  }

  /**
   * Memoises a wait condition per answers generation: thousands of waiters on the same key and value are
   * checked with one rendering (and one cache lookup) per change.
   */
  private memoized(key: string, compute: () => boolean): () => boolean {
    return () => {
      if (this.memoGen !== this.gen) {
        this.memo.clear();
        this.memoBytes = 0;
        this.memoGen = this.gen;
      }
      let v = this.memo.get(key);
      if (v === undefined) {
        v = compute();
        // Bounded: only waiters' keys go in, but keep it small whatever the clients send.
        if (this.memo.size >= MEMO_MAX || this.memoBytes >= MEMO_MAX_BYTES) {
          this.memo.clear();
          this.memoBytes = 0;
        }
        this.memo.set(key, v);
        this.memoBytes += 2 * key.length + 64;
      }
      return v;
    };
  }

  private async handle(ctx: Koa.Context): Promise<void> {
    const req = ctx.req;
    const format = negotiate(req.headers.accept);
    if (this.overLimit.has(req.socket)) {
      const ip = plainIp(req.socket.remoteAddress ?? '');
      this.refuse(ctx, format, 429, `Too many connections from ${ip} (limit ${this.maxConnectionsPerClient})`, ['Connection', 'close', 'Retry-After', '1']);
      ctx.res.once('finish', () => req.socket.destroySoon());
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      return this.refuse(ctx, format, 405, 'Method not allowed', ['Allow', 'GET, HEAD']);
    }
    if (!this.trustXff && req.headers['x-forwarded-for'] !== undefined) {
      return this.refuse(
        ctx,
        format,
        400,
        'X-Forwarded-For is not accepted: the metadata service identifies clients by their source address',
      );
    }
    if (this.required && req.headers[this.required.name] !== this.required.value) {
      return this.refuse(ctx, format, 403, `Forbidden: this metadata service requires the header ${this.required.name}`);
    }

    let url = req.url ?? '/';
    if (url.charCodeAt(0) !== 0x2f) {
      // Absolute-form request target (`GET http://host/path`).
      try {
        const u = new URL(url);
        url = u.pathname + u.search;
      } catch {
        return this.refuse(ctx, format, 400, 'Bad request target');
      }
    }
    const qi = url.indexOf('?');
    const path = qi < 0 ? url : url.slice(0, qi);
    // As the original's router: a path with `//`, `.` or `..` elements (once decoded) is redirected to its
    // clean form, and /favicon.ico is Go's plain 404.
    const clean = muxRedirect(path);
    if (clean !== undefined) return this.redirect(ctx, clean + (qi < 0 ? '' : url.slice(qi)));
    if (path === '/favicon.ico') return this.send(ctx, GO_NOT_FOUND);
    const segs = splitPath(path);
    if (segs.length === 0) return this.send(ctx, this.versionsEntry(format));

    const version = segs[0] as string;
    const raw = segs.slice(1);
    const pathKey = raw.join('/');
    const ip = this.clientIp(req);
    let r = this.entry(version, ip, raw, pathKey, format);

    if (qi >= 0 && !this.closing && Object.hasOwn(this.answers, version) && r.status !== 400) {
      const params = new URLSearchParams(url.slice(qi + 1));
      // `check` answers "has it changed?" now; the waiter re-checks through a memo shared by every waiter on
      // the same key and value (see memoized).
      let check: (() => boolean) | undefined;
      let memoKey = '';
      let timeoutMs = 0;
      const value = params.get('value');
      if (params.get('wait') === 'true' && value !== null) {
        // rancher-metadata long poll: return once the value, printed as text, differs from `value`.
        const old = Buffer.from(value, 'utf8');
        check = () => {
          const t = this.entry(version, ip, raw, pathKey, 'text');
          return t.status === 200 && !t.body.equals(old);
        };
        memoKey = `v\u0000${version}\u0000${ip}\u0000${pathKey}\u0000${value}`;
        timeoutMs = waitMs(params.get('maxWait'));
      } else if (params.get('wait_for_change') === 'true') {
        // GCE/Consul style: return once the ETag of this response differs from `last_etag` (or, without one,
        // from the current ETag).
        const lastParam = params.get('last_etag');
        const last = lastParam !== null ? bareEtag(lastParam) : bareEtag(r.etag);
        check = () => bareEtag(this.entry(version, ip, raw, pathKey, format).etag) !== last;
        memoKey = `e\u0000${version}\u0000${ip}\u0000${format}\u0000${pathKey}\u0000${last}`;
        timeoutMs = waitMs(params.get('timeout_sec'));
      }
      if (check !== undefined && !check()) {
        const changed = this.memoized(memoKey, check);
        const perClient = this.waitersByClient.get(ip) ?? 0;
        if (perClient >= this.maxWaitersPerClient) {
          return this.refuse(ctx, format, 429, `Too many waiting requests from ${ip} (limit ${this.maxWaitersPerClient})`, ['Retry-After', '1']);
        }
        if (this.waiters.size >= this.maxWaiters) {
          return this.refuse(ctx, format, 503, `Too many waiting requests (limit ${this.maxWaiters})`, ['Retry-After', '1']);
        }
        this.waitersByClient.set(ip, perClient + 1);
        let reason: WakeReason;
        try {
          reason = await this.waitFor(ctx, changed, timeoutMs);
        } finally {
          const left = (this.waitersByClient.get(ip) ?? 1) - 1;
          if (left <= 0) this.waitersByClient.delete(ip);
          else this.waitersByClient.set(ip, left);
        }
        if (reason === 'aborted') {
          ctx.respond = false;
          return;
        }
        r = this.entry(version, ip, raw, pathKey, format);
      }
    }
    this.send(ctx, r);
    if (this.log.isLevelEnabled('debug')) {
      this.log.debug({ client: ip, version, path: pathKey, status: r.status, format }, 'metadata request');
    }
  }

  /** 301 to the clean path, as gorilla/mux did (empty body). */
  private redirect(ctx: Koa.Context, location: string): void {
    ctx.respond = false;
    const headers = ['Location', location, 'Content-Length', '0'];
    if (this.closing) headers.push('Connection', 'close');
    ctx.res.writeHead(301, headers);
    ctx.res.end();
    this.countStatus(301);
  }

  private async waitFor(ctx: Koa.Context, changed: () => boolean, timeoutMs: number): Promise<WakeReason> {
    const w = this.waiters.wait(changed, timeoutMs);
    const onClose = (): void => w.cancel();
    ctx.res.once('close', onClose);
    try {
      return await w.promise;
    } finally {
      ctx.res.off('close', onClose);
    }
  }
}
