// The web UI's files (built by scripts/build-ui.mjs into dist/ui), served by the control plane at `/`
// and `/ui/<file>` without authentication: they hold no data; every call they make goes through /v1 with
// the user's API key, like the CLI's. Read once at start into memory (≈ 2 MiB, most of it source maps),
// with ETags; a strict Content-Security-Policy (same origin only, no inline script; inline style for
// xterm.js).
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Context, Next } from 'koa';
import type { Logger } from '../common/log.js';

/** dist/ui of this package: the same from src/server (tests, tsx) and dist/server (built). */
export const DEFAULT_UI_DIR = fileURLToPath(new URL('../../dist/ui/', import.meta.url));

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
};

const CSP = [
  "default-src 'self'",
  "script-src 'self'",
  // xterm.js (the shell) themes its terminal with a <style> element it creates: inline styles, no scripts.
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
  "form-action 'self'",
].join('; ');

interface File {
  body: Buffer;
  type: string;
  etag: string;
}

function load(dir: string): Map<string, File> {
  const files = new Map<string, File>();
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (!statSync(path).isFile()) continue;
    const body = readFileSync(path);
    files.set(name, { body, type: TYPES[extname(name)] ?? 'application/octet-stream', etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"` });
  }
  return files;
}

/**
 * Koa middleware for `GET|HEAD /` and `/ui/<file>`. `dir` null: no UI (`/` answers 404 saying so). A
 * missing directory (a checkout that was not built) is logged once and answered the same way.
 */
export function uiMiddleware(dir: string | null, log: Logger) {
  let files: Map<string, File> | undefined;
  let why = 'the web UI is turned off on this server';
  if (dir !== null) {
    try {
      files = load(dir);
      if (!files.has('index.html')) throw new Error(`no index.html in ${dir}`);
    } catch (err) {
      files = undefined;
      why = `the web UI is not built (${err instanceof Error ? err.message : String(err)}): run npm run build`;
      log.warn({ dir }, why);
    }
  }
  return async (ctx: Context, next: Next): Promise<void> => {
    // Browsers ask for /favicon.ico on their own: a plain 404, not the API's 401.
    const name = ctx.path === '/' ? 'index.html' : ctx.path.startsWith('/ui/') ? ctx.path.slice(4) : ctx.path === '/favicon.ico' ? '' : undefined;
    if (name === undefined || (ctx.method !== 'GET' && ctx.method !== 'HEAD')) return next();
    const f = files?.get(name);
    if (!f) {
      ctx.status = 404;
      ctx.type = 'text/plain';
      ctx.body = files ? `no such file: ${ctx.path}\n` : `${why}\n`;
      return;
    }
    ctx.set('Content-Security-Policy', CSP);
    ctx.set('X-Content-Type-Options', 'nosniff');
    ctx.set('Referrer-Policy', 'no-referrer');
    // Not content-hashed names: always revalidate (a 304 when unchanged).
    ctx.set('Cache-Control', 'no-cache');
    ctx.set('ETag', f.etag);
    if (ctx.get('If-None-Match') === f.etag) {
      ctx.status = 304;
      return;
    }
    ctx.type = f.type;
    ctx.body = f.body;
  };
}
