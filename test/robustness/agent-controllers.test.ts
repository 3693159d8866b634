// The agent under a burst of changes while its DNS port is held by another socket and its disk refuses
// writes: no hot retry loop (backoff), the process keeps its heap bounded, nothing is skipped (the agent
// ends at the server's revision, persisted), DNS answers right after the port is freed, the persisted
// state grows with the changes (a log), not with changes × environment, and a bad status report is a 4xx.
// Bound: ~15 s (timeouts below); everything is torn down in `finally`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Agent } from '../../src/agent/agent.js';
import { dnsController } from '../../src/agent/capabilities/dns/controller.js';
import { StateStore, loadState } from '../../src/agent/sync/state-file.js';
import { silentLogger } from '../../src/common/log.js';
import { defaultEnvironment } from '../../src/server/domain/environments.js';
import { cleanup, eventually, request, startTestServer, tempDir } from '../helpers/server.js';
import { agentCreds, testAgent } from '../helpers/agent.js';
import { freePort } from '../helpers/ports.js';

const run = promisify(execFile);
const HEAP_GROWTH_BOUND = 64 * 1024 * 1024;
const CHANGES = 120;

test('agent: a burst of changes with the DNS port held and the disk refusing writes', { timeout: 40_000 }, async () => {
  const t = await startTestServer();
  const dir = tempDir('drover-agent-robust-');
  const dnsPort = await freePort();
  const squat = dgram.createSocket('udp4');
  await new Promise<void>((r) => squat.bind(dnsPort, '127.0.0.1', () => r()));
  let squatting = true;
  const unsquat = async () => {
    if (squatting) {
      squatting = false;
      await new Promise<void>((r) => squat.close(() => r()));
    }
  };
  let agent: Agent | undefined;
  try {
    const envId = defaultEnvironment(t.srv.store).id;
    assert.equal((await t.api('PUT', `/v1/environments/${envId}`, { network: { subnet: '127.0.0.0/16' } })).status, 200);
    agent = testAgent(t, dir, {
      hostname: 'robust',
      agentIp: '192.0.2.51',
      capabilities: [dnsController({ log: silentLogger(), listen: `127.0.0.1:${dnsPort}`, resolvConf: '/dev/null' })],
      controllerBackoff: { initialMs: 50, maxMs: 400 },
      syncBackoff: { initialMs: 50, maxMs: 400 },
    });
    await agent.start();
    const st = await t.api<{ id: string }>('POST', '/v1/stacks', {
      name: 'shop',
      dockerCompose: 'web:\n  image: nginx\n  labels:\n    io.rancher.container.requested_ip: 127.0.0.10\n',
    });
    assert.equal(st.status, 201);
    await eventually(() => agent?.hostId(), 10_000, 'registration');
    const creds = agentCreds(dir);
    const ctrs = (await t.api<{ data: { id: string }[] }>('GET', `/v1/containers?stackId=${st.body.id}`)).body.data;
    const rep = await request(t.url, 'POST', '/v1/agent/report', { containers: ctrs.map((c) => ({ id: c.id, state: 'running' })) }, creds);
    assert.equal(rep.status, 200);
    await eventually(() => agent?.confirmedRevision() === t.srv.store.revision(envId), 10_000, 'in sync');
    const web = (await t.api<{ data: { id: string }[] }>('GET', '/v1/services?name=web')).body.data[0] as { id: string };
    global.gc?.();
    const heap0 = process.memoryUsage().heapUsed;

    // Quiet for 2 s with the port held: the backoff bounds the retries (no hot loop).
    const f0 = agent.statuses().dns?.consecutiveFailures ?? 0;
    await new Promise((r) => setTimeout(r, 2000));
    const f1 = agent.statuses().dns?.consecutiveFailures ?? 0;
    assert.ok(f1 - f0 <= 20, `retries in 2 s with a 50-400 ms backoff: ${f1 - f0}`);
    assert.equal(agent.statuses().dns?.state, 'failed');

    // The disk refuses writes during the first half of the burst.
    const blocker = join(dir, 'state.log');
    rmSync(blocker, { force: true });
    mkdirSync(join(blocker, 'x'), { recursive: true });
    for (let i = 0; i < CHANGES; i++) {
      if (i === CHANGES / 2) rmSync(blocker, { recursive: true });
      const r = await t.api('PUT', `/v1/services/${web.id}`, { metadata: { n: i } });
      assert.equal(r.status, 200);
    }
    const final = t.srv.store.revision(envId);
    await eventually(() => agent?.confirmedRevision() === final, 15_000, 'nothing skipped: the server revision confirmed');
    assert.equal(agent.currentState()?.services.get(web.id)?.metadata.n, CHANGES - 1);
    const onDisk = await loadState(join(dir, 'state.json'));
    assert.equal(onDisk?.revision, final);
    assert.equal(onDisk?.services.get(web.id)?.metadata.n, CHANGES - 1);
    const bytes = await new StateStore({ path: join(dir, 'state.json') }).diskBytes();
    assert.ok(bytes < 512 * 1024, `persisted state after ${CHANGES} changes: ${bytes} bytes`);

    // DNS answers right after the port is freed.
    await unsquat();
    const dig = async () => (await run('dig', ['+short', '+time=1', '+tries=1', '-b', '127.0.0.10', '-p', String(dnsPort), '@127.0.0.1', 'web.shop.rancher.internal'])).stdout.trim();
    await eventually(async () => (await dig()) === '127.0.0.10', 10_000, 'DNS answers').catch((err: unknown) => {
      throw new Error(`${String(err)}; status ${JSON.stringify(agent?.statuses())}`);
    });
    assert.equal(agent.statuses().dns?.state, 'ok');

    global.gc?.();
    const growth = process.memoryUsage().heapUsed - heap0;
    assert.ok(growth < HEAP_GROWTH_BOUND, `heap grew ${Math.round(growth / 1e6)} MB`);

    // A bad status report is a 4xx naming the field; the server still answers.
    const bad = await request(t.url, 'POST', '/v1/agent/report', { applied: { dns: { revision: 1, ok: true, consecutiveFailures: 'many' } } }, creds);
    assert.ok(bad.status >= 400 && bad.status < 500, `status ${bad.status}`);
    assert.match(JSON.stringify(bad.body), /consecutiveFailures/);
    assert.equal((await t.api('GET', '/v1/version')).status, 200);
  } finally {
    await agent?.stop();
    await unsquat();
    await t.close();
    cleanup(dir);
  }
});
