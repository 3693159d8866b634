// One health check attempt against `<ip>:<port>`, addressed by IP so that any host that can reach the
// container's address can run it (today the container's own host; other hosts' agents once the overlay
// network exists). TCP: healthy when the connection is accepted. HTTP (a request_line): healthy when the
// status line says 2xx or 3xx, as HAProxy's httpchk. Everything ends within `timeoutMs`; every socket
// error is a failed check with its reason, never an exception.
import net from 'node:net';
import { requestBytes, type HttpCheckRequest } from './request-line.js';

export interface ProbeTarget {
  ip: string;
  port: number;
  /** Absent: a TCP connect check. */
  http?: HttpCheckRequest | undefined;
  timeoutMs: number;
}

export interface ProbeResult {
  ok: boolean;
  /** Why it failed (or the HTTP status line), for logs and the container's message. */
  detail: string;
}

export type Probe = (t: ProbeTarget, signal?: AbortSignal) => Promise<ProbeResult>;

/** The status line must arrive within this many bytes. */
const MAX_STATUS_LINE = 1024;
const STATUS_LINE = /^HTTP\/\d\.\d (\d{3})(?: |$)/;

export const probe: Probe = (t, signal) =>
  new Promise<ProbeResult>((resolve) => {
    let done = false;
    let buf = '';
    const sock = net.connect({ host: t.ip, port: t.port, noDelay: true });
    const finish = (ok: boolean, detail: string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      sock.removeAllListeners('data');
      sock.on('error', () => undefined);
      sock.destroy();
      resolve({ ok, detail });
    };
    const onAbort = () => finish(false, 'cancelled');
    const timer = setTimeout(() => finish(false, `no ${t.http ? 'response' : 'connection'} within ${t.timeoutMs} ms`), t.timeoutMs);
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
    sock.on('error', (err: NodeJS.ErrnoException) => finish(false, err.code ?? err.message));
    sock.on('close', () => finish(false, t.http ? 'connection closed before a status line' : 'connection closed'));
    sock.once('connect', () => {
      if (!t.http) {
        finish(true, 'connected');
        return;
      }
      sock.write(requestBytes(t.http, t.ip, t.port));
    });
    sock.on('data', (chunk: Buffer) => {
      buf += chunk.toString('latin1', 0, Math.min(chunk.length, MAX_STATUS_LINE + 2 - buf.length));
      const eol = buf.indexOf('\n');
      if (eol < 0) {
        if (buf.length > MAX_STATUS_LINE) finish(false, `no status line in the first ${MAX_STATUS_LINE} bytes`);
        return;
      }
      const line = buf.slice(0, eol).replace(/\r$/, '');
      const m = STATUS_LINE.exec(line);
      if (!m) {
        finish(false, `not an HTTP status line: ${JSON.stringify(line.slice(0, 80))}`);
        return;
      }
      const code = Number(m[1]);
      finish(code >= 200 && code < 400, line.slice(0, 80));
    });
  });
