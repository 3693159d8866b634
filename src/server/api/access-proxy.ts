// Container logs, shells and stats of any host, through the control plane (what `drover logs`, `drover exec`
// and the UI use): the API authenticates the user as for every call (an admin key), finds the container's
// host and docker id, and proxies (http-proxy, HTTP and websocket) to that host's agent access endpoints
// (src/agent/access/server.ts) with a token signed for that one request (common/access-token.ts).
//   GET /v1/containers/<id>/logs?follow=1&since=<unix s>&tail=<n>&timestamps=1   text, streamed
//   GET /v1/containers/<id>/exec?cmd=<JSON array>&tty=1                           websocket
//   GET /v1/containers/<id>/stats                                                 websocket (JSON samples)
//   GET /v1/hosts/<id>/stats                                                      websocket (JSON samples)
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { randomBytes } from 'node:crypto';
import httpProxy from 'http-proxy';
import type { Logger } from '../../common/log.js';
import { DroverError, NotFoundError, ValidationError, errorMessage } from '../../common/errors.js';
import { ACCESS_TOKEN_HEADER, signAccess } from '../../common/access-token.js';
import type { Store } from '../db/store.js';
import { authenticate, parseBasicAuth } from '../auth/credentials.js';

/**
 * One-use tickets for the websockets of a browser, which cannot send an Authorization header: an admin
 * asks for one with the API (`POST /v1/containers/<id>?action=execute|stats`, `POST
 * /v1/hosts/<id>?action=stats`, like the original's `execute` action answering a URL and a token), then
 * opens `<url>&token=<token>` (or `?token=`) within `ttlMs`. A ticket opens exactly the path and query it
 * was issued for, once.
 */
export class AccessTickets {
  private readonly open = new Map<string, { path: string; expires: number }>();

  constructor(
    private readonly ttlMs = 60_000,
    private readonly max = 1000,
  ) {}

  issue(path: string): string {
    const now = Date.now();
    for (const [k, t] of this.open) if (t.expires <= now) this.open.delete(k);
    if (this.open.size >= this.max) throw new DroverError(429, 'TooManyTickets', `${this.max} access tickets are waiting to be used; try again in a minute`);
    const token = randomBytes(24).toString('base64url');
    this.open.set(token, { path, expires: now + this.ttlMs });
    return token;
  }

  /** Whether `rawUrl` carries a valid ticket for itself; the URL without its `token` either way. */
  take(rawUrl: string): { ok: boolean; url: string; hadToken: boolean } {
    const u = new URL(rawUrl, 'http://cp');
    const token = u.searchParams.get('token');
    u.searchParams.delete('token');
    const url = u.pathname + (u.searchParams.size ? `?${u.searchParams.toString()}` : '');
    if (token === null) return { ok: false, url, hadToken: false };
    const t = this.open.get(token);
    this.open.delete(token);
    return { ok: t !== undefined && t.expires > Date.now() && t.path === url, url, hadToken: true };
  }
}

/** The API path of an exec session (what a ticket is issued for and the websocket opens). */
export function execPath(containerId: string, cmd: string[], tty: boolean): string {
  const q = new URLSearchParams({ cmd: JSON.stringify(cmd), ...(tty ? { tty: '1' } : {}) });
  return `/v1/containers/${encodeURIComponent(containerId)}/exec?${q.toString()}`;
}

interface Target {
  url: string;
  path: string;
  key: string;
}

const ALLOWED_QUERY: Record<string, readonly string[]> = {
  logs: ['follow', 'since', 'tail', 'timestamps'],
  exec: ['cmd', 'tty'],
  stats: [],
};

