// The control plane through its HTTP API: auth, CRUD, validation errors, filters, certificates, tokens.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import forge from 'node-forge';
import { ADMIN, cleanup, request, startTestServer, type TestServer } from '../helpers/server.js';

let t: TestServer;
before(async () => {
  t = await startTestServer();
});
after(async () => {
  await t.close();
  cleanup(t.dir);
});

type Coll<T> = { type: string; data: T[] };
type Err = { type: string; status: number; code: string; fieldName?: string; message: string };

test('auth: only the version endpoint is anonymous; bad keys and agent keys are refused', async () => {
  const anon = await request<Err>(t.url, 'GET', '/v1/stacks', undefined);
  assert.equal(anon.status, 401);
  assert.equal(anon.body.type, 'error');
  assert.equal(anon.body.code, 'Unauthorized');
  const version = await request<{ version: string }>(t.url, 'GET', '/v1/version', undefined);
  assert.equal(version.status, 200);
  assert.match(version.body.version, /^\d+\.\d+\.\d+/);
  const wrong = await request<Err>(t.url, 'GET', '/v1/stacks', undefined, { accessKey: ADMIN.accessKey, secretKey: 'not-the-secret-at-all' });
  assert.equal(wrong.status, 401);
  const agent = await t.register('auth-host');
  const asAgent = await request<Err>(t.url, 'GET', '/v1/stacks', undefined, agent);
  assert.equal(asAgent.status, 403);
  assert.match(asAgent.body.message, /agent credentials can only be used on \/v1\/agent/);
  const metrics = await request<unknown>(t.url, 'GET', '/metrics', undefined);
  assert.equal(metrics.status, 401);
  await t.api('DELETE', `/v1/hosts/${agent.hostId}`);
  const afterRemoval = await request<Err>(t.url, 'GET', '/v1/agent/self', undefined, agent);
  assert.equal(afterRemoval.status, 401, 'a removed host loses its credentials');
});

test('API keys: created with a secret shown once, stored hashed, deactivation locks them out', async () => {
  const k = await t.api<{ id: string; accessKey: string; secretKey: string; type: string }>('POST', '/v1/apikeys', { name: 'ci' });
  assert.equal(k.status, 201);
  assert.equal(k.body.type, 'apiKey');
  assert.ok(k.body.secretKey.length >= 32);
  const got = await t.api<Record<string, unknown>>('GET', `/v1/apikeys/${k.body.id}`);
  assert.equal(got.body.secretKey, undefined, 'the secret is never shown again');
  const row = t.srv.store.db.prepare('SELECT secret_hash FROM api_keys WHERE id = ?').get(k.body.id) as { secret_hash: string };
  assert.notEqual(row.secret_hash, k.body.secretKey);
  assert.match(row.secret_hash, /^[0-9a-f]{64}$/);
  assert.equal((await request(t.url, 'GET', '/v1/stacks', undefined, k.body)).status, 200);
  await t.api('POST', `/v1/apikeys/${k.body.id}?action=deactivate`);
  const denied = await request<Err>(t.url, 'GET', '/v1/stacks', undefined, k.body);
  assert.equal(denied.status, 401);
  assert.match(denied.body.message, /inactive/);
});

