// The agent's access endpoints, for the control plane only (it proxies users' `drover logs`, `drover exec`
// and stats to them, src/server/api/access-proxy.ts): every request carries a token the control plane
// signed for exactly that request line (common/access-token.ts), anything else is a 401; only containers
// drover manages (a drover uuid label) can be reached.
//   GET /containers/<docker id>/logs?follow=1&since=<unix s>&tail=<n>&timestamps=1   text, streamed
//   GET /containers/<docker id>/exec?cmd=<JSON array>&tty=1                           websocket
//   GET /containers/<docker id>/stats                                                 websocket, JSON samples
//   GET /host/stats                                                                   websocket, JSON samples
// Exec frames: binary = terminal bytes both ways; text = control, `{"resize":[cols,rows]}` from the client,
// `{"exit":<code>}` from the agent before it closes.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { PassThrough } from 'node:stream';
import type Dockerode from 'dockerode';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Logger } from '../../common/log.js';
import { errorMessage } from '../../common/errors.js';
import { ACCESS_TOKEN_HEADER, checkAccess } from '../../common/access-token.js';
import { LABELS } from '../../model/labels.js';
import { containerSample, hostSampler, type StatsSample } from './stats.js';

export interface AccessServerOptions {
  log: Logger;
  docker: Dockerode;
  /** The HMAC key (sha256 of the agent's API secret); undefined until the agent has its identity. */
  key: () => string | undefined;
  host: string;
  port: number;
  /** Interval of the stats streams (ms, default 1000). */
  statsIntervalMs?: number;
}

export interface AccessServer {
  port: number;
  close(): Promise<void>;
}

const DOCKER_ID = /^[0-9a-f]{12,64}$/;
const MAX_CMD = 64;
/** At most this many exec sessions and stats streams at once (each holds a Docker stream). */
const MAX_SESSIONS = 32;

function reply(res: ServerResponse, status: number, message: string): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' });
  res.end(`${message}\n`);
}

function rejectUpgrade(socket: Duplex, status: number, message: string): void {
  socket.end(`HTTP/1.1 ${status} ${status === 401 ? 'Unauthorized' : status === 404 ? 'Not Found' : 'Bad Request'}\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n${message}\n`);
}

