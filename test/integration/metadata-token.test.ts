// self/service/token from real agents: keyed with the control plane's secret (delivered to the agents in the
// watch responses), so a container cannot compute any service's token from what the metadata API shows
// (the environment uuid, the service uuids); one key on every host, different per service, and the same
// after an agent restart — even one while the control plane is down. Bounded: about 10 s.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Agent } from '../../src/agent/agent.js';
import { metadataController } from '../../src/agent/capabilities/metadata/controller.js';
import { silentLogger } from '../../src/common/log.js';
import { serviceToken } from '../../src/metadata/tree.js';
import { createRegistrationToken } from '../../src/server/auth/credentials.js';
import { defaultEnvironment } from '../../src/server/domain/environments.js';
import { cleanup, eventually, startTestServer, tempDir } from '../helpers/server.js';
import { freePort } from '../helpers/ports.js';
import { curl } from '../fixtures/metadata/http.js';

const WEB_IP = '127.0.0.44';
const DB_IP = '127.0.0.45';
const DC = `
web:
  image: nginx
  labels:
    io.rancher.container.requested_ip: ${WEB_IP}
db:
  image: postgres
  labels:
    io.rancher.container.requested_ip: ${DB_IP}
`;

test('service tokens: secret-keyed, same on every host, per service, stable across agent restarts', async () => {
  const t = await startTestServer();
  const dirs = [tempDir('drover-agent-tok-a-'), tempDir('drover-agent-tok-b-')];
  const ports = [await freePort(), await freePort()];
  const agents: Agent[] = [];
  let serverUp = true;
  const mkAgent = (i: number, token?: string): Agent =>
    new Agent({
      dataDir: dirs[i] as string,
      serverUrl: t.url,
      ...(token ? { registrationToken: token } : {}),
      hostname: `tok${i}`,
      agentIp: `192.0.2.${41 + i}`,
      log: silentLogger(),
      capabilities: [metadataController({ log: silentLogger(), listen: `127.0.0.1:${ports[i] as number}` })],
      watchTimeoutSec: 2,
    });
  const get = async (i: number, path: string, from: string): Promise<string> => {
    const r = await curl(`http://127.0.0.1:${ports[i] as number}${path}`, { from, timeoutS: 5 });
    assert.equal(r.status, 200, `${path} from ${from} on agent ${i}: ${r.status} ${r.text}`);
    return r.text;
  };
  try {
    const envId = defaultEnvironment(t.srv.store).id;
    const upd = await t.api('PUT', `/v1/environments/${envId}`, { network: { subnet: '127.0.0.0/16' } });
    assert.equal(upd.status, 200, JSON.stringify(upd.body));
    for (let i = 0; i < 2; i++) agents.push(mkAgent(i, createRegistrationToken(t.srv.store, envId).token));
    await Promise.all(agents.map((a) => a.start()));
    const st = await t.api<{ id: string }>('POST', '/v1/stacks', { name: 'tok', dockerCompose: DC });
    assert.equal(st.status, 201, JSON.stringify(st.body));
    // Each agent serves the trees of its own host's containers only: find which one serves each address.
    const servedBy = new Map<string, number>();
    await eventually(async () => {
      for (const ip of [WEB_IP, DB_IP]) {
        for (let i = 0; i < 2; i++) {
          const r = await curl(`http://127.0.0.1:${ports[i] as number}/latest/self/service/token`, { from: ip, timeoutS: 5 }).catch(() => undefined);
          if (r?.status === 200 && /^[0-9a-f]{64}$/.test(r.text)) servedBy.set(ip, i);
        }
      }
      return servedBy.size === 2;
    }, 15_000, 'tokens served by the agents of the containers');
    const wi = servedBy.get(WEB_IP) as number;
    const di = servedBy.get(DB_IP) as number;
    // The other agent gives that address `default`: no self/service there.
    const elsewhere = await curl(`http://127.0.0.1:${ports[1 - wi] as number}/latest/self/service/token`, { from: WEB_IP, timeoutS: 5 });
    assert.equal(elsewhere.status, 404);

    const webToken = await get(wi, '/latest/self/service/token', WEB_IP);
    const dbToken = await get(di, '/latest/self/service/token', DB_IP);
    const webUuid = await get(wi, '/latest/self/service/uuid', WEB_IP);
    const dbUuid = await get(di, '/latest/self/service/uuid', DB_IP);
    const envUuid = await get(wi, '/latest/self/container/environment_uuid', WEB_IP);
    assert.match(webToken, /^[0-9a-f]{64}$/);
    // Not computable from what the metadata API exposes.
    assert.notEqual(webToken, serviceToken(envUuid, webUuid));
    assert.notEqual(webToken, serviceToken(envUuid, envUuid));
    // Per service.
    assert.notEqual(webToken, dbToken);

    // The key the agents hold: what the tokens are keyed with, and nowhere in what a container can read.
    const keyOf = (i: number): string | undefined =>
      (JSON.parse(readFileSync(join(dirs[i] as string, 'agent.json'), 'utf8')) as { metadataTokenKey?: string }).metadataTokenKey;
    const key = keyOf(0);
    assert.ok(key && key.length >= 32, 'the agent keeps the metadata token key with its identity');
    // The same on every host: both agents hold the one key, and each token is keyed with it.
    assert.equal(keyOf(1), key);
    assert.equal(webToken, serviceToken(key, webUuid));
    assert.equal(dbToken, serviceToken(key, dbUuid));
    for (const accept of ['application/json', 'application/yaml', '*/*']) {
      for (const path of ['/latest', '/latest/self/service', '/latest/services', '/2015-07-25/self/service', '/']) {
        const r = await curl(`http://127.0.0.1:${ports[wi] as number}${path}`, { from: WEB_IP, headers: { Accept: accept } });
        assert.ok(!r.text.includes(key), `${path} (${accept}) shows the key`);
      }
    }
    const other = (await get(wi, '/latest/services', WEB_IP)).split('\n').filter(Boolean).length;
    assert.ok(other >= 2);

    // Restart web's agent while the control plane is down: it serves its persisted state with the same tokens.
    await (agents[wi] as Agent).stop();
    await t.close();
    serverUp = false;
    agents[wi] = mkAgent(wi);
    await (agents[wi] as Agent).start();
    assert.equal(await get(wi, '/latest/self/service/token', WEB_IP), webToken);
    if (di === wi) assert.equal(await get(wi, '/latest/self/service/token', DB_IP), dbToken);
  } finally {
    await Promise.all(agents.map((a) => a.stop().catch(() => undefined)));
    if (serverUp) await t.close();
    for (const d of dirs) cleanup(d);
    cleanup(t.dir);
  }
});
