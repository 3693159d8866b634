// Certificates through the HTTP API: chains checked in order, a full-chain `cert` split, expired and EC
// uploads refused with 422 (never a 500), expiry shown at read time, and `PUT /v1/certificates/<id>`
// replacing the PEMs (validated like creation; an invalid PUT changes nothing) with the new record
// reaching agents through the environment's revision (what makes balancers rotate the certificate).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import forge from 'node-forge';
import { cleanup, request, startTestServer, type TestServer } from '../helpers/server.js';
import { defaultEnvironment } from '../../src/server/domain/environments.js';

const DAY = 86400_000;
type Err = { type: string; status: number; code: string; fieldName?: string; message: string };
type Cert = {
  id: string;
  name: string;
  cert: string;
  certChain?: string;
  key?: string;
  commonName?: string;
  fingerprint: string;
  expiresAt: string;
  expired: boolean;
  expiresInDays: number;
  description: string;
};

interface Issued {
  cert: forge.pki.Certificate;
  key: forge.pki.rsa.PrivateKey;
  certPem: string;
  keyPem: string;
}

function issue(cn: string, issuer?: Issued, opts: { ca?: boolean; days?: number } = {}): Issued {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const key = forge.pki.privateKeyFromPem(privateKey.export({ type: 'pkcs1', format: 'pem' }).toString()) as forge.pki.rsa.PrivateKey;
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.setRsaPublicKey(key.n, key.e);
  cert.serialNumber = `01${randomBytes(8).toString('hex')}`;
  cert.validity.notBefore = new Date(Date.now() - 30 * DAY);
  cert.validity.notAfter = new Date(Date.now() + (opts.days ?? 90) * DAY);
  cert.setSubject([{ name: 'commonName', value: cn }]);
  cert.setIssuer(issuer ? issuer.cert.subject.attributes : [{ name: 'commonName', value: cn }]);
  cert.setExtensions([{ name: 'basicConstraints', cA: opts.ca ?? false }]);
  cert.sign(issuer ? issuer.key : key, forge.md.sha256.create());
  return { cert, key, certPem: forge.pki.certificateToPem(cert), keyPem: forge.pki.privateKeyToPem(key) };
}

let t: TestServer;
const sfx = randomBytes(3).toString('hex');
const root = issue('API Root', undefined, { ca: true });
const inter = issue('API Intermediate', root, { ca: true });
const leaf = issue('a.example.test', inter);
const leaf2 = issue('a.example.test', inter, { days: 200 });

before(async () => {
  t = await startTestServer();
});
after(async () => {
  await t.close();
  cleanup(t.dir);
});

const revision = () => t.srv.store.revision(defaultEnvironment(t.srv.store).id);

