// Recursion, caching and CNAME chains, with dig as the client and dns2 upstreams on loopback.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { DnsServer } from '../../src/dns/server.js';
import { parseAnswers } from '../../src/dns/answers.js';
import { buildDnsDataFromAnswers } from '../../src/dns/view.js';
import { dig, freePort, ips, sleep, startUpstream, type FakeUpstream } from './dns-helpers.js';

function count(up: FakeUpstream, q: string): number {
  return up.queries.filter((x) => x === q).length;
}

describe('recursion and the cache', () => {
  let up: FakeUpstream;
  let server: DnsServer;
  let port: number;

  before(async () => {
    up = await startUpstream();
    up.zone.set('www.example.test', [{ type: 'A', data: '192.0.2.80', ttl: 100 }]);
    up.zone.set('v4only.example.test', [{ type: 'A', data: '192.0.2.81', ttl: 100 }]);
    up.zone.set('alias.example.test', [{ type: 'CNAME', data: 'www.example.test', ttl: 100 }]);
    up.zone.set(
      'many.example.test',
      Array.from({ length: 100 }, (_, i) => ({ type: 'A' as const, data: `198.51.100.${i + 1}`, ttl: 100 })),
    );
    server = new DnsServer({ hostResolvers: [`127.0.0.1:${up.port}`], recurserTimeoutMs: 500 });
    ({ port } = await server.listen('127.0.0.1', 0));
  });

  after(async () => {
    await server.close();
    await up.close();
  });

  test('an upstream answer is cached and its TTL counts down; the upstream is asked once', async () => {
    const r1 = await dig('www.example.test', { port });
    assert.deepEqual(ips(r1), ['192.0.2.80']);
    assert.equal(r1.answer[0]?.ttl, 100);
    await sleep(2100);
    const r2 = await dig('WWW.Example.Test', { port });
    assert.deepEqual(ips(r2), ['192.0.2.80']);
    assert.equal(r2.answer[0]?.name, 'WWW.Example.Test.');
    assert.ok(r2.answer[0]!.ttl <= 98 && r2.answer[0]!.ttl >= 90, `ttl ${r2.answer[0]?.ttl}`);
    assert.equal(count(up, 'www.example.test/1'), 1);
  });

  test('NXDOMAIN from upstream is passed on and cached for the SOA minimum', async () => {
    const r = await dig('missing.example.test', { port });
    assert.equal(r.status, 'NXDOMAIN');
    assert.equal((await dig('missing.example.test', { port })).status, 'NXDOMAIN');
    assert.equal(count(up, 'missing.example.test/1'), 1);
  });

  test('AAAA NXDOMAIN from upstream for a name with A records becomes NODATA', async () => {
    up.aaaaNxdomain = true;
    try {
      const r = await dig('v4only.example.test', { port, type: 'AAAA' });
      assert.equal(r.status, 'NOERROR');
      assert.equal(r.answer.length, 0);
      assert.equal((await dig('missing2.example.test', { port, type: 'AAAA' })).status, 'NXDOMAIN');
    } finally {
      up.aaaaNxdomain = false;
    }
  });

  test('a truncated upstream reply is retried over TCP; the client gets everything with a large EDNS size', async () => {
    const r = await dig('many.example.test', { port, extra: ['+bufsize=4096'] });
    assert.equal(r.answer.length, 100);
    assert.ok(!r.flags.includes('tc'));
    // The upstream saw the question twice: UDP (truncated at 1232 bytes) and TCP.
    assert.equal(count(up, 'many.example.test/1'), 2);
    // A plain 512-byte client gets TC (from the cache) and retries over TCP itself.
    const small = await dig('many.example.test', { port, extra: ['+noedns'] });
    assert.ok(small.retriedTcp);
    assert.equal(small.answer.length, 100);
  });

  test('a CNAME chain from upstream is passed on whole', async () => {
    const r = await dig('alias.example.test', { port });
    assert.deepEqual(r.answer.map((x) => x.type), ['CNAME', 'A']);
  });

  test('SERVFAIL from upstream is not cached', async () => {
    up.failWith = 2;
    try {
      assert.equal((await dig('flaky.example.test', { port })).status, 'SERVFAIL');
    } finally {
      up.failWith = undefined;
    }
    up.zone.set('flaky.example.test', [{ type: 'A', data: '192.0.2.99', ttl: 60 }]);
    assert.deepEqual(ips(await dig('flaky.example.test', { port })), ['192.0.2.99']);
  });
});

