// A server and two agents in one test: changes made through the API reach both agents' persisted state,
// incrementally; an agent restarted while the server is down serves its persisted state; agents
// reconnect when the server comes back.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { Agent } from '../../src/agent/agent.js';
import { silentLogger } from '../../src/common/log.js';
import type { Capability } from '../../src/agent/capabilities/capability.js';
import { capabilityController } from '../../src/agent/capabilities/adapter.js';
import { FileApplier } from '../../src/agent/capabilities/file-applier.js';
import { loadState } from '../../src/agent/sync/state-file.js';
import type { EnvState } from '../../src/model/state.js';
import { createRegistrationToken } from '../../src/server/auth/credentials.js';
import { defaultEnvironment } from '../../src/server/domain/environments.js';
import { cleanup, eventually, request, startTestServer, tempDir } from '../helpers/server.js';

/** A real capability for the test: renders this host's service names into a file. */
function servicesFile(path: string): Capability<string> {
  return {
    name: 'services-file',
    render: (st: EnvState) => [...st.services.values()].map((s) => s.name).sort().join('\n') + '\n',
    applier: new FileApplier({ path }),
  };
}

/** The persisted state (snapshot state.json + the log state.log beside it). */
async function persisted(dir: string): Promise<{ revision: number; services: string[] }> {
  const st = await loadState(join(dir, 'state.json'));
  return { revision: st?.revision ?? -1, services: [...(st?.services.values() ?? [])].map((s) => s.name).sort() };
}

test('server + two agents: sync, persistence, restart while the server is down, reconnect', async () => {
  const serverDir = tempDir();
  let t = await startTestServer({ dir: serverDir });
  const port = Number(new URL(t.url).port);
  const dirs = [tempDir('drover-agent-a-'), tempDir('drover-agent-b-')];
  const mkAgent = (dir: string, name: string, token?: string) =>
    new Agent({
      dataDir: dir,
      serverUrl: t.url,
      ...(token ? { registrationToken: token } : {}),
      hostname: name,
      agentIp: name === 'a' ? '192.0.2.21' : '192.0.2.22',
      labels: { node: name },
      log: silentLogger(),
      capabilities: [capabilityController(servicesFile(join(dir, 'services.txt')))],
      watchTimeoutSec: 5,
    });
  const envId = defaultEnvironment(t.srv.store).id;
  const agents = dirs.map((d, i) => mkAgent(d, i === 0 ? 'a' : 'b', createRegistrationToken(t.srv.store, envId).token));
  try {
    await Promise.all(agents.map((a) => a.start()));
    // Both registered and in sync with the server's revision.
    await eventually(() => agents.every((a) => a.currentState()?.revision === t.srv.store.revision(envId)), 10_000, 'initial sync');
    const hosts = (await t.api<{ data: { hostname: string; labels: Record<string, string> }[] }>('GET', '/v1/hosts')).body.data;
    assert.deepEqual(hosts.map((h) => [h.hostname, h.labels.node]).sort(), [['a', 'a'], ['b', 'b']]);

    // A change through the API reaches both agents' persisted state.
    const st = await t.api<{ id: string }>('POST', '/v1/stacks', { name: 'shop', dockerCompose: 'web:\n  image: nginx\n  links: [db]\ndb:\n  image: postgres\n' });
    assert.equal(st.status, 201);
    await eventually(async () => {
      for (const d of dirs) if (!existsSync(join(d, 'state.json')) || (await persisted(d)).services.join() !== 'db,web') return false;
      return true;
    }, 10_000, 'stack on disk');
    for (const d of dirs) assert.equal((await persisted(d)).revision, t.srv.store.revision(envId));
    // The capability applied the new state (it runs right after the state is persisted).
    await eventually(() => dirs.every((d) => readFileSync(join(d, 'services.txt'), 'utf8') === 'db\nweb\n'), 10_000, 'capability output');
    // Agents reported what they applied.
    await eventually(async () => {
      const hs = (await t.api<{ data: { applied: Record<string, { ok: boolean; revision: number }> }[] }>('GET', '/v1/hosts')).body.data;
      return hs.every((h) => h.applied['services-file']?.ok === true && h.applied['services-file'].revision === t.srv.store.revision(envId));
    }, 10_000, 'applied reports');

    // Incremental: a watch from the previous revision returns only what changed, not a snapshot.
    const creds = JSON.parse(readFileSync(join(dirs[0] as string, 'agent.json'), 'utf8')) as { accessKey: string; secretKey: string };
    const rev = t.srv.store.revision(envId);
    const web = (await t.api<{ data: { id: string }[] }>('GET', '/v1/services?name=web')).body.data[0] as { id: string };
    await t.api('PUT', `/v1/services/${web.id}`, { metadata: { tier: 'front' } });
    const inc = await request<{ revision: number; snapshot?: unknown; changes: { kind: string; id: string; op: string }[] }>(
      t.url, 'GET', `/v1/agent/watch?after=${rev}&timeout=0`, undefined, creds);
    assert.equal(inc.status, 200);
    assert.equal(inc.body.snapshot, undefined);
    assert.equal(inc.body.revision, rev + 1);
    assert.deepEqual(inc.body.changes.map((c) => [c.kind, c.id, c.op]), [['service', web.id, 'upsert']]);
    await eventually(() => agents.every((a) => a.currentState()?.services.get(web.id)?.metadata.tier === 'front'), 10_000, 'metadata change');

    // A long-polling watch returns as soon as something changes.
    const waiting = request<{ revision: number }>(t.url, 'GET', `/v1/agent/watch?after=${rev + 1}&timeout=30`, undefined, creds);
    await new Promise((r) => setTimeout(r, 100));
    await t.api('PUT', `/v1/services/${web.id}`, { scale: 2 });
    assert.ok((await waiting).body.revision > rev + 1);
    await eventually(() => agents.every((a) => [...(a.currentState()?.containers.values() ?? [])].filter((c) => c.serviceId === web.id).length === 2), 10_000, 'scale');
    const finalRevision = t.srv.store.revision(envId);

    // Agent a stops; the server goes away; a new agent a starts and has its state at once.
    await agents[0]?.stop();
    await t.close();
    const restarted = mkAgent(dirs[0] as string, 'a');
    agents[0] = restarted;
    await restarted.start();
    const s = restarted.currentState();
    assert.ok(s, 'the restarted agent has a state before the server answers');
    assert.equal(s.revision, finalRevision);
    assert.deepEqual([...s.services.values()].map((x) => x.name).sort(), ['db', 'web']);
    assert.equal([...s.containers.values()].filter((c) => c.serviceId === web.id).length, 2);

    // The server comes back on the same address; both agents pick up the next change.
    t = await startTestServer({ dir: serverDir, port });
    await t.api('POST', '/v1/stacks', { name: 'later', dockerCompose: 'cache:\n  image: redis\n' });
    await eventually(async () => {
      for (const d of dirs) if (!(await persisted(d)).services.includes('cache')) return false;
      return true;
    }, 20_000, 'change after reconnect');
    assert.deepEqual(
      agents.map((a) => a.currentState()?.revision),
      [t.srv.store.revision(envId), t.srv.store.revision(envId)],
    );
  } finally {
    await Promise.all(agents.map((a) => a.stop()));
    await t.close();
    for (const d of [serverDir, ...dirs]) cleanup(d);
  }
});

