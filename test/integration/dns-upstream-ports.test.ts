// Upstream queries (spec "Query handling" 7; issue 9 item 8): each leaves from its own socket on a
// random ephemeral port with a random id, replies count only from the upstream's address and port with
// the query's id and question, sockets are closed when the exchange settles, and their number is
// bounded. The upstream here is a raw UDP socket on loopback, so the test sees each query's source
// port (rinfo.port) and id, and can send forged replies. Bound: about 6 s.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { Registry } from 'prom-client';
import { DnsServer } from '../../src/dns/server.js';
import { parseUpstream, type Upstream } from '../../src/dns/data.js';
import { DnsMetrics } from '../../src/dns/metrics.js';
import { UpstreamClient, UpstreamError } from '../../src/dns/upstream.js';
import { encodeQuestion, TYPE } from '../../src/dns/wire.js';
import { silentLogger } from '../../src/common/log.js';
import { dig, freePort, ips, sleep } from './dns-helpers.js';

interface Seen {
  port: number;
  id: number;
  name: string;
}

/** End of the question of a query (name, type, class). */
function questionEnd(msg: Buffer): number {
  let p = 12;
  while (msg[p]! !== 0) p += msg[p]! + 1;
  return p + 5;
}

/** A reply to query with one A record; id and question can be forged. */
function reply(query: Buffer, ip: string, forge: { id?: number; name?: string } = {}): Buffer {
  const qend = questionEnd(query);
  const question = forge.name ? encodeQuestion(forge.name, query.readUInt16BE(qend - 4)) : query.subarray(12, qend);
  const header = Buffer.alloc(12);
  header.writeUInt16BE(forge.id ?? query.readUInt16BE(0), 0);
  header.writeUInt16BE(0x8180, 2); // QR, RD, RA
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(1, 6);
  const rr = Buffer.alloc(16);
  rr.writeUInt16BE(0xc00c, 0);
  rr.writeUInt16BE(TYPE.A, 2);
  rr.writeUInt16BE(1, 4);
  rr.writeUInt32BE(60, 6);
  rr.writeUInt16BE(4, 10);
  ip.split('.').forEach((o, i) => (rr[12 + i] = Number(o)));
  return Buffer.concat([header, question, rr]);
}

function nameOf(query: Buffer): string {
  const labels: string[] = [];
  for (let p = 12; query[p]! !== 0; p += query[p]! + 1) labels.push(query.toString('latin1', p + 1, p + 1 + query[p]!));
  return labels.join('.').toLowerCase();
}

interface RawUpstream {
  port: number;
  seen: Seen[];
  close(): Promise<void>;
}

/**
 * Answers `<anything>` with 192.0.2.1. For names starting with `spoof`, first sends forged replies —
 * from another port, with another id, with another question — and the genuine one 50 ms later.
 */
async function rawUpstream(): Promise<RawUpstream> {
  const sock = dgram.createSocket('udp4');
  const forger = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  await new Promise<void>((r) => forger.bind(0, '127.0.0.1', () => r()));
  const seen: Seen[] = [];
  sock.on('message', (msg, rinfo) => {
    const name = nameOf(msg);
    const id = msg.readUInt16BE(0);
    seen.push({ port: rinfo.port, id, name });
    if (!name.startsWith('spoof')) {
      sock.send(reply(msg, '192.0.2.1'), rinfo.port, rinfo.address);
      return;
    }
    forger.send(reply(msg, '6.6.6.1'), rinfo.port, rinfo.address); // right id and question, wrong port
    sock.send(reply(msg, '6.6.6.2', { id: id ^ 0x5a5a }), rinfo.port, rinfo.address); // wrong id
    sock.send(reply(msg, '6.6.6.3', { name: 'other.example.test' }), rinfo.port, rinfo.address); // wrong question
    setTimeout(() => sock.send(reply(msg, '192.0.2.200'), rinfo.port, rinfo.address), 50);
  });
  return {
    port: sock.address().port,
    seen,
    close: async () => {
      await new Promise<void>((r) => sock.close(() => r()));
      await new Promise<void>((r) => forger.close(() => r()));
    },
  };
}

async function metricValue(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = registry.getSingleMetric(name);
  if (!m) return NaN;
  const v = await m.get();
  const hit = v.values.find((x) => Object.entries(labels).every(([k, want]) => x.labels[k] === want));
  return hit?.value ?? 0;
}

