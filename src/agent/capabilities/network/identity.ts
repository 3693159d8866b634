// This host's IPsec identity in certificate mode: an RSA key made here (it never leaves the host), and
// the certificate the control plane's CA signed for it (src/server/domain/host-ca.ts), kept in the
// agent's data directory (0600) so a restart does not need the control plane. A certificate that is
// missing, expires within a month, or was issued by another CA than the one the control plane now
// answers with is requested again.
import { generateKeyPairSync } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import forge from 'node-forge';
import { z } from 'zod';
import { writeFileAtomic } from '../../../common/atomic-file.js';

const Stored = z.object({ keyPem: z.string(), certPem: z.string(), caPem: z.string() });
type Stored = z.infer<typeof Stored>;
const Signed = z.object({ certificate: z.string(), ca: z.string() }).loose();

const RENEW_BEFORE_MS = 30 * 86_400_000;

export interface IdentityOptions {
  /** The identity file (in the agent's data directory). */
  path: string;
  /** Sends the CSR to the control plane (Agent.signCertificate). */
  sign(csr: string): Promise<unknown>;
}

function usable(s: Stored): boolean {
  try {
    const cert = forge.pki.certificateFromPem(s.certPem);
    const ca = forge.pki.certificateFromPem(s.caPem);
    return cert.validity.notAfter.getTime() - Date.now() > RENEW_BEFORE_MS && ca.verify(cert);
  } catch {
    return false;
  }
}

export function identityProvider(o: IdentityOptions): () => Promise<{ certPem: string; keyPem: string; caPem: string }> {
  let cached: Stored | undefined;
  return async () => {
    if (cached && usable(cached)) return cached;
    let keyPem: string | undefined;
    try {
      const s = Stored.parse(JSON.parse(await readFile(o.path, 'utf8')));
      if (usable(s)) return (cached = s);
      keyPem = s.keyPem;
    } catch {
      // none yet, or unreadable: make a new key below
    }
    if (!keyPem) {
      const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
      keyPem = privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();
    }
    const key = forge.pki.privateKeyFromPem(keyPem) as forge.pki.rsa.PrivateKey;
    const csr = forge.pki.createCertificationRequest();
    csr.publicKey = forge.pki.setRsaPublicKey(key.n, key.e);
    csr.setSubject([{ name: 'commonName', value: 'drover host' }]);
    csr.sign(key, forge.md.sha256.create());
    const signed = Signed.parse(await o.sign(forge.pki.certificationRequestToPem(csr)));
    const next: Stored = { keyPem, certPem: signed.certificate, caPem: signed.ca };
    await writeFileAtomic(o.path, JSON.stringify(next), 0o600);
    return (cached = next);
  };
}
