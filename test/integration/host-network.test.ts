// The control plane's side of the managed network: every host gets a tunnel address from the IPAM
// (kept when its agent registers again, released when the host is removed, given at start to hosts that
// have none), and the network status an agent reports (peers reachable, backend, MTU) shows on the
// host in the API without a new revision; a hostile status is refused by field.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import forge from 'node-forge';
import { cleanup, request, startTestServer, type TestServer } from '../helpers/server.js';
import { ensureTunnelAddresses } from '../../src/server/domain/environments.js';

let t: TestServer;
before(async () => {
  t = await startTestServer();
});
after(async () => {
  await t.close();
  cleanup(t.dir);
});

interface HostRec {
  id: string;
  tunnelIp?: string;
  network?: { mode: string; backend: string; mtu?: number; peers: { hostId: string; reachable: boolean; since: string; lastError?: string }[] };
}

test('hosts get distinct tunnel addresses in the environment subnet, released with the host', async () => {
  const a = await t.register('tun-a', {}, '192.0.2.31');
  const b = await t.register('tun-b', {}, '192.0.2.32');
  const ha = (await t.api<HostRec>('GET', `/v1/hosts/${a.hostId}`)).body;
  const hb = (await t.api<HostRec>('GET', `/v1/hosts/${b.hostId}`)).body;
  assert.match(ha.tunnelIp ?? '', /^10\.42\.\d+\.\d+$/);
  assert.match(hb.tunnelIp ?? '', /^10\.42\.\d+\.\d+$/);
  assert.notEqual(ha.tunnelIp, hb.tunnelIp);
  const owner = (ip: string | undefined) =>
    (t.srv.store.db.prepare('SELECT owner FROM ip_allocations WHERE ip = ?').get(ip) as { owner: string } | undefined)?.owner;
  assert.equal(owner(ha.tunnelIp), `host:${a.hostId}`, 'the IPAM holds the address for the host (no container gets it)');

  // The same agent registering again keeps its address.
  const uuid = (t.srv.store.mustGet('host', a.hostId) as { uuid: string }).uuid;
  const tok = (await t.api<{ token: string }>('POST', '/v1/registrationtokens', {})).body.token;
  const again = await request<{ host: HostRec }>(t.url, 'POST', '/v1/agent/register', { token: tok, uuid, hostname: 'tun-a', agentIpAddress: '192.0.2.31' }, a);
  assert.equal(again.status, 201, JSON.stringify(again.body));
  assert.equal(again.body.host.tunnelIp, ha.tunnelIp);

  assert.equal((await t.api('DELETE', `/v1/hosts/${b.hostId}`)).status, 204);
  assert.equal(owner(hb.tunnelIp), undefined, 'released with the host');
});

test('hosts registered before tunnel addresses existed get one at start, once', async () => {
  const c = await t.register('tun-c', {}, '192.0.2.33');
  const rec = t.srv.store.mustGet('host', c.hostId);
  // As a database from before the managed network: no tunnel address, none allocated.
  t.srv.store.tx((tx) => {
    const { tunnelIp: _gone, ...old } = rec;
    tx.store.db.prepare('DELETE FROM ip_allocations WHERE owner = ?').run(`host:${c.hostId}`);
    tx.put('host', old);
  });
  assert.equal(t.srv.store.mustGet('host', c.hostId).tunnelIp, undefined);
  assert.equal(ensureTunnelAddresses(t.srv.store), 1);
  const given = t.srv.store.mustGet('host', c.hostId).tunnelIp;
  assert.match(given ?? '', /^10\.42\./);
  assert.equal(ensureTunnelAddresses(t.srv.store), 0, 'hosts that have one are not touched');
  assert.equal(t.srv.store.mustGet('host', c.hostId).tunnelIp, given);
});

test("an agent's network status shows on its host without a new revision; a hostile one is refused by field", async () => {
  const d = await t.register('tun-d', {}, '192.0.2.34');
  const env = t.srv.store.mustGet('host', d.hostId).environmentId;
  const rev = t.srv.store.revision(env);
  const status = { mode: 'ipsec', backend: 'libipsec', mtu: 1350, peers: [{ hostId: '1h99', reachable: false, since: new Date().toISOString(), lastError: 'timeout after 2000 ms' }] };
  const r = await request(t.url, 'POST', '/v1/agent/report', { network: status }, d);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const h = (await t.api<HostRec>('GET', `/v1/hosts/${d.hostId}`)).body;
  assert.deepEqual(h.network, status);
  assert.equal(t.srv.store.revision(env), rev, 'observed state: no revision, no agent woken');
  const listed = (await t.api<{ data: HostRec[] }>('GET', '/v1/hosts')).body.data.find((x) => x.id === d.hostId);
  assert.deepEqual(listed?.network, status);

  for (const [bad, field] of [
    [{ ...status, mode: 'gre' }, 'network.mode'],
    [{ ...status, peers: [{ hostId: 'x', reachable: 'yes', since: '' }] }, 'network.peers.0.reachable'],
    [{ ...status, extra: 1 }, 'network'],
    [{ ...status, peers: Array.from({ length: 5000 }, () => status.peers[0]) }, 'network.peers'],
  ] as const) {
    const res = await request<{ fieldName?: string; message: string }>(t.url, 'POST', '/v1/agent/report', { network: bad }, d);
    assert.equal(res.status, 422, JSON.stringify(res.body));
    assert.ok((res.body.fieldName ?? res.body.message).includes(field), `${field}: ${JSON.stringify(res.body)}`);
  }
  assert.deepEqual((await t.api<HostRec>('GET', `/v1/hosts/${d.hostId}`)).body.network, status, 'nothing stored from a refused report');
});

