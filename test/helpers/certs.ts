// Test certificates: self-signed, RSA 2048 (the key from node:crypto, fast; the certificate from node-forge).
import { generateKeyPairSync } from 'node:crypto';
import forge from 'node-forge';
import type { BalancerCertificate } from '../../src/agent/capabilities/balancer/render.js';

/** A self-signed certificate for `cn` (and `sans`); the key comes from node:crypto (fast), the certificate from node-forge. */
export function testCertificate(name: string, cn: string, sans: string[] = []): BalancerCertificate {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const key = forge.pki.privateKeyFromPem(keyPem) as forge.pki.rsa.PrivateKey;
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.setRsaPublicKey(key.n, key.e);
  cert.serialNumber = '01';
  cert.validity.notBefore = new Date(Date.now() - 3600_000);
  cert.validity.notAfter = new Date(Date.now() + 7 * 86400_000);
  const attrs = [{ name: 'commonName', value: cn }];
  cert.setSubject(attrs);
  cert.setIssuer(attrs);
  cert.setExtensions([{ name: 'subjectAltName', altNames: [cn, ...sans].map((v) => ({ type: 2, value: v })) }]);
  cert.sign(key, forge.md.sha256.create());
  return { name, cert: forge.pki.certificateToPem(cert), key: keyPem };
}
