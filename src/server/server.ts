// The control plane process: storage, API, watch hub, metrics; start and graceful stop.
import Koa from 'koa';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { Store } from './db/store.js';
import { WatchHub } from './sync/watch.js';
import { authMiddleware, buildRouter } from './api/routes.js';
import { AccessTickets, accessTarget, createAccessProxy } from './api/access-proxy.js';
import { errorHandler, jsonBody, type ApiContext } from './api/http.js';
import { openApiDocument } from './api/openapi.js';
import { DEFAULT_UI_DIR, uiMiddleware } from './ui.js';
import { countAdminKeys, createApiKey, type IssuedKey } from './auth/credentials.js';
import { defaultEnvironment, ensureTunnelAddresses } from './domain/environments.js';
import type { Logger } from '../common/log.js';
import { acquirePidLock, type PidLock } from '../common/pid-lock.js';

export interface ServerOptions {
  dataDir: string;
  host: string;
  port: number;
  log: Logger;
  /** URL agents use to reach this server; default http://<listen address>. */
  advertiseUrl?: string;
  /** Credentials for the first admin key (else random ones are generated and returned once). */
  adminAccessKey?: string;
  adminSecretKey?: string;
  agentImage?: string;
  maxWatchSeconds?: number;
  /** Window in which container reports are gathered before their facts are published (ms, default 250). */
  statusCoalesceMs?: number;
  /**
   * Take <dataDir>/server.lock (the PID of this process) after listening and before opening the
   * database, so that two servers never share a data directory (the CLI sets it; tests need not).
   */
  lock?: boolean;
  /** The web UI's built files (default dist/ui of this package); null: no UI. */
  uiDir?: string | null;
}

export interface RunningServer {
  url: string;
  store: Store;
  hub: WatchHub;
  registry: Registry;
  /** The admin key created on this start (first start only); its secret is not stored anywhere. */
  firstAdminKey?: IssuedKey;
  close(): Promise<void>;
}

export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  const log = opts.log.child({ component: 'server' });
  const t0 = performance.now();

  // Listen first: when the address is taken (or not ours to take), the start fails before the data
  // directory is touched, so no database, lock or admin key is created by a start that cannot serve.
  let handle: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  const server: Server = createServer((req, res) => {
    if (handle) return handle(req, res);
    res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '1' });
    res.end(JSON.stringify({ type: 'error', status: 503, code: 'Starting', message: 'the control plane is starting' }));
  });
  server.keepAliveTimeout = 65_000;
  server.requestTimeout = 0; // watches are long polls; they bound themselves
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (err) => log.error({ err }, 'HTTP server error'));

  let lock: PidLock | undefined;
  let store: Store | undefined;
  try {
    if (opts.lock) lock = acquirePidLock(join(opts.dataDir, 'server.lock'), 'drover server');
    store = Store.openDir(opts.dataDir);
    return startOn(opts, log, t0, server, store, lock, (h) => (handle = h));
  } catch (err) {
    store?.close();
    lock?.release();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    throw err;
  }
}

function startOn(
  opts: ServerOptions,
  log: Logger,
  t0: number,
  server: Server,
  store: Store,
  lock: PidLock | undefined,
  setHandler: (h: (req: IncomingMessage, res: ServerResponse) => void) => void,
): RunningServer {
  const hub = new WatchHub(store);
  defaultEnvironment(store);
  ensureTunnelAddresses(store);

  let firstAdminKey: IssuedKey | undefined;
  if (countAdminKeys(store) === 0) {
    firstAdminKey = createApiKey(store, {
      name: 'first admin key',
      role: 'admin',
      ...(opts.adminAccessKey ? { accessKey: opts.adminAccessKey } : {}),
      ...(opts.adminSecretKey ? { secretKey: opts.adminSecretKey } : {}),
    });
    log.info({ accessKey: firstAdminKey.accessKey }, 'created the first admin API key');
  }

  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'drover_server_' });
  const requests = new Counter({
    name: 'drover_http_requests_total',
    help: 'API requests by method and status',
    labelNames: ['method', 'status'],
    registers: [registry],
  });
  const latency = new Histogram({
    name: 'drover_http_request_duration_seconds',
    help: 'API request latency (watch requests excluded)',
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
    registers: [registry],
  });
  new Gauge({
    name: 'drover_watch_waiting',
    help: 'watch requests currently waiting for a change',
    registers: [registry],
    collect() {
      this.set(hub.waiting());
    },
  });

  let advertise = opts.advertiseUrl ?? '';
  const app = new Koa();
  app.proxy = false;
  app.use(async (ctx, next) => {
    const start = performance.now();
    try {
      await next();
    } finally {
      requests.inc({ method: ctx.method, status: String(ctx.status) });
      if (!ctx.path.endsWith('/watch')) latency.observe((performance.now() - start) / 1000);
      log.debug({ method: ctx.method, path: ctx.path, status: ctx.status, ms: Math.round(performance.now() - start) }, 'request');
    }
  });
  app.use(errorHandler(log));
  app.use(async (ctx, next) => {
    if (ctx.path === '/healthz') {
      ctx.body = 'OK';
      return;
    }
    await next();
  });
  app.use(uiMiddleware(opts.uiDir === undefined ? DEFAULT_UI_DIR : opts.uiDir, log));
  app.use(authMiddleware(store));
  app.use(jsonBody);
  app.use(async (ctx: ApiContext, next) => {
    if (ctx.method === 'GET' && ctx.path === '/metrics') {
      ctx.type = registry.contentType;
      ctx.body = await registry.metrics();
    } else if (ctx.method === 'GET' && ctx.path === '/v1/openapi.json') {
      ctx.body = openApiDocument();
    } else await next();
  });
  // Container logs through the host's agent (exec and stats are websockets: the upgrade handler below).
  const accessTickets = new AccessTickets();
  const access = createAccessProxy(store, log, accessTickets);
  access.attach(server);
  app.use(async (ctx: ApiContext, next) => {
    if (ctx.method === 'GET' && /^\/v1\/containers\/[^/]+\/logs$/.test(ctx.path)) {
      const target = accessTarget(store, ctx.url); // the API's errors, before anything is sent
      ctx.respond = false;
      access.web(ctx.req, ctx.res, target);
      return;
    }
    await next();
  });
  const router = buildRouter({
    store,
    hub,
    advertiseUrl: () => advertise,
    agentImage: opts.agentImage ?? 'drover/agent:latest',
    maxWatchSeconds: opts.maxWatchSeconds ?? 300,
    accessTickets,
    ...(opts.statusCoalesceMs !== undefined ? { statusCoalesceMs: opts.statusCoalesceMs } : {}),
  });
  app.use(router.routes()).use(router.allowedMethods());

  // Koa's handler catches its own errors (ctx.onerror) and its promise never rejects.
  const koaHandle = app.callback();
  setHandler((req, res) => void koaHandle(req, res));
  const addr = server.address() as AddressInfo;
  const host = addr.address.includes(':') ? `[${addr.address}]` : addr.address;
  const url = `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${addr.port}`;
  if (!advertise) advertise = url;
  log.info({ url, dataDir: opts.dataDir, schema: store.schemaVersion, startMs: Math.round(performance.now() - t0) }, 'control plane listening');

  let closed = false;
  return {
    url,
    store,
    hub,
    registry,
    ...(firstAdminKey ? { firstAdminKey } : {}),
    async close() {
      if (closed) return;
      closed = true;
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
        // Parked watches end at once: agents reconnect to the next server.
        setTimeout(() => server.closeAllConnections(), 200).unref();
      });
      store.close();
      lock?.release();
      log.info('control plane stopped');
    },
  };
}
