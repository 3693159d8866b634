// The agent's controllers against a real control plane, real sockets and real files:
// - DNS and metadata ports held by other sockets: the agent retries with backoff by itself and serves
//   once they are freed, with no further change from the control plane; the host shows the status;
// - an artefact deleted or changed behind the agent's back is restored by the periodic resync;
// - a persist that fails (a directory where the state log should be) does not skip the revision: the
//   change is persisted and applied once the disk is writable again; a throwing state listener holds
//   nothing back (it only observes).
// Bounds: each test ≤ 30 s (timeouts below), everything started is torn down in `finally`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdirSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Agent, AgentOptions } from '../../src/agent/agent.js';
import { metadataController } from '../../src/agent/capabilities/metadata/controller.js';
import { dnsController } from '../../src/agent/capabilities/dns/controller.js';
import { FileApplier } from '../../src/agent/capabilities/file-applier.js';
import type { Capability } from '../../src/agent/capabilities/capability.js';
import { capabilityController } from '../../src/agent/capabilities/adapter.js';
import { loadState } from '../../src/agent/sync/state-file.js';
import type { EnvState } from '../../src/model/state.js';
import { silentLogger } from '../../src/common/log.js';
import { defaultEnvironment } from '../../src/server/domain/environments.js';
import { cleanup, eventually, request, startTestServer, tempDir, type TestServer } from '../helpers/server.js';
import { agentCreds, testAgent } from '../helpers/agent.js';
import { freePort } from '../helpers/ports.js';

const run = promisify(execFile);

function servicesFile(path: string): Capability<string> {
  return {
    name: 'services-file',
    render: (st: EnvState) => [...st.services.values()].map((s) => s.name).sort().join('\n') + '\n',
    applier: new FileApplier({ path }),
  };
}

function newAgent(t: TestServer, dir: string, extra: Partial<AgentOptions>): Agent {
  return testAgent(t, dir, { controllerBackoff: { initialMs: 50, maxMs: 400 }, syncBackoff: { initialMs: 50, maxMs: 400 }, ...extra });
}

test('DNS and metadata ports in use: retried with backoff by themselves, served once freed; status on the host', { timeout: 30_000 }, async () => {
  const t = await startTestServer();
  const dir = tempDir('drover-agent-');
  const dnsPort = await freePort();
  const mdPort = await freePort();
  // Other sockets hold the ports (DNS: UDP; metadata: TCP).
  const squatUdp = dgram.createSocket('udp4');
  await new Promise<void>((r) => squatUdp.bind(dnsPort, '127.0.0.1', () => r()));
  const squatTcp = net.createServer();
  await new Promise<void>((r) => squatTcp.listen(mdPort, '127.0.0.1', () => r()));
  let squatting = true;
  const freeSquatters = async () => {
    if (!squatting) return;
    squatting = false;
    await new Promise<void>((r) => squatUdp.close(() => r()));
    await new Promise<void>((r) => squatTcp.close(() => r()));
  };
  let agent: Agent | undefined;
  try {
    const envId = defaultEnvironment(t.srv.store).id;
    assert.equal((await t.api('PUT', `/v1/environments/${envId}`, { network: { subnet: '127.0.0.0/16' } })).status, 200);
    agent = newAgent(t, dir, {
      capabilities: [
        metadataController({ log: silentLogger(), listen: `127.0.0.1:${mdPort}` }),
        dnsController({ log: silentLogger(), listen: `127.0.0.1:${dnsPort}`, resolvConf: '/dev/null' }),
      ],
    });
    await agent.start();
    const hostId = await eventually(() => agent?.hostId(), 10_000, 'registration');
    const st = await t.api<{ id: string }>('POST', '/v1/stacks', {
      name: 'shop',
      dockerCompose: 'web:\n  image: nginx\n  labels:\n    io.rancher.container.requested_ip: 127.0.0.10\n',
    });
    assert.equal(st.status, 201);
    const ctrs = (await t.api<{ data: { id: string }[] }>('GET', `/v1/containers?stackId=${st.body.id}`)).body.data;
    const rep = await request(t.url, 'POST', '/v1/agent/report', { containers: ctrs.map((c) => ({ id: c.id, state: 'running' })) }, agentCreds(dir));
    assert.equal(rep.status, 200);
    // Settled: the agent holds the server's revision and nothing has changed for a while.
    let settledAt = -1;
    await eventually(async () => {
      const rev = t.srv.store.revision(envId);
      if (agent?.currentState()?.revision !== rev) return false;
      if (rev !== settledAt) {
        settledAt = rev;
        return false;
      }
      await new Promise((r) => setTimeout(r, 300));
      return t.srv.store.revision(envId) === rev;
    }, 10_000, 'agent in sync');

    // While the ports are held: the host shows both capabilities failed, with the reason and retries.
    type Applied = Record<string, { ok: boolean; state?: string; error?: string; consecutiveFailures?: number }>;
    const applied = async () => (await t.api<{ applied: Applied }>('GET', `/v1/hosts/${hostId}`)).body.applied;
    await eventually(async () => {
      const a = await applied();
      return a.dns?.state === 'failed' && a.metadata?.state === 'failed' && (a.dns.consecutiveFailures ?? 0) >= 2;
    }, 10_000, 'failed status with retries on the host');
    const a = await applied();
    assert.equal(a.dns?.ok, false);
    assert.match(a.dns?.error ?? '', /in use/);
    assert.match(a.metadata?.error ?? '', /in use/);

    // The ports are freed; no new state comes: the retries alone get them served.
    let deliveries = 0;
    agent.onState(() => deliveries++);
    await freeSquatters();
    const dig = async () => (await run('dig', ['+short', '+time=1', '+tries=1', '-b', '127.0.0.10', '-p', String(dnsPort), '@127.0.0.1', 'web.shop.rancher.internal'])).stdout.trim();
    await eventually(async () => (await dig()) === '127.0.0.10', 10_000, 'DNS answers after the port was freed');
    const md = async () => (await run('curl', ['-s', '--max-time', '2', '--interface', '127.0.0.10', `http://127.0.0.1:${mdPort}/latest/self/container/name`])).stdout;
    await eventually(async () => (await md()) === 'shop-web-1', 10_000, 'metadata answers after the port was freed');
    assert.equal(deliveries, 0, 'no new state was needed');
    await eventually(async () => {
      const b = await applied();
      return b.dns?.state === 'ok' && b.metadata?.state === 'ok' && b.dns.ok && b.dns.consecutiveFailures === 0;
    }, 10_000, 'ok status on the host');
  } finally {
    await agent?.stop();
    await freeSquatters();
    await t.close();
    cleanup(dir);
  }
});

