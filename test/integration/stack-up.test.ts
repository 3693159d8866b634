// `POST /v1/stacks/<id>?action=up` (what `drover stack up` does on an existing stack): only what changed is
// applied, a changed container definition is upgraded only when asked, an error changes nothing; and the
// service upgrade API merges a partial launch config over the current one.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cleanup, startTestServer, type TestServer } from '../helpers/server.js';

type Coll<T> = { data: T[] };
interface Outcome {
  name: string;
  change: string;
  detail: string[];
}
interface Up {
  services: Outcome[];
}
interface Ctr {
  id: string;
  serviceId: string;
  launchConfigName: string;
  generation: string;
  desiredState: string;
  primaryIpAddress: string | null;
  config: { image: string; volumes: string[]; dataVolumesFromLaunchConfigs: string[]; labels: Record<string, string>; environment: Record<string, string>; requestedIpAddress?: string; pullPolicy?: string };
}
interface Svc {
  id: string;
  name: string;
  state: string;
  scale: number;
  metadata: Record<string, unknown>;
  launchConfig: Ctr['config'];
  secondaryLaunchConfigs: Ctr['config'][];
}

let t: TestServer;
let stackId = '';

const DC = (image = 'nginx:1', dataImage = 'busybox') =>
  `web:\n  image: ${image}\n  environment:\n    TIER: front\n  labels:\n    io.rancher.sidekicks: data\n    io.rancher.container.requested_ip: 10.42.7.7\n  volumes_from: [data]\n  volumes: [/srv/web]\n` +
  `data:\n  image: ${dataImage}\n  command: /bin/true\n  volumes: [/srv/data]\n  labels:\n    io.rancher.container.start_once: 'true'\n` +
  `db:\n  image: postgres:15\n  links: [web]\n`;
const RC = (webScale = 1) => `web:\n  scale: ${webScale}\ndb:\n  scale: 1\n  metadata: {tier: db}\n`;

function dump(): string {
  const db = t.srv.store.db;
  const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as { name: string }[]).map((r) => r.name);
  return JSON.stringify(tables.map((n) => [n, db.prepare(`SELECT * FROM ${n} ORDER BY rowid`).all()]));
}
const up = (body: Record<string, unknown>) => t.api<Up & { code?: string; message?: string; fieldName?: string }>('POST', `/v1/stacks/${stackId}?action=up`, body);
const changes = (r: { body: Up }) => Object.fromEntries(r.body.services.map((s) => [s.name, [s.change, ...s.detail]]));
const svc = async (name: string) => (await t.api<Coll<Svc>>('GET', `/v1/services?stackId=${stackId}&name=${name}`)).body.data[0] as Svc;
const ctrs = async () => (await t.api<Coll<Ctr>>('GET', `/v1/containers?stackId=${stackId}`)).body.data;

before(async () => {
  t = await startTestServer();
  await t.register('node1', {}, '192.0.2.21');
  const r = await t.api<{ id: string }>('POST', '/v1/stacks', { name: 'app', dockerCompose: DC(), rancherCompose: RC() });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  stackId = r.body.id;
});
after(async () => {
  await t.close();
  cleanup(t.dir);
});

test('the same files again: every service unchanged, nothing written', async () => {
  const before = dump();
  const r = await up({ dockerCompose: DC(), rancherCompose: RC() });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual(changes(r), { web: ['unchanged'], db: ['unchanged'] });
  // Only the stack's stored files are rewritten (to the same text): the rows are equal.
  assert.equal(dump().replace(/"revision":\d+/g, ''), before.replace(/"revision":\d+/g, ''));
});

test('a changed image without --upgrade is reported as outdated and changes nothing; a scale change is applied', async () => {
  const r = await up({ dockerCompose: DC('nginx:2'), rancherCompose: RC(2) });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual(changes(r), { web: ['outdated', 'launch config: image', 'run with --upgrade to apply'], db: ['unchanged'] });
  const web = await svc('web');
  assert.equal(web.launchConfig.image, 'nginx:1');
  assert.equal(web.scale, 1, 'an outdated service is left whole (its scale waits for the upgrade)');
});

