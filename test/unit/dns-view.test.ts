// Golden outputs of the DNS renderers (pure: EnvState / answers file → DnsData).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { lookup } from '../../src/dns/engine.js';
import { buildDnsData, buildDnsDataFromAnswers, dumpClientView, dumpRecords } from '../../src/dns/view.js';
import { parseAnswers } from '../../src/dns/answers.js';
import { EnvBuilder } from '../fixtures/dns-env.js';

const WEB_DNS = ['169.254.169.250', '8.8.8.8', '127.0.0.11', '10.0.0.2:5353'];

/** The environment of most tests (see the comments for what each piece exercises). */
function env(scope: 'linked' | 'stack' | 'environment', hostDnsView = false): { b: EnvBuilder; ids: Record<string, string> } {
  const b = new EnvBuilder({ dnsScope: scope, hostDnsView });
  const app = b.stack('app');
  const other = b.stack('other');
  const web = b.service(app, 'web', {
    ports: [{ publicPort: 8080, privatePort: 80, protocol: 'tcp' }],
    sidekicks: [{ name: 'logger' }],
  });
  // db and api are health-checked: their healthState decides (without a check it is ignored).
  const db = b.service(app, 'db', { expose: [{ privatePort: 5432, protocol: 'tcp' }], healthCheckPort: 5432 });
  const cache = b.service(app, 'cache', { vip: '10.43.0.10' });
  const api = b.service(other, 'api', { healthCheckPort: 80 });
  const ext = b.service(other, 'ext', { kind: 'externalService', hostname: 'www.example.com.' });
  const extip = b.service(other, 'extip', { kind: 'externalService', externalIps: ['192.0.2.5', '192.0.2.6'] });
  const both = b.service(other, 'both', { kind: 'dnsService' });
  b.link(both, api).link(both, extip);
  b.link(web, db, 'database').link(web, api).link(web, both, 'b').link(web, ext, 'e');
  const web1 = b.container('web-1', '10.42.0.11', { stackId: app, serviceId: web, dns: WEB_DNS });
  const web2 = b.container('web-2', '10.42.0.12', { stackId: app, serviceId: web, dns: WEB_DNS });
  const logger = b.container('web-logger-1', '10.42.0.13', { stackId: app, serviceId: web, sidekick: 'logger', dns: WEB_DNS });
  const db1 = b.container('db-1', '10.42.0.21', { stackId: app, serviceId: db, healthState: 'healthy' });
  b.container('db-2', '10.42.0.22', { stackId: app, serviceId: db, healthState: 'unhealthy' });
  b.container('cache-1', '10.42.0.31', { stackId: app, serviceId: cache });
  b.container('api-1', '10.42.1.1', { stackId: other, serviceId: api, healthState: 'healthy' });
  b.container('api-2', '10.42.1.2', { stackId: other, serviceId: api, state: 'stopped' });
  b.container('api-old', '10.42.1.3', { stackId: other, serviceId: api, generation: 'previous' });
  b.container('gone', '10.42.1.4', { stackId: other, serviceId: api, desiredState: 'removed' });
  const tool = b.container('tool', '10.42.9.9', {});
  b.containerLink(tool, db1, 'mydb');
  return { b, ids: { app, other, web, db, cache, api, web1, web2, logger, db1, tool } };
}

const META = { a: ['169.254.169.250'] };
const PTRS = {
  '1.1.42.10.in-addr.arpa': { ptr: 'api-1.rancher.internal' },
  '11.0.42.10.in-addr.arpa': { ptr: 'web-1.rancher.internal' },
  '12.0.42.10.in-addr.arpa': { ptr: 'web-2.rancher.internal' },
  '13.0.42.10.in-addr.arpa': { ptr: 'web-logger-1.rancher.internal' },
  '21.0.42.10.in-addr.arpa': { ptr: 'db-1.rancher.internal' },
  '22.0.42.10.in-addr.arpa': { ptr: 'db-2.rancher.internal' },
  '31.0.42.10.in-addr.arpa': { ptr: 'cache-1.rancher.internal' },
  '9.9.42.10.in-addr.arpa': { ptr: 'tool.rancher.internal' },
};
const B = { a: ['10.42.1.1', '192.0.2.5', '192.0.2.6'] };
const DB = { a: ['10.42.0.21'] };
const DB_SRV = { srv: ['0 0 5432 db-1.rancher.internal'] };
const WEB = { a: ['10.42.0.11', '10.42.0.12'] };
const WEB_SRV = { srv: ['0 0 80 web-1.rancher.internal', '0 0 80 web-2.rancher.internal'] };
const EXT = { cname: 'www.example.com' };