test('resync restores an artefact deleted or changed behind the agent, keeping the last good one', { timeout: 30_000 }, async () => {
  const t = await startTestServer();
  const dir = tempDir('drover-agent-');
  const out = join(dir, 'services.txt');
  let agent: Agent | undefined;
  try {
    agent = newAgent(t, dir, { capabilities: [capabilityController(servicesFile(out))], resyncMs: 150 });
    await agent.start();
    await t.api('POST', '/v1/stacks', { name: 'shop', dockerCompose: 'web:\n  image: nginx\ndb:\n  image: postgres\n' });
    await eventually(() => existsSync(out) && readFileSync(out, 'utf8') === 'db\nweb\n', 10_000, 'artefact in place');

    rmSync(out);
    await eventually(() => existsSync(out) && readFileSync(out, 'utf8') === 'db\nweb\n', 5_000, 'deleted artefact restored');
    writeFileSync(out, 'tampered\n');
    await eventually(() => readFileSync(out, 'utf8') === 'db\nweb\n', 5_000, 'changed artefact restored');
    if (existsSync(`${out}.last-good`)) assert.notEqual(readFileSync(`${out}.last-good`, 'utf8'), 'tampered\n', 'drift is never kept as last good');
  } finally {
    await agent?.stop();
    await t.close();
    cleanup(dir);
  }
});

