// The Docker runtime's pure parts: the desired containers rendered from a state (golden file
// test/fixtures/runtime/desired.golden.json; regenerate with UPDATE_GOLDEN=1 after a deliberate change
// and review the diff), the rules behind it spelled out one by one, and the create request built from it.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { desiredContainers, dockerName, type DesiredContainer } from '../../src/agent/runtime/desired.js';
import { createOptions, parsePort } from '../../src/agent/runtime/create-spec.js';
import { renderRuntime, sameArtefact } from '../../src/agent/runtime/artefact.js';
import { withDefaultTag } from '../../src/agent/runtime/images.js';
import { HOST, OTHER_HOST, runtimeFixtureState } from '../fixtures/runtime/state.js';
import { Service, type Container } from '../../src/model/resources.js';

const GOLDEN = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'runtime', 'desired.golden.json');

function byRecord(list: DesiredContainer[], id: string): DesiredContainer {
  const d = list.find((x) => x.recordId === id);
  assert.ok(d, `no desired container for record ${id}`);
  return d;
}

describe('desiredContainers: golden output', () => {
  it('matches the golden file', () => {
    const actual = desiredContainers(runtimeFixtureState(), HOST);
    const text = `${JSON.stringify(actual, null, 2)}\n`;
    if (process.env.UPDATE_GOLDEN === '1' || !existsSync(GOLDEN)) {
      mkdirSync(dirname(GOLDEN), { recursive: true });
      writeFileSync(GOLDEN, text);
    }
    assert.equal(text, readFileSync(GOLDEN, 'utf8'));
  });
});