test('environments: CRUD, resource envelope, filters, structured validation errors, secrets hidden', async () => {
  const created = await t.api<Record<string, unknown>>('POST', '/v1/environments', { name: 'staging', network: { dnsScope: 'stack' } });
  assert.equal(created.status, 201);
  const env = created.body as { id: string; type: string; links: Record<string, string>; actions: object; network: Record<string, unknown> };
  assert.equal(env.type, 'environment');
  assert.match(env.links.self as string, new RegExp(`/v1/environments/${env.id}$`));
  assert.ok(env.links.stacks);
  assert.equal(env.network.subnet, '10.42.0.0/16');
  assert.equal(env.network.dnsScope, 'stack');
  assert.equal(env.network.ipsecPsk, undefined, 'the IPsec key never leaves through the API');

  const list = await t.api<Coll<{ name: string }>>('GET', '/v1/environments?name=staging');
  assert.equal(list.body.type, 'collection');
  assert.deepEqual(list.body.data.map((e) => e.name), ['staging']);
  const badFilter = await t.api<Err>('GET', '/v1/environments?colour=red');
  assert.equal(badFilter.status, 422);
  assert.equal(badFilter.body.code, 'InvalidFilter');

  const bad = await t.api<Err>('PUT', `/v1/environments/${env.id}`, { network: { dnsScope: 'everything' } });
  assert.equal(bad.status, 422);
  assert.equal(bad.body.type, 'error');
  assert.equal(bad.body.fieldName, 'network.dnsScope');
  const missing = await t.api<Err>('POST', '/v1/environments', {});
  assert.equal(missing.status, 422);
  assert.equal(missing.body.code, 'MissingRequired');
  assert.equal(missing.body.fieldName, 'name');
  const unknownField = await t.api<Err>('POST', '/v1/environments', { name: 'x', colour: 'red' });
  assert.equal(unknownField.status, 422);
  const dup = await t.api<Err>('POST', '/v1/environments', { name: 'staging' });
  assert.equal(dup.status, 409);
  assert.equal(dup.body.code, 'NotUnique');
  const badJson = await request<Err>(t.url, 'POST', '/v1/environments', '{"name":', ADMIN);
  assert.equal(badJson.status, 400);
  assert.equal(badJson.body.code, 'InvalidJson');

  const upd = await t.api<{ network: { dnsScope: string } }>('PUT', `/v1/environments/${env.id}`, { network: { dnsScope: 'environment' } });
  assert.equal(upd.body.network.dnsScope, 'environment');
  assert.equal((await t.api('DELETE', `/v1/environments/${env.id}`)).status, 204);
  assert.equal((await t.api('GET', `/v1/environments/${env.id}`)).status, 404);
});

test('stacks and services through the API: create, scale, links, actions, removal', async () => {
  const h = await t.register('api-host', { role: 'api' });
  const st = await t.api<{ id: string }>('POST', '/v1/stacks', { name: 'apistack' });
  assert.equal(st.status, 201);
  const db = await t.api<{ id: string; type: string }>('POST', '/v1/services', {
    stackId: st.body.id,
    name: 'db',
    scale: 1,
    launchConfig: { image: 'postgres:16', labels: { 'io.rancher.scheduler.affinity:host_label': 'role=api' } },
  });
  assert.equal(db.status, 201, JSON.stringify(db.body));
  assert.equal(db.body.type, 'service');
  const web = await t.api<{ id: string; actions: Record<string, string> }>('POST', '/v1/services', {
    stackId: st.body.id,
    name: 'web',
    scale: 2,
    launchConfig: { image: 'nginx', ports: [{ publicPort: 8080, privatePort: 80, protocol: 'tcp' }], labels: { 'io.rancher.scheduler.affinity:host_label': 'role=api' } },
    serviceLinks: [{ serviceId: db.body.id, name: 'database' }],
  });
  assert.equal(web.status, 201, JSON.stringify(web.body));
  assert.ok(web.body.actions.upgrade && web.body.actions.deactivate);
  const links = await t.api<Coll<{ consumedServiceId: string; name: string }>>('GET', `/v1/servicelinks?serviceId=${web.body.id}`);
  assert.deepEqual(links.body.data.map((l) => [l.consumedServiceId, l.name]), [[db.body.id, 'database']]);

  const ctrs = async () => (await t.api<Coll<{ name: string; hostId: string; primaryIpAddress: string; desiredState: string }>>('GET', `/v1/containers?serviceId=${web.body.id}`)).body.data;
  assert.deepEqual((await ctrs()).map((c) => c.name).sort(), ['apistack-web-1', 'apistack-web-2']);
  assert.ok((await ctrs()).every((c) => c.hostId === h.hostId));

  const scaled = await t.api<{ scale: number }>('PUT', `/v1/services/${web.body.id}`, { scale: 3 });
  assert.equal(scaled.body.scale, 3);
  assert.equal((await ctrs()).length, 3);
  const ips = (await ctrs()).map((c) => c.primaryIpAddress);
  await t.api('PUT', `/v1/services/${web.body.id}`, { scale: 1 });
  const left = await ctrs();
  assert.deepEqual(left.map((c) => c.name), ['apistack-web-1']);
  const freed = (t.srv.store.db.prepare('SELECT ip FROM ip_allocations').all() as { ip: string }[]).map((r) => r.ip);
  for (const ip of ips.slice(1)) assert.ok(!freed.includes(ip), `scale-down released ${ip}`);

  const deact = await t.api<{ state: string; actions: Record<string, string> }>('POST', `/v1/services/${web.body.id}?action=deactivate`);
  assert.equal(deact.body.state, 'inactive');
  assert.ok(deact.body.actions.activate);
  assert.ok((await ctrs()).every((c) => c.desiredState === 'stopped'));
  const badAction = await t.api<Err>('POST', `/v1/services/${web.body.id}?action=explode`);
  assert.equal(badAction.status, 422);
  assert.equal(badAction.body.code, 'InvalidAction');

  const inUse = await t.api<Err>('DELETE', `/v1/services/${db.body.id}`);
  assert.equal(inUse.status, 204, 'removing a consumed service removes the links to it');
  assert.equal((await t.api<Coll<unknown>>('GET', `/v1/servicelinks?serviceId=${web.body.id}`)).body.data.length, 0);
  assert.equal((await t.api('DELETE', `/v1/stacks/${st.body.id}`)).status, 204);
  assert.equal((await t.api<Coll<unknown>>('GET', `/v1/services?stackId=${st.body.id}`)).body.data.length, 0);
  await t.api('DELETE', `/v1/hosts/${h.hostId}`);
});

