// Web UI load time in a real browser (headless Chromium, Debian's package, driven by playwright-core)
// against `drover server` from dist/ holding 1,000 services (one stack, one container each, 20 hosts).
// Per page, over fresh browser contexts (no cache): first contentful paint (the browser's paint timing)
// and the time until the page shows its data (the first row of its list), both from navigation start.
// Reference, same run and browser: a static HTML page with a table of the same 50 rows the stack page
// shows, served by a bare node http server.
//
//   npm run build && node --import tsx bench/ui.ts [--services 1000] [--loads 5]
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { freePort } from '../test/helpers/ports.js';

const argOf = (name: string, def: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const SERVICES = argOf('services', 1000);
const LOADS = argOf('loads', 5);
const HOSTS = 20;
const ROOT = new URL('..', import.meta.url).pathname;
const ENTRY = join(ROOT, 'dist/cli/main.js');
const CHROMIUM = process.env.DROVER_CHROMIUM ?? '/usr/bin/chromium';
const ADMIN = { accessKey: 'BENCHADMINKEY', secretKey: 'bench-admin-secret-0123456789' };
const AUTH = 'Basic ' + Buffer.from(`${ADMIN.accessKey}:${ADMIN.secretKey}`).toString('base64');

async function api<T>(url: string, method: string, path: string, body?: unknown): Promise<T> {
  const r = await fetch(url + path, { method, headers: { authorization: AUTH, 'content-type': 'application/json' }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${text.slice(0, 300)}`);
  return JSON.parse(text) as T;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const line = (xs: number[]) => `median ${median(xs).toFixed(0)} ms, max ${Math.max(...xs).toFixed(0)} ms`;

interface Load {
  fcp: number;
  shown: number;
}

async function measure(browser: Browser, url: string, selector: string, session?: string): Promise<Load> {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  try {
    const page = await ctx.newPage();
    if (session) await page.addInitScript(`sessionStorage.setItem('drover.session', ${JSON.stringify(session)})`);
    await page.goto(url);
    await page.locator(selector).first().waitFor({ timeout: 30_000 });
    const shown = (await page.evaluate('performance.now()')) as number;
    const fcp = (await page.evaluate(`new Promise((resolve) => {
      const get = () => performance.getEntriesByName('first-contentful-paint')[0];
      const e = get();
      if (e) return resolve(e.startTime);
      new PerformanceObserver(() => resolve(get()?.startTime ?? NaN)).observe({ type: 'paint', buffered: true });
    })`)) as number;
    return { fcp, shown };
  } finally {
    await ctx.close();
  }
}

async function main(): Promise<void> {
  if (!existsSync(join(ROOT, 'dist/ui/index.html'))) throw new Error('run `npm run build` first (dist/ui is the UI this bench loads)');
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: apt-get install chromium`);
  const dir = mkdtempSync(join(tmpdir(), 'drover-ui-bench-'));
  const children: ChildProcess[] = [];
  let browser: Browser | undefined;
  let ref: http.Server | undefined;
  try {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const srv = spawn(process.execPath, [ENTRY, 'server', '--data', dir, '--listen', `127.0.0.1:${port}`, '--log-level', 'warn'], {
      stdio: ['ignore', 'ignore', 'inherit'],
      env: { ...process.env, DROVER_ADMIN_ACCESS_KEY: ADMIN.accessKey, DROVER_ADMIN_SECRET_KEY: ADMIN.secretKey },
    });
    children.push(srv);
    for (let i = 0; ; i++) {
      try {
        if ((await fetch(`${url}/v1/version`)).ok) break;
      } catch {
        // not yet
      }
      if (i > 600) throw new Error('the server did not start');
      await new Promise((r) => setTimeout(r, 50));
    }
    const tok = await api<{ token: string }>(url, 'POST', '/v1/registrationtokens', {});
    for (let i = 0; i < HOSTS; i++) await api(url, 'POST', '/v1/agent/register', { token: tok.token, hostname: `h${i}`, agentIpAddress: `192.0.2.${10 + i}` });
    let text = '';
    for (let i = 0; i < SERVICES; i++) text += `svc${i}:\n  image: nginx:1.25\n${i > 0 ? `  links:\n    - svc${i - 1}:prev\n` : ''}`;
    const stack = await api<{ id: string }>(url, 'POST', '/v1/stacks', { name: 'big', dockerCompose: text });

    // Reference: the stack page's first 50 rows as static HTML from a bare node server.
    let rows = '';
    for (let i = 0; i < 50; i++) rows += `<tr data-service="svc${i}"><td>svc${i}</td><td>nginx:1.25</td><td>active</td><td>1</td><td>1/1 running</td></tr><tr><td colspan="5">big-svc${i}-1 running on h${i % HOSTS} 10.42.0.${i}</td></tr>`;
    const html = `<!doctype html><html><head><meta charset="utf-8"><title>ref</title></head><body><h2>big</h2><table>${rows}</table></body></html>`;
    const refPort = await freePort();
    ref = http.createServer((_q, s) => {
      s.writeHead(200, { 'content-type': 'text/html' });
      s.end(html);
    });
    await new Promise<void>((r) => ref!.listen(refPort, '127.0.0.1', () => r()));

    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
    const session = JSON.stringify(ADMIN);
    const cases: [string, string, string | undefined, string][] = [
      ['reference: static HTML, 50 rows (bare node http)', `http://127.0.0.1:${refPort}/`, undefined, 'tr[data-service]'],
      ['login page', `${url}/`, undefined, 'button[type=submit]'],
      [`stacks page`, `${url}/#/stacks`, session, 'tr[data-stack="big"]'],
      [`stack page, ${SERVICES} services (50 shown per page)`, `${url}/#/stacks/${stack.id}`, session, 'tr[data-service]'],
      [`hosts page, ${HOSTS} hosts`, `${url}/#/hosts`, session, 'tr[data-host]'],
    ];
    console.log(`drover web UI bench: ${SERVICES} services, ${HOSTS} hosts, Chromium ${browser.version()}, ${LOADS} loads per page in fresh contexts, node ${process.version}`);
    // One warm-up load of each (the browser's own start-up costs), not counted.
    for (const [, u, s, sel] of cases) await measure(browser, u, sel, s);
    for (const [name, u, s, sel] of cases) {
      const loads: Load[] = [];
      for (let k = 0; k < LOADS; k++) loads.push(await measure(browser, u, sel, s));
      console.log(`  ${name.padEnd(52)} first contentful paint ${line(loads.map((l) => l.fcp))}; data shown ${line(loads.map((l) => l.shown))}`);
    }
  } finally {
    await browser?.close();
    ref?.close();
    for (const c of children) c.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 500));
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
