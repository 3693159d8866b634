// Standalone mode (drop-in for the original rancher-metadata binary): serve a Rancher-format answers file,
// reload it on SIGHUP and on `POST /v1/reload` at a loopback address. A file that fails to load is logged
// and the last good answers stay served.
// Service tokens (`self/service/token`) are served exactly as the answers file gives them: standalone mode
// computes none, so it needs no token key and never derives one from anything public (the agent's tokens
// are keyed with the control plane's secret, see src/server/auth/metadata-key.ts).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Registry } from 'prom-client';
import { ValidationError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { loadAnswersFile, type Answers } from './answers.js';
import { MetadataServer } from './server.js';

export interface StandaloneOptions {
  answersFile: string;
  /** `HOST:PORT`, `:PORT` (every interface) or `[V6]:PORT`. */
  listen: string;
  /** Loopback address of the reload endpoint (`POST /v1/reload`, also `GET /metrics`); null disables it. */
  reloadListen?: string | null;
  trustForwardedFor?: boolean;
  requireHeader?: { name: string; value: string };
  log: Logger;
  registry?: Registry;
  /** Reload on SIGHUP (default true). */
  handleSignals?: boolean;
}

export interface StandaloneHandle {
  readonly server: MetadataServer;
  readonly address: AddressInfo;
  readonly reloadAddress: AddressInfo | undefined;
  /** Reloads the answers file; rejects with the reason (and keeps the last good answers) when it is bad. */
  reload(): Promise<void>;
  close(): Promise<void>;
}

export const DEFAULT_RELOAD_LISTEN = '127.0.0.1:8112';

/** Parses `HOST:PORT`, `:PORT`, `[V6]:PORT` (host `undefined` = every interface). */
export function parseListenAddress(addr: string): { host: string | undefined; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(addr.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || !Number.isInteger(port) || port > 65535) {
    throw new ValidationError('InvalidAddress', `invalid listen address ${JSON.stringify(addr)}: expected HOST:PORT, :PORT or [IPv6]:PORT`);
  }
  const host = m[1] ?? m[2];
  return { host: host === '' || host === undefined ? undefined : host, port };
}

/** Parses `NAME=VALUE` (the value may contain `=`). */
export function parseHeaderSpec(spec: string): { name: string; value: string } {
  const i = spec.indexOf('=');
  const name = i < 0 ? '' : spec.slice(0, i).trim();
  if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) {
    throw new ValidationError('InvalidHeader', `invalid header ${JSON.stringify(spec)}: expected NAME=VALUE with a valid header name`);
  }
  return { name, value: spec.slice(i + 1) };
}

function isLoopback(host: string | undefined): boolean {
  return host !== undefined && (host === 'localhost' || host === '::1' || /^127\./.test(host));
}

export async function runStandalone(opts: StandaloneOptions): Promise<StandaloneHandle> {
  const log = opts.log;
  const registry = opts.registry ?? new Registry();
  const listen = parseListenAddress(opts.listen);
  const reloadListen = opts.reloadListen === null ? undefined : parseListenAddress(opts.reloadListen ?? DEFAULT_RELOAD_LISTEN);
  if (reloadListen && !isLoopback(reloadListen.host)) {
    throw new ValidationError('InvalidAddress', `the reload endpoint must listen on a loopback address, not ${opts.reloadListen ?? ''}`);
  }

  const initial: Answers = await loadAnswersFile(opts.answersFile);
  const server = new MetadataServer({
    log,
    registry,
    answers: initial,
    trustForwardedFor: opts.trustForwardedFor ?? false,
    requireHeader: opts.requireHeader,
  });
  log.info({ file: opts.answersFile, versions: Object.keys(initial) }, 'metadata answers loaded');

  // Reloads run one at a time, in order.
  let chain: Promise<void> = Promise.resolve();
  const reload = (trigger: string): Promise<void> => {
    const run = async (): Promise<void> => {
      try {
        const answers = await loadAnswersFile(opts.answersFile);
        server.setAnswers(answers);
        log.info({ file: opts.answersFile, trigger, generation: server.generation }, 'metadata answers reloaded');
      } catch (err) {
        log.error(
          { file: opts.answersFile, trigger, reason: err instanceof Error ? err.message : String(err) },
          'metadata answers not reloaded; still serving the last good answers',
        );
        throw err;
      }
    };
    const p = chain.then(run);
    chain = p.catch(() => undefined);
    return p;
  };

  const address = await server.listen(listen.host, listen.port);
  let reloadServer: Server | undefined;
  let reloadAddress: AddressInfo | undefined;
  try {
    if (reloadListen) {
      reloadServer = createServer((req, res) => void handleReloadRequest(req, res, reload, registry));
      reloadAddress = await new Promise<AddressInfo>((resolve, reject) => {
        const rs = reloadServer as Server;
        rs.once('error', reject);
        rs.listen(reloadListen.port, reloadListen.host, () => {
          rs.off('error', reject);
          resolve(rs.address() as AddressInfo);
        });
      });
      log.info({ address: reloadAddress.address, port: reloadAddress.port }, 'metadata reload endpoint listening');
    }
  } catch (err) {
    await server.close();
    throw err;
  }

  const onHup = (): void => {
    log.info('SIGHUP received: reloading the answers');
    reload('SIGHUP').catch(() => undefined);
  };
  if (opts.handleSignals ?? true) process.on('SIGHUP', onHup);

  let closed: Promise<void> | undefined;
  return {
    server,
    address,
    reloadAddress,
    reload: () => reload('api'),
    close: () => {
      closed ??= (async () => {
        process.off('SIGHUP', onHup);
        const rs = reloadServer;
        await Promise.all([
          server.close(),
          rs
            ? new Promise<void>((resolve) => {
                rs.close(() => resolve());
                rs.closeAllConnections();
              })
            : undefined,
        ]);
        log.info('metadata service stopped');
      })();
      return closed;
    },
  };
}

async function handleReloadRequest(
  req: IncomingMessage,
  res: ServerResponse,
  reload: (trigger: string) => Promise<void>,
  registry: Registry,
): Promise<void> {
  const path = (req.url ?? '/').split('?')[0];
  const reply = (status: number, body: string, type = 'text/plain; charset=utf-8'): void => {
    res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
  };
  req.resume();
  if (path === '/v1/reload') {
    if (req.method !== 'POST') {
      res.setHeader('Allow', 'POST');
      return reply(405, 'Method not allowed\n');
    }
    try {
      await reload('POST /v1/reload');
      return reply(200, 'OK');
    } catch (err) {
      return reply(500, err instanceof Error ? err.message : String(err));
    }
  }
  if (path === '/metrics' && (req.method === 'GET' || req.method === 'HEAD')) {
    return reply(200, await registry.metrics(), registry.contentType);
  }
  return reply(404, 'Not found\n');
}
