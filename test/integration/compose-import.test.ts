// The seed scenarios as compose imports through the API: scheduling, addressing, sidekicks, start_once,
// catalog answers; upgrade/rollback keeping addresses; bad inputs rejected with the database unchanged.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { cleanup, startTestServer, type TestServer } from '../helpers/server.js';

const fixture = (p: string) => readFileSync(new URL(`../fixtures/compose/${p}`, import.meta.url), 'utf8');

type Coll<T> = { data: T[] };
type Err = { status: number; code: string; fieldName?: string; message: string; file?: string; service?: string };
interface Ctr {
  id: string;
  name: string;
  hostId: string;
  serviceId: string;
  primaryIpAddress: string | null;
  launchConfigName: string;
  serviceIndex: number;
  desiredState: string;
  generation: string;
  deploymentUnitUuid: string;
  config: { image: string; startOnce: boolean; labels: Record<string, string>; dataVolumesFromLaunchConfigs: string[]; ports: { publicPort?: number; privatePort: number }[] };
}
interface Svc {
  id: string;
  name: string;
  state: string;
  scale: number;
  secondaryLaunchConfigs: { name: string }[];
  metadata: Record<string, unknown>;
  healthCheck?: { port: number };
}

let t: TestServer;
const hosts: Record<string, string> = {};

before(async () => {
  t = await startTestServer();
  for (const n of [1, 2, 3]) hosts[`cassandra${n}`] = (await t.register(`node${n}`, { hostname: `cassandra${n}` }, `192.0.2.${10 + n}`)).hostId;
});
after(async () => {
  await t.close();
  cleanup(t.dir);
});

/** Every row of every table, to prove a rejected import changed nothing. */
function dump(): string {
  const db = t.srv.store.db;
  const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as { name: string }[]).map((r) => r.name);
  return JSON.stringify(tables.map((n) => [n, db.prepare(`SELECT * FROM ${n} ORDER BY rowid`).all()]));
}

async function containersOf(stackId: string): Promise<Ctr[]> {
  return (await t.api<Coll<Ctr & { stackId: string }>>('GET', `/v1/containers?stackId=${stackId}`)).body.data;
}

test('Cassandra seed: three pinned services with data sidekicks, cdb1 at 10.42.0.48', async () => {
  const r = await t.api<{ id: string }>('POST', '/v1/stacks', {
    name: 'cassandra',
    dockerCompose: fixture('cassandra/docker-compose.yml'),
    rancherCompose: fixture('cassandra/rancher-compose.yml'),
  });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  const services = (await t.api<Coll<Svc>>('GET', `/v1/services?stackId=${r.body.id}`)).body.data;
  assert.deepEqual(services.map((s) => s.name).sort(), ['cdb1', 'cdb2', 'cdb3'], 'sidekicks are not services of their own');
  const ctrs = await containersOf(r.body.id);
  assert.equal(ctrs.length, 6);
  for (const n of [1, 2, 3]) {
    const primary = ctrs.find((c) => c.name === `cassandra-cdb${n}-1`);
    const data = ctrs.find((c) => c.name === `cassandra-cdb${n}-cdb${n}-data-1`);
    assert.ok(primary && data, `cdb${n} and its sidekick exist`);
    assert.equal(primary.hostId, hosts[`cassandra${n}`], `cdb${n} runs on the host labelled hostname=cassandra${n}`);
    assert.equal(data.hostId, primary.hostId, 'the sidekick is scheduled with its primary');
    assert.equal(data.deploymentUnitUuid, primary.deploymentUnitUuid);
    assert.deepEqual(primary.config.dataVolumesFromLaunchConfigs, [`cdb${n}-data`]);
    assert.equal(data.config.startOnce, true);
    assert.equal(primary.config.startOnce, false);
    assert.equal(data.launchConfigName, `cdb${n}-data`);
    assert.equal(primary.config.labels['io.rancher.stack_service.name'], `cassandra/cdb${n}`);
  }
  assert.equal(ctrs.find((c) => c.name === 'cassandra-cdb1-1')?.primaryIpAddress, '10.42.0.48');
  const ips = ctrs.map((c) => c.primaryIpAddress as string);
  assert.equal(new Set(ips).size, 6, 'every container has its own address');
  for (const ip of ips) assert.match(ip, /^10\.42\.\d+\.\d+$/);
});

