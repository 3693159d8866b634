import { test } from 'node:test';
import assert from 'node:assert/strict';
import { emptyState, type EnvState } from '../../src/model/state.js';
import type { Container, Host } from '../../src/model/resources.js';
import { LaunchConfig } from '../../src/model/resources.js';
import { networkInputs } from '../../src/agent/capabilities/network/inputs.js';
import { NetworkController, type IpsecPart, type NetworkParts } from '../../src/agent/capabilities/network/controller.js';
import { Prober } from '../../src/agent/capabilities/network/probe.js';
import { silentLogger } from '../../src/common/log.js';
import { createServer } from 'node:http';
import { eventually } from '../helpers/wait.js';

function host(id: string, ip: string, tunnelIp: string | undefined, state = 'active'): Host {
  return {
    id,
    uuid: `u-${id}`,
    environmentId: '1a1',
    name: id,
    hostname: id,
    agentIpAddress: ip,
    labels: {},
    state,
    agentState: 'active',
    applied: {},
    created: '',
    ...(tunnelIp ? { tunnelIp } : {}),
  } as Host;
}

function container(id: string, hostId: string, ip: string, o: Partial<Container> = {}, ports: LaunchConfig['ports'] = []): Container {
  return {
    id,
    uuid: `u-${id}`,
    environmentId: '1a1',
    hostId,
    stackId: null,
    serviceId: null,
    name: id,
    launchConfigName: '',
    serviceIndex: null,
    createIndex: 0,
    deploymentUnitUuid: null,
    primaryIpAddress: ip,
    state: 'running',
    desiredState: 'running',
    generation: 'current',
    exitCode: null,
    externalId: `docker-${id}`,
    healthState: null,
    startCount: 1,
    config: LaunchConfig.parse({ image: 'busybox', ports }),
    adopted: false,
    created: '2026-01-01T00:00:00Z',
    ...o,
  };
}

function env(overlay: 'ipsec' | 'vxlan' = 'ipsec'): EnvState {
  const st = emptyState({
    id: '1a1',
    uuid: 'u',
    name: 'Default',
    description: '',
    state: 'active',
    network: { subnet: '10.42.0.0/16', dnsScope: 'linked', hostDnsView: false, overlay, ipsecAuth: 'psk', vxlanVni: 42, ipsecPsk: '00112233445566778899aabbccddeeff' },
    created: '',
  });
  st.revision = 1;
  for (const h of [host('1h1', '198.18.0.11', '10.42.0.2'), host('1h2', '198.18.0.12', '10.42.0.3'), host('1h3', '198.18.0.13', undefined), host('1h4', '198.18.0.14', '10.42.0.5', 'removed')]) {
    st.hosts.set(h.id, h);
  }
  for (const c of [
    container('c1', '1h1', '10.42.200.7', {}, [{ publicPort: 8080, privatePort: 80, protocol: 'tcp' }, { privatePort: 81, protocol: 'tcp' }]),
    container('c2', '1h2', '10.42.3.9'),
    container('c3', '1h3', '10.42.3.10'), // its host has no tunnel address yet: not routable
    container('c4', '1h2', '10.42.3.11', { desiredState: 'removed' }),
    // Two records claim 10.42.9.9: the running one owns it (model/serving.ts), wherever the other is.
    container('c5', '1h1', '10.42.9.9', { state: 'stopped' }),
    container('c6', '1h2', '10.42.9.9'),
  ]) {
    st.containers.set(c.id, c);
  }
  return st;
}

test('network inputs: peers with a tunnel address, address owners split into local and remote, published ports only', () => {
  const inputs = networkInputs(env(), '1h1');
  assert.deepEqual(inputs.self, { hostId: '1h1', name: '1h1', agentIp: '198.18.0.11', tunnelIp: '10.42.0.2' });
  assert.deepEqual(
    inputs.peers.map((p) => p.hostId),
    ['1h2'],
  );
  assert.deepEqual(inputs.localContainers, [
    { id: 'c1', name: 'c1', ip: '10.42.200.7', externalId: 'docker-c1', ports: [{ publicPort: 8080, privatePort: 80, protocol: 'tcp' }] },
  ]);
  assert.deepEqual(inputs.remoteContainers, [
    { ip: '10.42.3.9', hostId: '1h2' },
    { ip: '10.42.9.9', hostId: '1h2' },
  ]);
  assert.equal(inputs.mode, 'ipsec');
  assert.equal(inputs.auth, 'psk');
  // A host without a tunnel address has no network yet.
  assert.equal(networkInputs(env(), '1h3').self, undefined);
});

interface Calls {
  log: string[];
}