test('linked scope: a web container sees metadata, its links (aliases and names), its own service, sidekicks and containers, and PTRs', () => {
  const { b } = env('linked');
  const d = buildDnsData(b.state);
  assert.deepEqual(dumpClientView(d, '10.42.0.11'), {
    search: ['app.rancher.internal', 'web.app.rancher.internal', 'rancher.internal'],
    recurse: ['8.8.8.8:53', '10.0.0.2:5353'],
    names: {
      ...PTRS,
      '_5432._tcp.database.app.rancher.internal': DB_SRV,
      '_5432._tcp.database.rancher.internal': DB_SRV,
      '_5432._tcp.db.app.rancher.internal': DB_SRV,
      '_80._tcp.web.app.rancher.internal': WEB_SRV,
      'api.other.rancher.internal': { a: ['10.42.1.1'] },
      'b.app.rancher.internal': B,
      'b.rancher.internal': B,
      'both.other.rancher.internal': B,
      'database.app.rancher.internal': DB,
      'database.rancher.internal': DB,
      'db.app.rancher.internal': DB,
      'e.app.rancher.internal': EXT,
      'e.rancher.internal': EXT,
      'ext.other.rancher.internal': EXT,
      'logger.web.app.rancher.internal': { a: ['10.42.0.13'] },
      'rancher-metadata': META,
      'rancher-metadata.rancher.internal': META,
      'web-1.rancher.internal': { a: ['10.42.0.11'] },
      'web-2.rancher.internal': { a: ['10.42.0.12'] },
      'web-logger-1.rancher.internal': { a: ['10.42.0.13'] },
      'web.app.rancher.internal': WEB,
    },
  });
});

test('linked scope: clients of one service share one view; the sidekick too; other services differ', () => {
  const { b } = env('linked');
  const d = buildDnsData(b.state);
  const v = d.clients.get('10.42.0.11');
  assert.ok(v);
  assert.equal(d.clients.get('10.42.0.12'), v);
  assert.equal(d.clients.get('10.42.0.13'), v);
  assert.notEqual(d.clients.get('10.42.0.21'), v);
  // Not clients: stopped-but-live containers are (their IP may still send), removed/previous are not.
  assert.ok(d.clients.has('10.42.1.2'));
  assert.ok(!d.clients.has('10.42.1.3'));
  assert.ok(!d.clients.has('10.42.1.4'));
});

test('linked scope: db sees only its own service and containers, not the web that links to it (but PTRs)', () => {
  const { b } = env('linked');
  const dump = dumpClientView(buildDnsData(b.state), '10.42.0.21');
  assert.deepEqual(dump.search, ['app.rancher.internal', 'db.app.rancher.internal', 'rancher.internal']);
  assert.deepEqual(dump.recurse, []);
  const names = Object.keys(dump.names).filter((n) => !n.endsWith('.in-addr.arpa'));
  assert.deepEqual(names, [
    '_5432._tcp.db.app.rancher.internal',
    'db-1.rancher.internal',
    'db-2.rancher.internal',
    'db.app.rancher.internal',
    'rancher-metadata',
    'rancher-metadata.rancher.internal',
  ]);
});

test('a standalone container: container links by link name and target name, itself, search rancher.internal', () => {
  const { b } = env('linked');
  const dump = dumpClientView(buildDnsData(b.state), '10.42.9.9');
  assert.deepEqual(dump.search, ['rancher.internal']);
  const names = Object.fromEntries(Object.entries(dump.names).filter(([n]) => !n.endsWith('.in-addr.arpa')));
  assert.deepEqual(names, {
    'db-1.rancher.internal': DB,
    'mydb.rancher.internal': DB,
    'rancher-metadata': META,
    'rancher-metadata.rancher.internal': META,
    'tool.rancher.internal': { a: ['10.42.9.9'] },
  });
});