/** Where `/v1/<kind>/<id>/<what>?…` goes on the agent, or an error a user can act on. */
export function accessTarget(store: Store, rawUrl: string): Target {
  const url = new URL(rawUrl, 'http://cp');
  const m = /^\/v1\/(containers|hosts)\/([^/]+)\/(logs|exec|stats)$/.exec(url.pathname);
  if (!m) throw new NotFoundError('endpoint', url.pathname);
  const [, kind, id, what] = m as unknown as [string, 'containers' | 'hosts', string, 'logs' | 'exec' | 'stats'];
  const q = new URLSearchParams();
  for (const [k, v] of url.searchParams) {
    if (!ALLOWED_QUERY[what]?.includes(k)) throw new ValidationError('InvalidQuery', `${what} takes no "${k}" (it takes: ${ALLOWED_QUERY[what]?.join(', ') || 'nothing'})`, k);
    q.set(k, v);
  }
  let hostId: string;
  let path: string;
  if (kind === 'hosts') {
    if (what !== 'stats') throw new NotFoundError('endpoint', url.pathname);
    hostId = store.mustGet('host', id).id;
    path = '/host/stats';
  } else {
    const c = store.mustGet('container', id);
    if (!c.hostId) throw new DroverError(409, 'NotScheduled', `container ${c.name} is on no host yet`);
    const dockerId = c.externalId ?? (store.db.prepare('SELECT external_id AS e FROM container_status WHERE container_id = ?').get(c.id) as { e: string | null } | undefined)?.e;
    if (!dockerId) throw new DroverError(409, 'NotCreated', `container ${c.name} has no Docker container yet (its state: ${c.state})`);
    hostId = c.hostId;
    path = `/containers/${dockerId}/${what}`;
  }
  const host = store.mustGet('host', hostId);
  const row = store.db.prepare('SELECT access_port AS p FROM host_status WHERE host_id = ?').get(hostId) as { p: number | null } | undefined;
  if (!row?.p || !host.agentIpAddress) throw new DroverError(503, 'AgentUnreachable', `the agent of host ${host.name} has not told where it serves logs, shells and stats (an older agent, or agent.accessPort 0)`);
  const key = store.db.prepare("SELECT secret_hash AS k FROM api_keys WHERE host_id = ? AND role = 'agent' AND state = 'active' ORDER BY created DESC").get(hostId) as { k: string } | undefined;
  if (!key) throw new DroverError(503, 'AgentUnreachable', `host ${host.name} has no active agent key`);
  const qs = q.toString();
  return { url: `http://${host.agentIpAddress}:${row.p}`, path: qs ? `${path}?${qs}` : path, key: key.k };
}

/** The Koa handler of GET /v1/containers/<id>/logs: streams the agent's answer (errors before it are the API's). */
export function createAccessProxy(store: Store, log: Logger, tickets: AccessTickets = new AccessTickets()) {
  const proxy = httpProxy.createProxyServer({ ws: true, xfwd: false, proxyTimeout: 0 });
  proxy.on('error', (err, _req, resOrSocket) => {
    log.warn({ err: errorMessage(err) }, 'agent access proxy');
    const r = resOrSocket as ServerResponse | Duplex;
    if ('writeHead' in r && typeof r.writeHead === 'function') {
      if (!r.headersSent) {
        r.writeHead(502, { 'content-type': 'application/json' });
        r.end(JSON.stringify({ type: 'error', status: 502, code: 'AgentUnreachable', message: `the host's agent did not answer: ${errorMessage(err)}` }));
      } else r.destroy();
    } else (r as Duplex).destroy();
  });

  return {
    /** Logs (plain HTTP) to `t` (accessTarget of the request): the response is the agent's. */
    web(req: IncomingMessage, res: ServerResponse, t: Target): void {
      req.url = t.path;
      proxy.web(req, res, { target: t.url, headers: { [ACCESS_TOKEN_HEADER]: signAccess(t.key, 'GET', t.path), authorization: '' } });
    },
    /** Exec and stats websockets, authenticated here with the user's API key like the rest of the API. */
    attach(server: Server): void {
      server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
        const fail = (status: number, message: string) =>
          socket.end(`HTTP/1.1 ${status} ${status === 401 ? 'Unauthorized' : status === 403 ? 'Forbidden' : status === 404 ? 'Not Found' : 'Error'}\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n${JSON.stringify({ type: 'error', status, message })}`);
        try {
          if (!/^\/v1\/(containers|hosts)\/[^/]+\/(exec|stats)(\?|$)/.test(req.url ?? '')) return fail(404, `no websocket at ${(req.url ?? '').split('?')[0]}`);
          const ticket = tickets.take(req.url ?? '');
          if (ticket.hadToken) {
            if (!ticket.ok) return fail(401, 'Unauthorized: the access token is unknown, used, expired or for another session (ask for a new one)');
            req.url = ticket.url;
          } else {
            const creds = parseBasicAuth(req.headers.authorization);
            if (!creds) return fail(401, 'Unauthorized: give an API key (HTTP basic auth) or an access token (?token=)');
            const p = authenticate(store, creds.accessKey, creds.secretKey);
            if (p.role !== 'admin') return fail(403, 'only an admin key opens shells and stats');
          }
          const t = accessTarget(store, req.url ?? '');
          req.url = t.path;
          delete req.headers.authorization;
          req.headers[ACCESS_TOKEN_HEADER] = signAccess(t.key, 'GET', t.path);
          proxy.ws(req, socket, head, { target: t.url });
        } catch (err) {
          const e = err as DroverError;
          fail(typeof e.status === 'number' ? e.status : 500, errorMessage(err));
        }
      });
    },
  };
}