function fakeParts(calls: Calls, o: { failDataplane?: () => boolean } = {}): NetworkParts {
  const ipsec: IpsecPart = {
    start: () => {
      calls.log.push('ipsec.start');
      return Promise.resolve({ backend: 'libipsec', reason: 'no kernel ESP' });
    },
    overhead: () => 73,
    apply: (self, peers, auth) => {
      calls.log.push(`ipsec.apply ${self.hostId} -> ${peers.map((p) => p.hostId).join(',')} ${auth.kind}`);
      return Promise.resolve();
    },
    verify: (stale) => {
      calls.log.push(`ipsec.verify ${stale.join(',')}`);
      return Promise.resolve(undefined);
    },
    stop: () => {
      calls.log.push('ipsec.stop');
      return Promise.resolve();
    },
  };
  return {
    ipsec: () => ipsec,
    dataplane: {
      apply: (inputs, overhead) => {
        if (o.failDataplane?.()) return Promise.reject(new Error('RTNETLINK answers: File exists'));
        calls.log.push(`dataplane.apply ${inputs.mode} ${inputs.remoteContainers.length} overhead ${overhead}`);
        return Promise.resolve();
      },
      verify: () => Promise.resolve('route 10.42.3.9/32 restored'),
      remove: () => Promise.resolve(),
    },
    firewall: {
      apply: (inputs, veths) => {
        calls.log.push(`firewall.apply ${inputs.localContainers.length} veths ${[...veths].map(([k, v]) => `${k}=${v}`).join(',')}`);
        return Promise.resolve();
      },
      verify: () => Promise.resolve(undefined),
      remove: () => Promise.resolve(),
    },
    vethOf: (externalId) => Promise.resolve(externalId === 'docker-c1' ? 'veth1234' : undefined),
  };
}

/** A prober that never listens (the fake parts put no tunnel address on any interface). */
class IdleProber extends Prober {
  override update(): Promise<void> {
    return Promise.resolve();
  }
}

test('network controller (fake parts): ipsec, then overlay, then firewall; switching to vxlan stops charon; a failure throws for the retry', async () => {
  const calls: Calls = { log: [] };
  let fail = false;
  const ctl = new NetworkController({ log: silentLogger(), parts: fakeParts(calls, { failDataplane: () => fail }), prober: new IdleProber({ log: silentLogger() }) });
  const hostCtx = { hostId: '1h1', host: undefined };
  await ctl.reconcile(env('ipsec'), { full: true }, hostCtx);
  assert.deepEqual(calls.log, ['ipsec.start', 'ipsec.apply 1h1 -> 1h2 psk', 'dataplane.apply ipsec 2 overhead 73', 'firewall.apply 1 veths c1=veth1234']);

  calls.log = [];
  await ctl.reconcile(env('ipsec'), { full: true }, hostCtx);
  assert.deepEqual(calls.log, ['ipsec.apply 1h1 -> 1h2 psk', 'dataplane.apply ipsec 2 overhead 73', 'firewall.apply 1 veths c1=veth1234'], 'charon is started once');

  calls.log = [];
  await ctl.reconcile(env('vxlan'), { full: true }, hostCtx);
  assert.deepEqual(calls.log, ['ipsec.stop', 'dataplane.apply vxlan 2 overhead 0', 'firewall.apply 1 veths c1=veth1234']);

  fail = true;
  await assert.rejects(ctl.reconcile(env('vxlan'), { full: true }, hostCtx), /File exists/);
  fail = false;

  assert.equal(await ctl.verify(env('vxlan'), hostCtx), 'overlay: route 10.42.3.9/32 restored');
  await assert.rejects(ctl.reconcile(env(), { full: true }, { hostId: '1h3', host: undefined }), /no tunnel address yet/);
  await ctl.stop();
});

test('network controller: whenAllowed resolves once the firewall in force lets a local address through, false after its timeout', async () => {
  const calls: Calls = { log: [] };
  const ctl = new NetworkController({ log: silentLogger(), parts: fakeParts(calls), prober: new IdleProber({ log: silentLogger() }) });
  let allowed: boolean | undefined;
  const waiting = ctl.whenAllowed('10.42.200.7', 5000).then((v) => (allowed = v));
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(allowed, undefined, 'no firewall applied yet: still waiting');
  await ctl.reconcile(env('ipsec'), { full: true }, { hostId: '1h1', host: undefined });
  await waiting;
  assert.equal(allowed, true);
  assert.equal(await ctl.whenAllowed('10.42.200.7', 10), true, 'already allowed: at once');
  assert.equal(await ctl.whenAllowed('10.42.3.9', 50), false, 'a remote address is never allowed here: false after the timeout');
  await ctl.stop();
});

