// The batched UDP transport (native/udp-batch, recvmmsg/sendmmsg) against real sockets: bursts answered
// once each with the asking client's view, IPv6 and IPv4-mapped peers, replies that come later or do not
// fit a slot, oversized datagrams, the dgram fallback, and the errors a user sees when it is unavailable.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import dgram from 'node:dgram';
import os from 'node:os';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DnsServer } from '../../src/dns/server.js';
import { BatchedUdpSocket, batchedUdpAddon, formatIPv6 } from '../../src/dns/udp-batch.js';
import { buildDnsData } from '../../src/dns/view.js';
import { buildQuery, CLASS_IN, encodeQuestion, RCODE, TYPE } from '../../src/dns/wire.js';
import { EnvBuilder } from '../fixtures/dns-env.js';
import { tempDir } from '../helpers/server.js';
import { dig, ips } from './dns-helpers.js';

const LINKED = '127.0.0.41';
const UNLINKED = '127.0.0.42';
const MAIN = new URL('../../src/cli/main.ts', import.meta.url).pathname;

function environment(): EnvBuilder {
  const b = new EnvBuilder({ dnsScope: 'linked' });
  const app = b.stack('app');
  const web = b.service(app, 'web');
  const db = b.service(app, 'db');
  const tool = b.service(app, 'tool');
  b.link(web, db);
  b.container('web-1', LINKED, { stackId: app, serviceId: web });
  b.container('tool-1', UNLINKED, { stackId: app, serviceId: tool });
  b.container('db-1', '10.42.0.51', { stackId: app, serviceId: db });
  b.container('db-2', '10.42.0.52', { stackId: app, serviceId: db });
  return b;
}

function query(name: string, id: number): Buffer {
  return buildQuery(id, encodeQuestion(name, TYPE.A, CLASS_IN), 0);
}

function hasIPv6Loopback(): boolean {
  return Object.values(os.networkInterfaces()).some((l) => (l ?? []).some((a) => a.address === '::1'));
}

