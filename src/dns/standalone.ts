// Standalone mode: serve a Rancher answers file (drop-in for the rancher-dns binary). The file is
// reloaded on SIGHUP (wired by the CLI) and on `POST /v1/reload` at a loopback HTTP address; a file
// that does not load or validate keeps the last good answers, and the reason is logged (and returned
// by the endpoint). The same HTTP listener serves `GET /metrics` and `GET /healthz`.
import http from 'node:http';
import { isIP } from 'node:net';
import { Registry } from 'prom-client';
import { errorMessage, ValidationError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { loadAnswersFile } from './answers.js';
import { DnsServer, type ListenAddress, type UdpTransport } from './server.js';
import { buildDnsDataFromAnswers } from './view.js';

/** Parses `host:port`, `[v6]:port`, `:port` (all IPv4 addresses) or a bare host (port dflt). */
export function parseListenAddress(s: string, dfltPort: number): ListenAddress {
  const t = s.trim();
  let address = t;
  let port = dfltPort;
  const br = /^\[([^\]]+)\](?::(\d+))?$/.exec(t);
  if (br) {
    address = br[1]!;
    if (br[2] !== undefined) port = Number(br[2]);
  } else if (/^[^:]*:\d+$/.test(t)) {
    const i = t.lastIndexOf(':');
    address = t.slice(0, i) || '0.0.0.0';
    port = Number(t.slice(i + 1));
  }
  if (address === 'localhost') address = '127.0.0.1';
  if (isIP(address) === 0) throw new ValidationError('InvalidAddress', `${JSON.stringify(s)}: not an IP address (host:port, [v6]:port or :port)`);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ValidationError('InvalidAddress', `${JSON.stringify(s)}: bad port`);
  return { address, port };
}

function isLoopbackAddress(a: string): boolean {
  return a.startsWith('127.') || a === '::1';
}

export interface StandaloneOptions {
  answersPath: string;
  listen: readonly ListenAddress[];
  /** TTL of answers without their own (s). */
  ttl: number;
  recurserTimeoutMs: number;
  /** Loopback address of the reload endpoint; undefined disables it. */
  reloadListen?: ListenAddress;
  log: Logger;
  registry?: Registry;
  cacheMaxEntries?: number;
  cacheMaxTtl?: number;
  rejectLoopbackUpstreams?: boolean;
  udpTransport?: UdpTransport;
}

export interface ReloadResult {
  ok: boolean;
  /** Why the file was not taken (the previous answers stay). */
  error?: string;
  /** SOA serial of the answers now served. */
  serial: number;
  /** Client sections in the answers now served. */
  clients: number;
}

export class StandaloneDns {
  private reloading: Promise<ReloadResult> = Promise.resolve({ ok: true, serial: 0, clients: 0 });
  private http: http.Server | undefined;
  private closed = false;

  private constructor(
    private readonly opts: StandaloneOptions,
    readonly server: DnsServer,
    readonly registry: Registry,
  ) {}

  /** Loads the answers (a bad file here is fatal: there is no last good one), then listens. */
  static async start(opts: StandaloneOptions): Promise<StandaloneDns> {
    if (opts.reloadListen && !isLoopbackAddress(opts.reloadListen.address)) {
      throw new ValidationError('InvalidAddress', `--reload-listen must be a loopback address (the endpoint has no authentication), not ${opts.reloadListen.address}`);
    }
    const file = await loadAnswersFile(opts.answersPath);
    const data = buildDnsDataFromAnswers(file, { ttl: opts.ttl });
    const registry = opts.registry ?? new Registry();
    const server = new DnsServer({
      data,
      log: opts.log,
      registry,
      recurserTimeoutMs: opts.recurserTimeoutMs,
      cacheMaxEntries: opts.cacheMaxEntries,
      cacheMaxTtl: opts.cacheMaxTtl,
      rejectLoopbackUpstreams: opts.rejectLoopbackUpstreams,
      ...(opts.udpTransport ? { udpTransport: opts.udpTransport } : {}),
    });
    const self = new StandaloneDns(opts, server, registry);
    self.reloading = Promise.resolve({ ok: true, serial: data.serial, clients: data.clients.size });
    try {
      for (const l of opts.listen) await server.listen(l.address, l.port);
      if (opts.reloadListen) await self.startHttp(opts.reloadListen);
    } catch (err) {
      await self.close();
      throw err;
    }
    opts.log.info({ answers: opts.answersPath, clients: data.clients.size, zones: data.zones.map((z) => z.name) }, 'answers loaded');
    return self;
  }

  /** Reloads the answers file; on failure the previous answers stay and the reason is logged. */
  reload(): Promise<ReloadResult> {
    this.reloading = this.reloading.then(
      () => this.doReload(),
      () => this.doReload(),
    );
    return this.reloading;
  }

  private async doReload(): Promise<ReloadResult> {
    const log = this.opts.log;
    try {
      const file = await loadAnswersFile(this.opts.answersPath);
      const data = buildDnsDataFromAnswers(file, { ttl: this.opts.ttl });
      this.server.setData(data);
      log.info({ answers: this.opts.answersPath, clients: data.clients.size, serial: data.serial }, 'answers reloaded');
      return { ok: true, serial: data.serial, clients: data.clients.size };
    } catch (err) {
      const cur = this.server.data;
      log.error({ answers: this.opts.answersPath, err: errorMessage(err) }, 'answers not reloaded; keeping the last good ones');
      return { ok: false, error: errorMessage(err), serial: cur.serial, clients: cur.clients.size };
    }
  }

  private async startHttp(at: ListenAddress): Promise<void> {
    const srv = http.createServer((req, res) => {
      const send = (status: number, body: unknown, type = 'application/json'): void => {
        res.writeHead(status, { 'content-type': type });
        res.end(typeof body === 'string' ? body : JSON.stringify(body));
      };
      const url = (req.url ?? '/').split('?')[0];
      if (url === '/v1/reload') {
        if (req.method !== 'POST') return send(405, { ok: false, error: 'use POST' });
        req.resume();
        void this.reload().then((r) => send(r.ok ? 200 : 422, r));
        return;
      }
      if (url === '/metrics' && req.method === 'GET') {
        void this.registry.metrics().then((m) => send(200, m, this.registry.contentType));
        return;
      }
      if (url === '/healthz' && req.method === 'GET') return send(200, { ok: true });
      send(404, { ok: false, error: 'not found' });
    });
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(at.port, at.address, () => {
        srv.off('error', reject);
        resolve();
      });
    });
    this.http = srv;
    this.opts.log.info({ address: at.address, port: this.httpAddress()?.port }, 'reload endpoint listening (POST /v1/reload)');
  }

  httpAddress(): ListenAddress | undefined {
    const a = this.http?.address();
    return a && typeof a === 'object' ? { address: a.address, port: a.port } : undefined;
  }

  /** Graceful stop: no new queries, open TCP connections dropped, HTTP closed. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const h = this.http;
    if (h) {
      await new Promise<void>((resolve) => {
        h.close(() => resolve());
        h.closeAllConnections();
      });
    }
    await this.server.close();
  }
}
