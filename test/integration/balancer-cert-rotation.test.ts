// Certificate rotation with the real HAProxy (2.6, master-worker): a render that changes only the contents
// of certificate files is put in force through the runtime API (`set ssl cert` / `commit ssl cert`) — the
// new certificate is served on new TLS connections, with no reload (the master's reload counter, the
// worker and the applier's `reloads` stay the same) — and written to the version `current` points to, so
// a restart serves it too. Certificate and slot changes go together; a renamed certificate file reloads.
// End to end: a certificate replaced with `PUT /v1/certificates/<id>` on a real control plane reaches the
// balancer controller as the record agents sync, and is rotated in the running HAProxy without a reload.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { connect } from 'node:tls';
import { X509Certificate, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../src/common/log.js';
import { cleanup, request, startTestServer, type TestServer } from '../helpers/server.js';
import { defaultEnvironment } from '../../src/server/domain/environments.js';
import { applyChanges, fullDelta, stateFromSnapshot, type EnvState, type Snapshot, type Change } from '../../src/model/state.js';
import { Container, LaunchConfig, LbConfig, Service } from '../../src/model/resources.js';
import { BalancerController } from '../../src/agent/capabilities/balancer/controller.js';
import { renderHaproxy, type BalancerCertificate, type BalancerInput, type BalancerRender } from '../../src/agent/capabilities/balancer/render.js';
import { changedCertFiles, createHaproxyApplier, parseShowProc, type HaproxyApplier } from '../../src/agent/capabilities/balancer/apply.js';
import { selfSignedCertificate } from '../../src/agent/capabilities/balancer/selfsigned.js';
import { freePort } from '../helpers/ports.js';

const HAPROXY = '/usr/sbin/haproxy';
const skip = !existsSync(HAPROXY) ? `${HAPROXY} is not installed` : false;

/** The SHA-256 fingerprint of the certificate HAProxy serves for `servername` on a new TLS connection. */
function served(port: number, servername: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false }, () => {
      const fp = s.getPeerCertificate().fingerprint256;
      s.end();
      resolve(fp);
    });
    s.setTimeout(5000, () => s.destroy(new Error('TLS timeout')));
    s.on('error', reject);
  });
}

/** One HTTPS request (HTTP/1.1 over a new TLS connection with SNI) through the balancer: the backend's answer. */
function get(port: number, servername: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false }, () => {
      s.end(`GET / HTTP/1.1\r\nhost: ${servername}\r\nconnection: close\r\n\r\n`);
    });
    let out = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => (out += d));
    s.on('end', () => resolve(out.split('\r\n\r\n')[1] ?? ''));
    s.setTimeout(5000, () => s.destroy(new Error('TLS timeout')));
    s.on('error', reject);
  });
}

const fingerprint = (c: BalancerCertificate) => new X509Certificate(c.cert).fingerprint256;
const cert = (name: string, cn: string): BalancerCertificate => ({ ...selfSignedCertificate(cn), name });