test('certificates: parsed and checked against the key; the key is never returned', async () => {
  const keys = forge.pki.rsa.generateKeyPair(1024);
  const other = forge.pki.rsa.generateKeyPair(1024);
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = '01';
  cert.validity.notBefore = new Date();
  cert.validity.notAfter = new Date(Date.now() + 86400_000);
  const attrs = [{ name: 'commonName', value: 'www.example.test' }];
  cert.setSubject(attrs);
  cert.setIssuer(attrs);
  cert.setExtensions([{ name: 'subjectAltName', altNames: [{ type: 2, value: 'www.example.test' }, { type: 2, value: 'example.test' }] }]);
  cert.sign(keys.privateKey, forge.md.sha256.create());
  const pem = forge.pki.certificateToPem(cert);
  const mismatch = await t.api<Err>('POST', '/v1/certificates', { name: 'bad', cert: pem, key: forge.pki.privateKeyToPem(other.privateKey) });
  assert.equal(mismatch.status, 422);
  assert.equal(mismatch.body.code, 'KeyMismatch');
  const ok = await t.api<Record<string, unknown>>('POST', '/v1/certificates', { name: 'www', cert: pem, key: forge.pki.privateKeyToPem(keys.privateKey) });
  assert.equal(ok.status, 201);
  assert.equal(ok.body.commonName, 'www.example.test');
  assert.deepEqual(ok.body.subjectAlternativeNames, ['www.example.test', 'example.test']);
  assert.equal(ok.body.key, undefined);
  const listed = await t.api<Coll<Record<string, unknown>>>('GET', '/v1/certificates');
  assert.ok(listed.body.data.every((c) => c.key === undefined));
});