test('network controller: a container leaving the state stays routed (and allowed on its host) for lingerMs, unless its address is taken again', async () => {
  const calls: Calls = { log: [] };
  const ctl = new NetworkController({ log: silentLogger(), parts: fakeParts(calls), prober: new IdleProber({ log: silentLogger() }), lingerMs: 300 });
  const hostCtx = { hostId: '1h1', host: undefined };
  const full = env('ipsec');
  await ctl.reconcile(full, { full: true }, hostCtx);
  assert.ok(calls.log.includes('dataplane.apply ipsec 2 overhead 73') && calls.log.includes('firewall.apply 1 veths c1=veth1234'), calls.log.join('; '));
  // c1 (local, 10.42.200.7) and c2 (remote, 10.42.3.9) scaled away: both kept for now.
  const less = env('ipsec');
  less.containers.delete('c1');
  less.containers.delete('c2');
  calls.log = [];
  await ctl.reconcile(less, { full: true }, hostCtx);
  assert.deepEqual(calls.log.slice(1), ['dataplane.apply ipsec 2 overhead 73', 'firewall.apply 1 veths c1=veth1234'], 'still routed and allowed while they drain');
  // Then the linger ends by itself: a reconcile without them.
  calls.log = [];
  await new Promise((r) => setTimeout(r, 600));
  assert.deepEqual(calls.log.slice(1), ['dataplane.apply ipsec 1 overhead 73', 'firewall.apply 0 veths '], 'gone after lingerMs');
  // An address taken again right away is the new container's, not a lingering one's.
  await ctl.reconcile(full, { full: true }, hostCtx);
  const moved = env('ipsec');
  moved.containers.delete('c2');
  const c2 = full.containers.get('c2');
  assert.ok(c2);
  moved.containers.set('c9', { ...c2, id: 'c9', uuid: 'u-c9', name: 'c9', hostId: '1h1', externalId: 'docker-c9' });
  calls.log = [];
  await ctl.reconcile(moved, { full: true }, hostCtx);
  assert.deepEqual(calls.log.slice(1), ['dataplane.apply ipsec 1 overhead 73', 'firewall.apply 2 veths c1=veth1234'], '10.42.3.9 is now local (c9): no remote route for it');
  await ctl.stop();
});

test('network controller: a container whose service sets drain_timeout_ms lingers that long instead of lingerMs', async () => {
  const calls: Calls = { log: [] };
  const ctl = new NetworkController({ log: silentLogger(), parts: fakeParts(calls), prober: new IdleProber({ log: silentLogger() }), lingerMs: 0 });
  const hostCtx = { hostId: '1h1', host: undefined };
  const full = env('ipsec');
  const c2 = full.containers.get('c2');
  assert.ok(c2);
  const svcId = 'svc-drain';
  full.services.set(svcId, { ...([...full.services.values()][0] ?? ({} as never)), id: svcId, name: 'drained', drainTimeoutMs: 400 });
  full.containers.set('c2', { ...c2, serviceId: svcId });
  await ctl.reconcile(full, { full: true }, hostCtx);
  const less = env('ipsec');
  less.containers.delete('c1');
  less.containers.delete('c2');
  calls.log = [];
  await ctl.reconcile(less, { full: true }, hostCtx);
  assert.deepEqual(calls.log.slice(1), ['dataplane.apply ipsec 2 overhead 73', 'firewall.apply 0 veths '], 'c2 (drain 400 ms) still routed; c1 (no drain, lingerMs 0) gone at once');
  calls.log = [];
  await new Promise((r) => setTimeout(r, 800));
  assert.deepEqual(calls.log.slice(1), ['dataplane.apply ipsec 1 overhead 73', 'firewall.apply 0 veths '], 'c2 gone after its drain');
  await ctl.stop();
});

test('network controller: a peer whose probes get no answer has its tunnel repaired within seconds; one that refuses (agent down, tunnel fine) is left alone', async () => {
  const calls: Calls = { log: [] };
  const port = await new Promise<number>((resolve) => {
    const srv = createServer().listen(0, '127.0.0.1', () => {
      const p = (srv.address() as { port: number }).port;
      srv.close(() => resolve(p));
    });
  });
  const st = env('ipsec');
  // Loopback stands in for the overlay: this host on 127.0.0.1, a peer whose agent is down (127.0.0.2:
  // connection refused) and one behind a dead tunnel (TEST-NET-1: no answer).
  st.hosts.set('1h1', { ...(st.hosts.get('1h1') as Host), tunnelIp: '127.0.0.1' });
  st.hosts.set('1h2', { ...(st.hosts.get('1h2') as Host), tunnelIp: '127.0.0.2' });
  st.hosts.set('1h5', host('1h5', '198.18.0.15', '192.0.2.1'));
  const ctl = new NetworkController({ log: silentLogger(), parts: fakeParts(calls), probe: { port, intervalMs: 200, timeoutMs: 300 } });
  try {
    await ctl.reconcile(st, { full: true }, { hostId: '1h1', host: undefined });
    await eventually(() => calls.log.some((l) => l.startsWith('ipsec.verify')) || undefined, 10_000, 'a repair of the dead tunnel');
    const repairs = calls.log.filter((l) => l.startsWith('ipsec.verify'));
    assert.deepEqual(repairs, ['ipsec.verify 1h5'], 'only the peer without an answer; the refusing one keeps its tunnel');
  } finally {
    await ctl.stop();
  }
});
