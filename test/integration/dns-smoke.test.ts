import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DnsServer } from '../../src/dns/server.js';
import { buildDnsData } from '../../src/dns/view.js';
import { EnvBuilder } from '../fixtures/dns-env.js';
import { dig, startUpstream } from './dns-helpers.js';

test('smoke', async () => {
  const b = new EnvBuilder();
  const app = b.stack('app');
  const web = b.service(app, 'web');
  const db = b.service(app, 'db');
  b.link(web, db, 'database');
  b.container('app-web-1', '127.0.0.11', { stackId: app, serviceId: web });
  b.container('app-db-1', '10.42.0.5', { stackId: app, serviceId: db });
  b.container('app-db-2', '10.42.0.6', { stackId: app, serviceId: db });
  const up = await startUpstream();
  up.zone.set('www.example.test', [{ type: 'A', data: '192.0.2.80', ttl: 100 }]);
  const s = new DnsServer({ data: buildDnsData(b.state), hostResolvers: [`127.0.0.1:${up.port}`] });
  const { port } = await s.listen('127.0.0.1', 0);
  for (const n of ['db', 'db.app', 'database', 'db.app.rancher.internal', 'nope.app.rancher.internal', 'www.example.test', 'rancher-metadata']) {
    const r = await dig(n, { port, from: '127.0.0.11' });
    console.log(n, r.status, r.flags.join(','), JSON.stringify(r.answer), JSON.stringify(r.authority));
  }
  const r = await dig('www.example.test', { port, from: '127.0.0.11', extra: ['+tcp'] });
  console.log('tcp', r.status, JSON.stringify(r.answer));
  await s.close();
  await up.close();
  assert.ok(true);
});
