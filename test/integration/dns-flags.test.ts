// Reply flags and negative answers through CNAMEs (spec "Query handling" 1 and 6), with dig as the
// client and a dns2 upstream on loopback:
// - local answers (rancher.internal, rancher-metadata): AA=1;
// - forwarded answers: AA only as the upstream set it, and only on the reply that fetched the answer
//   (never from the cache); RA=1; RD and CD as in the query; AD never; errors without AA;
// - a CNAME to a name that does not exist: the CNAME, NXDOMAIN and the SOA (RFC 6604), for a target
//   under rancher.internal and for an external target the upstream says NXDOMAIN for.
// Bound: about 5 s (each dig has +time=3, the upstream answers at once).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { DnsServer } from '../../src/dns/server.js';
import { parseAnswers } from '../../src/dns/answers.js';
import { buildDnsData, buildDnsDataFromAnswers } from '../../src/dns/view.js';
import { EnvBuilder } from '../fixtures/dns-env.js';
import { dig, ips, startUpstream, type DigResult, type FakeUpstream } from './dns-helpers.js';

const WEB1 = '127.0.0.51';

function flagsOf(r: DigResult): string {
  return [...r.flags].sort().join(' ');
}

describe('reply flags and CNAMEs to missing names', () => {
  let up: FakeUpstream;
  let server: DnsServer;
  let port: number;

  before(async () => {
    up = await startUpstream();
    up.aa = false; // a recursive upstream, as most host resolvers are
    up.zone.set('www.example.test', [{ type: 'A', data: '192.0.2.80', ttl: 100 }]);
    up.zone.set('cached.example.test', [{ type: 'A', data: '192.0.2.81', ttl: 100 }]);
    up.zone.set('auth.example.test', [{ type: 'A', data: '192.0.2.82', ttl: 100 }]);
    // Short names no link of the client has: forwarded after the search list fails.
    up.zone.set('www', [{ type: 'A', data: '192.0.2.90', ttl: 100 }]);
    up.zone.set('api', [{ type: 'A', data: '192.0.2.91', ttl: 100 }]);
    const b = new EnvBuilder({ dnsScope: 'linked' });
    const app = b.stack('app');
    const web = b.service(app, 'web');
    const db = b.service(app, 'db');
    const ext = b.service(app, 'ext', { kind: 'externalService', hostname: 'www.example.test' });
    const gone = b.service(app, 'gone', { kind: 'externalService', hostname: 'gone.example.test' });
    const dangling = b.service(app, 'dangling', { kind: 'externalService', hostname: 'nowhere.app.rancher.internal' });
    b.link(web, db).link(web, ext).link(web, gone).link(web, dangling);
    b.container('web-1', WEB1, { stackId: app, serviceId: web });
    b.container('db-1', '10.42.0.2', { stackId: app, serviceId: db });
    server = new DnsServer({ data: buildDnsData(b.state), hostResolvers: [`127.0.0.1:${up.port}`], recurserTimeoutMs: 1000 });
    ({ port } = await server.listen('127.0.0.1', 0));
  });

  after(async () => {
    await server.close();
    await up.close();
  });

  test('local answers keep AA=1 (a service, rancher-metadata, NXDOMAIN and NODATA under rancher.internal)', async () => {
    const r = await dig('db', { port, from: WEB1 });
    assert.deepEqual(ips(r), ['10.42.0.2']);
    assert.equal(flagsOf(r), 'aa qr ra rd');
    for (const name of ['rancher-metadata', 'rancher-metadata.rancher.internal']) {
      const m = await dig(name, { port, from: WEB1 });
      assert.deepEqual(ips(m), ['169.254.169.250']);
      assert.equal(flagsOf(m), 'aa qr ra rd', name);
    }
    const nx = await dig('nope.app.rancher.internal', { port, from: WEB1 });
    assert.equal(nx.status, 'NXDOMAIN');
    assert.equal(flagsOf(nx), 'aa qr ra rd');
    const nodata = await dig('db', { port, from: WEB1, type: 'AAAA' });
    assert.equal(nodata.status, 'NOERROR');
    assert.ok(nodata.flags.includes('aa'));
  });

  test('a forwarded answer: no AA (the upstream set none), RA=1, RD copied — first time and from the cache', async () => {
    const first = await dig('cached.example.test', { port, from: WEB1 });
    assert.deepEqual(ips(first), ['192.0.2.81']);
    assert.equal(flagsOf(first), 'qr ra rd');
    const again = await dig('cached.example.test', { port, from: WEB1 });
    assert.deepEqual(ips(again), ['192.0.2.81']);
    assert.equal(flagsOf(again), 'qr ra rd');
    assert.equal(up.queries.filter((q) => q === 'cached.example.test/1').length, 1, 'the second reply came from the cache');
    // RD is the query's (cleared here); RA stays set; CD is echoed; AD never appears.
    const nord = await dig('cached.example.test', { port, from: WEB1, extra: ['+nordflag', '+cdflag'] });
    assert.equal(flagsOf(nord), 'cd qr ra');
    const ad = await dig('cached.example.test', { port, from: WEB1, extra: ['+adflag'] });
    assert.ok(!ad.flags.includes('ad') && !ad.flags.includes('aa'), flagsOf(ad));
  });

  test('names forwarded after the search list fails (www, api from a client without such links) carry no AA', async () => {
    for (const [name, ip] of [['www', '192.0.2.90'], ['api', '192.0.2.91']] as const) {
      const r = await dig(name, { port, from: WEB1 });
      assert.deepEqual(ips(r), [ip], name);
      assert.equal(flagsOf(r), 'qr ra rd', name);
      assert.equal(flagsOf(await dig(name, { port, from: WEB1 })), 'qr ra rd', `${name} (cached)`);
    }
  });

  test('an upstream that sets AA: passed on with the answer it fetched; a cached copy has no AA', async () => {
    up.aa = true;
    try {
      const first = await dig('auth.example.test', { port, from: WEB1 });
      assert.deepEqual(ips(first), ['192.0.2.82']);
      assert.equal(flagsOf(first), 'aa qr ra rd');
      const cached = await dig('auth.example.test', { port, from: WEB1 });
      assert.deepEqual(ips(cached), ['192.0.2.82']);
      assert.equal(flagsOf(cached), 'qr ra rd');
    } finally {
      up.aa = false;
    }
  });

  test('errors carry no AA: SERVFAIL after the upstream fails', async () => {
    up.failWith = 2;
    try {
      const r = await dig('flaky.example.test', { port, from: WEB1 });
      assert.equal(r.status, 'SERVFAIL');
      assert.equal(flagsOf(r), 'qr ra rd');
    } finally {
      up.failWith = undefined;
    }
  });

  test('a CNAME whose target under rancher.internal does not exist: the CNAME, NXDOMAIN, the SOA (RFC 6604)', async () => {
    const r = await dig('dangling', { port, from: WEB1 });
    assert.equal(r.status, 'NXDOMAIN');
    assert.deepEqual(r.answer.map((x) => `${x.name} ${x.type} ${x.data}`), ['dangling. CNAME nowhere.app.rancher.internal.']);
    assert.deepEqual(r.authority.map((x) => `${x.name} ${x.type}`), ['rancher.internal. SOA']);
    assert.ok(r.flags.includes('aa'));
  });

  test('a CNAME to an external name the upstream says NXDOMAIN for: the CNAME, NXDOMAIN and the upstream SOA, also from the cache', async () => {
    for (const round of ['first', 'cached']) {
      const r = await dig('gone', { port, from: WEB1 });
      assert.equal(r.status, 'NXDOMAIN', round);
      assert.deepEqual(r.answer.map((x) => `${x.name} ${x.type} ${x.data}`), ['gone. CNAME gone.example.test.'], round);
      assert.deepEqual(r.authority.map((x) => `${x.name} ${x.type}`), ['example.test. SOA'], round);
      // AA speaks for the question's name, which is ours (RFC 1035 4.1.1).
      assert.ok(r.flags.includes('aa'), round);
    }
    assert.equal(up.queries.filter((q) => q === 'gone.example.test/1').length, 1);
    // A CNAME to an external name that exists: the CNAME and the upstream's A.
    const ok = await dig('ext', { port, from: WEB1 });
    assert.deepEqual(ok.answer.map((x) => `${x.type} ${x.data}`), ['CNAME www.example.test.', 'A 192.0.2.80']);
    assert.equal(ok.authority.length, 0);
  });
});

