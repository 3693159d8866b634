// A metadata server (child process, small limits) under hostile clients: 20,000 unique 15 KB paths (RSS
// growth < 64 MiB), deep, %-encoded, NUL-carrying, `..` and over-long paths, huge and many headers, bad
// Accept, ETag waits with garbage, absurd maxWait values, many parked long polls and many connections from
// one client, a slow client. After each: the server is alive and answers a valid request right away, and
// bad input got a 4xx, never a 5xx. Bounded: about 20 s (every socket has a timeout).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { fork, type ChildProcess } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';

const CHILD = fileURLToPath(new URL('./metadata-hostile.child.ts', import.meta.url));
const MiB = 1024 * 1024;

interface Stats {
  rss: number;
  heap: number;
  waiting: number;
}

let child: ChildProcess;
let port = 0;

function message<T>(type: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no ${type} from the child`)), 15_000);
    const on = (m: { type: string }): void => {
      if (m.type !== type) return;
      clearTimeout(t);
      child.off('message', on);
      resolve(m as T);
    };
    child.on('message', on);
  });
}

async function stats(): Promise<Stats> {
  const p = message<Stats>('stats');
  child.send({ type: 'stats' });
  return p;
}

interface RawResponse {
  status: number;
  head: string;
  body: string;
}

/** One raw request on its own connection (optionally from a given loopback address); reads until close. */
function raw(data: string | Buffer, opts: { from?: string; timeoutMs?: number } = {}): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, ...(opts.from ? { localAddress: opts.from } : {}) });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no complete answer to ${JSON.stringify(String(data).slice(0, 80))}`));
    }, opts.timeoutMs ?? 5_000);
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', () => undefined);
    s.on('close', () => {
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString('latin1');
      const sep = text.indexOf('\r\n\r\n');
      const head = sep < 0 ? text : text.slice(0, sep);
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0), head, body: sep < 0 ? '' : text.slice(sep + 4) });
    });
    s.write(data);
  });
}

const get = (path: string, headers = '', from?: string): Promise<RawResponse> =>
  raw(`GET ${path} HTTP/1.1\r\nHost: x\r\n${headers}Connection: close\r\n\r\n`, from ? { from } : {});

/** The server is alive and answers a valid request at once. */
async function alive(): Promise<void> {
  const t = Date.now();
  const r = await get('/latest/self/host/name');
  assert.equal(r.status, 200, r.head);
  assert.equal(r.body, 'host-a');
  assert.ok(Date.now() - t < 1_000, `a valid request took ${Date.now() - t} ms`);
  assert.equal(child.exitCode, null);
}

function assert4xx(r: RawResponse, what: string): void {
  assert.ok(r.status >= 400 && r.status < 500, `${what}: ${r.status} ${r.head.split('\r\n')[0] ?? ''}`);
}

