// Certificates for balancers: PEM certificate + key (+ intermediates), checked with node-forge before they
// are stored: the key belongs to the certificate, each intermediate issued the certificate before it, and
// nothing has expired. Names and expiry are read out for the API. The key is stored and synced to agents
// (balancers need it) but never returned by the API. A balancer with https/tls rules and no certificate
// gets a self-signed default on its agent (src/agent/capabilities/balancer/selfsigned.ts).
//
// Order of a chain: `cert` holds the leaf; `certChain` the intermediates from the leaf's issuer upward
// (leaf's issuer first, the root last or left out). A `cert` that holds the leaf followed by its
// intermediates (a full-chain file, as many CAs hand them out) is accepted: the first certificate is the
// leaf, the rest is the chain — in that case `certChain` must be left empty, so a chain is never given
// twice. What is stored is split the same way: `cert` = the leaf only, `certChain` = the intermediates.
//
// Keys: RSA only (node-forge reads RSA keys only). An EC (or other) key or certificate is refused with a
// message saying so, never with a 500. Encrypted keys are refused too (HAProxy would ask for a passphrase).
import { X509Certificate, createPrivateKey } from 'node:crypto';
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

/** `PUT /v1/certificates/<id>`: a replacement pair (validated like a new one); the chain is replaced too. */
export interface CertificateUpdate {
  name?: string;
  description?: string;
  cert: string;
  key: string;
  certChain?: string;
}

export interface CertificateInfo {
  commonName: string | undefined;
  subjectAlternativeNames: string[];
  expiresAt: string;
  fingerprint: string;
  /** The leaf only, as given (PEM). */
  cert: string;
  /** The intermediates in order (PEM), when there are any. */
  certChain: string | undefined;
  /** The private key block only (PEM). */
  key: string;
}

const DAY_MS = 24 * 3600 * 1000;
/** Intermediates accepted after the leaf (real chains have one to three). */
const MAX_CHAIN = 8;
const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g;

interface PemBlock {
  type: string;
  text: string;
}

function pemBlocks(text: string): PemBlock[] {
  return [...text.replace(/\r\n?/g, '\n').matchAll(PEM_BLOCK)].map((m) => ({ type: m[1] ?? '', text: m[0] }));
}

interface ParsedCert {
  /** Where the user put it, for messages: `cert`, `cert #2`, `certChain #1`. */
  label: string;
  pem: string;
  cert: forge.pki.Certificate;
}

function ordinal(n: number): string {
  return `#${n}`;
}

/** The name of a non-RSA key type, read with node:crypto (node-forge cannot read them). */
function keyTypeOfCert(pem: string): string | undefined {
  try {
    return new X509Certificate(pem).publicKey.asymmetricKeyType;
  } catch {
    return undefined;
  }
}

function keyTypeOfKey(pem: string): string | undefined {
  try {
    return createPrivateKey(pem).asymmetricKeyType;
  } catch {
    return undefined;
  }
}

const ONLY_RSA = 'only RSA keys are supported (issue an RSA certificate, e.g. `openssl req -newkey rsa:2048 …`)';

function nameOf(n: forge.pki.Certificate['subject']): string {
  const cn = n.getField('CN') as { value: string } | null;
  if (cn) return `CN=${cn.value}`;
  return n.attributes.map((a) => `${a.shortName ?? a.name ?? a.type}=${String(a.value)}`).join(', ') || '(no name)';
}

function subjectOf(c: forge.pki.Certificate): string {
  return nameOf(c.subject);
}

function parseCerts(text: string, field: 'cert' | 'certChain', now: Date): ParsedCert[] {
  const blocks = pemBlocks(text);
  const other = blocks.find((b) => b.type !== 'CERTIFICATE');
  if (other) {
    const hint = /PRIVATE KEY/.test(other.type) ? '; the private key goes in `key`' : '';
    throw new ValidationError('InvalidCertificate', `${field} holds a "${other.type}" PEM block: only CERTIFICATE blocks belong there${hint}`, field);
  }
  if (blocks.length === 0 && text.trim() !== '') {
    throw new ValidationError('InvalidCertificate', `${field} is not a PEM X.509 certificate (no "-----BEGIN CERTIFICATE-----" block found)`, field);
  }
  return blocks.map((b, i) => {
    const label = field === 'cert' ? (i === 0 ? 'cert' : `cert ${ordinal(i + 1)}`) : `certChain ${ordinal(i + 1)}`;
    let cert: forge.pki.Certificate;
    try {
      cert = forge.pki.certificateFromPem(b.text);
    } catch (err) {
      const type = keyTypeOfCert(b.text);
      if (type && type !== 'rsa' && type !== 'rsa-pss') {
        throw new ValidationError('UnsupportedKeyType', `${label}: the certificate's public key is ${type.toUpperCase()}; ${ONLY_RSA}`, field);
      }
      throw new ValidationError('InvalidCertificate', `${label} is not a readable PEM X.509 certificate (${(err as Error).message})`, field);
    }
    if (cert.validity.notAfter.getTime() <= now.getTime()) {
      throw new ValidationError(
        'CertificateExpired',
        `${label} (${subjectOf(cert)}) expired on ${cert.validity.notAfter.toISOString()}; upload a renewed certificate`,
        field,
      );
    }
    return { label, pem: b.text, cert };
  });
}