describe('upstream failures', () => {
  test('upstream down (timeout): SERVFAIL, not cached; once it is up, answers', async () => {
    const upPort = await freePort();
    const server = new DnsServer({ hostResolvers: [`127.0.0.1:${upPort}`], recurserTimeoutMs: 300 });
    const { port } = await server.listen('127.0.0.1', 0);
    try {
      assert.equal((await dig('www.example.test', { port })).status, 'SERVFAIL');
      const up = await startUpstream('127.0.0.1', upPort);
      try {
        up.zone.set('www.example.test', [{ type: 'A', data: '192.0.2.80', ttl: 100 }]);
        assert.deepEqual(ips(await dig('www.example.test', { port })), ['192.0.2.80']);
      } finally {
        await up.close();
      }
    } finally {
      await server.close();
    }
  });

  test('the first upstream dead: the next one answers (first success wins)', async () => {
    const dead = await freePort();
    const up = await startUpstream();
    up.zone.set('www.example.test', [{ type: 'A', data: '192.0.2.80', ttl: 100 }]);
    const server = new DnsServer({ hostResolvers: [`127.0.0.1:${dead}`, `127.0.0.1:${up.port}`], recurserTimeoutMs: 2000, hedgeMs: 100 });
    const { port } = await server.listen('127.0.0.1', 0);
    try {
      assert.deepEqual(ips(await dig('www.example.test', { port })), ['192.0.2.80']);
    } finally {
      await server.close();
      await up.close();
    }
  });

  test('loop guard: never its own address nor 169.254.169.250; loopback refusable by option', async () => {
    const server = new DnsServer({ recurserTimeoutMs: 300 });
    const { port } = await server.listen('127.0.0.1', 0);
    try {
      server.setHostResolvers([`127.0.0.1:${port}`, '169.254.169.250']);
      assert.equal((await dig('www.example.test', { port })).status, 'SERVFAIL');
    } finally {
      await server.close();
    }
    const up = await startUpstream();
    up.zone.set('www.example.test', [{ type: 'A', data: '192.0.2.80', ttl: 100 }]);
    const strict = new DnsServer({ hostResolvers: [`127.0.0.1:${up.port}`], rejectLoopbackUpstreams: true });
    const s2 = await strict.listen('127.0.0.1', 0);
    try {
      assert.equal((await dig('www.example.test', { port: s2.port })).status, 'SERVFAIL');
      assert.equal(up.queries.length, 0);
    } finally {
      await strict.close();
      await up.close();
    }
  });

  test('the cache is bounded (LRU)', async () => {
    const up = await startUpstream();
    for (const n of ['a', 'b', 'c']) up.zone.set(`${n}.example.test`, [{ type: 'A', data: '192.0.2.1', ttl: 300 }]);
    const server = new DnsServer({ hostResolvers: [`127.0.0.1:${up.port}`], cacheMaxEntries: 2 });
    const { port } = await server.listen('127.0.0.1', 0);
    try {
      for (const n of ['a', 'b', 'c', 'a']) await dig(`${n}.example.test`, { port });
      assert.equal(count(up, 'a.example.test/1'), 2, 'a was evicted by c');
      await dig('c.example.test', { port });
      assert.equal(count(up, 'c.example.test/1'), 1);
    } finally {
      await server.close();
      await up.close();
    }
  });
});

