// The metadata HTTP server (rancher-metadata compatible). Serves the current answers to clients identified
// by their TCP source address, with long polling (`?wait=true&value=`) and ETag waits
// (`?wait_for_change=true&last_etag=`). Responses are rendered once per answers update and cached.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Registry } from 'prom-client';
import type { Logger } from '../common/log.js';
import { plainIp } from '../model/cidr.js';
import { normalizeAnswers, type Answers } from './answers.js';
import { LruCache } from './cache.js';
import { metadataMetrics, type MetadataMetrics } from './metrics.js';
import { negotiate, type Format } from './render.js';
import { clientKeyFor, errorResponse, GO_NOT_FOUND, renderPath, renderVersions, type Rendered } from './view.js';
import { WaitQueue } from './waiters.js';
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
  /**
   * Upper bound (ms) of a window over which waiters woken by one change are spread (random slot each).
   * Default 0: they are woken in order, a chunk per event-loop turn (see WaitQueue), each answered with a
   * response prepared once per (version, client, format, path) — the loop serves other requests between
   * chunks.
   */
  wakeSpreadMs?: number;
  /** Waiters woken (and answered) per event-loop turn when not spread. Default 256. */
  wakeChunk?: number;
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

/** What a request handler works with: the request and its response. */
interface Ctx {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
}

/**
 * A response prepared once per answers generation for every woken waiter with the same (version, client
 * address, format, path, method): the rendering, the flat header list and the body as a latin1 string (so
 * that Node writes status line, headers and body as one string, one chunk per response).
 */
interface Prepared {
  readonly r: Rendered;
  readonly headers: string[];
  /** `undefined` for HEAD. */
  readonly body: string | undefined;
}

/** Bound of the per-generation table of prepared wake-up responses (only waiters' keys go in). */
const PREPARED_MAX = 100_000;

export class MetadataServer {
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
  private readonly prepared = new Map<string, Prepared>();
  private preparedGen = -1;
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
    this.waiters = new WaitQueue({ spreadMs: opts.wakeSpreadMs ?? 0, ...(opts.wakeChunk !== undefined ? { chunk: opts.wakeChunk } : {}) });
    this.removeWaitingSource = this.metrics.addWaitingSource(() => this.waiters.size);
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
    const server = createServer(
      { maxHeaderSize: MAX_HEADER_BYTES, connectionsCheckingInterval: TIMEOUT_CHECK_MS },
      (req, res) => this.onRequest(req, res),
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

  /** Handles a request; an unexpected error is logged and answered 500 (or the connection dropped). */
  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    try {
      this.handle({ req, res });
    } catch (err) {
      this.failed(res, err);
    }
  }

  private failed(res: ServerResponse, err: unknown): void {
    this.log.error({ err }, 'metadata request failed');
    if (res.headersSent || !res.writable) {
      res.destroy();
      return;
    }
    const body = 'Internal Server Error';
    res.writeHead(500, ['Content-Type', 'text/plain; charset=utf-8', 'Content-Length', String(body.length)]);
    res.end(body);
    this.countStatus(500);
  }