function parseKey(text: string): { pem: string; key: forge.pki.rsa.PrivateKey } {
  const keys = pemBlocks(text).filter((b) => /PRIVATE KEY$/.test(b.type));
  if (keys.length === 0) {
    throw new ValidationError('InvalidKey', 'key is not a PEM private key (no "-----BEGIN … PRIVATE KEY-----" block found)', 'key');
  }
  if (keys.length > 1) throw new ValidationError('InvalidKey', `key holds ${keys.length} private keys; give exactly one`, 'key');
  const block = keys[0] as PemBlock;
  if (block.type === 'ENCRYPTED PRIVATE KEY' || /Proc-Type:\s*4,ENCRYPTED/.test(block.text)) {
    throw new ValidationError('InvalidKey', 'key is encrypted; upload it without a passphrase (e.g. `openssl rsa -in key.pem -out plain.pem`)', 'key');
  }
  if (block.type === 'EC PRIVATE KEY' || block.type === 'DSA PRIVATE KEY') {
    throw new ValidationError('UnsupportedKeyType', `key is ${block.type.split(' ')[0] ?? ''}; ${ONLY_RSA}`, 'key');
  }
  try {
    return { pem: block.text, key: forge.pki.privateKeyFromPem(block.text) as forge.pki.rsa.PrivateKey };
  } catch (err) {
    const type = keyTypeOfKey(block.text);
    if (type && type !== 'rsa' && type !== 'rsa-pss') {
      throw new ValidationError('UnsupportedKeyType', `key is ${type.toUpperCase()}; ${ONLY_RSA}`, 'key');
    }
    throw new ValidationError('InvalidKey', `key is not a readable PEM RSA private key (${(err as Error).message})`, 'key');
  }
}

/** Why `parent` did not issue `child` (a sentence about both), or undefined when it did. */
function notIssuedBy(child: ParsedCert, parent: ParsedCert): string | undefined {
  const c = `${child.label} (${subjectOf(child.cert)})`;
  const p = `${parent.label} (${subjectOf(parent.cert)})`;
  if (!parent.cert.issued(child.cert)) return `${c} is issued by ${nameOf(child.cert.issuer)}, not by ${p}`;
  try {
    if (parent.cert.verify(child.cert)) return undefined;
  } catch (err) {
    // node-forge throws on a signature made with another key ("Encryption block is invalid") as well as
    // on algorithms it does not know.
    const m = (err as Error).message;
    if (/unknown|could not compute|not supported/i.test(m)) return `the signature of ${p} on ${c} could not be checked (${m})`;
  }
  return `${p} has the name of the issuer of ${c} but its key did not sign it (another CA certificate with the same name?)`;
}

/**
 * Parses and checks a certificate upload (see the file comment for the order and what is accepted);
 * throws a ValidationError naming the field and what to do. `now` is for tests.
 */