/** Sends every query at once from `from`, resolves with the replies by id (or rejects after timeoutMs). */
async function burst(port: number, from: string, queries: Buffer[], timeoutMs = 5000): Promise<Map<number, Buffer>> {
  const sock = dgram.createSocket(from.includes(':') ? 'udp6' : 'udp4');
  await new Promise<void>((resolve) => sock.bind(0, from, resolve));
  sock.setRecvBufferSize(4 * 1024 * 1024);
  const replies = new Map<number, Buffer>();
  try {
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${replies.size}/${queries.length} replies to ${from} within ${timeoutMs} ms`)), timeoutMs);
      sock.on('message', (m) => {
        const id = m.readUInt16BE(0);
        assert.ok(!replies.has(id), `reply ${id} arrived twice`);
        replies.set(id, m);
        if (replies.size === queries.length) {
          clearTimeout(timer);
          resolve(replies);
        }
      });
      for (const q of queries) sock.send(q, port, from.includes(':') ? '::1' : '127.0.0.1');
    });
  } finally {
    sock.close();
  }
}

describe('batched UDP transport', () => {
  test('the addon is built, and the DNS server uses it by default', async (t) => {
    if (process.env.DROVER_DNS_UDP) return t.skip(`DROVER_DNS_UDP=${process.env.DROVER_DNS_UDP} chooses the transport here`);
    const a = batchedUdpAddon();
    assert.ok('addon' in a, 'error' in a ? a.error : '');
    const server = new DnsServer();
    try {
      assert.equal(server.udpTransport, 'batched');
    } finally {
      await server.close();
    }
  });

  describe('through the DNS server', () => {
    let server: DnsServer;
    let port: number;
    before(async () => {
      server = new DnsServer({ data: buildDnsData(environment().state), udpTransport: 'batched' });
      ({ port } = await server.listen('127.0.0.1', 0));
    });
    after(() => server.close());

    test('a burst from two clients: every query answered once, with its own id and its client’s view', async () => {
      const n = 300;
      const mk = (base: number): Buffer[] => Array.from({ length: n }, (_, i) => query('db.app.rancher.internal', base + i));
      const [linked, unlinked] = await Promise.all([burst(port, LINKED, mk(1000)), burst(port, UNLINKED, mk(20000))]);
      assert.equal(linked.size, n);
      assert.equal(unlinked.size, n);
      for (const r of linked.values()) {
        assert.equal(r[3]! & 0xf, RCODE.NOERROR);
        assert.equal(r.readUInt16BE(6), 2, 'two A records for the linked client');
      }
      for (const r of unlinked.values()) assert.equal(r[3]! & 0xf, RCODE.NXDOMAIN, 'the unlinked client gets NXDOMAIN');
      const text = await server.metrics.registry.metrics();
      const count = (name: string): number => Number(new RegExp(`^${name} (\\d+)`, 'm').exec(text)?.[1] ?? NaN);
      assert.ok(count('drover_dns_udp_datagrams_total') >= 2 * n, text);
      assert.ok(count('drover_dns_udp_batches_total') < count('drover_dns_udp_datagrams_total'), 'reads returned several datagrams each');
    });

    test('dig over UDP and the dgram transport give the same answers', async () => {
      const fallback = new DnsServer({ data: buildDnsData(environment().state), udpTransport: 'dgram' });
      const other = await fallback.listen('127.0.0.1', 0);
      try {
        assert.equal(fallback.udpTransport, 'dgram');
        for (const from of [LINKED, UNLINKED]) {
          const a = await dig('db.app.rancher.internal', { port, from });
          const b = await dig('db.app.rancher.internal', { port: other.port, from });
          assert.equal(a.status, b.status);
          assert.deepEqual(ips(a), ips(b));
        }
        assert.deepEqual(ips(await dig('db.app.rancher.internal', { port, from: LINKED })), ['10.42.0.51', '10.42.0.52']);
      } finally {
        await fallback.close();
      }
    });
  });

  describe('the socket', () => {
    const echo = (msg: Buffer): Buffer => {
      const r = Buffer.from(msg);
      r[2] = r[2]! | 0x80;
      return r;
    };

    test('datagrams queued together are read in batches, and replies go back to each sender', async () => {
      const seen: string[] = [];
      const s = new BatchedUdpSocket('127.0.0.1', 0, (m, ip) => (seen.push(ip), echo(m)), (err) => assert.fail(String(err)), 1 << 20);
      try {
        const qs = Array.from({ length: 200 }, (_, i) => query('x.test', i));
        const replies = await burst(s.port, '127.0.0.61', qs);
        assert.equal(replies.size, 200);
        const st = s.stats();
        assert.equal(st.received, 200);
        assert.ok(st.batches < st.received, `batched: ${st.batches} reads for ${st.received} datagrams`);
        assert.ok(seen.every((ip) => ip === '127.0.0.61'));
      } finally {
        s.close();
      }
    });

    test('replies that come later (recursion) and replies larger than a slot are sent on their own', async () => {
      const s = new BatchedUdpSocket(
        '127.0.0.1',
        0,
        (m) => {
          const r = echo(m);
          if (m.readUInt16BE(0) === 1) return new Promise((resolve) => setTimeout(() => resolve(r), 50));
          if (m.readUInt16BE(0) === 2) return Buffer.concat([r, Buffer.alloc(6000, 7)]);
          if (m.readUInt16BE(0) === 3) return null;
          return r;
        },
        (err) => assert.fail(String(err)),
        1 << 20,
      );
      try {
        const replies = await burst(s.port, '127.0.0.62', [1, 2, 4].map((id) => query('x.test', id)));
        assert.equal(replies.get(2)!.length, query('x.test', 2).length + 6000);
        assert.equal(replies.get(1)!.readUInt16BE(0), 1);
        await assert.rejects(burst(s.port, '127.0.0.62', [query('x.test', 3)], 300), /0\/1 replies/);
      } finally {
        s.close();
      }
    });

    test('a datagram larger than a slot is dropped and counted; the socket goes on serving', async () => {
      const s = new BatchedUdpSocket('127.0.0.1', 0, echo, (err) => assert.fail(String(err)), 1 << 20);
      try {
        const big = Buffer.alloc(5000);
        big.writeUInt16BE(9, 0);
        await assert.rejects(burst(s.port, '127.0.0.63', [big], 300));
        assert.equal(s.stats().truncated, 1);
        const ok = await burst(s.port, '127.0.0.63', [query('x.test', 10)]);
        assert.equal(ok.size, 1);
      } finally {
        s.close();
      }
    });

    test('IPv4 clients of a dual-stack socket are reported as plain IPv4, and answered', async () => {
      const seen: string[] = [];
      const s = new BatchedUdpSocket('::', 0, (m, ip) => (seen.push(ip), echo(m)), (err) => assert.fail(String(err)), 1 << 20);
      try {
        const r = await burst(s.port, '127.0.0.64', [query('x.test', 5)]);
        assert.equal(r.size, 1);
        assert.deepEqual(seen, ['127.0.0.64']);
      } finally {
        s.close();
      }
    });

    test('IPv6 clients are reported in RFC 5952 form and answered', async (t) => {
      if (!hasIPv6Loopback()) return t.skip('no ::1 on this machine');
      const seen: string[] = [];
      const s = new BatchedUdpSocket('::1', 0, (m, ip) => (seen.push(ip), echo(m)), (err) => assert.fail(String(err)), 1 << 20);
      try {
        const r = await burst(s.port, '::1', [query('x.test', 6)]);
        assert.equal(r.size, 1);
        assert.deepEqual(seen, ['::1']);
      } finally {
        s.close();
      }
    });

    test('binding an address in use fails with EADDRINUSE', () => {
      const s = new BatchedUdpSocket('127.0.0.1', 0, echo, () => undefined, 1 << 20);
      try {
        assert.throws(() => new BatchedUdpSocket('127.0.0.1', s.port, echo, () => undefined, 1 << 20), { code: 'EADDRINUSE' });
      } finally {
        s.close();
      }
    });
  });

  test('formatIPv6 prints addresses as node does (RFC 5952)', () => {
    const cases = ['::1', '::', '2001:db8::1', '2001:db8::1:0:0:1', 'fe80::', '1:0:0:2::3', '1::2:0:0:3:4', '1:0:2:3:4:5:6:7', 'ffff::ffff:0:0'];
    for (const text of cases) {
      const bytes = new Uint8Array(16);
      // Expand with node's own parser (SocketAddress normalises), then format back.
      const full = new URL(`http://[${text}]/`).hostname.slice(1, -1);
      const groups = full.includes('::')
        ? (() => {
            const [l, r] = full.split('::') as [string, string];
            const left = l ? l.split(':') : [];
            const right = r ? r.split(':') : [];
            return [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
          })()
        : full.split(':');
      groups.forEach((g, i) => {
        const v = parseInt(g, 16);
        bytes[i * 2] = v >> 8;
        bytes[i * 2 + 1] = v & 255;
      });
      assert.equal(formatIPv6(bytes), full, text);
    }
  });

  test('drover dns: an unknown transport, or batched without the addon, is refused with a clear message', () => {
    const dir = tempDir();
    const answers = join(dir, 'answers.json');
    writeFileSync(answers, '{"default": {"a": {"x.test.": {"answer": ["192.0.2.1"]}}}}\n');
    const run = (args: string[], env: NodeJS.ProcessEnv = {}) =>
      spawnSync(process.execPath, ['--import', 'tsx', MAIN, 'dns', '--answers', answers, '--listen', '127.0.0.1:0', '--reload-listen', 'off', ...args], {
        encoding: 'utf8',
        env: { ...process.env, ...env },
        timeout: 30_000,
      });
    const bad = run(['--udp-transport', 'fast']);
    assert.equal(bad.status, 2, bad.stderr);
    assert.match(bad.stderr, /udpTransport|udp-transport/i);
    assert.match(bad.stderr, /auto|batched|dgram/);
    const missing = run(['--udp-transport', 'batched'], { DROVER_UDP_BATCH_ADDON: join(dir, 'missing.node') });
    assert.equal(missing.status, 1, missing.stdout + missing.stderr);
    assert.match(missing.stdout + missing.stderr, /npm run build:native/);
  });
});