export async function startAccessServer(o: AccessServerOptions): Promise<AccessServer> {
  const log = o.log.child({ component: 'access' });
  const wss = new WebSocketServer({ noServer: true, maxPayload: 1 << 20 });
  let sessions = 0;
  const sampler = hostSampler();

  /** Why the request may not go on (status, message), or the docker container id it names. */
  async function authorize(req: IncomingMessage): Promise<{ status: number; message: string } | { url: URL; id?: string; info?: Dockerode.ContainerInspectInfo }> {
    const url = new URL(req.url ?? '/', 'http://agent');
    const key = o.key();
    if (!key) return { status: 503, message: 'the agent has not registered yet' };
    const token = req.headers[ACCESS_TOKEN_HEADER];
    const why = checkAccess(key, typeof token === 'string' ? token : undefined, req.method ?? 'GET', url.pathname + url.search);
    if (why) return { status: 401, message: why };
    const m = /^\/containers\/([^/]+)\/(logs|exec|stats)$/.exec(url.pathname);
    if (!m) return url.pathname === '/host/stats' ? { url } : { status: 404, message: `no such endpoint ${url.pathname}` };
    const id = m[1] as string;
    if (!DOCKER_ID.test(id)) return { status: 400, message: 'expected a docker container id' };
    const info = await o.docker
      .getContainer(id)
      .inspect()
      .catch(() => undefined);
    if (!info || !info.Config.Labels?.[LABELS.containerUuid]) return { status: 404, message: `no container ${id.slice(0, 12)} managed by drover on this host` };
    return { url, id, info };
  }

  const server: Server = createServer((req, res) => {
    void (async () => {
      if (req.method !== 'GET') return reply(res, 405, 'GET only');
      const a = await authorize(req);
      if ('status' in a) return reply(res, a.status, a.message);
      if (!a.id || !a.url.pathname.endsWith('/logs')) return reply(res, 400, 'this endpoint is a websocket');
      const q = a.url.searchParams;
      const follow = q.get('follow') === '1';
      const since = Number(q.get('since') ?? '0');
      const tail = q.get('tail');
      if (!Number.isInteger(since) || since < 0 || (tail !== null && tail !== 'all' && !/^\d{1,7}$/.test(tail))) return reply(res, 400, 'since is unix seconds, tail a number or all');
      const tty = a.info?.Config.Tty === true;
      const opts = { stdout: true, stderr: true, timestamps: q.get('timestamps') === '1', since, ...(tail !== null && tail !== 'all' ? { tail: Number(tail) } : {}) };
      const c = o.docker.getContainer(a.id);
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'x-content-type-options': 'nosniff' });
      if (!follow) {
        const buf = (await c.logs({ ...opts, follow: false })) as unknown as Buffer;
        res.end(tty ? buf : demuxBuffer(buf));
        return;
      }
      const stream = (await c.logs({ ...opts, follow: true })) as unknown as NodeJS.ReadableStream & { destroy?: () => void };
      const out = new PassThrough();
      out.pipe(res);
      if (tty) stream.pipe(out);
      else o.docker.modem.demuxStream(stream, out, out);
      stream.on('end', () => out.end());
      res.on('close', () => stream.destroy?.());
    })().catch((err: unknown) => {
      log.warn({ err: errorMessage(err) }, 'access request failed');
      if (!res.headersSent) reply(res, 502, `docker: ${errorMessage(err)}`);
      else res.destroy();
    });
  });

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    void (async () => {
      const a = await authorize(req);
      if ('status' in a) return rejectUpgrade(socket, a.status, a.message);
      if (a.url.pathname.endsWith('/logs')) return rejectUpgrade(socket, 400, 'logs is plain HTTP');
      if (sessions >= MAX_SESSIONS) return rejectUpgrade(socket, 400, `too many sessions on this agent (${MAX_SESSIONS})`);
      wss.handleUpgrade(req, socket, head, (ws) => {
        sessions++;
        ws.once('close', () => sessions--);
        if (a.url.pathname === '/host/stats') streamSamples(ws, () => Promise.resolve(sampler()));
        else if (a.url.pathname.endsWith('/stats')) streamSamples(ws, () => containerSample(o.docker, a.id as string));
        else void exec(ws, a.id as string, a.url.searchParams);
      });
    })().catch((err: unknown) => {
      log.warn({ err: errorMessage(err) }, 'access upgrade failed');
      socket.destroy();
    });
  });

  function streamSamples(ws: WebSocket, sample: () => Promise<StatsSample | undefined>): void {
    let busy = false;
    const tick = async () => {
      if (busy || ws.readyState !== ws.OPEN) return;
      busy = true;
      try {
        const s = await sample();
        if (s) ws.send(JSON.stringify(s));
        else ws.close(1011, 'the container is gone');
      } catch (err) {
        ws.close(1011, errorMessage(err).slice(0, 120));
      } finally {
        busy = false;
      }
    };
    void tick();
    const timer = setInterval(() => void tick(), o.statsIntervalMs ?? 1000);
    ws.once('close', () => clearInterval(timer));
  }

  async function exec(ws: WebSocket, id: string, q: URLSearchParams): Promise<void> {
    let cmd: unknown;
    try {
      cmd = JSON.parse(q.get('cmd') ?? '["sh"]');
    } catch {
      cmd = undefined;
    }
    if (!Array.isArray(cmd) || cmd.length === 0 || cmd.length > MAX_CMD || !cmd.every((x) => typeof x === 'string' && x.length < 4096)) {
      ws.close(1008, 'cmd must be a JSON array of strings');
      return;
    }
    const tty = q.get('tty') === '1';
    try {
      const ex = await o.docker.getContainer(id).exec({ Cmd: cmd as string[], AttachStdin: true, AttachStdout: true, AttachStderr: true, Tty: tty });
      const stream = (await ex.start({ hijack: true, stdin: true, Tty: tty })) as Duplex;
      const toClient = new PassThrough();
      toClient.on('data', (d: Buffer) => ws.send(d, { binary: true }));
      if (tty) stream.pipe(toClient);
      else o.docker.modem.demuxStream(stream, toClient, toClient);
      ws.on('message', (data, isBinary) => {
        if (isBinary) {
          stream.write(data as Buffer);
          return;
        }
        try {
          const msg = JSON.parse(String(data)) as { resize?: [number, number]; eof?: boolean };
          if (msg.resize && tty) void ex.resize({ w: msg.resize[0], h: msg.resize[1] }).catch(() => undefined);
          if (msg.eof) stream.end();
        } catch {
          // not a control message: ignored
        }
      });
      ws.once('close', () => stream.destroy());
      stream.once('end', () => {
        void ex
          .inspect()
          .then((i) => {
            if (ws.readyState === ws.OPEN) ws.send(JSON.stringify({ exit: i.ExitCode ?? 0 }));
          })
          .catch(() => undefined)
          .finally(() => ws.close(1000));
      });
    } catch (err) {
      ws.close(1011, `docker: ${errorMessage(err)}`.slice(0, 120));
    }
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  log.info({ host: o.host, port }, 'container access (logs, exec, stats) for the control plane');
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of wss.clients) c.terminate();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Docker's multiplexed log format (8-byte frame headers) to plain bytes. */
export function demuxBuffer(buf: Buffer): Buffer {
  const parts: Buffer[] = [];
  let i = 0;
  while (i + 8 <= buf.length) {
    const len = buf.readUInt32BE(i + 4);
    parts.push(buf.subarray(i + 8, Math.min(buf.length, i + 8 + len)));
    i += 8 + len;
  }
  return Buffer.concat(parts);
}
