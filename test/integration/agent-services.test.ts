// Metadata and DNS served by a real agent from what the control plane holds: a stack created through
// the API is visible in the agent's metadata for a client address (curl picks its source address with
// --interface on loopback) and resolvable per its links with dig (-b picks the source address); a new
// link made through the API is answered within a second.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { Agent } from '../../src/agent/agent.js';
import { metadataController } from '../../src/agent/capabilities/metadata/controller.js';
import { dnsController } from '../../src/agent/capabilities/dns/controller.js';
import { silentLogger } from '../../src/common/log.js';
import { defaultEnvironment } from '../../src/server/domain/environments.js';
import { cleanup, eventually, request, startTestServer, tempDir } from '../helpers/server.js';
import { agentCreds, testAgent } from '../helpers/agent.js';
import { freePort } from '../helpers/ports.js';

const run = promisify(execFile);


const DC = `
web:
  image: nginx
  labels:
    io.rancher.container.requested_ip: 127.0.0.10
  links:
    - db:database
db:
  image: postgres
  labels:
    io.rancher.container.requested_ip: 127.0.0.20
cache:
  image: redis
  labels:
    io.rancher.container.requested_ip: 127.0.0.30
`;
const RC = `
web:
  scale: 1
  metadata:
    tier: front
    replicas:
      - a
      - b
`;

