// The DNS server against dig, the real client. Clients are told apart by source address (dig -b
// 127.0.0.N; Linux routes all of 127/8 on lo), upstreams are dns2 servers on loopback. Every row of
// the spec (docs: /work/shared/spec/dns.md) has a test here or in dns-recursion.test.ts.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { Registry } from 'prom-client';
import { DnsServer } from '../../src/dns/server.js';
import { buildDnsData } from '../../src/dns/view.js';
import { buildQuery, encodeQuestion } from '../../src/dns/wire.js';
import { EnvBuilder } from '../fixtures/dns-env.js';
import { dig, digPtr, ips, startUpstream, type FakeUpstream } from './dns-helpers.js';

const WEB1 = '127.0.0.11';
const WEB2 = '127.0.0.12';
const LOGGER = '127.0.0.13';
const DB1 = '127.0.0.21';
const TOOL = '127.0.0.99';
const HOST = '127.0.0.1';
const DBS = ['10.42.0.22', DB1]; // sorted

function environment(scope: 'linked' | 'stack' | 'environment' = 'linked'): { b: EnvBuilder; ids: Record<string, string> } {
  const b = new EnvBuilder({ dnsScope: scope });
  const app = b.stack('app');
  const other = b.stack('other');
  const lonely = b.stack('lonely');
  const web = b.service(app, 'web', { ports: [{ publicPort: 8080, privatePort: 80, protocol: 'tcp' }], sidekicks: [{ name: 'logger' }] });
  const db = b.service(app, 'db', { expose: [{ privatePort: 5432, protocol: 'tcp' }], healthCheckPort: 5432 });
  const cache = b.service(app, 'cache', { vip: '10.43.0.10' });
  const big = b.service(app, 'big');
  const api = b.service(other, 'api');
  const ext = b.service(other, 'ext', { kind: 'externalService', hostname: 'www.example.test' });
  const extip = b.service(other, 'extip', { kind: 'externalService', externalIps: ['192.0.2.5', '192.0.2.6'] });
  const both = b.service(other, 'both', { kind: 'dnsService' });
  const lone = b.service(lonely, 'lone');
  b.link(both, api).link(both, extip);
  b.link(web, db, 'database').link(web, api).link(web, ext, 'e').link(web, both, 'b').link(web, big);
  const web1 = b.container('web-1', WEB1, { stackId: app, serviceId: web });
  b.container('web-2', WEB2, { stackId: app, serviceId: web });
  b.container('web-logger-1', LOGGER, { stackId: app, serviceId: web, sidekick: 'logger' });
  const db1 = b.container('db-1', DB1, { stackId: app, serviceId: db, healthState: 'healthy' });
  const db2 = b.container('db-2', '10.42.0.22', { stackId: app, serviceId: db, healthState: 'healthy' });
  b.container('cache-1', '10.42.0.31', { stackId: app, serviceId: cache });
  for (let i = 1; i <= 40; i++) b.container(`big-${i}`, `10.42.2.${i}`, { stackId: app, serviceId: big });
  b.container('api-1', '10.42.1.1', { stackId: other, serviceId: api });
  b.container('lone-1', '10.42.5.1', { stackId: lonely, serviceId: lone });
  const tool = b.container('tool', TOOL, {});
  b.containerLink(tool, db1, 'mydb');
  return { b, ids: { web, db, db1, db2, web1, tool, app } };
}