test('a failed persist (a directory in the way) does not skip the revision: applied once the disk is writable', { timeout: 30_000 }, async () => {
  const t = await startTestServer();
  const dir = tempDir('drover-agent-');
  const out = join(dir, 'services.txt');
  let agent: Agent | undefined;
  try {
    const envId = defaultEnvironment(t.srv.store).id;
    agent = newAgent(t, dir, { capabilities: [capabilityController(servicesFile(out))] });
    await agent.start();
    await t.api('POST', '/v1/stacks', { name: 'shop', dockerCompose: 'web:\n  image: nginx\n' });
    await eventually(() => existsSync(out) && readFileSync(out, 'utf8') === 'web\n', 10_000, 'first change applied');
    const before = t.srv.store.revision(envId);
    await eventually(() => agent?.confirmedRevision() === before, 10_000, 'confirmed');

    // The disk refuses the next write: a directory (not empty) where the state log goes.
    const blocker = join(dir, 'state.log');
    rmSync(blocker, { force: true });
    mkdirSync(join(blocker, 'x'), { recursive: true });
    await t.api('POST', '/v1/stacks', { name: 'later', dockerCompose: 'cache:\n  image: redis\n' });
    const after = t.srv.store.revision(envId);
    assert.ok(after > before);
    // Retried and failing: the revision stays the last persisted one, the controllers keep the old state.
    await new Promise((r) => setTimeout(r, 800));
    assert.equal(agent.confirmedRevision(), before, 'the revision does not move past the failed persist');
    assert.equal(readFileSync(out, 'utf8'), 'web\n');
    // The host shows it: the agent's state store is degraded, with the reason.
    const hostId = agent.hostId() ?? '';
    type Applied = Record<string, { ok: boolean; state?: string; error?: string; revision: number }>;
    const applied = async () => (await t.api<{ applied: Applied }>('GET', `/v1/hosts/${hostId}`)).body.applied;
    await eventually(async () => (await applied())['agent-state']?.state === 'degraded', 10_000, 'persist failure on the host');
    const shown = (await applied())['agent-state'];
    assert.equal(shown?.revision, before);
    assert.match(shown?.error ?? '', /cannot persist the agent's state .*state\.log/);

    rmSync(blocker, { recursive: true });
    await eventually(() => readFileSync(out, 'utf8') === 'cache\nweb\n', 10_000, 'the change applied after the disk came back');
    await eventually(() => agent?.confirmedRevision() === after, 10_000, 'confirmed after the disk came back');
    const onDisk = await loadState(join(dir, 'state.json'));
    assert.equal(onDisk?.revision, after);
    await eventually(async () => (await applied())['agent-state']?.state === 'ok', 10_000, 'persist ok on the host');
    assert.deepEqual([...(onDisk?.services.values() ?? [])].map((s) => s.name).sort(), ['cache', 'web']);
  } finally {
    await agent?.stop();
    await t.close();
    cleanup(dir);
  }
});

test('a state listener that always throws holds nothing back: every revision is confirmed and reaches it once', { timeout: 30_000 }, async () => {
  const t = await startTestServer();
  const dir = tempDir('drover-agent-');
  let agent: Agent | undefined;
  try {
    const envId = defaultEnvironment(t.srv.store).id;
    agent = newAgent(t, dir, {});
    await agent.start();
    await t.api('POST', '/v1/stacks', { name: 'shop', dockerCompose: 'web:\n  image: nginx\n' });
    await eventually(() => agent?.confirmedRevision() === t.srv.store.revision(envId), 10_000, 'in sync');
    const web = (await t.api<{ data: { id: string }[] }>('GET', '/v1/services?name=web')).body.data[0] as { id: string };
    const seen: number[] = [];
    agent.onState((st) => {
      seen.push(st.revision);
      throw new Error('listener broke');
    });
    for (const tier of ['front', 'back']) {
      await t.api('PUT', `/v1/services/${web.id}`, { metadata: { tier } });
      const rev = t.srv.store.revision(envId);
      await eventually(() => agent?.confirmedRevision() === rev, 10_000, `revision ${rev} confirmed despite the listener`);
      assert.equal(agent.currentState()?.services.get(web.id)?.metadata.tier, tier);
    }
    // Observed once per revision: a throwing listener is not a reason to fetch the same changes again.
    assert.deepEqual(seen, [...new Set(seen)].sort((a, b) => a - b), `revisions seen: ${seen.join(', ')}`);
  } finally {
    await agent?.stop();
    await t.close();
    cleanup(dir);
  }
});

test('reports: the status of agents before the controllers still parses; the richer one is shown on the host; bad fields are 4xx', { timeout: 15_000 }, async () => {
  const t = await startTestServer();
  const dir = tempDir('drover-agent-');
  let agent: Agent | undefined;
  try {
    agent = newAgent(t, dir, {});
    await agent.start();
    const hostId = await eventually(() => agent?.hostId(), 10_000, 'registration');
    await agent.stop();
    agent = undefined;
    const creds = agentCreds(dir);
    const report = (applied: unknown) =>
      fetch(`${t.url}/v1/agent/report`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: 'Basic ' + Buffer.from(`${creds.accessKey}:${creds.secretKey}`).toString('base64') },
        body: JSON.stringify({ applied }),
      });
    type Shown = Record<string, Record<string, unknown>>;
    const shown = async () => (await t.api<{ applied: Shown }>('GET', `/v1/hosts/${hostId}`)).body.applied;
    // An agent of the previous version.
    assert.equal((await report({ dns: { revision: 3, ok: false, error: 'bind failed' } })).status, 200);
    assert.deepEqual({ ...(await shown()).dns, at: 'x' }, { revision: 3, ok: false, error: 'bind failed', at: 'x' });
    // The controllers' status.
    const rich = { revision: 4, ok: false, error: 'cannot listen', state: 'degraded', message: 'cannot listen (the last good state stays in force)', lastSuccess: '2026-01-01T00:00:00.000Z', lastSuccessRevision: 3, attempts: 9, consecutiveFailures: 2, nextRetryAt: '2026-01-01T00:00:01.000Z' };
    assert.equal((await report({ dns: rich })).status, 200);
    const d = (await shown()).dns ?? {};
    for (const [k, v] of Object.entries(rich)) assert.deepEqual(d[k], v, k);
    // Bad input: a 4xx naming the field, never a 5xx; the server still answers.
    for (const bad of [{ dns: { ...rich, state: 'sideways' } }, { dns: { ...rich, attempts: -1 } }, { dns: { ...rich, color: 'red' } }]) {
      const r = await report(bad);
      assert.ok(r.status >= 400 && r.status < 500, `status ${r.status}`);
      const body = JSON.stringify(await r.json());
      assert.match(body, /state|attempts|color/, body);
    }
    assert.equal((await shown()).dns?.attempts, 9, 'the stored status is untouched by rejected reports');
  } finally {
    await agent?.stop();
    await t.close();
    cleanup(dir);
  }
});