/** Opens a long poll that the server parks (or answers at once); resolves with its socket and first bytes. */
function park(path: string, from?: string): { socket: Socket; answered: Promise<string> } {
  const socket = connect({ host: '127.0.0.1', port, ...(from ? { localAddress: from } : {}) });
  socket.on('error', () => undefined);
  const answered = new Promise<string>((resolve) => {
    let got = '';
    socket.on('data', (c: Buffer) => {
      got += c.toString('latin1');
      resolve(got);
    });
    socket.on('close', () => resolve(got));
  });
  socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`);
  return { socket, answered };
}

async function waitingIs(n: number): Promise<void> {
  const end = Date.now() + 5_000;
  let w = -1;
  while (Date.now() < end) {
    w = (await stats()).waiting;
    if (w === n) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(w, n, 'parked long polls');
}

let version = '';

before(async () => {
  child = fork(CHILD, [], { execArgv: ['--expose-gc', '--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  port = (await message<{ port: number }>('ready')).port;
  version = (await get('/latest/version')).body;
  assert.match(version, /^\d+-[0-9a-f]{16}$/);
});
after(() => {
  child.kill('SIGTERM');
});

describe('metadata server under hostile clients', () => {
  it('20,000 unique 15 KB missing paths: 404 each, RSS growth under 64 MiB', async () => {
    const before = await stats();
    const pad = 'x'.repeat(15_000);
    const CONNS = 8;
    const PER = 2_500;
    const BATCH = 50;
    await Promise.all(
      Array.from({ length: CONNS }, (_, c) =>
        new Promise<void>((resolve, reject) => {
          const s = connect({ host: '127.0.0.1', port });
          let answered = 0;
          let sent = 0;
          let tail = '';
          let bad = '';
          const timer = setTimeout(() => reject(new Error(`connection ${c}: ${answered}/${PER} answered`)), 60_000);
          const sendBatch = (): void => {
            let out = '';
            for (let i = 0; i < BATCH && sent < PER; i++, sent++) out += `GET /latest/${c}-${sent}-${pad} HTTP/1.1\r\nHost: x\r\n\r\n`;
            s.write(out);
          };
          s.on('data', (chunk: Buffer) => {
            const text = tail + chunk.toString('latin1');
            let i = -1;
            while ((i = text.indexOf('HTTP/1.1 ', i + 1)) >= 0 && i + 12 <= text.length) {
              answered++;
              const code = text.slice(i + 9, i + 12);
              if (code !== '404') bad = code;
            }
            tail = text.slice(-12);
            if (answered >= PER) {
              clearTimeout(timer);
              s.end();
              if (bad) reject(new Error(`status ${bad} for a missing path`));
              else resolve();
            } else if (answered >= sent - BATCH / 2 && sent < PER) sendBatch();
          });
          s.on('error', reject);
          sendBatch();
        }),
      ),
    );
    const afterStats = await stats();
    const growth = afterStats.rss - before.rss;
    console.log(`RSS ${(before.rss / MiB).toFixed(0)} → ${(afterStats.rss / MiB).toFixed(0)} MiB, heap ${(before.heap / MiB).toFixed(0)} → ${(afterStats.heap / MiB).toFixed(0)} MiB`);
    assert.ok(growth < 64 * MiB, `RSS grew ${(growth / MiB).toFixed(0)} MiB`);
    await alive();
  });

  it('deep, encoded, NUL-carrying, dotted and over-long paths: 4xx (or the clean-path 301), never 5xx', async () => {
    assert.equal((await get(`/latest/${'a/'.repeat(5_000)}b`)).status, 404);
    assert.equal((await get(`/latest/self/${'%41'.repeat(4_000)}`)).status, 404);
    assert.equal((await get('/latest/self/%zz')).status, 400);
    assert.equal((await get('/latest/self/%')).status, 400);
    assert.equal((await get('/latest/self/%00')).status, 404);
    assert.equal((await get('/latest/self/%C0%AE%C0%AE')).status, 404);
    assert4xx(await raw('GET /latest/se\u0000lf HTTP/1.1\r\nHost: x\r\n\r\n'), 'raw NUL in the path');
    const dots = await get('/latest/../../../etc/passwd');
    assert.equal(dots.status, 301);
    assert.match(dots.head, /\r\nLocation: \/etc\/passwd\r\n/i);
    assert.equal((await get('/etc/passwd')).status, 404);
    assert.equal((await get('/latest/%2e%2e/%2e%2e/x')).status, 301);
    assert4xx(await get(`/latest/${'y'.repeat(20_000)}`), 'a path past the header limit');
    assert4xx(await raw('BREW /latest HTTP/1.1\r\nHost: x\r\n\r\n'), 'an unknown method');
    assert4xx(await raw('POST /latest HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello'), 'POST');
    await alive();
  });

  it('huge, many and bad headers: 431 / 4xx or a normal answer, never 5xx', async () => {
    assert.equal((await get('/latest/version', `X-Big: ${'b'.repeat(20_000)}\r\n`)).status, 431);
    let many = '';
    for (let i = 0; i < 1_500; i++) many += `X-${i}: v\r\n`;
    assert.equal((await get('/latest/version', many)).status, 200);
    let tooMany = '';
    for (let i = 0; i < 3_000; i++) tooMany += `X-${i}: vv\r\n`;
    assert.equal((await get('/latest/version', tooMany)).status, 431);
    const accept = await get('/latest/version', `Accept: ${'\u00ff;q=,'.repeat(1_500)}\r\n`);
    assert.equal(accept.status, 200);
    assert.equal(accept.body, version);
    assert.equal((await get('/latest/version', 'If-None-Match: "garbage", W/"x", *\r\n')).status, 200);
    assert.equal((await get('/latest/version', 'X-Forwarded-For: 10.42.0.5\r\n')).status, 400);
    assert4xx(await raw('GET /latest HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n'), 'a malformed header');
    await alive();
  });

  it('ETag waits with garbage and absurd maxWait values: answered or parked within bounds, never 5xx', async () => {
    const etag = await get(`/latest/version?wait_for_change=true&last_etag=${'%22'.repeat(2_000)}&timeout_sec=abc`);
    assert.equal(etag.status, 200); // differs from the current ETag: answered at once
    const values = ['1e308', '-5', 'NaN', 'Infinity', '0x10', '', '99999999999999999999'];
    const polls = values.map((w) => park(`/latest/version?wait=true&value=${version}&maxWait=${w}`));
    await waitingIs(values.length);
    for (const p of polls) p.socket.destroy();
    await waitingIs(0);
    // A long poll on a value that differs returns at once.
    assert.equal((await get('/latest/version?wait=true&value=other&maxWait=1e308')).status, 200);
    await alive();
  });

  it('many parked long polls: 429 beyond the per-client limit, 503 beyond the total; others still served', async () => {
    const polls = Array.from({ length: 60 }, () => park(`/latest/version?wait=true&value=${version}`, '127.0.0.7'));
    await waitingIs(50);
    const refused = await Promise.all(polls.slice(50).map((p) => p.answered));
    for (const r of refused) assert.match(r, /^HTTP\/1\.1 429 /);
    const fromOthers = Array.from({ length: 40 }, (_, i) => park(`/latest/version?wait=true&value=${version}`, `127.0.1.${i + 1}`));
    await waitingIs(80);
    const full = await Promise.all(fromOthers.slice(30).map((p) => p.answered));
    for (const r of full) assert.match(r, /^HTTP\/1\.1 503 /);
    await alive();
    for (const p of [...polls, ...fromOthers]) p.socket.destroy();
    await waitingIs(0);
    // Freed: the client may wait again.
    const again = park(`/latest/version?wait=true&value=${version}`, '127.0.0.7');
    await waitingIs(1);
    again.socket.destroy();
    await waitingIs(0);
  });

  it('many connections from one client: 429 and close beyond the limit; another client unaffected', async () => {
    const socks: Socket[] = [];
    for (let i = 0; i < 210; i++) {
      const s = connect({ host: '127.0.0.1', port, localAddress: '127.0.0.8' });
      s.on('error', () => undefined);
      socks.push(s);
      await new Promise<void>((r) => s.once('connect', () => r()));
    }
    const r = await new Promise<string>((resolve) => {
      const s = socks[209] as Socket;
      let got = '';
      s.on('data', (c: Buffer) => (got += c.toString('latin1')));
      s.on('close', () => resolve(got));
      s.write('GET /latest/version HTTP/1.1\r\nHost: x\r\n\r\n');
    });
    assert.match(r, /^HTTP\/1\.1 429 /);
    assert.match(r, /\r\nConnection: close\r\n/i);
    assert.equal((await get('/latest/version', '', '127.0.0.9')).status, 200);
    for (const s of socks) s.destroy();
    await alive();
  });

  it('a slow client sending its head byte by byte is cut off (408) after the headers timeout', async () => {
    const t = Date.now();
    const got = await new Promise<string>((resolve) => {
      const s = connect({ host: '127.0.0.1', port });
      let out = '';
      s.on('error', () => undefined);
      s.on('data', (c: Buffer) => (out += c.toString('latin1')));
      s.on('close', () => {
        clearInterval(drip);
        resolve(out);
      });
      const head = 'GET /latest/version HTTP/1.1\r\nHost: x\r\nX-Slow: ' + 'z'.repeat(1_000);
      let i = 0;
      const drip = setInterval(() => {
        if (i < head.length) s.write(head[i++] as string);
      }, 100);
      setTimeout(() => s.destroy(), 8_000).unref();
    });
    assert.match(got, /^HTTP\/1\.1 408 /);
    assert.ok(Date.now() - t < 6_000, `cut off after ${Date.now() - t} ms`);
    await alive();
  });
});