test('upload: chain in order accepted, expiry shown, key hidden; wrong order, expired and EC refused with 422', async () => {
  const ok = await t.api<Cert>('POST', '/v1/certificates', { name: `chain-${sfx}`, cert: leaf.certPem, key: leaf.keyPem, certChain: inter.certPem + root.certPem });
  assert.equal(ok.status, 201, JSON.stringify(ok.body));
  assert.equal(ok.body.key, undefined);
  assert.equal(ok.body.expired, false);
  assert.ok(ok.body.expiresInDays >= 88 && ok.body.expiresInDays <= 90, `expiresInDays ${ok.body.expiresInDays}`);
  assert.equal(ok.body.certChain?.match(/BEGIN CERTIFICATE/g)?.length, 2);

  const full = await t.api<Cert>('POST', '/v1/certificates', { name: `full-${sfx}`, cert: leaf.certPem + inter.certPem, key: leaf.keyPem });
  assert.equal(full.status, 201, JSON.stringify(full.body));
  assert.equal(full.body.cert.match(/BEGIN CERTIFICATE/g)?.length, 1, 'the leaf alone is stored as cert');
  assert.equal(full.body.certChain?.match(/BEGIN CERTIFICATE/g)?.length, 1, 'the rest is stored as the chain');

  const wrong = await t.api<Err>('POST', '/v1/certificates', { name: `wrong-${sfx}`, cert: leaf.certPem, key: leaf.keyPem, certChain: root.certPem + inter.certPem });
  assert.equal(wrong.status, 422);
  assert.equal(wrong.body.code, 'InvalidCertificateChain');
  assert.equal(wrong.body.fieldName, 'certChain');
  assert.match(wrong.body.message, /certChain #1 is in the wrong place: .*not by certChain #1 \(CN=API Root\).*Expected order/);

  const old = issue('old.example.test', undefined, { days: -1 });
  const expired = await t.api<Err>('POST', '/v1/certificates', { name: `old-${sfx}`, cert: old.certPem, key: old.keyPem });
  assert.equal(expired.status, 422);
  assert.equal(expired.body.code, 'CertificateExpired');

  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const ecUp = await t.api<Err>('POST', '/v1/certificates', { name: `ec-${sfx}`, cert: leaf.certPem, key: ec });
  assert.equal(ecUp.status, 422);
  assert.equal(ecUp.body.code, 'UnsupportedKeyType');
  assert.match(ecUp.body.message, /only RSA keys are supported/);

  const names = (await t.api<{ data: Cert[] }>('GET', '/v1/certificates')).body.data.map((c) => c.name);
  assert.deepEqual(names.filter((n) => n.endsWith(sfx)).sort(), [`chain-${sfx}`, `full-${sfx}`]);
});

test('a certificate that expired since its upload is shown as expired', async () => {
  const up = await t.api<Cert>('POST', '/v1/certificates', { name: `aging-${sfx}`, cert: leaf.certPem, key: leaf.keyPem });
  assert.equal(up.status, 201);
  // Time passes: the stored expiry is in the past (as it is once the certificate's notAfter has gone by).
  const doc = t.srv.store.mustGet('certificate', up.body.id);
  t.srv.store.tx((tx) => tx.put('certificate', { ...doc, expiresAt: new Date(Date.now() - 3.5 * DAY).toISOString() }));
  const got = await t.api<Cert>('GET', `/v1/certificates/${up.body.id}`);
  assert.equal(got.body.expired, true);
  assert.equal(got.body.expiresInDays, -4);
  const listed = (await t.api<{ data: Cert[] }>('GET', '/v1/certificates')).body.data.find((c) => c.id === up.body.id);
  assert.equal(listed?.expired, true);
  assert.equal((t.srv.store.mustGet('certificate', up.body.id) as Record<string, unknown>).expired, undefined, 'computed when read, not stored');
});

test('PUT replaces the PEMs (agents see the new record); an invalid PUT changes nothing', async () => {
  const created = await t.api<Cert>('POST', '/v1/certificates', { name: `rot-${sfx}`, description: 'first', cert: leaf.certPem, key: leaf.keyPem, certChain: inter.certPem });
  assert.equal(created.status, 201);
  const id = created.body.id;
  const agent = await t.register(`cert-host-${sfx}`);
  const rev0 = revision();
  const stored0 = t.srv.store.mustGet('certificate', id);

  // Invalid bodies: mismatched key, wrong chain, expired, unknown field. Nothing changes.
  const other = issue('b.example.test', inter);
  for (const [body, code] of [
    [{ cert: leaf2.certPem, key: other.keyPem }, 'KeyMismatch'],
    [{ cert: leaf2.certPem, key: leaf2.keyPem, certChain: root.certPem }, 'InvalidCertificateChain'],
    [{ cert: issue('x', undefined, { days: -2 }).certPem, key: leaf2.keyPem }, 'CertificateExpired'],
    [{ cert: leaf2.certPem, key: leaf2.keyPem, environmentId: 'nope' }, 'InvalidBody'],
  ] as const) {
    const bad = await t.api<Err>('PUT', `/v1/certificates/${id}`, body);
    assert.equal(bad.status, 422, JSON.stringify(bad.body));
    if (code !== 'InvalidBody') assert.equal(bad.body.code, code);
  }
  assert.equal(revision(), rev0, 'an invalid PUT does not touch the environment');
  assert.deepEqual(t.srv.store.mustGet('certificate', id), stored0, 'an invalid PUT changes nothing');

  const dup = await t.api<Err>('PUT', `/v1/certificates/${id}`, { name: `chain-${sfx}`, cert: leaf2.certPem, key: leaf2.keyPem });
  assert.equal(dup.status, 409);
  assert.equal(dup.body.fieldName, 'name');
  const missing = await t.api<Err>('PUT', '/v1/certificates/1cert999999', { cert: leaf2.certPem, key: leaf2.keyPem });
  assert.equal(missing.status, 404);
  assert.equal(revision(), rev0);

  const put = await t.api<Cert>('PUT', `/v1/certificates/${id}`, { cert: leaf2.certPem + inter.certPem, key: leaf2.keyPem });
  assert.equal(put.status, 200, JSON.stringify(put.body));
  assert.notEqual(put.body.fingerprint, created.body.fingerprint);
  assert.equal(put.body.name, `rot-${sfx}`);
  assert.equal(put.body.description, 'first', 'an omitted description is kept');
  assert.ok(put.body.expiresInDays >= 198, `expiresInDays ${put.body.expiresInDays}`);
  assert.equal(put.body.key, undefined);
  assert.ok(revision() > rev0, 'the environment revision moved on');

  // What agents get: the new record, key included, at the next revision.
  const w = await request<{ changes: { kind: string; op: string; id: string; data: { fingerprint: string; key?: string; cert: string; certChain?: string } }[] }>(
    t.url, 'GET', `/v1/agent/watch?after=${rev0}&timeout=0`, undefined, agent,
  );
  assert.equal(w.status, 200);
  const ch = w.body.changes.find((c) => c.kind === 'certificate' && c.id === id);
  assert.ok(ch, 'the certificate is among the changes');
  assert.equal(ch.data.fingerprint, put.body.fingerprint);
  assert.match(ch.data.key ?? '', /BEGIN RSA PRIVATE KEY/);
  assert.equal(ch.data.certChain?.match(/BEGIN CERTIFICATE/g)?.length, 1);

  const renamed = await t.api<Cert>('PUT', `/v1/certificates/${id}`, { name: `rot2-${sfx}`, description: 'second', cert: leaf.certPem, key: leaf.keyPem });
  assert.equal(renamed.status, 200);
  assert.equal(renamed.body.name, `rot2-${sfx}`);
  assert.equal(renamed.body.certChain, undefined, 'an omitted chain is replaced by none');
});