  /** Writes a response: the rendered bytes and header values are precomputed; one writeHead with a flat header list and one end. */
  private send(ctx: Ctx, r: Rendered, extraHeaders?: readonly string[]): void {
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

  private refuse(ctx: Ctx, format: Format, status: number, message: string, extraHeaders?: readonly string[]): void {
    this.send(ctx, errorResponse(format, status, message), extraHeaders);
    // Refusals come in floods (that is what they are for): build the log line only when it is written.
    if (this.log.isLevelEnabled('debug')) this.log.debug({ client: this.clientIp(ctx.req), status, url: ctx.req.url }, message);
  }

  private handle(ctx: Ctx): void {
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
    const r = this.entry(version, ip, raw, pathKey, format);

    if (qi >= 0 && !this.closing && Object.hasOwn(this.answers, version) && r.status !== 400) {
      const params = new URLSearchParams(url.slice(qi + 1));
      // `check` answers "has it changed?" now; parked, the waiter is one of a group (same `key`: same
      // condition) whose check the queue evaluates once per change for all of them.
      let check: (() => boolean) | undefined;
      let key = '';
      let timeoutMs = 0;
      const value = params.get('value');
      if (params.get('wait') === 'true' && value !== null) {
        // rancher-metadata long poll: return once the value, printed as text, differs from `value`.
        const old = Buffer.from(value, 'utf8');
        check = () => {
          const t = this.entry(version, ip, raw, pathKey, 'text');
          return t.status === 200 && !t.body.equals(old);
        };
        key = `v\u0000${version}\u0000${ip}\u0000${pathKey}\u0000${value}`;
        timeoutMs = waitMs(params.get('maxWait'));
      } else if (params.get('wait_for_change') === 'true') {
        // GCE/Consul style: return once the ETag of this response differs from `last_etag` (or, without one,
        // from the current ETag).
        const lastParam = params.get('last_etag');
        const last = lastParam !== null ? bareEtag(lastParam) : bareEtag(r.etag);
        check = () => bareEtag(this.entry(version, ip, raw, pathKey, format).etag) !== last;
        key = `e\u0000${version}\u0000${ip}\u0000${format}\u0000${pathKey}\u0000${last}`;
        timeoutMs = waitMs(params.get('timeout_sec'));
      }
      if (check !== undefined && !check()) {
        const perClient = this.waitersByClient.get(ip) ?? 0;
        if (perClient >= this.maxWaitersPerClient) {
          return this.refuse(ctx, format, 429, `Too many waiting requests from ${ip} (limit ${this.maxWaitersPerClient})`, ['Retry-After', '1']);
        }
        if (this.waiters.size >= this.maxWaiters) {
          return this.refuse(ctx, format, 503, `Too many waiting requests (limit ${this.maxWaiters})`, ['Retry-After', '1']);
        }
        this.waitersByClient.set(ip, perClient + 1);
        const head = req.method === 'HEAD';
        // The response a woken waiter gets: prepared once per generation for every waiter with this key.
        const responseKey = `${version}\u0000${ip}\u0000${format}\u0000${pathKey}\u0000${head ? 'H' : 'G'}`;
        const parked = this.waiters.park({
          key,
          changed: check,
          timeoutMs,
          onWake: (reason) => {
            const left = (this.waitersByClient.get(ip) ?? 1) - 1;
            if (left <= 0) this.waitersByClient.delete(ip);
            else this.waitersByClient.set(ip, left);
            if (reason === 'aborted') return;
            try {
              if (reason === 'changed' && !this.closing) this.sendPrepared(ctx.res, this.preparedFor(responseKey, version, ip, raw, pathKey, format, head), ip, version, pathKey, format);
              else this.reply(ctx, this.entry(version, ip, raw, pathKey, format), ip, version, pathKey, format);
            } catch (err) {
              this.failed(ctx.res, err);
            }
          },
        });
        // Left in place once the wait has ended: cancel is then a no-op (cheaper than removing it per waiter).
        ctx.res.once('close', () => parked.cancel());
        return;
      }
    }
    this.reply(ctx, r, ip, version, pathKey, format);
  }

  private reply(ctx: Ctx, r: Rendered, ip: string, version: string, pathKey: string, format: Format): void {
    this.send(ctx, r);
    if (this.log.isLevelEnabled('debug')) {
      this.log.debug({ client: ip, version, path: pathKey, status: r.status, format }, 'metadata request');
    }
  }

  /** The prepared response of a woken waiter (see Prepared), from this generation's table or made now. */
  private preparedFor(responseKey: string, version: string, ip: string, raw: readonly string[], pathKey: string, format: Format, head: boolean): Prepared {
    if (this.preparedGen !== this.gen) {
      this.prepared.clear();
      this.preparedGen = this.gen;
    }
    let p = this.prepared.get(responseKey);
    if (p === undefined) {
      const r = this.entry(version, ip, raw, pathKey, format);
      p = {
        r,
        headers: ['ETag', r.etag, 'Content-Type', r.contentType, 'Content-Length', r.length],
        body: head ? undefined : r.body.toString('latin1'),
      };
      if (this.prepared.size >= PREPARED_MAX) this.prepared.clear();
      this.prepared.set(responseKey, p);
    }
    return p;
  }

  /** Writes a prepared response: status line, headers and body go out as one string. */
  private sendPrepared(res: ServerResponse, p: Prepared, ip: string, version: string, pathKey: string, format: Format): void {
    res.writeHead(p.r.status, p.headers);
    if (p.body === undefined) res.end();
    else res.end(p.body, 'latin1');
    this.countStatus(p.r.status);
    if (this.log.isLevelEnabled('debug')) {
      this.log.debug({ client: ip, version, path: pathKey, status: p.r.status, format }, 'metadata request');
    }
  }

  /** 301 to the clean path, as gorilla/mux did (empty body). */
  private redirect(ctx: Ctx, location: string): void {
    const headers = ['Location', location, 'Content-Length', '0'];
    if (this.closing) headers.push('Connection', 'close');
    ctx.res.writeHead(301, headers);
    ctx.res.end();
    this.countStatus(301);
  }
}