test('with upgrade: only the changed service is upgraded, keeping its requested IP and its sidekick; confirm removes the old containers', async () => {
  const ipBefore = (await ctrs()).find((c) => c.launchConfigName === '' && c.primaryIpAddress === '10.42.7.7');
  assert.ok(ipBefore, 'web at its requested address');
  const r = await up({ dockerCompose: DC('nginx:2'), rancherCompose: RC(), upgrade: true, batchSize: 1 });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual(changes(r), { web: ['upgraded', 'launch config: image'], db: ['unchanged'] });
  const web = await svc('web');
  assert.equal(web.state, 'upgraded');
  const current = (await ctrs()).filter((c) => c.serviceId === web.id && c.generation === 'current');
  const primary = current.find((c) => c.launchConfigName === '');
  assert.equal(primary?.config.image, 'nginx:2');
  assert.equal(primary?.primaryIpAddress, '10.42.7.7', 'the requested IP is kept');
  assert.deepEqual(primary?.config.dataVolumesFromLaunchConfigs, ['data']);
  assert.ok(current.some((c) => c.launchConfigName === 'data'), 'the sidekick is part of the new unit');
  // Again while the upgrade waits for confirmation: reported, nothing else changed.
  const again = await up({ dockerCompose: DC('nginx:2'), rancherCompose: RC() });
  assert.deepEqual(changes(again)['web']?.[0], 'upgrading');
  // Another definition meanwhile: a conflict that names what to do.
  const other = await up({ dockerCompose: DC('nginx:3'), rancherCompose: RC(), upgrade: true });
  assert.equal(other.status, 409, JSON.stringify(other.body));
  assert.match(other.body.message ?? '', /confirm \(--confirm-upgrade\) or roll back \(--rollback\)/);
  const fin = await t.api<Svc>('POST', `/v1/services/${web.id}?action=finishupgrade`);
  assert.equal(fin.body.state, 'active');
  assert.ok((await ctrs()).filter((c) => c.serviceId === web.id).every((c) => c.generation === 'current'));
});

test('metadata, links and a new service from the files; a removed service is left alone', async () => {
  const dc = DC('nginx:2').replace('  links: [web]\n', '') + 'cache:\n  image: redis:7\n';
  const rc = 'web:\n  scale: 1\ndb:\n  scale: 1\n  metadata: {tier: primary}\ncache:\n  scale: 1\n';
  const r = await up({ dockerCompose: dc, rancherCompose: rc });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual(changes(r), { cache: ['created'], web: ['unchanged'], db: ['updated', 'metadata', 'links'] });
  assert.deepEqual((await svc('db')).metadata, { tier: 'primary' });
  const noDb = await up({ dockerCompose: 'web:\n  image: nginx:2\n' + dc.slice(dc.indexOf('data:')).replace(/db:\n {2}image: postgres:15\n/, '').replace(/web:\n.*$/s, ''), rancherCompose: 'web: {scale: 1}\n' });
  assert.equal(noDb.status, 200, JSON.stringify(noDb.body));
  assert.ok(await svc('db'), 'db (not in the files) still exists');
});

test('errors change nothing: a bad file, a changed kind', async () => {
  const before = dump();
  const bad = await up({ dockerCompose: 'web:\n  image: nginx:2\n  bogus_key: 1\n' });
  assert.equal(bad.status, 422, JSON.stringify(bad.body));
  assert.match(bad.body.message ?? '', /bogus_key/);
  const kind = await up({ dockerCompose: 'db:\n  image: rancher/external-service\n', rancherCompose: 'db:\n  external_ips: [192.0.2.1]\n' });
  assert.equal(kind.status, 422, JSON.stringify(kind.body));
  assert.match(kind.body.message ?? '', /is a service in stack "app" and a externalService in the file/);
  const strict = await up({ dockerCompose: DC(), bogus: true });
  assert.equal(strict.status, 422);
  assert.equal(dump(), before);
});