test('upgrade then rollback keeps the allocated address; finish-upgrade removes the old containers', async () => {
  const svc = (await t.api<Coll<Svc>>('GET', '/v1/services?name=cdb1')).body.data[0] as Svc;
  const stackId = (await t.api<Coll<{ id: string }>>('GET', '/v1/stacks?name=cassandra')).body.data[0]?.id as string;
  const primaries = async () => (await containersOf(stackId)).filter((c) => c.serviceId === svc.id && c.launchConfigName === '');

  const up = await t.api<Svc & { actions: Record<string, string> }>('POST', `/v1/services/${svc.id}?action=upgrade`, {
    inServiceStrategy: {
      launchConfig: {
        image: 'cassandra:2.2',
        labels: {
          'io.rancher.scheduler.affinity:host_label': 'hostname=cassandra1',
          'io.rancher.sidekicks': 'cdb1-data',
          'io.rancher.container.requested_ip': '10.42.0.48',
        },
        requestedIpAddress: '10.42.0.48',
        dataVolumesFromLaunchConfigs: ['cdb1-data'],
      },
    },
  });
  assert.equal(up.status, 200, JSON.stringify(up.body));
  assert.equal(up.body.state, 'upgraded');
  assert.deepEqual(Object.keys(up.body.actions).sort(), ['finishupgrade', 'rollback']);
  let p = await primaries();
  const oldC = p.find((c) => c.generation === 'previous');
  const newC = p.find((c) => c.generation === 'current');
  assert.ok(oldC && newC);
  assert.equal(oldC.desiredState, 'stopped', 'the old container is stopped and kept');
  assert.equal(newC.config.image, 'cassandra:2.2');
  assert.equal(newC.primaryIpAddress, '10.42.0.48', 'the new container keeps the address');
  assert.equal(newC.hostId, oldC.hostId);

  const rb = await t.api<Svc>('POST', `/v1/services/${svc.id}?action=rollback`);
  assert.equal(rb.body.state, 'active');
  p = await primaries();
  assert.equal(p.length, 1);
  assert.equal(p[0]?.id, oldC.id, 'rollback restores the old container');
  assert.equal(p[0]?.desiredState, 'running');
  assert.equal(p[0]?.primaryIpAddress, '10.42.0.48');
  assert.equal(p[0]?.config.image, 'cassandra:2.1');

  await t.api('POST', `/v1/services/${svc.id}?action=upgrade`, { inServiceStrategy: { launchConfig: { ...newC.config, labels: { 'io.rancher.scheduler.affinity:host_label': 'hostname=cassandra1' } } } });
  const fin = await t.api<Svc>('POST', `/v1/services/${svc.id}?action=finishupgrade`);
  assert.equal(fin.body.state, 'active');
  p = await primaries();
  assert.equal(p.length, 1);
  assert.equal(p[0]?.generation, 'current');
  assert.notEqual(p[0]?.id, oldC.id);
  assert.equal(p[0]?.primaryIpAddress, '10.42.0.48');
  const again = await t.api<Err>('POST', `/v1/services/${svc.id}?action=finishupgrade`);
  assert.equal(again.status, 409);
});