describe('certificate rotation through the HAProxy runtime API', { skip }, () => {
  let dir = '';
  let applier: HaproxyApplier;
  let port = 0;
  let healthPort = 0;
  const backends: { name: string; port: number; server: Server }[] = [];
  const sfx = randomBytes(3).toString('hex');

  const input = (dflt: BalancerCertificate, others: BalancerCertificate[], target = 0): BalancerInput => ({
    name: `rot-${sfx}`,
    rules: [{ sourcePort: port, protocol: 'https', targets: [{ name: 't', ip: '127.0.0.1', port: backends[target]?.port ?? 0, local: true }] }],
    defaultCertificate: dflt,
    certificates: others,
    statsSocket: applier.statsSocket,
    bindAddresses: ['127.0.0.1'],
    healthPort,
    previousSlots: applier.slots(),
  });
  const proc = async () => parseShowProc(await applier.command('show proc', { master: true }));

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dt-certrot-'));
    for (const name of ['one', 'two']) {
      const server = createServer((_req, res) => {
        res.setHeader('connection', 'close');
        res.end(name);
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      backends.push({ name, port: (server.address() as AddressInfo).port, server });
    }
    port = await freePort();
    healthPort = await freePort();
    applier = createHaproxyApplier({ log: silentLogger(), dir, haproxyBin: HAPROXY, restartBackoff: { initialMs: 200, maxMs: 2000 } });
  });

  after(async () => {
    await applier?.close();
    for (const b of backends) b.server.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const a = cert('site', 'a.test');
  const b = cert('site', 'a.test');
  const c = cert('site', 'a.test');
  const s1 = cert('other', 'other.test');
  const s2 = cert('other', 'other.test');

  it('serves the default certificate and the SNI one', async () => {
    await applier.apply(renderHaproxy(input(a, [s1])));
    assert.equal(applier.status().state, 'ok');
    assert.equal(await served(port, 'a.test'), fingerprint(a));
    assert.equal(await served(port, 'other.test'), fingerprint(s1));
    assert.equal(await get(port, 'a.test'), 'one');
  });

  it('a changed certificate is served without a reload, and is on disk for a restart', async () => {
    const before = await proc();
    const st0 = applier.status();
    await applier.apply(renderHaproxy(input(b, [s1])));
    const now = await proc();
    assert.equal(now?.reloads, before?.reloads, 'master reload counter unchanged');
    assert.deepEqual(now?.workers, before?.workers, 'same worker');
    assert.equal(applier.status().reloads, st0.reloads);
    assert.equal(applier.status().runtimeUpdates, st0.runtimeUpdates + 1);
    assert.equal(await served(port, 'a.test'), fingerprint(b), 'the new certificate is served');
    assert.equal(await served(port, 'other.test'), fingerprint(s1), 'the other one is untouched');
    const onDisk = await readFile(join(dir, 'current', 'certs', 'site.pem'), 'utf8');
    assert.ok(onDisk.includes(b.cert.trim()), '`current` holds the new certificate');
    assert.match(await applier.command('show ssl cert certs/site.pem'), new RegExp(`Serial: ${new X509Certificate(b.cert).serialNumber}`, 'i'));
  });

  it('certificates and endpoints changed together: all through the runtime API', async () => {
    const before = await proc();
    const st0 = applier.status();
    await applier.apply(renderHaproxy(input(c, [s2], 1)));
    assert.equal((await proc())?.reloads, before?.reloads);
    assert.equal(applier.status().reloads, st0.reloads);
    assert.equal(applier.status().runtimeUpdates, st0.runtimeUpdates + 1);
    assert.equal(await served(port, 'a.test'), fingerprint(c));
    assert.equal(await served(port, 'other.test'), fingerprint(s2));
    assert.equal(await get(port, 'a.test'), 'two');
  });

  it('a certificate under a new name (a new file) reloads, and a restart serves what is in force', async () => {
    const before = await proc();
    const st0 = applier.status();
    const renamed = { ...c, name: 'site-2' };
    await applier.apply(renderHaproxy(input(renamed, [s2], 1)));
    assert.equal(applier.status().reloads, st0.reloads + 1);
    assert.ok(((await proc())?.reloads ?? 0) > (before?.reloads ?? 0), 'the master reloaded');
    assert.equal(await served(port, 'a.test'), fingerprint(c));
    // Back to the rotated-in-place one after a reload: what was rotated at runtime was on disk too.
    await applier.apply(renderHaproxy(input(c, [s2], 1)));
    assert.equal(await served(port, 'a.test'), fingerprint(c));
    assert.equal(await served(port, 'other.test'), fingerprint(s2));
  });

  it('the runtime API not answering: falls back to a reload, the new certificate is served', async () => {
    const st0 = applier.status();
    const d = cert('site', 'a.test');
    // The runtime socket is out of the way for this apply (the master CLI, used to reload, is not).
    await rename(applier.statsSocket, `${applier.statsSocket}.away`);
    try {
      await applier.apply(renderHaproxy(input(d, [s2], 1)));
    } finally {
      if (!existsSync(applier.statsSocket)) await rename(`${applier.statsSocket}.away`, applier.statsSocket);
    }
    assert.equal(applier.status().state, 'ok');
    assert.equal(applier.status().reloads, st0.reloads + 1);
    assert.equal(applier.status().runtimeUpdates, st0.runtimeUpdates);
    assert.equal(await served(port, 'a.test'), fingerprint(d));
  });
});

describe('PUT /v1/certificates/<id> → agent state → balancer: rotated without a reload', { skip }, () => {
  let t: TestServer;
  let dataDir = '';
  let ctl: BalancerController;
  let target: Server;
  let sourcePort = 0;
  let st: EnvState | undefined;
  let agent: { hostId: string; accessKey: string; secretKey: string };
  const sfx = randomBytes(3).toString('hex');
  const a = selfSignedCertificate('web.test');
  const b = selfSignedCertificate('web.test');

  /** What the agent does: the environment from the control plane's watch (snapshot, then changes). */
  async function sync(): Promise<EnvState> {
    const w = await request<{ revision: number; snapshot?: Snapshot; changes: Change[] }>(
      t.url, 'GET', `/v1/agent/watch?after=${st?.revision ?? 0}&timeout=0`, undefined, agent,
    );
    assert.equal(w.status, 200);
    if (!st) {
      assert.ok(w.body.snapshot, 'the first sync is a snapshot');
      st = stateFromSnapshot(w.body.revision, w.body.snapshot);
    } else {
      assert.equal(w.body.snapshot, undefined, 'later syncs are changes (the synthetic services stay)');
      applyChanges(st, w.body.revision, w.body.changes);
    }
    return st;
  }

  before(async () => {
    t = await startTestServer();
    agent = await t.register(`rot-host-${sfx}`);
    dataDir = await mkdtemp(join(tmpdir(), 'dt-certrot-ctl-'));
    target = createServer((_req, res) => {
      res.setHeader('connection', 'close');
      res.end('app');
    });
    await new Promise<void>((r) => target.listen(0, '127.0.0.2', r));
    sourcePort = await freePort();
    ctl = new BalancerController({
      log: silentLogger(),
      dataDir,
      haproxyBin: HAPROXY,
      bindAddresses: () => ['127.0.0.1'],
      healthPort: await freePort(),
      restartBackoff: { initialMs: 200, maxMs: 2000 },
    });
  });

  after(async () => {
    await ctl?.stop();
    target?.close();
    await t?.close();
    if (t) cleanup(t.dir);
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('the replaced certificate is served, the HAProxy master did not reload', async () => {
    const up = await t.api<{ id: string }>('POST', '/v1/certificates', { name: `web-${sfx}`, cert: a.cert, key: a.key });
    assert.equal(up.status, 201, JSON.stringify(up.body));
    const env = await sync();
    const envId = defaultEnvironment(t.srv.store).id;
    const targetPort = (target.address() as AddressInfo).port;
    // The balancer and its target, as the agent would hold them (their scheduling is not what is tested).
    const svc = (o: Record<string, unknown>) => Service.parse({ uuid: `u-${String(o.id)}`, environmentId: envId, stackId: '1st1', state: 'active', scale: 1, created: '', ...o });
    const ctr = (o: Record<string, unknown>) =>
      Container.parse({ uuid: `u-${String(o.id)}`, environmentId: envId, hostId: agent.hostId, stackId: '1st1', serviceIndex: 1, deploymentUnitUuid: null, state: 'running', desiredState: 'running', config: LaunchConfig.parse({ image: 'nginx' }), created: '', ...o });
    env.services.set('1s1', svc({ id: '1s1', name: 'app', kind: 'service' }));
    env.services.set(
      '1s9',
      svc({
        id: '1s9',
        name: 'lb',
        kind: 'loadBalancerService',
        launchConfig: LaunchConfig.parse({ image: 'rancher/lb-service-haproxy:v0.7.9' }),
        lbConfig: LbConfig.parse({ portRules: [{ sourcePort, protocol: 'https', serviceId: '1s1', targetPort }], certificateIds: [up.body.id], defaultCertificateId: up.body.id }),
      }),
    );
    env.containers.set('lb1', ctr({ id: 'lb1', serviceId: '1s9', name: 'lb1', primaryIpAddress: '127.0.0.9' }));
    env.containers.set('a1', ctr({ id: 'a1', serviceId: '1s1', name: 'a1', primaryIpAddress: '127.0.0.2' }));
    const hostCtx = { hostId: agent.hostId, host: undefined };
    await ctl.reconcile(env, fullDelta(env.revision), hostCtx);
    assert.deepEqual(ctl.instanceStates(), [{ id: 'lb1', state: 'running' }]);
    assert.equal(await served(sourcePort, 'web.test'), new X509Certificate(a.cert).fingerprint256);
    assert.equal(await get(sourcePort, 'web.test'), 'app');
    const before = ctl.applierStatus('lb1');
    assert.ok(before);

    const put = await t.api('PUT', `/v1/certificates/${up.body.id}`, { cert: b.cert, key: b.key });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    const rev = env.revision;
    assert.equal(await sync(), env);
    assert.ok(env.revision > rev);
    await ctl.reconcile(env, fullDelta(env.revision), hostCtx);
    const now = ctl.applierStatus('lb1');
    assert.equal(await served(sourcePort, 'web.test'), new X509Certificate(b.cert).fingerprint256, 'the new certificate is served');
    assert.equal(now?.reloads, before.reloads, 'no reload');
    assert.equal(now?.masterPid, before.masterPid);
    assert.equal(now?.runtimeUpdates, before.runtimeUpdates + 1, 'one runtime API update');
    assert.equal(await get(sourcePort, 'web.test'), 'app');
  });
});

it('changedCertFiles: only same-named files loaded with `crt` qualify', () => {
  const r = (files: Record<string, string>, config = 'frontend f\n    bind *:443 ssl crt certs/a.pem crt certs/b.pem\n') =>
    ({ config, files, warnings: [], backends: [], slots: {} }) as unknown as BalancerRender;
  assert.deepEqual(changedCertFiles(r({ 'certs/a.pem': '1', 'certs/b.pem': '1' }), r({ 'certs/a.pem': '2', 'certs/b.pem': '1' })), ['certs/a.pem']);
  assert.deepEqual(changedCertFiles(r({ 'certs/a.pem': '1' }), r({ 'certs/a.pem': '1' })), []);
  assert.equal(changedCertFiles(r({ 'certs/a.pem': '1' }), r({ 'certs/c.pem': '1' })), undefined, 'renamed');
  assert.equal(changedCertFiles(r({ 'certs/a.pem': '1' }), r({ 'certs/a.pem': '1', 'certs/b.pem': '1' })), undefined, 'added');
  const notLoaded = 'frontend f\n    bind *:443 ssl crt certs/a.pem\n';
  assert.equal(changedCertFiles(r({ 'certs/x.pem': '1' }, notLoaded), r({ 'certs/x.pem': '2' }, notLoaded)), undefined, 'not loaded with crt');
});