test('the upgrade API merges a partial launch config: volumes, volumes_from, labels, environment and the requested IP stay', async () => {
  const web = await svc('web');
  const r = await t.api<Svc>('POST', `/v1/services/${web.id}?action=upgrade`, {
    inServiceStrategy: { launchConfig: { image: 'nginx:4', labels: { extra: 'yes' }, environment: { MODE: 'x' } }, secondaryLaunchConfigs: [{ name: 'data', image: 'busybox:2' }] },
  });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const lc = r.body.launchConfig;
  assert.equal(lc.image, 'nginx:4');
  assert.deepEqual(lc.volumes, ['/srv/web']);
  assert.deepEqual(lc.dataVolumesFromLaunchConfigs, ['data']);
  assert.equal(lc.labels['io.rancher.container.requested_ip'], '10.42.7.7');
  assert.equal(lc.labels['io.rancher.sidekicks'], 'data');
  assert.equal(lc.labels.extra, 'yes');
  assert.deepEqual(lc.environment, { TIER: 'front', MODE: 'x' });
  assert.equal(r.body.secondaryLaunchConfigs.length, 1);
  assert.equal(r.body.secondaryLaunchConfigs[0]?.image, 'busybox:2');
  assert.deepEqual(r.body.secondaryLaunchConfigs[0]?.volumes, ['/srv/data'], "the sidekick's own keys are merged too");
  const primary = (await ctrs()).find((c) => c.serviceId === web.id && c.generation === 'current' && c.launchConfigName === '');
  assert.equal(primary?.primaryIpAddress, '10.42.7.7');
  const rb = await t.api<Svc>('POST', `/v1/services/${web.id}?action=rollback`);
  assert.equal(rb.body.launchConfig.image, 'nginx:2');
  assert.equal(rb.body.secondaryLaunchConfigs[0]?.image, 'busybox', "rollback restores the sidekick's config too");
});

test('--force-upgrade upgrades an unchanged service; --pull makes the new containers pull first without changing the definition', async () => {
  const web = await svc('web');
  const dc = DC('nginx:2').replace('  links: [web]\n', '') + 'cache:\n  image: redis:7\n';
  const rc = 'web:\n  scale: 1\ndb:\n  scale: 1\n  metadata: {tier: primary}\ncache:\n  scale: 1\n';
  if (web.state !== 'active') await t.api('POST', `/v1/services/${web.id}?action=rollback`);
  const r = await up({ dockerCompose: dc, rancherCompose: rc, forceUpgrade: true, pull: true });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual(changes(r).web, ['upgraded', 'forced']);
  const fresh = (await ctrs()).filter((c) => c.generation === 'current' && c.serviceId === web.id) as (Ctr & { config: { pullPolicy: string } })[];
  assert.ok(fresh.length > 0 && fresh.every((c) => c.config.pullPolicy === 'always'), 'the new containers pull first');
  assert.equal((await svc('web')).launchConfig.pullPolicy, 'missing', 'the definition is unchanged');
  const again = await up({ dockerCompose: dc, rancherCompose: rc });
  assert.equal(changes(again).web?.[0], 'upgrading', 'not outdated: the definition did not change');
  await t.api('POST', `/v1/services/${web.id}?action=finishupgrade`);
});

test('a new stack: startOnCreate false creates every service inactive; pull makes its containers pull first', async () => {
  const r = await t.api<{ id: string }>('POST', '/v1/stacks', { name: 'paused', dockerCompose: 'a:\n  image: nginx\nb:\n  image: nginx\n', startOnCreate: false, pull: true });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  const svcs = (await t.api<Coll<Svc>>('GET', `/v1/services?stackId=${r.body.id}`)).body.data;
  assert.deepEqual(svcs.map((s) => s.state), ['inactive', 'inactive']);
  const cs = (await t.api<Coll<Ctr & { config: { pullPolicy: string } }>>('GET', '/v1/containers')).body.data.filter((c) => svcs.some((s) => s.id === c.serviceId));
  assert.ok(cs.every((c) => c.config.pullPolicy === 'always'));
});