describe('upstream queries: fresh random source ports, random ids, strict reply matching', () => {
  let up: RawUpstream;
  let server: DnsServer;
  let port: number;
  let registry: Registry;

  before(async () => {
    up = await rawUpstream();
    registry = new Registry();
    server = new DnsServer({ hostResolvers: [`127.0.0.1:${up.port}`], recurserTimeoutMs: 1000, registry });
    ({ port } = await server.listen('127.0.0.1', 0));
  });

  after(async () => {
    await server.close();
    await up.close();
  });

  test('50 upstream queries leave from ≥ 45 distinct source ports with ≥ 45 distinct ids; every socket is closed afterwards', async () => {
    const names = Array.from({ length: 50 }, (_, i) => `p${i}.example.test`);
    for (let i = 0; i < names.length; i += 10) {
      const rs = await Promise.all(names.slice(i, i + 10).map((n) => dig(n, { port })));
      for (const r of rs) assert.deepEqual(ips(r), ['192.0.2.1']);
    }
    const seen = up.seen.filter((s) => s.name.startsWith('p'));
    assert.equal(seen.length, 50);
    const ports = new Set(seen.map((s) => s.port));
    const ids = new Set(seen.map((s) => s.id));
    assert.ok(ports.size >= 45, `distinct source ports: ${ports.size} (${[...ports].join(',')})`);
    assert.ok(ids.size >= 45, `distinct ids: ${ids.size}`);
    assert.ok(!ports.has(port), 'not the listening port');
    assert.equal(await metricValue(registry, 'drover_dns_upstream_sockets'), 0);
  });

  test('forged replies (wrong source port, wrong id, wrong question) are ignored; the genuine one is answered', async () => {
    const r = await dig('spoof1.example.test', { port });
    assert.equal(r.status, 'NOERROR');
    assert.deepEqual(ips(r), ['192.0.2.200']);
    // And the forgeries were not cached either.
    assert.deepEqual(ips(await dig('spoof1.example.test', { port })), ['192.0.2.200']);
  });
});

describe('UpstreamClient: bounded sockets, socket errors', () => {
  function upstreamAt(port: number): Upstream {
    return parseUpstream(`127.0.0.1:${port}`)!;
  }
  const question = encodeQuestion('x.example.test', TYPE.A);

  test('beyond maxSockets exchanges in flight, more fail at once (busy), counted; the slots come back', async () => {
    const silent = dgram.createSocket('udp4'); // receives, never answers
    await new Promise<void>((r) => silent.bind(0, '127.0.0.1', () => r()));
    const live = await rawUpstream();
    const registry = new Registry();
    const client = new UpstreamClient({ timeoutMs: 400, log: silentLogger(), metrics: new DnsMetrics(registry), maxSockets: 8 });
    try {
      const dead = upstreamAt(silent.address().port);
      const t0 = performance.now();
      const all = Array.from({ length: 20 }, () =>
        client.exchange(dead, question, 'x.example.test', TYPE.A, 1).then(
          () => 'answered',
          (e: unknown) => (e instanceof UpstreamError ? e.kind : 'other'),
        ),
      );
      await sleep(50);
      assert.equal(client.openSockets, 8);
      assert.equal(await metricValue(registry, 'drover_dns_upstream_sockets'), 8);
      const kinds = await Promise.all(all);
      assert.equal(kinds.filter((k) => k === 'busy').length, 12);
      assert.equal(kinds.filter((k) => k === 'timeout').length, 8);
      assert.ok(performance.now() - t0 < 2000);
      assert.equal(await metricValue(registry, 'drover_dns_upstream_rejected_total', { reason: 'busy' }), 12);
      assert.equal(client.openSockets, 0);
      const ok = await client.exchange(upstreamAt(live.port), encodeQuestion('y.example.test', TYPE.A), 'y.example.test', TYPE.A, 1);
      assert.equal(ok.parsed.an, 1);
    } finally {
      client.close();
      await live.close();
      await new Promise<void>((r) => silent.close(() => r()));
    }
  });

  test('an upstream port with nobody listening fails the exchange at once (ICMP unreachable on the connected socket), not after the timeout', async () => {
    const client = new UpstreamClient({ timeoutMs: 3000, log: silentLogger() });
    try {
      const nobody = upstreamAt(await freePort());
      const t0 = performance.now();
      await assert.rejects(client.exchange(nobody, question, 'x.example.test', TYPE.A, 1), (e: unknown) => e instanceof UpstreamError && e.kind === 'network');
      assert.ok(performance.now() - t0 < 1000, `${performance.now() - t0} ms`);
      assert.equal(client.openSockets, 0);
    } finally {
      client.close();
    }
  });

  test('close() fails the exchanges in flight and releases their sockets', async () => {
    const silent = dgram.createSocket('udp4');
    await new Promise<void>((r) => silent.bind(0, '127.0.0.1', () => r()));
    const client = new UpstreamClient({ timeoutMs: 5000, log: silentLogger() });
    try {
      const p = client.exchange(upstreamAt(silent.address().port), question, 'x.example.test', TYPE.A, 1);
      await sleep(20);
      client.close();
      await assert.rejects(p, /client closed/);
      assert.equal(client.openSockets, 0);
      await assert.rejects(client.exchange(upstreamAt(silent.address().port), question, 'x.example.test', TYPE.A, 1), /client closed/);
    } finally {
      await new Promise<void>((r) => silent.close(() => r()));
    }
  });
});