test('an agent whose state is behind the change log gets a snapshot; removals arrive as removals', async () => {
  const t = await startTestServer();
  try {
    // Imported before any host exists: the containers wait unplaced, then land on the first host.
    const early = await t.api<{ id: string }>('POST', '/v1/stacks', { name: 'early', dockerCompose: 'w:\n  image: busybox\n' });
    assert.equal(early.status, 201);
    const pending = (await t.api<{ data: { hostId: string | null; state: string }[] }>('GET', `/v1/containers?stackId=${early.body.id}`)).body.data;
    assert.deepEqual(pending.map((c) => [c.hostId, c.state]), [[null, 'pending']]);
    const a = await t.register('solo');
    const placed = (await t.api<{ data: { hostId: string | null; state: string }[] }>('GET', `/v1/containers?stackId=${early.body.id}`)).body.data;
    assert.deepEqual(placed.map((c) => [c.hostId, c.state]), [[a.hostId, 'creating']]);
    const envId = defaultEnvironment(t.srv.store).id;
    const first = await request<{ revision: number; snapshot?: { resources: { hosts: unknown[] } } }>(t.url, 'GET', '/v1/agent/watch?after=0&timeout=0', undefined, a);
    assert.ok(first.body.snapshot, 'after=0 gets a snapshot');
    assert.equal(first.body.snapshot.resources.hosts.length, 1);
    const st = await t.api<{ id: string }>('POST', '/v1/stacks', { name: 'gone', dockerCompose: 'x:\n  image: busybox\n' });
    const rev = t.srv.store.revision(envId);
    await t.api('DELETE', `/v1/stacks/${st.body.id}`);
    const inc = await request<{ changes: { kind: string; op: string }[] }>(t.url, 'GET', `/v1/agent/watch?after=${rev}&timeout=0`, undefined, a);
    const removed = inc.body.changes.filter((c) => c.op === 'remove').map((c) => c.kind).sort();
    assert.deepEqual(removed, ['container', 'service', 'stack']);
    const ahead = await request<{ snapshot?: unknown }>(t.url, 'GET', `/v1/agent/watch?after=${rev + 1000}&timeout=0`, undefined, a);
    assert.ok(ahead.body.snapshot, 'an agent ahead of the server (restored database) gets a snapshot');
  } finally {
    await t.close();
    cleanup(t.dir);
  }
});