test('balancers through the API: port rule services and certificates by name resolve to ids; unknown ones are refused by field', async () => {
  const st = await t.api<{ id: string }>('POST', '/v1/stacks', { name: 'lbstack' });
  const app = await t.api<{ id: string }>('POST', '/v1/services', { stackId: st.body.id, name: 'app', scale: 1, launchConfig: { image: 'nginx' } });
  assert.equal(app.status, 201, JSON.stringify(app.body));
  const cert = (await t.api<Coll<{ id: string; name: string }>>('GET', '/v1/certificates')).body.data.find((c) => c.name === 'www');
  assert.ok(cert, 'the certificate of the previous test');
  const lb = (lbConfig: unknown, name = 'lb') =>
    t.api<{ lbConfig: { portRules: { service?: string; serviceId?: string }[]; certificateIds: string[]; defaultCertificateId?: string } } & Err>(
      'POST',
      '/v1/services',
      { stackId: st.body.id, name, kind: 'loadBalancerService', scale: 1, launchConfig: { image: 'drover/lb', ports: [{ publicPort: 80, privatePort: 80, protocol: 'tcp' }] }, lbConfig },
    );
  const ok = await lb({ portRules: [{ sourcePort: 80, protocol: 'http', service: 'app', targetPort: 8080 }], certificateIds: ['www'], defaultCertificateId: 'www' });
  assert.equal(ok.status, 201, JSON.stringify(ok.body));
  assert.equal(ok.body.lbConfig.portRules[0]?.serviceId, app.body.id);
  assert.deepEqual(ok.body.lbConfig.certificateIds, [cert.id]);
  assert.equal(ok.body.lbConfig.defaultCertificateId, cert.id);
  const cases: [unknown, string][] = [
    [{ portRules: [{ sourcePort: 80, protocol: 'http' }, { sourcePort: 81, protocol: 'http', service: 'lbstack/nope' }] }, 'lbConfig.portRules[1].service'],
    [{ portRules: [{ sourcePort: 80, protocol: 'http', serviceId: '1s999' }] }, 'lbConfig.portRules[0].service'],
    [{ certificateIds: ['nocert'] }, 'lbConfig.certificateIds'],
    [{ defaultCertificateId: 'nocert' }, 'lbConfig.defaultCertificateId'],
  ];
  for (const [i, [cfg, field]] of cases.entries()) {
    const bad = await lb(cfg, `bad${i}`);
    assert.equal(bad.status, 422, JSON.stringify(bad.body));
    assert.equal(bad.body.fieldName, field);
    assert.equal((await t.api<Coll<unknown>>('GET', `/v1/services?name=bad${i}`)).body.data.length, 0, 'nothing half-created');
  }
});

test('registration: a token shows the docker run command, registers a host, and stops working once revoked', async () => {
  const tok = await t.api<{ id: string; token: string; command: string; registrationUrl: string }>('POST', '/v1/registrationtokens', {});
  assert.equal(tok.status, 201);
  assert.match(tok.body.token, /^[A-Z0-9]+:\d+:[0-9a-f]{64}$/);
  assert.match(tok.body.command, /^sudo docker run .*-v \/var\/run\/docker\.sock:\/var\/run\/docker\.sock .* http:\/\/127\.0\.0\.1:\d+\/v1\/scripts\/\S+$/);
  const script = await fetch(tok.body.registrationUrl);
  assert.equal(script.status, 200);
  assert.match(await script.text(), /DROVER_REGISTRATION_TOKEN/);
  const reg = await request<{ host: { id: string; labels: Record<string, string> }; accessKey: string }>(t.url, 'POST', '/v1/agent/register', {
    token: tok.body.token,
    hostname: 'joiner',
    agentIpAddress: '192.0.2.77',
    labels: { zone: 'z1' },
  });
  assert.equal(reg.status, 201);
  assert.deepEqual(reg.body.host.labels, { zone: 'z1' });
  const forged = tok.body.token.replace(/.$/, (c) => (c === '0' ? '1' : '0'));
  assert.equal((await request(t.url, 'POST', '/v1/agent/register', { token: forged, hostname: 'x', agentIpAddress: '192.0.2.78' })).status, 401);
  await t.api('POST', `/v1/registrationtokens/${tok.body.id}?action=deactivate`);
  const revoked = await request<Err>(t.url, 'POST', '/v1/agent/register', { token: tok.body.token, hostname: 'late', agentIpAddress: '192.0.2.79' });
  assert.equal(revoked.status, 401);
  assert.match(revoked.body.message, /revoked/);
  await t.api('DELETE', `/v1/hosts/${reg.body.host.id}`);
});

test('the OpenAPI document is served and describes the resources', async () => {
  const r = await t.api<{ openapi: string; paths: Record<string, unknown>; components: { schemas: Record<string, unknown> } }>('GET', '/v1/openapi.json');
  assert.equal(r.status, 200);
  assert.equal(r.body.openapi, '3.1.0');
  assert.ok(r.body.paths['/v1/stacks']);
  assert.ok(r.body.components.schemas.ServiceCreate);
});

