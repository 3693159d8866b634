// A self-signed default certificate for a balancer that serves https/tls without any certificate of its
// own (the original generated one too): RSA 2048 from node:crypto (fast, native), the X.509 wrapping
// with node-forge. Not pure: the controller generates it once per balancer service and caches it.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import forge from 'node-forge';
import type { BalancerCertificate } from './render.js';

/** Valid 10 years from now, CN = the balancer's name (clients must not trust it: it is a fallback). */
export function selfSignedCertificate(name: string, now: Date = new Date()): BalancerCertificate {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const keyPem = privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();
  const key = forge.pki.privateKeyFromPem(keyPem) as forge.pki.rsa.PrivateKey;
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.setRsaPublicKey(key.n, key.e);
  // A positive serial (leading byte < 0x80).
  cert.serialNumber = `01${randomBytes(15).toString('hex')}`;
  cert.validity.notBefore = new Date(now.getTime() - 60_000);
  cert.validity.notAfter = new Date(now.getTime() + 10 * 365 * 24 * 3600 * 1000);
  const cn = name.replace(/[^A-Za-z0-9.-]/g, '-').slice(0, 64) || 'balancer';
  const attrs = [{ name: 'commonName', value: cn }, { name: 'organizationName', value: 'drover self-signed balancer default' }];
  cert.setSubject(attrs);
  cert.setIssuer(attrs);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
    { name: 'extKeyUsage', serverAuth: true },
  ]);
  cert.sign(key, forge.md.sha256.create());
  return { name: 'drover-default', cert: forge.pki.certificateToPem(cert), key: keyPem };
}