test('agent metadata and DNS answer what the API holds, per client address', async () => {
  const t = await startTestServer();
  const agentDir = tempDir('drover-agent-');
  const mdPort = await freePort();
  const dnsPort = await freePort();
  let agent: Agent | undefined;
  try {
    const envId = defaultEnvironment(t.srv.store).id;
    // Managed addresses on loopback, so the test can speak from any of them.
    const upd = await t.api('PUT', `/v1/environments/${envId}`, { network: { subnet: '127.0.0.0/16' } });
    assert.equal(upd.status, 200, JSON.stringify(upd.body));
    agent = testAgent(t, agentDir, {
      agentIp: '192.0.2.31',
      labels: { zone: 'z1' },
      capabilities: [
        metadataController({ log: silentLogger(), listen: `127.0.0.1:${mdPort}` }),
        dnsController({ log: silentLogger(), listen: `127.0.0.1:${dnsPort}`, resolvConf: '/dev/null' }),
      ],
    });
    await agent.start();
    await eventually(() => agent?.hostId(), 10_000, 'registration');

    const st = await t.api<{ id: string }>('POST', '/v1/stacks', { name: 'shop', dockerCompose: DC, rancherCompose: RC });
    assert.equal(st.status, 201, JSON.stringify(st.body));
    const ctrs = (await t.api<{ data: { id: string; name: string; primaryIpAddress: string }[] }>('GET', `/v1/containers?stackId=${st.body.id}`)).body.data;
    const web = ctrs.find((c) => c.name === 'shop-web-1');
    assert.equal(web?.primaryIpAddress, '127.0.0.10');
    // The agent reports them running (as the Docker runtime would), so DNS answers with them.
    const rep = await request(t.url, 'POST', '/v1/agent/report', { containers: ctrs.map((c) => ({ id: c.id, state: 'running' })) }, agentCreds(agentDir));
    assert.equal(rep.status, 200);

    const md = async (path: string, from = '127.0.0.10', accept?: string) =>
      (await run('curl', ['-s', '--interface', from, ...(accept ? ['-H', `Accept: ${accept}`] : []), `http://127.0.0.1:${mdPort}${path}`])).stdout;
    await eventually(async () => (await md('/latest/self/container/name')) === 'shop-web-1', 10_000, 'metadata for web');

    // self/container, self/service (user metadata from rancher-compose), self/stack, self/host.
    assert.equal(await md('/latest/self/container/primary_ip'), '127.0.0.10');
    assert.equal(await md('/latest/self/container/service_name'), 'web');
    assert.equal(await md('/latest/self/service/metadata/tier'), 'front');
    assert.equal(await md('/latest/self/service/metadata/replicas'), '0\n1\n');
    assert.equal(await md('/latest/self/service/metadata/replicas/1'), 'b');
    assert.equal(await md('/latest/self/stack/name'), 'shop');
    assert.equal(await md('/latest/self/host/name'), 'node1');
    assert.equal(await md('/latest/self/host/agent_ip'), '192.0.2.31');
    assert.equal(await md('/latest/self/host/labels/zone'), 'z1');
    assert.equal(await md('/latest/self/service/links/shop%2Fdb'), 'database');
    // services/<name> and stacks/<name>, consistent with the API.
    const apiServices = (await t.api<{ data: { name: string; scale: number }[] }>('GET', `/v1/services?stackId=${st.body.id}`)).body.data;
    assert.deepEqual(apiServices.map((s) => s.name).sort(), ['cache', 'db', 'web']);
    assert.equal(await md('/latest/services'), '0=cache\n1=db\n2=web\n');
    assert.equal(await md('/latest/services/web/scale'), String(apiServices.find((s) => s.name === 'web')?.scale));
    assert.equal(await md('/latest/services/db/containers/0/primary_ip'), '127.0.0.20');
    assert.equal(await md('/latest/stacks/shop/services/cache/name'), 'cache');
    const self = JSON.parse(await md('/latest/self/service', '127.0.0.10', 'application/json')) as { name: string; scale: number; token: string | null };
    assert.equal(self.scale, 1);
    assert.equal(typeof self.token, 'string', 'token under self/service');
    // Another client address gets its own self; an unknown one gets only self/host.
    assert.equal(await md('/latest/self/container/name', '127.0.0.20'), 'shop-db-1');
    assert.equal(await md('/latest/self/', '127.0.0.99'), 'host/\n');

    // DNS per client: web is linked to db (alias database), not to cache.
    const dig = async (name: string, from = '127.0.0.10') =>
      (await run('dig', ['+short', '+time=1', '+tries=1', '-b', from, '-p', String(dnsPort), '@127.0.0.1', name])).stdout.trim();
    const status = async (name: string, from = '127.0.0.10') =>
      /status: (\w+)/.exec((await run('dig', ['+time=1', '+tries=1', '-b', from, '-p', String(dnsPort), '@127.0.0.1', name])).stdout)?.[1];
    // Serving (running) reaches the agents once the control plane publishes it (its status window, 250 ms).
    await eventually(async () => (await dig('db.shop.rancher.internal')) === '127.0.0.20', 5000, 'db serving in DNS');
    assert.equal(await dig('database.rancher.internal'), '127.0.0.20');
    assert.equal(await dig('db'), '127.0.0.20', 'short name through the search suffixes');
    assert.equal(await status('cache.shop.rancher.internal'), 'NXDOMAIN', 'not linked: does not exist for web');
    assert.equal(await dig('cache.shop.rancher.internal', '127.0.0.30'), '127.0.0.30', 'a container resolves its own service');

    // A new link through the API is answered within a second.
    const webSvc = (await t.api<{ data: { id: string }[] }>('GET', `/v1/services?stackId=${st.body.id}&name=web`)).body.data[0] as { id: string };
    const dbSvc = (await t.api<{ data: { id: string }[] }>('GET', `/v1/services?stackId=${st.body.id}&name=db`)).body.data[0] as { id: string };
    const cacheSvc = (await t.api<{ data: { id: string }[] }>('GET', `/v1/services?stackId=${st.body.id}&name=cache`)).body.data[0] as { id: string };
    const t0 = performance.now();
    const linked = await t.api('POST', `/v1/services/${webSvc.id}?action=setservicelinks`, {
      serviceLinks: [{ serviceId: dbSvc.id, name: 'database' }, { serviceId: cacheSvc.id }],
    });
    assert.equal(linked.status, 200);
    await eventually(async () => (await dig('cache.shop.rancher.internal')) === '127.0.0.30', 1000, 'the new link answered within a second of the API call');
    console.log(`new link answered ${(performance.now() - t0).toFixed(0)} ms after the API call`);
    // And metadata shows it too (version changed).
    assert.match(await md('/latest/self/service/links/'), /shop%2Fcache/);
  } finally {
    await agent?.stop();
    await t.close();
    cleanup(t.dir);
    cleanup(agentDir);
  }
});
