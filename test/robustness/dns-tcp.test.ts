// DNS over TCP under hostile clients (issue 9 items 1, 3, 4, 5): CPU-bomb frames, pipeliners that never
// read, slowloris, the connection caps, zero-length and partial frames, resets mid-answer, half-close,
// out-of-order answers, and recursed (asynchronous) answers — in-process, and for the crash of item 1
// also in a `drover dns` child process that must still be running afterwards.
// Each test: the server is alive and answers a valid query (UDP and TCP) afterwards. Bound: ~25 s for the file.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import dns2 from 'dns2';
import { DnsServer, type DnsServerOptions } from '../../src/dns/server.js';
import { TYPE } from '../../src/dns/wire.js';
import { startLoggingChild } from '../helpers/child.js';
import { eventually } from '../helpers/wait.js';
import { startUpstream, type FakeUpstream } from '../integration/dns-helpers.js';
import {
  bombMessages,
  closedBy,
  connect,
  frame,
  FrameReader,
  query,
  recordingLogger,
  robustData,
  rssMiB,
  tcpExchange,
  udpAsk,
} from './dns-tools.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function counter(server: DnsServer, name: string, label: string): Promise<number> {
  const m = server.metrics.registry.getSingleMetric(name);
  if (!m) return 0;
  const v = await m.get();
  return v.values.filter((x) => x.labels.reason === label).reduce((n, x) => n + x.value, 0);
}

async function gauge(server: DnsServer): Promise<number> {
  const m = server.metrics.registry.getSingleMetric('drover_dns_tcp_connections');
  return m ? ((await m.get()).values[0]?.value ?? 0) : -1;
}

/** The server answers a local name over UDP and over TCP (dns2's client). */
async function assertServing(port: number): Promise<void> {
  const u = await udpAsk(port, 'db.rancher.internal');
  assert.equal(u.rcode, 0);
  assert.equal(u.ancount, 1);
  const t = await dns2.TCPClient({ dns: '127.0.0.1', port })('web.app.rancher.internal', 'A');
  assert.deepEqual(t.answers.map((a) => a.address).sort(), ['10.0.0.5', '10.0.0.6']);
}