describe('DNS server with dig', () => {
  let up: FakeUpstream;
  let server: DnsServer;
  let port: number;
  let registry: Registry;
  let env: ReturnType<typeof environment>;

  before(async () => {
    up = await startUpstream();
    up.zone.set('www.example.test', [{ type: 'A', data: '192.0.2.80', ttl: 100 }]);
    env = environment();
    registry = new Registry();
    server = new DnsServer({ data: buildDnsData(env.b.state), hostResolvers: [`127.0.0.1:${up.port}`], registry, recurserTimeoutMs: 1000 });
    ({ port } = await server.listen('127.0.0.1', 0));
  });

  after(async () => {
    await server.close();
    await up.close();
  });

  test('service name: A per healthy running container, AA and RA set, local TTL', async () => {
    const r = await dig('db.app.rancher.internal', { port, from: WEB1 });
    assert.equal(r.status, 'NOERROR');
    assert.deepEqual(ips(r), DBS);
    assert.ok(r.flags.includes('aa') && r.flags.includes('ra') && r.flags.includes('qr'), r.flags.join());
    assert.ok(r.answer.every((x) => x.ttl === 1 && x.name === 'db.app.rancher.internal.'));
    assert.ok(r.edns, 'OPT echoed to an EDNS query');
  });

  test('sidekick, container, link alias (both forms), container link and metadata names', async () => {
    assert.deepEqual(ips(await dig('logger.web.app.rancher.internal', { port, from: WEB1 })), [LOGGER]);
    assert.deepEqual(ips(await dig('web-2.rancher.internal', { port, from: WEB1 })), [WEB2]);
    assert.deepEqual(ips(await dig('database.rancher.internal', { port, from: WEB1 })), DBS);
    assert.deepEqual(ips(await dig('database.app.rancher.internal', { port, from: WEB1 })), DBS);
    assert.deepEqual(ips(await dig('mydb.rancher.internal', { port, from: TOOL })), [DB1]);
    assert.deepEqual(ips(await dig('db-1.rancher.internal', { port, from: TOOL })), [DB1]);
    for (const n of ['rancher-metadata', 'rancher-metadata.rancher.internal']) {
      assert.deepEqual(ips(await dig(n, { port, from: WEB1 })), ['169.254.169.250']);
      assert.deepEqual(ips(await dig(n, { port, from: HOST })), ['169.254.169.250']);
    }
  });

  test('external services: IPs as A; hostname as CNAME with the target A from recursion', async () => {
    const b = await dig('b.rancher.internal', { port, from: WEB1 });
    assert.deepEqual(ips(b), ['10.42.1.1', '192.0.2.5', '192.0.2.6']); // dnsService: union of linked services
    const e = await dig('e.rancher.internal', { port, from: WEB1 });
    assert.equal(e.status, 'NOERROR');
    assert.deepEqual(e.answer.map((x) => [x.name, x.type, x.data]), [
      ['e.rancher.internal.', 'CNAME', 'www.example.test.'],
      ['www.example.test.', 'A', '192.0.2.80'],
    ]);
    const c = await dig('ext.other.rancher.internal', { port, from: WEB1, type: 'CNAME' });
    assert.deepEqual(c.answer.map((x) => [x.type, x.data]), [['CNAME', 'www.example.test.']]);
  });

  test('short names through the search list; the owner is the question name; case-insensitive', async () => {
    for (const n of ['db', 'db.app', 'database', 'logger', 'logger.web', 'api.other', 'web-1']) {
      const r = await dig(n, { port, from: WEB1 });
      assert.equal(r.status, 'NOERROR', n);
      assert.ok(r.answer.length > 0, n);
      assert.ok(r.answer.every((x) => x.name === `${n}.`), n);
    }
    const upper = await dig('DB.App.Rancher.Internal', { port, from: WEB1 });
    assert.deepEqual(ips(upper), DBS);
    assert.equal(upper.answer[0]?.name, 'DB.App.Rancher.Internal.');
    // a suffix is never appended to a name under rancher.internal
    assert.equal((await dig('db.rancher.internal', { port, from: WEB1 })).status, 'NXDOMAIN');
  });

  test('linked scope: an existing but unlinked service is NXDOMAIN, with one SOA for rancher.internal', async () => {
    for (const n of ['lone.lonely.rancher.internal', 'cache.app.rancher.internal', 'lone-1.rancher.internal', 'nothing.rancher.internal']) {
      const r = await dig(n, { port, from: WEB1 });
      assert.equal(r.status, 'NXDOMAIN', n);
      assert.ok(r.flags.includes('aa'));
      assert.equal(r.authority.length, 1);
      assert.equal(r.authority[0]?.type, 'SOA');
      assert.equal(r.authority[0]?.name, 'rancher.internal.');
    }
    // db does not link to web: web is NXDOMAIN for it
    assert.equal((await dig('web.app.rancher.internal', { port, from: DB1 })).status, 'NXDOMAIN');
    // the host (not a container) only gets rancher-metadata
    assert.equal((await dig('db.app.rancher.internal', { port, from: HOST })).status, 'NXDOMAIN');
  });

  test('AAAA of a local name is NODATA (NOERROR, empty answer), never NXDOMAIN', async () => {
    for (const n of ['db.app.rancher.internal', 'db', 'e.rancher.internal', 'rancher-metadata']) {
      const r = await dig(n, { port, from: WEB1, type: 'AAAA' });
      assert.equal(r.status, 'NOERROR', n);
      assert.equal(r.answer.length, 0, n);
    }
  });

  test('ANY and non-IN classes are NOTIMP; several questions are SERVFAIL', async () => {
    assert.equal((await dig('db.app.rancher.internal', { port, from: WEB1, type: 'ANY' })).status, 'NOTIMP');
    assert.equal((await dig('www.example.test', { port, from: WEB1, type: 'ANY' })).status, 'NOTIMP');
    assert.equal((await dig('version.bind', { port, from: WEB1, type: 'TXT', extra: ['-c', 'CH'] })).status, 'NOTIMP');
    const q1 = encodeQuestion('db.app.rancher.internal', 1);
    const msg = buildQuery(99, Buffer.concat([q1, q1]), 0);
    msg.writeUInt16BE(2, 4);
    const reply = await new Promise<Buffer>((resolve, reject) => {
      const s = dgram.createSocket('udp4');
      s.on('message', (m) => {
        s.close();
        resolve(m);
      });
      s.on('error', reject);
      s.send(msg, port, '127.0.0.1');
    });
    assert.equal(reply.readUInt16BE(0), 99);
    assert.equal(reply[3]! & 0xf, 2); // SERVFAIL
  });

  test('A records are shuffled per reply', async () => {
    const orders = new Set<string>();
    for (let i = 0; i < 12; i++) {
      const r = await dig('db.app.rancher.internal', { port, from: WEB1 });
      orders.add(r.answer.map((x) => x.data).join(','));
    }
    assert.ok(orders.size > 1, `one order only: ${[...orders].join(' | ')}`);
  });

  test('large answers: TC over plain UDP, dig retries over TCP; EDNS size or TCP get everything', async () => {
    const tc = await dig('big.app.rancher.internal', { port, from: WEB1, extra: ['+noedns', '+ignore'] });
    assert.ok(tc.flags.includes('tc'), tc.flags.join());
    assert.equal(tc.answer.length, 0);
    const retried = await dig('big.app.rancher.internal', { port, from: WEB1, extra: ['+noedns'] });
    assert.ok(retried.retriedTcp, 'dig retried over TCP');
    assert.equal(retried.answer.length, 40);
    const edns = await dig('big.app.rancher.internal', { port, from: WEB1, extra: ['+bufsize=1232'] });
    assert.ok(!edns.flags.includes('tc'));
    assert.equal(edns.answer.length, 40);
    const small = await dig('big.app.rancher.internal', { port, from: WEB1, extra: ['+bufsize=512', '+ignore'] });
    assert.ok(small.flags.includes('tc'));
    assert.ok(small.edns, 'OPT kept in a truncated EDNS reply');
    const tcp = await dig('big.app.rancher.internal', { port, from: WEB1, extra: ['+tcp'] });
    assert.equal(tcp.answer.length, 40);
    assert.ok(tcp.flags.includes('aa'));
  });

  test('PTR for managed IPs; SRV for exposed and published ports with the targets in additional', async () => {
    const p = await digPtr(DB1, { port, from: WEB1 });
    assert.deepEqual(p.answer.map((x) => [x.type, x.data]), [['PTR', 'db-1.rancher.internal.']]);
    const s = await dig('_5432._tcp.db.app.rancher.internal', { port, from: WEB1, type: 'SRV' });
    assert.deepEqual(s.answer.map((x) => x.data).sort(), ['0 0 5432 db-1.rancher.internal.', '0 0 5432 db-2.rancher.internal.']);
    assert.deepEqual(s.additional.filter((x) => x.type === 'A').map((x) => `${x.name} ${x.data}`).sort(), [
      `db-1.rancher.internal. ${DB1}`,
      'db-2.rancher.internal. 10.42.0.22',
    ]);
    const short = await dig('_80._tcp.web', { port, from: WEB1, type: 'SRV' });
    assert.equal(short.answer.length, 2);
    assert.equal((await dig('_5432._tcp.db.app.rancher.internal', { port, from: DB1, type: 'A' })).status, 'NOERROR');
  });

  test('unhealthy containers of a checked service drop out on the next query after setData; none serving: no address', async () => {
    const { b, ids } = env;
    b.update(ids.db2!, { healthState: 'unhealthy' });
    server.setData(buildDnsData(b.state));
    assert.deepEqual(ips(await dig('db', { port, from: WEB1 })), [DB1]);
    b.update(ids.db1!, { healthState: 'unhealthy' });
    server.setData(buildDnsData(b.state));
    // Only serving endpoints: the name exists (NOERROR) with no address — never "the newest one anyway".
    const none = await dig('db', { port, from: WEB1 });
    assert.equal(none.status, 'NOERROR');
    assert.deepEqual(ips(none), []);
    b.update(ids.db1!, { healthState: 'healthy' }).update(ids.db2!, { healthState: 'healthy' });
    server.setData(buildDnsData(b.state));
    assert.deepEqual(ips(await dig('db', { port, from: WEB1 })), DBS);
  });

  test('scope policies: stack and environment views, swapped in by setData', async () => {
    server.setData(buildDnsData(environment('stack').b.state));
    assert.deepEqual(ips(await dig('cache', { port, from: WEB1 })), ['10.43.0.10']); // VIP only
    assert.equal((await dig('lone.lonely', { port, from: WEB1 })).status, 'NXDOMAIN');
    server.setData(buildDnsData(environment('environment').b.state));
    assert.deepEqual(ips(await dig('lone.lonely', { port, from: WEB1 })), ['10.42.5.1']);
    assert.deepEqual(ips(await dig('lone-1.rancher.internal', { port, from: DB1 })), ['10.42.5.1']);
    server.setData(buildDnsData(env.b.state));
    assert.equal((await dig('lone.lonely', { port, from: WEB1 })).status, 'NXDOMAIN');
  });

  test('metrics count queries by type and rcode', async () => {
    const text = await registry.getSingleMetricAsString('drover_dns_queries_total');
    assert.match(text, /type="A",rcode="NOERROR"/);
    assert.match(text, /type="A",rcode="NXDOMAIN"/);
    assert.match(text, /type="ANY",rcode="NOTIMP"/);
  });
});