test('stack scope adds every service, sidekick and container of the own stack, nothing of other stacks', () => {
  const { b } = env('stack');
  const dump = dumpClientView(buildDnsData(b.state), '10.42.0.11');
  const names = Object.keys(dump.names).filter((n) => !n.endsWith('.in-addr.arpa'));
  for (const n of ['cache.app.rancher.internal', 'cache-1.rancher.internal', 'db-1.rancher.internal', 'db-2.rancher.internal']) {
    assert.ok(names.includes(n), n);
  }
  assert.deepEqual(dump.names['cache.app.rancher.internal'], { a: ['10.43.0.10'] });
  // linked services of other stacks stay (links), unlinked ones of other stacks do not
  assert.ok(names.includes('api.other.rancher.internal'));
  assert.ok(!names.includes('extip.other.rancher.internal'));
  assert.ok(!names.includes('api-1.rancher.internal'));
});

test('environment scope: every service and container of the environment', () => {
  const { b } = env('environment');
  const d = buildDnsData(b.state);
  const dump = dumpClientView(d, '10.42.0.21');
  const names = Object.keys(dump.names).filter((n) => !n.endsWith('.in-addr.arpa'));
  assert.deepEqual(names, [
    '_5432._tcp.db.app.rancher.internal',
    '_80._tcp.web.app.rancher.internal',
    'api-1.rancher.internal',
    'api.other.rancher.internal',
    'both.other.rancher.internal',
    'cache-1.rancher.internal',
    'cache.app.rancher.internal',
    'db-1.rancher.internal',
    'db-2.rancher.internal',
    'db.app.rancher.internal',
    'ext.other.rancher.internal',
    'extip.other.rancher.internal',
    'logger.web.app.rancher.internal',
    'rancher-metadata',
    'rancher-metadata.rancher.internal',
    'tool.rancher.internal',
    'web-1.rancher.internal',
    'web-2.rancher.internal',
    'web-logger-1.rancher.internal',
    'web.app.rancher.internal',
  ]);
  // api-2 is stopped: no name; api's answer is its healthy running container only
  assert.deepEqual(dump.names['api.other.rancher.internal'], { a: ['10.42.1.1'] });
  assert.deepEqual(dump.names['extip.other.rancher.internal'], { a: ['192.0.2.5', '192.0.2.6'] });
});

test('non-container clients: metadata only, or the environment view with hostDnsView', () => {
  const d = buildDnsData(env('linked').b.state);
  assert.deepEqual(dumpClientView(d, '192.0.2.10'), {
    search: [],
    recurse: [],
    names: { 'rancher-metadata': META, 'rancher-metadata.rancher.internal': META },
  });
  const h = dumpClientView(buildDnsData(env('linked', true).b.state), '192.0.2.10');
  assert.deepEqual(h.search, ['rancher.internal']);
  assert.ok('extip.other.rancher.internal' in h.names);
  assert.ok('9.9.42.10.in-addr.arpa' in h.names);
});

