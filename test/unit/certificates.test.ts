// Certificate uploads (src/server/domain/certificates.ts): chain order checked with node-forge, a full-chain
// `cert` split into leaf + chain, expired certificates refused, EC keys refused with a clear message,
// expiry shown at read time.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import forge from 'node-forge';
import { certificateExpiry, inspectCertificate } from '../../src/server/domain/certificates.js';
import { ValidationError } from '../../src/common/errors.js';

interface Issued {
  cert: forge.pki.Certificate;
  key: forge.pki.rsa.PrivateKey;
  certPem: string;
  keyPem: string;
}

const DAY = 86400_000;
/** forge writes CRLF PEMs; what is stored has LF line ends. */
const lf = (s: string) => s.replace(/\r\n/g, '\n').trim();

function rsaKey(): forge.pki.rsa.PrivateKey {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return forge.pki.privateKeyFromPem(privateKey.export({ type: 'pkcs1', format: 'pem' }).toString()) as forge.pki.rsa.PrivateKey;
}

function issue(cn: string, issuer: Issued | undefined, opts: { ca?: boolean; notAfter?: Date; notBefore?: Date } = {}): Issued {
  const key = rsaKey();
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.setRsaPublicKey(key.n, key.e);
  cert.serialNumber = `01${randomBytes(8).toString('hex')}`;
  cert.validity.notBefore = opts.notBefore ?? new Date(Date.now() - DAY);
  cert.validity.notAfter = opts.notAfter ?? new Date(Date.now() + 90 * DAY);
  cert.setSubject([{ name: 'commonName', value: cn }]);
  cert.setIssuer(issuer ? issuer.cert.subject.attributes : [{ name: 'commonName', value: cn }]);
  cert.setExtensions([{ name: 'basicConstraints', cA: opts.ca ?? false }]);
  cert.sign(issuer ? issuer.key : key, forge.md.sha256.create());
  return { cert, key, certPem: forge.pki.certificateToPem(cert), keyPem: forge.pki.privateKeyToPem(key) };
}

const root = issue('Test Root', undefined, { ca: true });
const inter = issue('Test Intermediate', root, { ca: true });
const leaf = issue('www.example.test', inter);

function refused(fn: () => unknown, code: string, field: string, message: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ValidationError, `a ValidationError, got ${String(err)}`);
    assert.equal(err.code, code);
    assert.equal(err.fieldName, field);
    assert.match(err.message, message);
    return true;
  });
}

test('a chain in order (leaf issuer first, root last) is accepted and stored split', () => {
  const info = inspectCertificate(leaf.certPem, leaf.keyPem, inter.certPem + root.certPem);
  assert.equal(info.commonName, 'www.example.test');
  assert.equal(info.cert.trim(), lf(leaf.certPem));
  assert.equal((info.certChain ?? '').match(/BEGIN CERTIFICATE/g)?.length, 2);
  assert.ok((info.certChain ?? '').indexOf(lf(inter.certPem)) < (info.certChain ?? '').indexOf(lf(root.certPem)));
  // Without the root is fine too.
  assert.equal(inspectCertificate(leaf.certPem, leaf.keyPem, inter.certPem).certChain?.trim(), lf(inter.certPem));
});