describe('DNS over TCP: hostile clients', () => {
  let up: FakeUpstream;
  let blackhole: dgram.Socket;
  let blackholePort: number;

  before(async () => {
    up = await startUpstream();
    up.zone.set('www.example.test', [{ type: 'A', data: '192.0.2.80', ttl: 100 }]);
    for (let i = 0; i < 50; i++) up.zone.set(`n${i}.example.test`, [{ type: 'A', data: `192.0.2.${i + 1}`, ttl: 1 }]);
    blackhole = dgram.createSocket('udp4');
    await new Promise<void>((r) => blackhole.bind(0, '127.0.0.1', () => r()));
    blackholePort = blackhole.address().port;
  });

  after(async () => {
    await up.close();
    blackhole.close();
  });

  async function startServer(opts: DnsServerOptions = {}): Promise<{ server: DnsServer; port: number }> {
    const server = new DnsServer({ data: robustData(`127.0.0.1:${up.port}`, `127.0.0.1:${blackholePort}`), recurserTimeoutMs: 400, ...opts });
    const { port } = await server.listen('127.0.0.1', 0);
    return { server, port };
  }

  test('item 1: recursed (asynchronous) TCP answers do not crash; no error is logged for TCP answers', { timeout: 30_000 }, async () => {
    const rec = recordingLogger();
    const { server, port } = await startServer({ log: rec.log });
    try {
      const client = dns2.TCPClient({ dns: '127.0.0.1', port });
      const r = await client('www.example.test', 'A');
      assert.equal(r.answers[0]?.address, '192.0.2.80');
      for (let i = 0; i < 20; i++) assert.equal((await client(`n${i}.example.test`, 'A')).answers[0]?.address, `192.0.2.${i + 1}`);
      // sync (local) answers, and a pipelined mix on one connection
      assert.equal((await client('db.rancher.internal', 'A')).answers[0]?.address, '10.0.0.7');
      const mixed = [query('db.rancher.internal'), query('n30.example.test'), query('big.rancher.internal'), query('n31.example.test')];
      const { replies } = await tcpExchange(port, mixed.map(frame), { expect: 4 });
      assert.deepEqual(replies.map((x) => x.rcode), [0, 0, 0, 0]);
      await assertServing(port);
      assert.deepEqual(rec.errors(), [], 'nothing logged at error level');
    } finally {
      await server.close();
    }
  });

  test('item 1 in a `drover dns` process: recursed TCP answers, the process keeps running', { timeout: 30_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'drover-dns-tcp-'));
    const file = join(dir, 'answers.json');
    writeFileSync(file, JSON.stringify({ default: { authoritative: ['rancher.internal'], recurse: [`127.0.0.1:${up.port}`], a: { 'db.rancher.internal.': { answer: ['10.0.0.7'] } } } }));
    const c = startLoggingChild(['--import', 'tsx', 'test/fixtures/dns-cli.ts', 'dns', '--answers', file, '--listen', '127.0.0.1:0', '--reload-listen', 'off']);
    try {
      const port = Number((await c.waitLog((l) => l.msg === 'DNS server listening (UDP and TCP)')).port);
      const client = dns2.TCPClient({ dns: '127.0.0.1', port });
      for (let i = 0; i < 5; i++) assert.equal((await client(`n${40 + i}.example.test`, 'A')).answers[0]?.address, `192.0.2.${41 + i}`);
      assert.equal((await client('db.rancher.internal', 'A')).answers[0]?.address, '10.0.0.7');
      await sleep(300); // an unhandled rejection would end the process by now
      assert.equal(c.proc.exitCode, null, 'the process is still running');
      assert.equal((await udpAsk(port, 'db.rancher.internal')).ancount, 1);
      assert.deepEqual(c.logs.filter((l) => Number(l.level) >= 50), [], 'nothing logged at error level');
    } finally {
      c.proc.kill('SIGTERM');
      await c.exited;
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('item 3: CPU-bomb frames (counts 0xFFFF, compression chains, 64 KiB of garbage) do not stall the loop', { timeout: 30_000 }, async (t) => {
    const { server, port } = await startServer();
    const h = monitorEventLoopDelay({ resolution: 10 });
    const socks: net.Socket[] = [];
    try {
      // A header claiming 0xFFFF records per section; a chain of 5,000 compression pointers; 64 KiB of garbage.
      const { header, chain, garbage } = bombMessages();
      const bombs = [...Array.from({ length: 20 }, () => header), ...Array.from({ length: 5 }, () => chain), ...Array.from({ length: 5 }, () => garbage)];
      h.enable();
      // One connection per bomb (a parser error may close a connection), each sent three times.
      for (const b of bombs) {
        const s = await connect(port);
        s.on('error', () => undefined);
        s.on('data', () => undefined);
        s.write(Buffer.concat([frame(b), frame(b), frame(b)]));
        socks.push(s);
      }
      const probes: number[] = [];
      for (let i = 0; i < 10; i++) {
        probes.push((await udpAsk(port, 'db.rancher.internal', { timeoutMs: 2000, tries: 2 })).ms);
        await sleep(30);
      }
      h.disable();
      const maxDelay = h.max / 1e6;
      t.diagnostic(`event loop delay max ${maxDelay.toFixed(1)} ms, UDP probes max ${Math.max(...probes).toFixed(1)} ms during ${bombs.length * 3} bomb frames`);
      assert.ok(maxDelay < 1000, `event loop blocked for ${maxDelay.toFixed(0)} ms`);
      assert.ok(Math.max(...probes) < 2000, `UDP probes took ${probes.map((x) => x.toFixed(0)).join(', ')} ms`);
      await assertServing(port);
    } finally {
      for (const s of socks) s.destroy();
      await server.close();
    }
  });

  test('item 4: pipeliners that never read: bounded memory, other clients answered, closed when idle', { timeout: 30_000 }, async (t) => {
    const { server, port } = await startServer({ tcp: { idleTimeoutMs: 2000 } });
    const socks: net.Socket[] = [];
    try {
      const rss0 = rssMiB();
      const burst = Buffer.concat(Array.from({ length: 20_000 }, () => frame(query('big.rancher.internal', TYPE.A, 7, 0))));
      for (let i = 0; i < 8; i++) {
        const s = await connect(port);
        s.on('error', () => undefined);
        s.pause(); // never reads: replies pile up in the kernel, then in the server
        s.write(burst);
        socks.push(s);
      }
      await eventually(async () => (await counter(server, 'drover_dns_tcp_paused_total', 'queued-bytes')) >= 8, 8000, 'all 8 pipeliners paused').catch(() => undefined);
      await sleep(500);
      const growth = rssMiB() - rss0;
      t.diagnostic(`RSS growth ${growth.toFixed(1)} MiB (server and clients in this process)`);
      assert.ok(growth < 100, `RSS grew by ${growth.toFixed(0)} MiB`);
      await assertServing(port);
      // Paused, they have no complete query: the idle timeout closes them (seen on the server's side:
      // a client that does not read does not notice the reset either).
      await eventually(async () => (await gauge(server)) === 0, 8000, 'the pipeliners closed');
      assert.ok((await counter(server, 'drover_dns_tcp_closed_total', 'idle')) >= 8);
    } finally {
      for (const s of socks) s.destroy();
      await server.close();
    }
  });

  test('item 4: over the global reply budget the heaviest connection is closed', { timeout: 30_000 }, async () => {
    const { server, port } = await startServer({ tcp: { maxQueuedBytesTotal: 100_000 } });
    const socks: net.Socket[] = [];
    try {
      const burst = Buffer.concat(Array.from({ length: 10_000 }, () => frame(query('big.rancher.internal', TYPE.A, 7, 0))));
      for (let i = 0; i < 8; i++) {
        const s = await connect(port);
        s.on('error', () => undefined);
        s.pause();
        s.write(burst);
        socks.push(s);
      }
      await eventually(async () => (await counter(server, 'drover_dns_tcp_closed_total', 'shed')) >= 1, 8000, 'a connection shed');
      await assertServing(port);
    } finally {
      for (const s of socks) s.destroy();
      await server.close();
    }
  });

  test('item 5: slowloris — byte tricklers closed at the frame deadline, silent ones at the idle timeout; steady clients stay', { timeout: 30_000 }, async () => {
    const { server, port } = await startServer({ tcp: { idleTimeoutMs: 1000, frameTimeoutMs: 600, maxConnectionsPerClient: 200 } });
    const tricklers: net.Socket[] = [];
    const silent: net.Socket[] = [];
    const timers: NodeJS.Timeout[] = [];
    try {
      const f = frame(query('db.rancher.internal'));
      for (let i = 0; i < 60; i++) {
        const s = await connect(port);
        s.on('error', () => undefined);
        let k = 0;
        timers.push(setInterval(() => !s.destroyed && s.write(f.subarray(k % f.length, (k++ % f.length) + 1)), 150));
        tricklers.push(s);
      }
      for (let i = 0; i < 20; i++) silent.push(await connect(port));
      // A steady client: one complete query every 300 ms, answered every time, never closed.
      const steady = await connect(port);
      steady.on('error', () => undefined);
      const reader = new FrameReader();
      steady.on('data', (c: Buffer) => reader.push(c));
      timers.push(setInterval(() => steady.write(f), 300));
      const t0 = performance.now();
      const t = await Promise.all([...tricklers, ...silent].map((s) => Promise.race([closedBy(s), sleep(4000).then(() => -1)])));
      assert.ok(t.slice(0, 60).every((ms) => ms >= 0), `tricklers closed after ${t.slice(0, 60).map((x) => x.toFixed(0)).join(', ')} ms`);
      assert.ok(t.slice(60).every((ms) => ms >= 0), `silent connections closed after ${t.slice(60).map((x) => x.toFixed(0)).join(', ')} ms`);
      assert.ok((await counter(server, 'drover_dns_tcp_closed_total', 'frame-timeout')) >= 60);
      await sleep(2500 - (performance.now() - t0)); // longer than the idle timeout
      assert.ok(!steady.destroyed, 'the steady client is still connected');
      assert.ok(reader.messages.length >= 5, `steady client answered ${reader.messages.length} times`);
      steady.destroy();
      await assertServing(port);
    } finally {
      for (const x of timers) clearInterval(x);
      for (const s of [...tricklers, ...silent]) s.destroy();
      await server.close();
    }
  });

  test('item 5: connection caps — per client refused; over the total the idlest goes, or the new one is refused', { timeout: 30_000 }, async () => {
    const { server, port } = await startServer({ tcp: { maxConnections: 16, maxConnectionsPerClient: 8 } });
    const socks: net.Socket[] = [];
    const open = async (from: string): Promise<net.Socket> => {
      const s = await connect(port, from);
      s.on('error', () => undefined);
      socks.push(s);
      return s;
    };
    try {
      const first: net.Socket[] = [];
      for (let i = 0; i < 8; i++) first.push(await open('127.0.0.1'));
      await sleep(50);
      // 9th from the same address: refused
      const ninth = await open('127.0.0.1');
      assert.ok((await Promise.race([closedBy(ninth), sleep(2000).then(() => -1)])) >= 0, 'the 9th connection from one address is closed');
      for (let i = 0; i < 8; i++) await open('127.0.0.2');
      await sleep(50);
      // Total cap reached, all idle: a new client gets in and the oldest idle connection goes.
      const { replies } = await tcpExchange(port, [frame(query('db.rancher.internal'))], { expect: 1, localAddress: '127.0.0.4' });
      assert.equal(replies[0]?.ancount, 1);
      assert.ok(first[0]!.destroyed || (await Promise.race([closedBy(first[0]!), sleep(1000).then(() => -1)])) >= 0, 'the idlest was closed');
      assert.ok((await counter(server, 'drover_dns_tcp_closed_total', 'evicted')) >= 1);
      // Fill up again, then make every connection busy (a frame started): a new one is refused.
      await eventually(async () => (await gauge(server)) === 15, 3000, '15 connections open');
      await open('127.0.0.5');
      await eventually(async () => (await gauge(server)) === 16, 3000, '16 connections open');
      for (const s of socks) if (!s.destroyed) s.write(Buffer.from([0]));
      await sleep(100);
      const late = await open('127.0.0.6');
      assert.ok((await Promise.race([closedBy(late), sleep(2000).then(() => -1)])) >= 0, 'refused over the cap');
      assert.ok((await counter(server, 'drover_dns_tcp_closed_total', 'over-cap')) >= 1);
      for (const s of socks) s.destroy();
      await eventually(async () => (await gauge(server)) === 0, 3000, 'all closed');
      await assertServing(port);
    } finally {
      for (const s of socks) s.destroy();
      await server.close();
    }
  });

  test('item 5: zero-length, short and partial frames: the queries behind them are answered; half-close gets every answer', { timeout: 30_000 }, async () => {
    const { server, port } = await startServer();
    try {
      const q = (name: string, id: number): Buffer => frame(query(name, TYPE.A, id));
      const empty = Buffer.from([0, 0]);
      const short = frame(Buffer.from([1, 2, 3, 4, 5]));
      const payload = Buffer.concat([empty, q('db.rancher.internal', 1), short, q('web.app.rancher.internal', 2), empty, empty, q('www.example.test', 3)]);
      // Written at once, then FIN: three answers, then the server closes.
      const a = await tcpExchange(port, [payload], { expect: 3, end: true });
      assert.deepEqual(a.replies.map((r) => r.id).sort(), [1, 2, 3]);
      assert.ok(a.closed);
      assert.ok((await counter(server, 'drover_dns_dropped_total', 'tcp-empty-frame')) >= 3);
      // Written one byte at a time.
      const s = await connect(port);
      const reader = new FrameReader();
      s.on('data', (c: Buffer) => reader.push(c));
      for (const byte of payload) {
        s.write(Buffer.from([byte]));
        await new Promise((r) => setImmediate(r));
      }
      await eventually(() => reader.messages.length === 3, 3000, 'three answers to a byte-by-byte stream');
      s.destroy();
      // A frame cut by the FIN: the queries before it are answered, then the connection closes.
      const cut = Buffer.concat([q('db.rancher.internal', 4), q('n1.example.test', 5), Buffer.from([0, 40, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10])]);
      const b = await tcpExchange(port, [cut], { expect: 2, end: true });
      assert.deepEqual(b.replies.map((r) => r.id).sort(), [4, 5]);
      assert.ok(b.closed);
      await assertServing(port);
    } finally {
      await server.close();
    }
  });

  test('item 5: pipelined answers come as they are ready (out of order)', { timeout: 30_000 }, async () => {
    const { server, port } = await startServer();
    try {
      // 127.0.0.3 recurses to an upstream that never answers: its query waits for the timeout (SERVFAIL).
      const { replies } = await tcpExchange(port, [frame(query('slow.example.test', TYPE.A, 1)), frame(query('local.rancher.internal', TYPE.A, 2))], {
        expect: 2,
        localAddress: '127.0.0.3',
      });
      assert.deepEqual(replies.map((r) => r.id), [2, 1]);
    } finally {
      await server.close();
    }
  });

  test('item 5: resets mid-answer (sync and recursed replies owed) do not throw', { timeout: 30_000 }, async () => {
    const rec = recordingLogger();
    const { server, port } = await startServer({ log: rec.log });
    try {
      const burst = Buffer.concat(
        Array.from({ length: 200 }, (_, i) => frame(query(i % 3 === 0 ? `n${i % 50}.example.test` : i % 3 === 1 ? 'big.rancher.internal' : 'slow.example.test', TYPE.A, i))),
      );
      for (let round = 0; round < 30; round++) {
        const s = await connect(port, round % 2 ? '127.0.0.3' : '127.0.0.1');
        s.on('error', () => undefined);
        s.write(burst);
        if (round % 3 === 0) s.resetAndDestroy();
        else s.once('data', () => s.resetAndDestroy());
      }
      await sleep(800); // the recursed replies arrive after their connections are gone
      await assertServing(port);
      assert.deepEqual(rec.errors(), []);
    } finally {
      await server.close();
    }
  });
});