export function inspectCertificate(certPem: string, keyPem: string, chainPem?: string, now: Date = new Date()): CertificateInfo {
  const inCert = parseCerts(certPem, 'cert', now);
  const leaf = inCert[0];
  if (!leaf) throw new ValidationError('InvalidCertificate', 'cert is empty: give the PEM X.509 certificate', 'cert');
  const inChain = chainPem?.trim() ? parseCerts(chainPem, 'certChain', now) : [];
  if (inCert.length > 1 && inChain.length > 0) {
    throw new ValidationError(
      'InvalidCertificateChain',
      `cert holds ${inCert.length} certificates (the leaf followed by intermediates) and certChain is given too; ` +
        'give the intermediates once: either after the leaf in cert, or in certChain',
      'certChain',
    );
  }
  const { pem: keyBlock, key } = parseKey(keyPem);
  const belongs = (c: ParsedCert) => {
    const pub = c.cert.publicKey as forge.pki.rsa.PublicKey;
    return !!pub.n && pub.n.compareTo(key.n) === 0 && pub.e.compareTo(key.e) === 0;
  };
  if (!belongs(leaf)) {
    const other = [...inCert, ...inChain].find(belongs);
    const hint = other ? `; ${other.label} (${subjectOf(other.cert)}) is this key's certificate: put the leaf first in cert` : ': give the key the certificate was issued for';
    throw new ValidationError('KeyMismatch', `the key does not belong to the certificate (${subjectOf(leaf.cert)})${hint}`, 'key');
  }
  const chain = [...inCert.slice(1), ...inChain];
  if (chain.length > MAX_CHAIN) {
    throw new ValidationError('InvalidCertificateChain', `the chain holds ${chain.length} certificates; at most ${MAX_CHAIN} intermediates are accepted`, inCert.length > 1 ? 'cert' : 'certChain');
  }
  const chainField = inCert.length > 1 ? 'cert' : 'certChain';
  const list = [leaf, ...chain];
  for (let i = 1; i < list.length; i++) {
    const child = list[i - 1] as ParsedCert;
    const parent = list[i] as ParsedCert;
    const why = notIssuedBy(child, parent);
    if (!why) continue;
    const actual = list.find((c, j) => j !== i && j !== i - 1 && !notIssuedBy(child, c));
    const hint = actual ? `; ${actual.label} (${subjectOf(actual.cert)}) is the issuer of ${child.label}: put it right after ${child.label}` : '';
    throw new ValidationError(
      'InvalidCertificateChain',
      `${parent.label} is in the wrong place: ${why}${hint}. ` +
        "Expected order: cert is the leaf, then the intermediates from the leaf's issuer upward (each one the issuer of the one before it; the root last or left out)",
      chainField,
    );
  }

  const cn = leaf.cert.subject.getField('CN') as { value: string } | null;
  const san = leaf.cert.getExtension('subjectAltName') as { altNames?: { type: number; value?: string; ip?: string }[] } | null;
  const der = forge.asn1.toDer(forge.pki.certificateToAsn1(leaf.cert)).getBytes();
  const fp = forge.md.sha256.create().update(der).digest().toHex().match(/../g)?.join(':') ?? '';
  return {
    commonName: cn?.value,
    subjectAlternativeNames: (san?.altNames ?? []).map((a) => a.value ?? a.ip ?? '').filter(Boolean),
    expiresAt: leaf.cert.validity.notAfter.toISOString(),
    fingerprint: fp,
    cert: `${leaf.pem}\n`,
    certChain: chain.length ? `${chain.map((c) => c.pem).join('\n')}\n` : undefined,
    key: `${keyBlock}\n`,
  };
}

/** What the API shows besides the stored record: computed when read, never stored. */
export function certificateExpiry(c: { expiresAt?: string }, now: Date = new Date()): { expired?: boolean; expiresInDays?: number } {
  const at = c.expiresAt ? Date.parse(c.expiresAt) : NaN;
  if (Number.isNaN(at)) return {};
  return { expired: at <= now.getTime(), expiresInDays: Math.floor((at - now.getTime()) / DAY_MS) };
}

function stored(info: CertificateInfo) {
  return {
    cert: info.cert,
    key: info.key,
    ...(info.certChain ? { certChain: info.certChain } : {}),
    ...(info.commonName ? { commonName: info.commonName } : {}),
    subjectAlternativeNames: info.subjectAlternativeNames,
    expiresAt: info.expiresAt,
    fingerprint: info.fingerprint,
  };
}

export function createCertificate(store: Store, input: CertificateInput): Certificate {
  const info = inspectCertificate(input.cert, input.key, input.certChain);
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
      ...stored(info),
      created: nowIso(),
    });
  });
}

/**
 * Replaces a certificate's PEMs (validated like a new upload; an invalid one changes nothing). The write
 * bumps the environment's revision, so agents get the new record and their balancers the new files
 * (HAProxy takes them through its runtime API, without a reload: src/agent/capabilities/balancer/apply.ts).
 * An omitted certChain means none (the intermediates go with the certificate they belong to).
 */
export function updateCertificate(store: Store, id: string, input: CertificateUpdate): Certificate {
  store.mustGet('certificate', id);
  const info = inspectCertificate(input.cert, input.key, input.certChain);
  return store.tx((tx) => {
    const c = store.mustGet('certificate', id);
    const name = input.name ?? c.name;
    if (name !== c.name && store.list('certificate', { env_id: c.environmentId, name }).some((o) => o.id !== id)) {
      throw new ConflictError('NotUnique', `a certificate named "${name}" already exists`, 'name');
    }
    const { certChain: _old, commonName: _cn, ...keep } = c;
    return tx.put('certificate', {
      ...keep,
      name,
      description: input.description ?? c.description,
      ...stored(info),
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