test('a chain in the wrong order is refused, naming the position and the expected order', () => {
  refused(
    () => inspectCertificate(leaf.certPem, leaf.keyPem, root.certPem + inter.certPem),
    'InvalidCertificateChain',
    'certChain',
    /^certChain #1 is in the wrong place: cert \(CN=www\.example\.test\) is issued by CN=Test Intermediate, not by certChain #1 \(CN=Test Root\); certChain #2 \(CN=Test Intermediate\) is the issuer of cert: put it right after cert\. Expected order: cert is the leaf, then the intermediates from the leaf's issuer upward/,
  );
  const stranger = issue('Other CA', undefined, { ca: true });
  refused(() => inspectCertificate(leaf.certPem, leaf.keyPem, stranger.certPem), 'InvalidCertificateChain', 'certChain', /certChain #1 is in the wrong place: .*not by certChain #1 \(CN=Other CA\)\. Expected order/);
  // Same name, other key: the signature does not verify.
  const impostor = issue('Test Intermediate', root, { ca: true });
  refused(() => inspectCertificate(leaf.certPem, leaf.keyPem, impostor.certPem), 'InvalidCertificateChain', 'certChain', /certChain #1 \(CN=Test Intermediate\) has the name of the issuer of cert \(CN=www\.example\.test\) but its key did not sign it/);
});

test('a cert field holding leaf + intermediates is split: first the leaf, the rest the chain', () => {
  const info = inspectCertificate(`${leaf.certPem}\n\n${inter.certPem}`, leaf.keyPem);
  assert.equal(info.cert.trim(), lf(leaf.certPem));
  assert.equal(info.certChain?.trim(), lf(inter.certPem));
  // In the wrong order inside cert: the leaf is not first.
  refused(() => inspectCertificate(inter.certPem + leaf.certPem, leaf.keyPem), 'KeyMismatch', 'key', /cert #2 \(CN=www\.example\.test\) is this key's certificate: put the leaf first in cert/);
  refused(() => inspectCertificate(leaf.certPem + root.certPem + inter.certPem, leaf.keyPem), 'InvalidCertificateChain', 'cert', /cert #2 is in the wrong place: cert \(CN=www\.example\.test\) is issued by CN=Test Intermediate, not by cert #2 \(CN=Test Root\); cert #3 \(CN=Test Intermediate\) is the issuer of cert/);
  // Intermediates given twice (in cert and in certChain) are refused rather than guessed at.
  refused(() => inspectCertificate(leaf.certPem + inter.certPem, leaf.keyPem, inter.certPem), 'InvalidCertificateChain', 'certChain', /either after the leaf in cert, or in certChain/);
  refused(() => inspectCertificate(leaf.certPem + leaf.keyPem, leaf.keyPem), 'InvalidCertificate', 'cert', /private key goes in `key`/);
  refused(() => inspectCertificate(leaf.certPem, leaf.keyPem, inter.certPem.repeat(9)), 'InvalidCertificateChain', 'certChain', /holds 9 certificates; at most 8/);
});

test('an expired certificate (leaf or intermediate) is refused; expiry is computed when read', () => {
  const old = issue('old.example.test', undefined, { notBefore: new Date(Date.now() - 20 * DAY), notAfter: new Date(Date.now() - DAY) });
  refused(() => inspectCertificate(old.certPem, old.keyPem), 'CertificateExpired', 'cert', /cert \(CN=old\.example\.test\) expired on .*upload a renewed certificate/);
  const oldInter = issue('Old Intermediate', root, { ca: true, notBefore: new Date(Date.now() - 20 * DAY), notAfter: new Date(Date.now() - DAY) });
  const l2 = issue('l2.example.test', oldInter);
  refused(() => inspectCertificate(l2.certPem, l2.keyPem, oldInter.certPem), 'CertificateExpired', 'certChain', /certChain #1 \(CN=Old Intermediate\) expired/);
  const info = inspectCertificate(leaf.certPem, leaf.keyPem);
  const now = new Date();
  assert.deepEqual(certificateExpiry(info, now), { expired: false, expiresInDays: Math.floor((Date.parse(info.expiresAt) - now.getTime()) / DAY) });
  assert.equal(certificateExpiry(info, new Date(now.getTime() + 89 * DAY)).expiresInDays, 0);
  assert.deepEqual(certificateExpiry(info, new Date(Date.parse(info.expiresAt) + 2.5 * DAY)), { expired: true, expiresInDays: -3 });
});

test('EC keys and certificates are refused with "only RSA keys are supported"; bad PEMs name their field', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dt-ec-'));
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', join(dir, 'k.pem'), '-out', join(dir, 'c.pem'), '-days', '2', '-subj', '/CN=ec.test'], { stdio: 'ignore' });
    const ecCert = readFileSync(join(dir, 'c.pem'), 'utf8');
    const ecKey = readFileSync(join(dir, 'k.pem'), 'utf8');
    refused(() => inspectCertificate(ecCert, ecKey), 'UnsupportedKeyType', 'cert', /public key is EC; only RSA keys are supported/);
    refused(() => inspectCertificate(leaf.certPem, ecKey), 'UnsupportedKeyType', 'key', /key is EC; only RSA keys are supported/);
    const sec1 = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'sec1', format: 'pem' }).toString();
    refused(() => inspectCertificate(leaf.certPem, sec1), 'UnsupportedKeyType', 'key', /only RSA keys are supported/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  refused(() => inspectCertificate('hello', leaf.keyPem), 'InvalidCertificate', 'cert', /no "-----BEGIN CERTIFICATE-----" block/);
  refused(() => inspectCertificate(leaf.certPem, 'nope'), 'InvalidKey', 'key', /not a PEM private key/);
  const enc = forge.pki.encryptRsaPrivateKey(leaf.key, 'secret');
  refused(() => inspectCertificate(leaf.certPem, enc), 'InvalidKey', 'key', /encrypted; upload it without a passphrase/);
  // PKCS#8 RSA keys are read too.
  const p8 = forge.pki.privateKeyInfoToPem(forge.pki.wrapRsaPrivateKey(forge.pki.privateKeyToAsn1(leaf.key)));
  assert.equal(inspectCertificate(leaf.certPem, p8).commonName, 'www.example.test');
});