test('an API key with an access key that exists is a 409 naming accessKey, never a 500 (store constraints map to 409)', async () => {
  const first = await t.api<{ accessKey: string }>('POST', '/v1/apikeys', { name: 'dup', accessKey: 'DUPLICATEKEY1', secretKey: 'dup-secret-0123456789' });
  assert.equal(first.status, 201);
  for (const accessKey of ['DUPLICATEKEY1', ADMIN.accessKey]) {
    const again = await t.api<Err>('POST', '/v1/apikeys', { name: 'dup2', accessKey, secretKey: 'another-secret-0123456789' });
    assert.equal(again.status, 409, JSON.stringify(again.body));
    assert.equal(again.body.fieldName, 'accessKey');
    assert.equal(again.body.type, 'error');
  }
  // The admin key still works with its own secret (the failed insert changed nothing).
  assert.equal((await t.api('GET', '/v1/apikeys')).status, 200);
});

test('registration cannot take over a host: an existing uuid needs that host’s credentials; the host itself re-registers with them', async () => {
  type Reg = { host: { id: string; uuid: string; agentIpAddress: string }; accessKey: string; secretKey: string };
  const tokenA = (await t.api<{ token: string }>('POST', '/v1/registrationtokens', {})).body.token;
  const tokenB = (await t.api<{ token: string }>('POST', '/v1/registrationtokens', {})).body.token;
  const x = await request<Reg>(t.url, 'POST', '/v1/agent/register', { token: tokenA, hostname: 'victim', agentIpAddress: '192.0.2.90' });
  assert.equal(x.status, 201);
  const xCreds = { accessKey: x.body.accessKey, secretKey: x.body.secretKey };
  const other = await request<Reg>(t.url, 'POST', '/v1/agent/register', { token: tokenB, hostname: 'attacker', agentIpAddress: '192.0.2.91' });
  assert.equal(other.status, 201);
  const otherCreds = { accessKey: other.body.accessKey, secretKey: other.body.secretKey };

  // Any token holder who knows X's uuid (every agent sees them): refused, with or without another host's key.
  const takeover = { token: tokenB, uuid: x.body.host.uuid, hostname: 'victim', agentIpAddress: '198.51.100.66' };
  const anon = await request<Err>(t.url, 'POST', '/v1/agent/register', takeover);
  assert.equal(anon.status, 409, JSON.stringify(anon.body));
  assert.equal(anon.body.fieldName, 'uuid');
  assert.match(anon.body.message, /already registered.*current agent credentials/);
  const asOther = await request<Err>(t.url, 'POST', '/v1/agent/register', takeover, otherCreds);
  assert.equal(asOther.status, 409, JSON.stringify(asOther.body));
  const wrongSecret = await request<Err>(t.url, 'POST', '/v1/agent/register', takeover, { accessKey: xCreds.accessKey, secretKey: 'wrong-secret-0123456789' });
  assert.equal(wrongSecret.status, 401);

  // X's key still works and its address is unchanged.
  const self = await request<{ id: string; agentIpAddress: string }>(t.url, 'GET', '/v1/agent/self', undefined, xCreds);
  assert.equal(self.status, 200);
  assert.equal(self.body.id, x.body.host.id);
  assert.equal(self.body.agentIpAddress, '192.0.2.90');
  assert.equal((await t.api<{ agentIpAddress: string }>('GET', `/v1/hosts/${x.body.host.id}`)).body.agentIpAddress, '192.0.2.90');

  // The legitimate agent re-registers with its credentials: same host, new address, a new key replaces the old.
  const again = await request<Reg>(t.url, 'POST', '/v1/agent/register', { ...takeover, token: tokenA, agentIpAddress: '192.0.2.99' }, xCreds);
  assert.equal(again.status, 201, JSON.stringify(again.body));
  assert.equal(again.body.host.id, x.body.host.id);
  assert.equal(again.body.host.agentIpAddress, '192.0.2.99');
  assert.equal((await request(t.url, 'GET', '/v1/agent/self', undefined, xCreds)).status, 401, 'the old key is gone');
  assert.equal((await request(t.url, 'GET', '/v1/agent/self', undefined, { accessKey: again.body.accessKey, secretKey: again.body.secretKey })).status, 200);
  // An agent that lost its identity registers without a uuid: a new host.
  const lost = await request<Reg>(t.url, 'POST', '/v1/agent/register', { token: tokenA, hostname: 'victim', agentIpAddress: '192.0.2.99' });
  assert.equal(lost.status, 201);
  assert.notEqual(lost.body.host.id, x.body.host.id);
  for (const id of [x.body.host.id, other.body.host.id, lost.body.host.id]) await t.api('DELETE', `/v1/hosts/${id}`);
});