test('an upgrade that drops a sidekick frees its address once finished (kept for a rollback until then)', async () => {
  const svc = (await t.api<Coll<Svc>>('GET', '/v1/services?name=cdb2')).body.data[0] as Svc;
  const stackId = (await t.api<Coll<{ id: string }>>('GET', '/v1/stacks?name=cassandra')).body.data[0]?.id as string;
  const sidekick = (await containersOf(stackId)).find((c) => c.serviceId === svc.id && c.launchConfigName === 'cdb2-data');
  assert.ok(sidekick?.primaryIpAddress);
  const allocated = () => (t.srv.store.db.prepare('SELECT ip FROM ip_allocations').all() as { ip: string }[]).map((r) => r.ip);
  const primary = (await containersOf(stackId)).find((c) => c.serviceId === svc.id && c.launchConfigName === '');
  assert.ok(primary);
  // The stack brought up again from files where cdb2 has no data sidekick any more (a sidekick is dropped
  // from the files; the API's upgrade merges and never drops one).
  const dc = fixture('cassandra/docker-compose.yml')
    .replace(/ {4}io\.rancher\.sidekicks: cdb2-data\n {2}volumes_from:\n {4}- cdb2-data\n/, '')
    .replace(/cdb2-data:\n( {2}.*\n| {4}.*\n)*/, '');
  assert.doesNotMatch(dc, /cdb2-data/);
  const up = await t.api<{ services: { name: string; change: string; detail: string[] }[] }>('POST', `/v1/stacks/${stackId}?action=up`, {
    dockerCompose: dc,
    rancherCompose: fixture('cassandra/rancher-compose.yml'),
    upgrade: true,
  });
  assert.equal(up.status, 200, JSON.stringify(up.body));
  const cdb2 = up.body.services.find((x) => x.name === 'cdb2');
  assert.equal(cdb2?.change, 'upgraded', JSON.stringify(up.body));
  assert.ok(cdb2?.detail.includes('sidekick cdb2-data removed'), JSON.stringify(cdb2));
  const other = Object.fromEntries(up.body.services.filter((x) => x.name !== 'cdb2').map((x) => [x.name, [x.change, ...x.detail]]));
  // cdb1 runs cassandra:2.2 since the previous test's upgrade: the file's 2.1 upgrades it back; cdb3 is as the file says.
  assert.deepEqual(other, { cdb1: ['upgraded', 'launch config: image'], cdb3: ['unchanged'] });
  assert.ok(allocated().includes(sidekick.primaryIpAddress), 'still held: a rollback would bring the sidekick back');
  const fin = await t.api<Svc>('POST', `/v1/services/${svc.id}?action=finishupgrade`);
  assert.equal(fin.status, 200, JSON.stringify(fin.body));
  assert.ok(!allocated().includes(sidekick.primaryIpAddress), 'the dropped sidekick’s address is free');
  assert.ok(allocated().includes(primary.primaryIpAddress as string), 'the primary keeps its slot address');
});

test('Jenkins catalog stack: answers substituted, defaults applied, sidekicks start once', async () => {
  const r = await t.api<{ id: string; answers: Record<string, string> }>('POST', '/v1/stacks', {
    name: 'jenkins',
    dockerCompose: fixture('jenkins/docker-compose.yml'),
    rancherCompose: fixture('jenkins/rancher-compose.yml'),
    answers: { jenkins_port: '9090', admin_password: 's3cret' },
  });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  assert.equal(r.body.answers.docker_version, '1.12.3', 'defaults are recorded with the answers');
  const svc = (await t.api<Coll<Svc>>('GET', `/v1/services?stackId=${r.body.id}`)).body.data;
  assert.deepEqual(svc.map((s) => s.name), ['jenkins-primary']);
  assert.deepEqual(svc[0]?.secondaryLaunchConfigs.map((l) => l.name).sort(), ['jenkins-datavolume', 'jenkins-plugins']);
  assert.equal(svc[0]?.healthCheck?.port, 8080);
  assert.match(String(svc[0]?.metadata.plugins), /greenballs/);
  const ctrs = await containersOf(r.body.id);
  assert.equal(ctrs.length, 3);
  assert.equal(new Set(ctrs.map((c) => c.hostId)).size, 1, 'primary and sidekicks share a host');
  const primary = ctrs.find((c) => c.launchConfigName === '') as Ctr;
  assert.deepEqual(primary.config.ports.map((p) => [p.publicPort, p.privatePort]), [[9090, 8080]]);
  assert.deepEqual(ctrs.filter((c) => c.config.startOnce).map((c) => c.launchConfigName).sort(), ['jenkins-datavolume', 'jenkins-plugins']);

  const exported = await t.api<{ dockerComposeConfig: string; rancherComposeConfig: string }>('POST', `/v1/stacks/${r.body.id}?action=exportconfig`);
  assert.match(exported.body.dockerComposeConfig, /jenkins-primary:/);
  assert.match(exported.body.dockerComposeConfig, /9090:8080/);
  assert.match(exported.body.rancherComposeConfig, /health_check:/);
  // The export imports again as an equivalent stack.
  const re = await t.api<{ id: string }>('POST', '/v1/stacks', { name: 'jenkins-copy', dockerCompose: exported.body.dockerComposeConfig, rancherCompose: exported.body.rancherComposeConfig, answers: { admin_password: 'x' } });
  assert.equal(re.status, 201, JSON.stringify(re.body));
  const copy = (await t.api<Coll<Svc>>('GET', `/v1/services?stackId=${re.body.id}`)).body.data;
  assert.deepEqual(copy[0]?.secondaryLaunchConfigs, svc[0]?.secondaryLaunchConfigs);
});