describe('desiredContainers: rules', () => {
  const st = runtimeFixtureState();
  const list = desiredContainers(st, HOST);

  it('renders only this host’s non-adopted records that are desired running or stopped', () => {
    assert.deepEqual(list.map((d) => d.recordId).sort(), ['c1', 'c2', 'c3', 'c4', 'c5', 'c6']);
    assert.deepEqual(desiredContainers(st, OTHER_HOST).map((d) => d.recordId), ['x1']);
    assert.deepEqual(desiredContainers(st, ''), []);
  });

  it('leaves balancer instances to the balancer controller (no Docker container, whatever the image), but not their sidekicks', () => {
    const lbState = runtimeFixtureState();
    const lb = Service.parse({ id: 'lb1', uuid: 'lb1-u', environmentId: 'e1', stackId: 'st1', name: 'lb', kind: 'loadBalancerService', state: 'active', scale: 1, created: '2024-01-01T00:00:00.000Z' });
    lbState.services.set('lb1', lb);
    const base = lbState.containers.get('c1') as Container;
    const unit = { serviceId: 'lb1', deploymentUnitUuid: 'du-lb', config: { ...base.config, image: 'rancher/lb-service-haproxy:v0.9.1', dataVolumesFromLaunchConfigs: [] } };
    lbState.containers.set('lbc', { ...base, ...unit, id: 'lbc', uuid: 'lbcaaaa-bbbb', name: 'shop-lb-1', launchConfigName: '', primaryIpAddress: '10.42.0.50' });
    lbState.containers.set('lbs', { ...base, ...unit, id: 'lbs', uuid: 'lbsaaaa-bbbb', name: 'shop-lb-side-1', launchConfigName: 'side', primaryIpAddress: '10.42.0.51' });
    const ids = desiredContainers(lbState, HOST).map((d) => d.recordId);
    assert.ok(!ids.includes('lbc'), `the balancer instance is not a Docker container: ${ids.join(',')}`);
    assert.ok(ids.includes('lbs'), `a balancer's sidekick is: ${ids.join(',')}`);
  });

  it('names containers r-<name>-<first 8 of uuid>', () => {
    assert.equal(byRecord(list, 'c1').name, 'r-shop-web-1-c1aaaa-b');
    assert.equal(dockerName({ name: 'x', uuid: '0123456789abcdef' }), 'r-x-01234567');
  });

  it('puts sidekicks a container mounts (or shares the network of) before it', () => {
    const order = list.map((d) => d.recordId);
    assert.ok(order.indexOf('c2') < order.indexOf('c1'), `data sidekick before primary: ${order.join(',')}`);
    assert.ok(order.indexOf('c1') < order.indexOf('c3'), `primary before the sidecar sharing its network: ${order.join(',')}`);
    assert.deepEqual(byRecord(list, 'c1').after, ['c2']);
  });

  it('resolves volumes_from and container: network modes to docker names of the same unit and generation', () => {
    const c1 = byRecord(list, 'c1');
    assert.deepEqual(c1.volumesFrom, [byRecord(list, 'c2').name]);
    const c3 = byRecord(list, 'c3');
    assert.equal(c3.networkMode, `container:${c1.name}`);
    // The previous generation shares the deployment unit uuid but is not the one it mounts/joins.
    assert.notEqual(c3.networkMode, `container:${byRecord(list, 'c4').name}`);
    assert.deepEqual(byRecord(list, 'c4').volumesFrom, []);
  });

  it('adds the record id and managed IP labels to the config labels', () => {
    const c1 = byRecord(list, 'c1');
    assert.equal(c1.labels['io.rancher.container.uuid'], st.containers.get('c1')?.uuid);
    assert.equal(c1.labels['io.drover.container.id'], 'c1');
    assert.equal(c1.labels['io.rancher.container.ip'], '10.42.0.2/16');
    assert.equal(byRecord(list, 'c2').labels['io.rancher.container.ip'], '10.42.0.3/16');
    assert.equal(c1.ipAddress, '10.42.0.2');
    assert.equal(byRecord(list, 'c6').ipAddress, null);
  });

  it('gives managed containers the rancher DNS and search domains, then their own', () => {
    const c1 = byRecord(list, 'c1');
    assert.deepEqual(c1.dns, ['169.254.169.250', '192.0.2.53']);
    assert.deepEqual(c1.dnsSearch, ['shop.rancher.internal', 'web.shop.rancher.internal', 'rancher.internal', 'example.com']);
    // io.rancher.container.dns=false opts out; host networking gets only its own servers.
    assert.deepEqual([byRecord(list, 'c5').dns, byRecord(list, 'c5').dnsSearch], [[], []]);
    assert.deepEqual(byRecord(list, 'c6').dns, ['192.0.2.53']);
    // Sharing another container's network: no DNS, hostname or ports of its own (Docker refuses them).
    const c3 = byRecord(list, 'c3');
    assert.deepEqual([c3.dns, c3.dnsSearch, c3.ports, c3.hostname], [[], [], [], undefined]);
  });

  it('renders hostnames, ports, volumes, start_once, pull policy and desired state', () => {
    const c1 = byRecord(list, 'c1');
    assert.equal(c1.hostname, 'web-host');
    assert.equal(byRecord(list, 'c5').hostname, 'tools');
    assert.deepEqual(c1.ports, ['8080:80/tcp', '127.0.0.1::443/tcp', '9000/udp']);
    assert.deepEqual(c1.binds, ['/srv/www:/var/www:ro', 'logs:/logs']);
    assert.deepEqual(c1.volumes, ['/cache']);
    assert.deepEqual(c1.env, ['TIER=front', 'EMPTY=']);
    assert.equal(byRecord(list, 'c2').startOnce, true);
    assert.equal(byRecord(list, 'c2').pullPolicy, 'always');
    assert.equal(byRecord(list, 'c5').pullPolicy, 'never');
    assert.equal(byRecord(list, 'c4').desiredState, 'stopped');
  });

  it('hashes the launch config: a change recreates, a desired state change does not', () => {
    const base = byRecord(desiredContainers(runtimeFixtureState(), HOST), 'c1').configHash;
    assert.match(base, /^[0-9a-f]{16}$/);
    const stopped = runtimeFixtureState();
    const c1 = stopped.containers.get('c1');
    assert.ok(c1);
    c1.desiredState = 'stopped';
    assert.equal(byRecord(desiredContainers(stopped, HOST), 'c1').configHash, base);
    const changed = runtimeFixtureState();
    const c1b = changed.containers.get('c1');
    assert.ok(c1b);
    c1b.config.environment = { ...c1b.config.environment, TIER: 'back' };
    assert.notEqual(byRecord(desiredContainers(changed, HOST), 'c1').configHash, base);
    // Label order does not matter.
    const reordered = runtimeFixtureState();
    const c1c = reordered.containers.get('c1');
    assert.ok(c1c);
    c1c.config.labels = Object.fromEntries(Object.entries(c1c.config.labels).reverse());
    assert.equal(byRecord(desiredContainers(reordered, HOST), 'c1').configHash, base);
    // The service's drain_timeout_ms reaches the runtime, and changing it recreates nothing.
    const drained = runtimeFixtureState();
    const svcId = drained.containers.get('c1')?.serviceId;
    const svc = svcId ? drained.services.get(svcId) : undefined;
    assert.ok(svc, 'c1 belongs to a service');
    svc.drainTimeoutMs = 15000;
    const d1 = byRecord(desiredContainers(drained, HOST), 'c1');
    assert.equal(d1.drainMs, 15000);
    assert.equal(d1.configHash, base);
    assert.equal(byRecord(desiredContainers(runtimeFixtureState(), HOST), 'c1').drainMs, undefined, 'absent: the agent default');
  });
});