describe('answers-file data: local names outside the authoritative suffixes', () => {
  test('answered from the file with AA=1 (as the original did for every local answer); forwarded names without', async () => {
    const up = await startUpstream();
    up.aa = false;
    up.zone.set('fwd.example.org', [{ type: 'A', data: '192.0.2.7', ttl: 60 }]);
    const file = parseAnswers(
      JSON.stringify({
        default: {
          recurse: [`127.0.0.1:${up.port}`],
          authoritative: ['rancher.internal'],
          a: { 'static.example.org.': { answer: ['10.9.9.9'] } },
          txt: { 'note.example.org.': { answer: ['hi'] } },
        },
      }),
    );
    const server = new DnsServer({ data: buildDnsDataFromAnswers(file), recurserTimeoutMs: 1000 });
    const { port } = await server.listen('127.0.0.1', 0);
    try {
      const a = await dig('static.example.org', { port });
      assert.deepEqual(ips(a), ['10.9.9.9']);
      assert.equal(flagsOf(a), 'aa qr ra rd');
      assert.equal(flagsOf(await dig('note.example.org', { port, type: 'TXT' })), 'aa qr ra rd');
      const f = await dig('fwd.example.org', { port });
      assert.deepEqual(ips(f), ['192.0.2.7']);
      assert.equal(flagsOf(f), 'qr ra rd');
    } finally {
      await server.close();
      await up.close();
    }
  });
});
