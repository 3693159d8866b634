// The balancer controller with a real HAProxy: a synthetic environment with a balancer service and two
// target containers whose "managed addresses" are 127.0.0.2 and 127.0.0.3 (node http servers listen
// there); a reconcile routes requests round-robin over both; a state change that stops one target sends
// traffic only to the other, through the runtime API (no reload); the balancer service removed → its
// HAProxy stopped. Everything listens on loopback high ports.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request, type Server } from 'node:http';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../src/common/log.js';
import { emptyState, fullDelta, type EnvState } from '../../src/model/state.js';
import { LaunchConfig, LbConfig, type Container } from '../../src/model/resources.js';
import { BalancerController } from '../../src/agent/capabilities/balancer/controller.js';
import { processAlive } from '../../src/common/pid-lock.js';
import { container as fixtureContainer, service } from '../helpers/state-fixtures.js';
import { freePort } from '../helpers/ports.js';

const HAPROXY = '/usr/sbin/haproxy';
const HOST = '1h1';

function listen(server: Server, port: number, addr: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, addr, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** Two http servers on the same port of 127.0.0.2 and 127.0.0.3, answering with their name. */
async function targets(): Promise<{ port: number; servers: Server[] }> {
  for (let attempt = 0; ; attempt++) {
    const port = await freePort('127.0.0.2');
    const servers = ['a1', 'a2'].map((name) =>
      createServer((_req, res) => {
        res.setHeader('connection', 'close');
        res.end(name);
      }),
    );
    try {
      await listen(servers[0] as Server, port, '127.0.0.2');
      await listen(servers[1] as Server, port, '127.0.0.3');
      return { port, servers };
    } catch (err) {
      for (const s of servers) s.close();
      if (attempt > 5) throw err;
    }
  }
}

function get(port: number, path = '/'): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false, headers: { host: 'web.test', connection: 'close' }, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`HTTP ${res.statusCode}: ${body.slice(0, 80)}`))));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

/** A container of this host (HOST). */
const container = (id: string, serviceId: string, ip: string, o: Partial<Container> = {}): Container => fixtureContainer(id, serviceId, HOST, ip, o);

const skip = !existsSync(HAPROXY) ? `${HAPROXY} is not installed` : false;

describe('balancer controller with a real HAProxy', { skip }, () => {
  let dataDir = '';
  let ctl: BalancerController;
  let servers: Server[] = [];
  let targetPort = 0;
  let sourcePort = 0;
  let st: EnvState;
  let rev = 1;
  const hostCtx = { hostId: HOST, host: undefined };
  const reconcile = () => ctl.reconcile(st, fullDelta(++rev), hostCtx);

  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'dt-balancer-ctl-'));
    ({ port: targetPort, servers } = await targets());
    sourcePort = await freePort();
    ctl = new BalancerController({
      log: silentLogger(),
      dataDir,
      haproxyBin: HAPROXY,
      bindAddresses: () => ['127.0.0.1'],
      healthPort: await freePort(),
      restartBackoff: { initialMs: 200, maxMs: 2000 },
    });
    st = emptyState({
      id: '1a1',
      uuid: 'u',
      name: 'Default',
      description: '',
      state: 'active',
      network: { subnet: '10.42.0.0/16', dnsScope: 'linked', hostDnsView: false, overlay: 'ipsec', ipsecAuth: 'psk', vxlanVni: 42 },
      created: '',
    });
    for (const s of [
      service('1s1', 'app'),
      service('1s9', 'lb', {
        kind: 'loadBalancerService',
        launchConfig: LaunchConfig.parse({ image: 'rancher/lb-service-haproxy:v0.7.9' }),
        lbConfig: LbConfig.parse({ portRules: [{ sourcePort, protocol: 'http', serviceId: '1s1', targetPort }] }),
      }),
    ]) {
      st.services.set(s.id, s);
    }
    for (const c of [container('lb1', '1s9', '127.0.0.9'), container('a1', '1s1', '127.0.0.2'), container('a2', '1s1', '127.0.0.3')]) st.containers.set(c.id, c);
  });

  after(async () => {
    await ctl?.stop();
    for (const s of servers) s.close();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('routes round-robin over the targets', async () => {
    await reconcile();
    assert.deepEqual(ctl.instanceStates(), [{ id: 'lb1', state: 'running' }]);
    assert.equal(ctl.health(), undefined);
    const seen: string[] = [];
    for (let i = 0; i < 4; i++) seen.push(await get(sourcePort));
    assert.deepEqual(new Set(seen), new Set(['a1', 'a2']));
    assert.notEqual(seen[0], seen[1]);
    assert.equal(seen[0], seen[2]);
    assert.equal(seen[1], seen[3]);
  });

  it('a stopped target leaves the backend without a reload', async () => {
    const before = ctl.applierStatus('lb1');
    assert.ok(before);
    const a2 = st.containers.get('a2');
    assert.ok(a2);
    st.containers.set('a2', { ...a2, state: 'stopped' });
    await reconcile();
    const now = ctl.applierStatus('lb1');
    assert.ok(now);
    assert.equal(now.reloads, before.reloads, 'no reload');
    assert.equal(now.runtimeUpdates, before.runtimeUpdates + 1, 'one runtime API update');
    for (let i = 0; i < 6; i++) assert.equal(await get(sourcePort), 'a1');
    // Back again, still without a reload.
    st.containers.set('a2', a2);
    await reconcile();
    const seen = new Set<string>();
    for (let i = 0; i < 4; i++) seen.add(await get(sourcePort));
    assert.deepEqual(seen, new Set(['a1', 'a2']));
    assert.equal(ctl.applierStatus('lb1')?.reloads, before.reloads);
  });

  it('a refused custom config keeps the running one and shows HAProxy message', async () => {
    const lb = st.services.get('1s9');
    assert.ok(lb?.lbConfig);
    st.services.set('1s9', { ...lb, lbConfig: { ...lb.lbConfig, config: 'defaults\n  timeout client notanumber' } });
    await reconcile();
    const [s] = ctl.instanceStates();
    assert.equal(s?.state, 'running', 'the previous config keeps serving: the instance stays running');
    assert.match(s?.message ?? '', /refused the new configuration.*timeout client/s);
    assert.equal(ctl.health()?.state, 'degraded');
    assert.ok(['a1', 'a2'].includes(await get(sourcePort)));
    st.services.set('1s9', lb);
    await reconcile();
    assert.equal(ctl.instanceStates()[0]?.state, 'running');
    assert.equal(ctl.instanceStates()[0]?.message, undefined, 'the refusal is gone once a config is accepted');
    assert.equal(ctl.health(), undefined);
  });

  it('the balancer service removed: its HAProxy is stopped', async () => {
    const pid = ctl.applierStatus('lb1')?.masterPid;
    assert.ok(pid && processAlive(pid));
    const lb = st.services.get('1s9');
    assert.ok(lb);
    st.services.set('1s9', { ...lb, state: 'removed' });
    await reconcile();
    assert.deepEqual(ctl.instanceStates(), []);
    assert.equal(ctl.applierStatus('lb1'), undefined);
    assert.equal(processAlive(pid), false, 'the HAProxy master is gone');
    await assert.rejects(get(sourcePort), /ECONNREFUSED/);
    assert.equal(existsSync(join(dataDir, 'balancer', 'lb1')), false);
  });
});
