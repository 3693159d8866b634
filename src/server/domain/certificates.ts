// Certificates for balancers: PEM certificate + key, checked to belong together, with their names and
// expiry read out for the API. The key is stored and synced to agents but never returned by the API.
import forge from 'node-forge';
import type { Store } from '../db/store.js';
import { nowIso } from '../db/store.js';
import type { Certificate } from '../../model/resources.js';
import { ConflictError, ValidationError } from '../../common/errors.js';

export interface CertificateInput {
  environmentId: string;
  name: string;
  description?: string;
  cert: string;
  key: string;
  certChain?: string;
}

export function inspectCertificate(certPem: string, keyPem: string) {
  let cert: forge.pki.Certificate;
  try {
    cert = forge.pki.certificateFromPem(certPem);
  } catch (err) {
    throw new ValidationError('InvalidCertificate', `cert is not a PEM X.509 certificate (${(err as Error).message})`, 'cert');
  }
  let key: forge.pki.rsa.PrivateKey;
  try {
    key = forge.pki.privateKeyFromPem(keyPem) as forge.pki.rsa.PrivateKey;
  } catch (err) {
    throw new ValidationError('InvalidKey', `key is not a PEM RSA private key (${(err as Error).message})`, 'key');
  }
  const pub = cert.publicKey as forge.pki.rsa.PublicKey;
  if (!pub.n || pub.n.compareTo(key.n) !== 0) {
    throw new ValidationError('KeyMismatch', 'the key does not belong to the certificate', 'key');
  }
  const cn = cert.subject.getField('CN') as { value: string } | null;
  const san = cert.getExtension('subjectAltName') as { altNames?: { type: number; value?: string; ip?: string }[] } | null;
  const der = forge.asn1.toDer(forge.pki.certificateToAsn1(cert)).getBytes();
  const fp = forge.md.sha256.create().update(der).digest().toHex().match(/../g)?.join(':') ?? '';
  return {
    commonName: cn?.value,
    subjectAlternativeNames: (san?.altNames ?? []).map((a) => a.value ?? a.ip ?? '').filter(Boolean),
    expiresAt: cert.validity.notAfter.toISOString(),
    fingerprint: fp,
  };
}

export function createCertificate(store: Store, input: CertificateInput): Certificate {
  const info = inspectCertificate(input.cert, input.key);
  return store.tx((tx) => {
    store.mustGet('environment', input.environmentId);
    if (store.list('certificate', { env_id: input.environmentId, name: input.name }).length) {
      throw new ConflictError('NotUnique', `a certificate named "${input.name}" already exists`, 'name');
    }
    return tx.put('certificate', {
      id: tx.newId('certificate'),
      environmentId: input.environmentId,
      name: input.name,
      description: input.description ?? '',
      cert: input.cert,
      key: input.key,
      ...(input.certChain ? { certChain: input.certChain } : {}),
      ...(info.commonName ? { commonName: info.commonName } : {}),
      subjectAlternativeNames: info.subjectAlternativeNames,
      expiresAt: info.expiresAt,
      fingerprint: info.fingerprint,
      created: nowIso(),
    });
  });
}

export function removeCertificate(store: Store, id: string): void {
  store.tx((tx) => {
    const c = store.mustGet('certificate', id);
    const users = store
      .list('service', { env_id: c.environmentId })
      .filter((s) => s.lbConfig && (s.lbConfig.certificateIds.includes(id) || s.lbConfig.defaultCertificateId === id));
    if (users.length) {
      throw new ConflictError('CertificateInUse', `used by balancers ${users.map((s) => s.name).join(', ')}`);
    }
    tx.remove('certificate', id);
  });
}
