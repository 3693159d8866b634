// The environment's IPsec certificate authority (certificate mode of the managed network): one CA per
// environment, made on first use and kept in the settings table; each host's agent sends a CSR for a
// key it made itself (the private key never leaves the host) and gets back a certificate whose subject is
// `CN=<hostId>` whatever the CSR asked for, plus the CA certificate its charon trusts. A revoked host
// (`POST /v1/hosts/<id>?action=revokecertificate`) gets no new certificate, and its peers drop it: they
// unload its connection, so charon finds no configuration for it and refuses its IKE_AUTH.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import forge from 'node-forge';
import type { Store } from '../db/store.js';
import { ConflictError, ForbiddenError, ValidationError } from '../../common/errors.js';
import type { Host } from '../../model/resources.js';

interface StoredCa {
  certPem: string;
  keyPem: string;
}

const CA_YEARS = 10;
const HOST_CERT_DAYS = 825;
/** A CSR larger than this is not a CSR (a 4096-bit RSA CSR is about 1.7 KB). */
const MAX_CSR_CHARS = 16 * 1024;

function settingsKey(envId: string): string {
  return `ipsec-ca:${envId}`;
}

/** The environment's CA, made (RSA 2048, self-signed, 10 years) the first time it is needed. */
export function environmentCa(store: Store, envId: string): StoredCa {
  const get = store.db.prepare('SELECT value FROM settings WHERE key = ?');
  const row = get.get(settingsKey(envId)) as { value: string } | undefined;
  if (row) return JSON.parse(row.value) as StoredCa;
  const env = store.mustGet('environment', envId);
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const key = forge.pki.privateKeyFromPem(privateKey.export({ type: 'pkcs1', format: 'pem' }).toString());
  const pub = forge.pki.publicKeyFromPem(publicKey.export({ type: 'spki', format: 'pem' }).toString());
  const cert = forge.pki.createCertificate();
  cert.publicKey = pub;
  cert.serialNumber = serial();
  cert.validity.notBefore = new Date(Date.now() - 60_000);
  cert.validity.notAfter = new Date(Date.now() + CA_YEARS * 365 * 86_400_000);
  const subject = [
    { name: 'organizationName', value: 'drover' },
    { name: 'commonName', value: `drover IPsec CA ${env.name} (${env.id})` },
  ];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(key, forge.md.sha256.create());
  const ca: StoredCa = { certPem: forge.pki.certificateToPem(cert), keyPem: forge.pki.privateKeyToPem(key) };
  // INSERT OR IGNORE: two first requests at once keep the first CA; both answer with what is stored.
  store.db.prepare('INSERT OR IGNORE INTO settings (key, value) VALUES (?, ?)').run(settingsKey(envId), JSON.stringify(ca));
  return JSON.parse((get.get(settingsKey(envId)) as { value: string }).value) as StoredCa;
}

function serial(): string {
  // Positive (top bit clear), 16 bytes: unique without a counter.
  const b = randomBytes(16);
  b[0] = (b[0] as number) & 0x7f;
  return b.toString('hex');
}

export interface IssuedHostCertificate {
  certificate: string;
  ca: string;
  /** The identity charon uses for this host: the certificate's subject. */
  identity: string;
}

/** Signs the CSR of `host`'s agent: the subject is the host's, the key the CSR's (checked by its signature). */
export function issueHostCertificate(store: Store, host: Host, csrPem: string): IssuedHostCertificate {
  if (host.certificateRevoked) {
    throw new ForbiddenError(`the IPsec certificate of host ${host.id} was revoked; remove the host and register it again to get a new identity`);
  }
  if (typeof csrPem !== 'string' || csrPem.length > MAX_CSR_CHARS) {
    throw new ValidationError('InvalidCsr', `csr must be a PEM certificate request of at most ${MAX_CSR_CHARS} characters`, 'csr');
  }
  let csr: forge.pki.CertificateSigningRequest;
  try {
    csr = forge.pki.certificationRequestFromPem(csrPem);
  } catch (err) {
    throw new ValidationError('InvalidCsr', `csr is not a PEM certificate request (${(err as Error).message})`, 'csr');
  }
  let verified = false;
  try {
    verified = csr.publicKey !== null && csr.verify();
  } catch {
    // forge throws on some malformed signatures: the same answer as a wrong one
  }
  if (!verified) throw new ValidationError('InvalidCsr', 'the CSR signature does not verify (it must be signed by its own key)', 'csr');
  const pub = csr.publicKey as forge.pki.rsa.PublicKey;
  if (!pub.n || pub.n.bitLength() < 2048) throw new ValidationError('InvalidCsr', 'the CSR key must be RSA of at least 2048 bits', 'csr');
  const ca = environmentCa(store, host.environmentId);
  const caCert = forge.pki.certificateFromPem(ca.certPem);
  const caKey = forge.pki.privateKeyFromPem(ca.keyPem);
  const cert = forge.pki.createCertificate();
  cert.publicKey = pub;
  cert.serialNumber = serial();
  cert.validity.notBefore = new Date(Date.now() - 60_000);
  cert.validity.notAfter = new Date(Date.now() + HOST_CERT_DAYS * 86_400_000);
  cert.setSubject([
    { name: 'organizationName', value: 'drover' },
    { name: 'commonName', value: host.id },
  ]);
  cert.setIssuer(caCert.subject.attributes);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'subjectAltName', altNames: [{ type: 2, value: host.id }] },
  ]);
  cert.sign(caKey, forge.md.sha256.create());
  return { certificate: forge.pki.certificateToPem(cert), ca: ca.certPem, identity: hostIdentity(host.id) };
}

/** charon's identity of a host in certificate mode (the subject of its certificate). */
export function hostIdentity(hostId: string): string {
  return `O=drover, CN=${hostId}`;
}

/** Revokes a host's IPsec certificate: its peers drop it (a new revision), it gets no new one. */
export function revokeHostCertificate(store: Store, id: string): Host {
  return store.tx((tx) => {
    const h = store.mustGet('host', id);
    const env = store.mustGet('environment', h.environmentId);
    if (env.network.ipsecAuth !== 'cert') {
      throw new ConflictError('NotCertificateMode', `environment ${env.id} authenticates its hosts with the pre-shared key (network.ipsecAuth is "${env.network.ipsecAuth}"): there is no certificate to revoke`);
    }
    if (h.certificateRevoked) return h;
    return tx.put('host', { ...h, certificateRevoked: true });
  });
}