test('certificate mode: the CA signs a host key for CN=<hostId> only, a revoked host gets none and its peers see it revoked', async () => {
  const e = await t.register('cert-e', {}, '192.0.2.35');
  const envId = t.srv.store.mustGet('host', e.hostId).environmentId;
  const psk = await t.api<{ code: string; message: string }>('POST', `/v1/hosts/${e.hostId}?action=revokecertificate`);
  assert.equal(psk.status, 409, 'nothing to revoke in PSK mode');
  assert.match(psk.body.message, /pre-shared key/);
  assert.equal((await t.api('PUT', `/v1/environments/${envId}`, { network: { ipsecAuth: 'cert' } })).status, 200);

  const keys = forge.pki.rsa.generateKeyPair({ bits: 2048, workers: -1 });
  const csr = forge.pki.createCertificationRequest();
  csr.publicKey = keys.publicKey;
  csr.setSubject([{ name: 'commonName', value: 'someone-else' }]);
  csr.sign(keys.privateKey, forge.md.sha256.create());
  const pem = forge.pki.certificationRequestToPem(csr);
  const signed = await request<{ certificate: string; ca: string; identity: string }>(t.url, 'POST', '/v1/agent/certificate', { csr: pem }, e);
  assert.equal(signed.status, 200, JSON.stringify(signed.body));
  const cert = forge.pki.certificateFromPem(signed.body.certificate);
  const ca = forge.pki.certificateFromPem(signed.body.ca);
  assert.ok(ca.verify(cert), 'signed by the environment CA');
  assert.equal((cert.subject.getField('CN') as { value: string }).value, e.hostId, 'the subject is the host, not what the CSR asked');
  assert.equal(signed.body.identity, `O=drover, CN=${e.hostId}`);
  assert.equal(forge.pki.publicKeyToPem(cert.publicKey), forge.pki.publicKeyToPem(keys.publicKey));
  const again = await request<{ ca: string }>(t.url, 'POST', '/v1/agent/certificate', { csr: pem }, e);
  assert.equal(again.body.ca, signed.body.ca, 'one CA per environment');

  // A CSR that is not one, or not signed by its own key, is refused by field.
  const bad = await request<{ fieldName?: string }>(t.url, 'POST', '/v1/agent/certificate', { csr: 'not a csr' }, e);
  assert.equal(bad.status, 422);
  assert.equal(bad.body.fieldName, 'csr');
  const other = forge.pki.rsa.generateKeyPair({ bits: 2048, workers: -1 });
  const forged = forge.pki.createCertificationRequest();
  forged.publicKey = other.publicKey;
  forged.sign(keys.privateKey, forge.md.sha256.create());
  assert.equal((await request(t.url, 'POST', '/v1/agent/certificate', { csr: forge.pki.certificationRequestToPem(forged) }, e)).status, 422);
  assert.equal((await t.api('POST', '/v1/agent/certificate', { csr: pem })).status, 403, 'for agents only');

  const rev = t.srv.store.revision(envId);
  const revoked = await t.api<{ certificateRevoked?: boolean; actions: Record<string, string> }>('POST', `/v1/hosts/${e.hostId}?action=revokecertificate`);
  assert.equal(revoked.status, 200, JSON.stringify(revoked.body));
  assert.equal(revoked.body.certificateRevoked, true);
  assert.equal(revoked.body.actions.revokecertificate, undefined);
  assert.ok(t.srv.store.revision(envId) > rev, 'a new revision: the peers drop the host');
  const refused = await request<{ message: string }>(t.url, 'POST', '/v1/agent/certificate', { csr: pem }, e);
  assert.equal(refused.status, 403);
  assert.match(refused.body.message, /revoked/);
  await t.api('PUT', `/v1/environments/${envId}`, { network: { ipsecAuth: 'psk' } });
});