const BAD: { name: string; dc: string; rc?: string; answers?: Record<string, string>; status?: number; expect: RegExp }[] = [
  { name: 'YAML syntax', dc: 'web:\n  image: nginx\n   ports: [80\n', expect: /docker-compose\.yml.*line \d+/ },
  { name: 'unknown key', dc: 'web:\n  image: nginx\n  colour: red\n', expect: /docker-compose\.yml, service "web", field "colour"/ },
  { name: 'unsupported key', dc: 'web:\n  image: nginx\n  build: .\n', expect: /service "web", field "build".*not supported by drover yet/ },
  { name: 'bad port spec', dc: 'web:\n  image: nginx\n  ports: ["80:abc"]\n', expect: /service "web", field "ports\[0\]"/ },
  { name: 'link to a missing service', dc: 'web:\n  image: nginx\n  links: [db]\n', expect: /service "web", field "links.*db/ },
  { name: 'external link to a missing stack', dc: 'web:\n  image: nginx\n  external_links: ["nope/db:db"]\n', expect: /docker-compose\.yml, service "web", field "external_links".*nope\/db/ },
  { name: 'rancher-compose for a missing service', dc: 'web:\n  image: nginx\n', rc: 'db:\n  scale: 2\n', expect: /rancher-compose\.yml, service "db"/ },
  { name: 'negative scale', dc: 'web:\n  image: nginx\n', rc: 'web:\n  scale: -1\n', expect: /rancher-compose\.yml, service "web", field "scale"/ },
  { name: 'missing required answer', dc: fixture('jenkins/docker-compose.yml'), rc: fixture('jenkins/rancher-compose.yml'), expect: /admin_password/ },
  { name: 'enum answer not in options', dc: fixture('jenkins/docker-compose.yml'), rc: fixture('jenkins/rancher-compose.yml'), answers: { admin_password: 'x', docker_version: '99' }, expect: /docker_version/ },
  { name: 'bad requested IP', dc: 'web:\n  image: nginx\n  labels:\n    io.rancher.container.requested_ip: 10.42.0.999\n', expect: /requested_ip/ },
];

for (const bad of BAD) {
  test(`bad compose input is rejected precisely and changes nothing: ${bad.name}`, async () => {
    const before = dump();
    const r = await t.api<Err>('POST', '/v1/stacks', {
      name: 'broken',
      dockerCompose: bad.dc,
      ...(bad.rc ? { rancherCompose: bad.rc } : {}),
      ...(bad.answers ? { answers: bad.answers } : {}),
    });
    assert.equal(r.status, bad.status ?? 422, JSON.stringify(r.body));
    assert.match(r.body.message, bad.expect);
    assert.equal(dump(), before, 'the database is unchanged');
  });
}

test('a duplicate stack name is a conflict and changes nothing', async () => {
  const before = dump();
  const r = await t.api<Err>('POST', '/v1/stacks', { name: 'cassandra', dockerCompose: 'web:\n  image: nginx\n' });
  assert.equal(r.status, 409);
  assert.equal(dump(), before);
});

test('a global service follows its hosts: one container per matching host, also for hosts that join later', async () => {
  const r = await t.api<{ id: string }>('POST', '/v1/stacks', {
    name: 'monitor',
    dockerCompose: 'agent:\n  image: busybox\n  labels:\n    io.rancher.scheduler.global: "true"\n    io.rancher.scheduler.affinity:host_label: role=edge\n',
  });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  const onHosts = async () => (await containersOf(r.body.id)).map((c) => c.hostId).sort();
  assert.deepEqual(await onHosts(), [], 'no host has role=edge yet');
  const e1 = await t.register('edge1', { role: 'edge' }, '192.0.2.41');
  const e2 = await t.register('edge2', { role: 'edge' }, '192.0.2.42');
  assert.deepEqual(await onHosts(), [e1.hostId, e2.hostId].sort());
  const svc = (await t.api<Coll<Svc>>('GET', `/v1/services?stackId=${r.body.id}`)).body.data[0] as Svc;
  assert.equal(svc.scale, 2, 'the scale of a global service is its number of hosts');
  await t.api('POST', `/v1/hosts/${e2.hostId}?action=deactivate`);
  assert.deepEqual(await onHosts(), [e1.hostId]);
  await t.api('DELETE', `/v1/hosts/${e1.hostId}`);
  await t.api('DELETE', `/v1/hosts/${e2.hostId}`);
  assert.deepEqual(await onHosts(), []);
  await t.api('DELETE', `/v1/stacks/${r.body.id}`);
});

test('rancher-compose start_on_create and drain_timeout_ms: an inactive service, a drain per service, both exported back', async () => {
  const r = await t.api<{ id: string }>('POST', '/v1/stacks', {
    name: 'keys16',
    dockerCompose: 'web:\n  image: nginx\nlater:\n  image: nginx\n',
    rancherCompose: 'web:\n  scale: 2\n  start_on_create: true\n  drain_timeout_ms: 15000\nlater:\n  scale: 1\n  start_on_create: false\n',
  });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  const svcs = (await t.api<Coll<Svc & { drainTimeoutMs?: number }>>('GET', `/v1/services?stackId=${r.body.id}`)).body.data;
  const web = svcs.find((s) => s.name === 'web');
  const later = svcs.find((s) => s.name === 'later');
  assert.equal(web?.state, 'active');
  assert.equal(web?.drainTimeoutMs, 15000);
  assert.equal(later?.state, 'inactive', 'start_on_create: false → created, not started');
  const ctrs = await containersOf(r.body.id);
  assert.ok(ctrs.filter((c) => c.serviceId === later?.id).every((c) => c.desiredState !== 'running'), 'no container of it is to run');
  assert.equal(ctrs.filter((c) => c.serviceId === web?.id && c.desiredState === 'running').length, 2);
  const exp = await t.api<{ rancherComposeConfig: string }>('POST', `/v1/stacks/${r.body.id}?action=exportconfig`);
  assert.match(exp.body.rancherComposeConfig, /web:\n( {2}.*\n)* {2}drain_timeout_ms: 15000\n/);
  assert.match(exp.body.rancherComposeConfig, /later:\n( {2}.*\n)* {2}start_on_create: false\n/);
  // Started later: activate.
  const act = await t.api<Svc>('POST', `/v1/services/${later?.id}?action=activate`);
  assert.equal(act.body.state, 'active');
  assert.equal((await containersOf(r.body.id)).filter((c) => c.serviceId === later?.id && c.desiredState === 'running').length, 1);
});

test('a service no host can take is created and waits as pending with the reason; a host labelled to fit takes it', async () => {
  const r = await t.api<{ id: string }>('POST', '/v1/stacks', {
    name: 'waits',
    dockerCompose: 'ok:\n  image: nginx\nweb:\n  image: nginx\n  labels:\n    io.rancher.scheduler.affinity:host_label: hostname=nowhere\n',
  });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  const web = (await containersOf(r.body.id)).find((c) => c.name === 'waits-web-1') as Ctr & { state: string; transitioningMessage?: string };
  assert.equal(web.hostId, null);
  assert.equal(web.state, 'pending');
  assert.match(web.transitioningMessage ?? '', /^waiting for a host: .*no host has host labels hostname=nowhere/);
  assert.ok((await containersOf(r.body.id)).find((c) => c.name === 'waits-ok-1')?.hostId, 'the service that fits is placed');
  // A host gets the label: the waiting container is placed there.
  const host = (await t.api<Coll<{ id: string; labels: Record<string, string> }>>('GET', '/v1/hosts')).body.data[0];
  assert.ok(host);
  const put = await t.api('PUT', `/v1/hosts/${host.id}`, { labels: { ...host.labels, hostname: 'nowhere' } });
  assert.equal(put.status, 200, JSON.stringify(put.body));
  const placed = (await containersOf(r.body.id)).find((c) => c.name === 'waits-web-1') as Ctr & { state: string; transitioningMessage?: string };
  assert.equal(placed.hostId, host.id);
  assert.notEqual(placed.state, 'pending');
  assert.equal(placed.transitioningMessage, undefined);
  await t.api('PUT', `/v1/hosts/${host.id}`, { labels: host.labels });
  await t.api('DELETE', `/v1/stacks/${r.body.id}`);
});