describe('createOptions', () => {
  const list = desiredContainers(runtimeFixtureState(), HOST);

  it('maps a managed container to the drover network with its IP, DNS, binds, ports and volumes_from', () => {
    const c1 = byRecord(list, 'c1');
    const o = createOptions(c1);
    assert.equal(o.name, c1.name);
    assert.equal(o.Labels?.['io.drover.config-hash'], c1.configHash);
    assert.deepEqual(o.NetworkingConfig, { EndpointsConfig: { drover: { IPAMConfig: { IPv4Address: '10.42.0.2' } } } });
    assert.equal(o.HostConfig?.NetworkMode, 'drover');
    assert.deepEqual(o.HostConfig?.Dns, c1.dns);
    assert.deepEqual(o.HostConfig?.DnsSearch, c1.dnsSearch);
    assert.deepEqual(o.HostConfig?.Binds, ['/srv/www:/var/www:ro', 'logs:/logs']);
    assert.deepEqual(o.Volumes, { '/cache': {} });
    assert.deepEqual(o.HostConfig?.VolumesFrom, [byRecord(list, 'c2').name]);
    assert.deepEqual(o.ExposedPorts, { '80/tcp': {}, '443/tcp': {}, '9000/udp': {} });
    assert.deepEqual(o.HostConfig?.PortBindings, {
      '80/tcp': [{ HostPort: '8080' }],
      '443/tcp': [{ HostIp: '127.0.0.1', HostPort: '' }],
    });
    assert.deepEqual(o.HostConfig?.RestartPolicy, { Name: 'on-failure', MaximumRetryCount: 3 });
    assert.deepEqual(o.HostConfig?.CapAdd, ['NET_ADMIN']);
    assert.equal(o.HostConfig?.Memory, 67108864);
    assert.deepEqual(o.HostConfig?.LogConfig, { Type: 'json-file', Config: { 'max-size': '10m' } });
    assert.deepEqual(o.Cmd, ['nginx', '-g', 'daemon off;']);
    assert.equal(o.Hostname, 'web-host');
  });

  it('never lets Docker restart a start_once container', () => {
    assert.deepEqual(createOptions(byRecord(list, 'c2')).HostConfig?.RestartPolicy, { Name: 'no' });
  });

  it('passes other network modes through, without a managed endpoint', () => {
    const o = createOptions(byRecord(list, 'c6'));
    assert.equal(o.HostConfig?.NetworkMode, 'host');
    assert.equal(o.NetworkingConfig, undefined);
    assert.equal(createOptions(byRecord(list, 'c3')).HostConfig?.NetworkMode, `container:${byRecord(list, 'c1').name}`);
  });

  it('parses the port syntax', () => {
    assert.deepEqual(parsePort('80/tcp'), { containerPort: '80/tcp' });
    assert.deepEqual(parsePort('8080:80/tcp'), { containerPort: '80/tcp', hostPort: '8080' });
    assert.deepEqual(parsePort('127.0.0.1::53/udp'), { containerPort: '53/udp', hostIp: '127.0.0.1' });
    assert.deepEqual(parsePort('127.0.0.1:5353:53/udp'), { containerPort: '53/udp', hostPort: '5353', hostIp: '127.0.0.1' });
    assert.throws(() => parsePort('eighty'), /bad port spec/);
    assert.throws(() => parsePort('x:y:80/tcp'), /bad port spec/);
  });

  it('adds the default tag only where Docker would', () => {
    assert.equal(withDefaultTag('busybox'), 'busybox:latest');
    assert.equal(withDefaultTag('registry:5000/team/app'), 'registry:5000/team/app:latest');
    assert.equal(withDefaultTag('registry:5000/team/app:2'), 'registry:5000/team/app:2');
    assert.equal(withDefaultTag('app@sha256:abc'), 'app@sha256:abc');
  });
});

describe('renderRuntime', () => {
  it('lists adopted containers and known uuids of this host, and ignores start counts when comparing', () => {
    const st = runtimeFixtureState();
    const a = renderRuntime(st, { hostId: HOST, host: st.hosts.get(HOST) });
    assert.deepEqual(a.adopted, [{ recordId: 'x3', externalId: 'deadbeef', ipAddress: '10.42.0.22' }]);
    assert.ok(a.knownUuids.includes(st.containers.get('x2')?.uuid ?? '?'), 'a record desired removed is still known');
    assert.ok(!a.knownUuids.includes(st.containers.get('x3')?.uuid ?? '?'), 'adopted records are not drover-created');
    assert.equal(a.subnet, '10.42.0.0/16');
    const c1 = st.containers.get('c1');
    assert.ok(c1);
    c1.startCount = 7;
    const b = renderRuntime(st, { hostId: HOST, host: st.hosts.get(HOST) });
    assert.equal(b.startCounts.c1, 7);
    assert.ok(sameArtefact(a, b));
    c1.desiredState = 'stopped';
    assert.ok(!sameArtefact(a, renderRuntime(st, { hostId: HOST, host: st.hosts.get(HOST) })));
  });
});