describe('answers-file data: per-client upstreams and CNAME chains', () => {
  let up1: FakeUpstream;
  let up2: FakeUpstream;
  let server: DnsServer;
  let port: number;

  before(async () => {
    up1 = await startUpstream('127.0.0.1');
    up2 = await startUpstream('127.0.0.1');
    up1.zone.set('who.example.test', [{ type: 'A', data: '192.0.2.1' }]);
    up2.zone.set('who.example.test', [{ type: 'A', data: '192.0.2.2' }]);
    up1.zone.set('far.example.test', [{ type: 'A', data: '192.0.2.77', ttl: 30 }]);
    const file = parseAnswers(
      JSON.stringify({
        '127.0.0.31': {
          search: ['app.rancher.internal', 'rancher.internal'],
          recurse: [`127.0.0.1:${up1.port}`],
          cname: {
            'one.rancher.internal.': { answer: 'two.rancher.internal.' },
            'two.rancher.internal.': { answer: 'three.rancher.internal.' },
            'loop1.rancher.internal.': { answer: 'loop2.rancher.internal.' },
            'loop2.rancher.internal.': { answer: 'loop1.rancher.internal.' },
            'far.app.rancher.internal.': { answer: 'far.example.test.' },
            'dangling.rancher.internal.': { answer: 'nowhere.rancher.internal.' },
          },
          a: { 'three.rancher.internal.': { answer: ['10.0.0.3'] } },
          txt: { 'x.rancher.internal.': { answer: ['v=1', 'hello world'] } },
        },
        default: { recurse: [`127.0.0.1:${up2.port}`], authoritative: ['rancher.internal'] },
      }),
    );
    server = new DnsServer({ data: buildDnsDataFromAnswers(file) });
    ({ port } = await server.listen('127.0.0.1', 0));
  });

  after(async () => {
    await server.close();
    await up1.close();
    await up2.close();
  });

  test('each client recurses to its own upstreams first', async () => {
    assert.deepEqual(ips(await dig('who.example.test', { port, from: '127.0.0.31' })), ['192.0.2.1']);
    assert.deepEqual(ips(await dig('who.example.test', { port, from: '127.0.0.32' })), ['192.0.2.2']);
  });

  test('local CNAME chains: followed to the A; loops SERVFAIL; a missing target under the zone NXDOMAIN', async () => {
    const r = await dig('one', { port, from: '127.0.0.31' });
    assert.deepEqual(r.answer.map((x) => `${x.name} ${x.type} ${x.data}`), [
      'one. CNAME two.rancher.internal.',
      'two.rancher.internal. CNAME three.rancher.internal.',
      'three.rancher.internal. A 10.0.0.3',
    ]);
    assert.equal((await dig('loop1.rancher.internal', { port, from: '127.0.0.31' })).status, 'SERVFAIL');
    const d = await dig('dangling.rancher.internal', { port, from: '127.0.0.31' });
    assert.equal(d.status, 'NXDOMAIN');
    assert.equal(d.answer[0]?.type, 'CNAME');
    assert.equal(d.authority[0]?.type, 'SOA');
  });

  test('a CNAME to an external name: its A comes from recursion (and TTL counts down from the cache)', async () => {
    const r = await dig('far', { port, from: '127.0.0.31' });
    assert.deepEqual(r.answer.map((x) => `${x.name} ${x.type} ${x.data}`), ['far. CNAME far.example.test.', 'far.example.test. A 192.0.2.77']);
    assert.equal(r.answer[1]?.ttl, 30);
  });

  test('TXT records', async () => {
    const r = await dig('x.rancher.internal', { port, from: '127.0.0.31', type: 'TXT' });
    assert.deepEqual(r.answer.map((x) => x.data).sort(), ['"hello world"', '"v=1"']);
  });

  test('the zone apex answers SOA', async () => {
    const r = await dig('rancher.internal', { port, from: '127.0.0.31', type: 'SOA' });
    assert.equal(r.status, 'NOERROR');
    assert.equal(r.answer[0]?.type, 'SOA');
  });
});