test('health: a checked service answers with ALL its serving containers, none when none is (never the newest anyway)', () => {
  const b = new EnvBuilder();
  const st = b.stack('s');
  const svc = b.service(st, 'svc', { healthCheckPort: 80, expose: [{ privatePort: 80, protocol: 'tcp' }] });
  const c1 = b.container('c1', '10.42.0.1', { stackId: st, serviceId: svc, healthState: 'initializing', createIndex: 1 });
  const c2 = b.container('c2', '10.42.0.2', { stackId: st, serviceId: svc, healthState: 'initializing', createIndex: 2 });
  const c3 = b.container('c3', '10.42.0.3', { stackId: st, serviceId: svc, healthState: 'initializing', createIndex: 3 });
  const names = (): Record<string, unknown> => dumpClientView(buildDnsData(b.state), '10.42.0.1').names;
  const a = (): unknown => names()['svc.s.rancher.internal'];
  // Scale 3, none healthy yet: the name exists with no address (was: the newest one, permanently).
  assert.deepEqual(a(), {});
  assert.deepEqual(names()['_80._tcp.svc.s.rancher.internal'], { srv: [] });
  // A container's own name stays while it runs (its identity, like its PTR).
  assert.deepEqual(names()['c3.rancher.internal'], { a: ['10.42.0.3'] });
  b.update(c1, { healthState: 'healthy' });
  assert.deepEqual(a(), { a: ['10.42.0.1'] });
  b.update(c2, { healthState: 'healthy' });
  b.update(c3, { healthState: 'healthy' });
  // Scale 3, all healthy: 3 A records and 3 SRV targets.
  assert.deepEqual(a(), { a: ['10.42.0.1', '10.42.0.2', '10.42.0.3'] });
  assert.deepEqual((names()['_80._tcp.svc.s.rancher.internal'] as { srv: string[] }).srv.length, 3);
  b.update(c2, { healthState: 'unhealthy' });
  assert.deepEqual(a(), { a: ['10.42.0.1', '10.42.0.3'] });
  b.update(c1, { state: 'starting' });
  assert.deepEqual(a(), { a: ['10.42.0.3'] });
  b.update(c3, { state: 'stopped' });
  assert.deepEqual(a(), {});

  // Without a health check the health state is ignored: every running container serves.
  const u = new EnvBuilder();
  const ust = u.stack('s');
  const usvc = u.service(ust, 'svc');
  u.container('d1', '10.42.0.1', { stackId: ust, serviceId: usvc, healthState: 'unhealthy' });
  u.container('d2', '10.42.0.2', { stackId: ust, serviceId: usvc, healthState: 'initializing' });
  assert.deepEqual(dumpClientView(buildDnsData(u.state), '10.42.0.1').names['svc.s.rancher.internal'], { a: ['10.42.0.1', '10.42.0.2'] });
});

test('a service without running containers exists with no records (NODATA, not NXDOMAIN)', () => {
  const b = new EnvBuilder({ dnsScope: 'environment' });
  const st = b.stack('s');
  b.service(st, 'idle');
  b.container('x', '10.42.0.9', { stackId: st });
  const dump = dumpClientView(buildDnsData(b.state), '10.42.0.9');
  assert.deepEqual(dump.names['idle.s.rancher.internal'], {});
});

test('hostId limits the clients to that host; names still cover the environment', () => {
  const b = new EnvBuilder({ dnsScope: 'environment' });
  b.host('1h2', '192.0.2.11');
  const st = b.stack('s');
  const svc = b.service(st, 'svc');
  b.container('a', '10.42.0.1', { stackId: st, serviceId: svc });
  b.container('b', '10.42.0.2', { stackId: st, serviceId: svc, hostId: '1h2' });
  const d = buildDnsData(b.state, { hostId: '1h2', ttl: 5 });
  assert.deepEqual([...d.clients.keys()], ['10.42.0.2']);
  assert.equal(d.ttl, 5);
  assert.deepEqual(dumpClientView(d, '10.42.0.2').names['svc.s.rancher.internal'], { a: ['10.42.0.1', '10.42.0.2'] });
  assert.deepEqual(d.zones.map((z) => z.name), ['rancher.internal']);
  assert.equal(d.serial, 7);
});

test('a link alias shadows a same-named service of the client stack', () => {
  const b = new EnvBuilder({ dnsScope: 'stack' });
  const app = b.stack('app');
  const other = b.stack('other');
  const web = b.service(app, 'web');
  const localDb = b.service(app, 'db');
  const remoteDb = b.service(other, 'pg');
  b.link(web, remoteDb, 'db');
  b.container('w', '10.42.0.1', { stackId: app, serviceId: web });
  b.container('l', '10.42.0.2', { stackId: app, serviceId: localDb });
  b.container('r', '10.42.0.3', { stackId: other, serviceId: remoteDb });
  const dump = dumpClientView(buildDnsData(b.state), '10.42.0.1');
  assert.deepEqual(dump.names['db.app.rancher.internal'], { a: ['10.42.0.3'] });
  assert.deepEqual(dump.names['db.rancher.internal'], { a: ['10.42.0.3'] });
});

test('search-suffix lookup: short names resolve, names under the zone are never expanded', () => {
  const { b } = env('linked');
  const d = buildDnsData(b.state);
  const v = d.clients.get('10.42.0.11')!;
  const get = (n: string): unknown => {
    const r = lookup(v, n, d.zones);
    return r && dumpRecords(r);
  };
  assert.deepEqual(get('db'), DB);
  assert.deepEqual(get('db.app'), DB);
  assert.deepEqual(get('database'), DB);
  assert.deepEqual(get('logger'), { a: ['10.42.0.13'] });
  assert.deepEqual(get('logger.web'), { a: ['10.42.0.13'] });
  assert.deepEqual(get('api.other'), { a: ['10.42.1.1'] });
  assert.deepEqual(get('web-1'), { a: ['10.42.0.11'] });
  assert.equal(get('cache'), undefined);
  // `app.rancher.internal` + suffix is never tried: it is under the zone already
  assert.equal(get('db.rancher.internal'), undefined);
});

test('answers file: client section, then default with the client search list, then default with its own', () => {
  const file = parseAnswers(
    JSON.stringify({
      '10.42.1.5': {
        search: ['app.rancher.internal', 'web.app.rancher.internal', 'rancher.internal'],
        recurse: ['192.0.2.53'],
        a: { 'db.rancher.internal.': { answer: ['10.42.7.7'], ttl: 42 } },
        cname: { 'ext.app.rancher.internal.': { answer: 'www.example.com.' } },
        ptr: { '10.42.1.2': { answer: 'web-1.rancher.internal.' } },
        txt: { 'x.rancher.internal.': { answer: ['v=1'] } },
      },
      default: {
        search: ['rancher.internal'],
        recurse: ['192.0.2.54'],
        authoritative: ['rancher.internal'],
        a: { 'shared.app.rancher.internal.': { answer: ['10.42.8.8'] }, 'top.rancher.internal.': { answer: ['10.42.9.9'] } },
      },
    }),
  );
  const d = buildDnsDataFromAnswers(file, { ttl: 3 });
  const dump = dumpClientView(d, '10.42.1.5');
  assert.deepEqual(dump, {
    search: ['app.rancher.internal', 'web.app.rancher.internal', 'rancher.internal'],
    recurse: ['192.0.2.53:53', '192.0.2.54:53'],
    names: {
      '2.1.42.10.in-addr.arpa': { ptr: 'web-1.rancher.internal' },
      'db.rancher.internal': { a: ['10.42.7.7'] },
      'ext.app.rancher.internal': { cname: 'www.example.com' },
      'shared.app.rancher.internal': { a: ['10.42.8.8'] },
      'top.rancher.internal': { a: ['10.42.9.9'] },
      'x.rancher.internal': { txt: ['v=1'] },
    },
  });
  const v = d.clients.get('10.42.1.5')!;
  assert.equal(lookup(v, 'db', d.zones)?.a?.ttl, 42);
  assert.equal(lookup(v, 'ext', d.zones)?.cname?.ttl, 3);
  // default's names through the client's search list
  assert.deepEqual(lookup(v, 'shared', d.zones)?.a?.ips, ['10.42.8.8']);
  assert.deepEqual(lookup(v, 'top', d.zones)?.a?.ips, ['10.42.9.9']);
  // another client: default only, with default's search list
  assert.equal(lookup(d.fallback, 'shared', d.zones), undefined);
  assert.deepEqual(lookup(d.fallback, 'top', d.zones)?.a?.ips, ['10.42.9.9']);
  assert.deepEqual(d.zones.map((z) => z.name), ['rancher.internal']);
});

test('bad data in the state never breaks the render: the name exists without the bad record', () => {
  const b = new EnvBuilder({ dnsScope: 'environment' });
  const st = b.stack('s');
  b.service(st, 'badext', { kind: 'externalService', hostname: 'bad..host' });
  b.service(st, 'badips', { kind: 'externalService', externalIps: ['300.1.1.1', '192.0.2.1'] });
  const vip = b.service(st, 'badvip', { vip: 'not-an-ip' });
  b.container('v1', '10.42.0.2', { stackId: st, serviceId: vip });
  b.container('weird', '10.42.0.999', { stackId: st });
  b.container('c', '10.42.0.1', { stackId: st });
  const names = dumpClientView(buildDnsData(b.state), '10.42.0.1').names;
  assert.deepEqual(names['badext.s.rancher.internal'], {});
  assert.deepEqual(names['badips.s.rancher.internal'], { a: ['192.0.2.1'] });
  assert.deepEqual(names['badvip.s.rancher.internal'], { a: ['10.42.0.2'] });
  assert.equal(names['weird.rancher.internal'], undefined);
});
