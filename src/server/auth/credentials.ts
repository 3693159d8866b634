// API keys and registration tokens.
//
// API keys: an access key (public) and a secret; only SHA-256 of the secret is stored (secrets are 32
// random bytes, so a slow hash adds nothing). Admin keys reach everything; agent keys are issued at
// registration and reach only their environment's agent endpoints.
//
// Registration tokens keep the original's shape, `accessKey:issuedAtMillis:signature`, with the
// signature an HMAC-SHA256 over `accessKey:issuedAtMillis` under a server key (kept in the settings
// table, never sent anywhere). Revoking a token marks its row; the signature alone is not enough.
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Store } from '../db/store.js';
import { nowIso } from '../db/store.js';
import { UnauthorizedError, ValidationError } from '../../common/errors.js';

export type Role = 'admin' | 'agent';

export interface Principal {
  keyId: string;
  role: Role;
  envId: string | null;
  hostId: string | null;
}

export interface ApiKeyRecord {
  id: string;
  name: string;
  role: Role;
  envId: string | null;
  hostId: string | null;
  accessKey: string;
  state: string;
  created: string;
}

export interface IssuedKey extends ApiKeyRecord {
  /** Shown once, never stored. */
  secretKey: string;
}

const hashSecret = (secret: string) => createHash('sha256').update(secret).digest('hex');

function randomKey(bytes: number): string {
  return randomBytes(bytes).toString('base64url');
}

export function createApiKey(
  store: Store,
  opts: { name: string; role: Role; envId?: string | null; hostId?: string | null; accessKey?: string; secretKey?: string },
): IssuedKey {
  const accessKey = opts.accessKey ?? randomKey(12).toUpperCase().replace(/[^A-Z0-9]/g, 'X');
  const secretKey = opts.secretKey ?? randomKey(32);
  if (accessKey.length < 8 || secretKey.length < 16) {
    throw new ValidationError('WeakApiKey', 'an access key needs at least 8 and a secret at least 16 characters');
  }
  const id = store.nextId('1k');
  const created = nowIso();
  store.db
    .prepare(
      `INSERT INTO api_keys (id, name, role, env_id, host_id, access_key, secret_hash, state, created)
       VALUES (?, ?, ?, ?, ?, ?, ?, 'active', ?)`,
    )
    .run(id, opts.name, opts.role, opts.envId ?? null, opts.hostId ?? null, accessKey, hashSecret(secretKey), created);
  return {
    id,
    name: opts.name,
    role: opts.role,
    envId: opts.envId ?? null,
    hostId: opts.hostId ?? null,
    accessKey,
    state: 'active',
    created,
    secretKey,
  };
}

interface ApiKeyRow {
  id: string;
  name: string;
  role: Role;
  env_id: string | null;
  host_id: string | null;
  access_key: string;
  secret_hash: string;
  state: string;
  created: string;
}

const toRecord = (r: ApiKeyRow): ApiKeyRecord => ({
  id: r.id,
  name: r.name,
  role: r.role,
  envId: r.env_id,
  hostId: r.host_id,
  accessKey: r.access_key,
  state: r.state,
  created: r.created,
});

export function listApiKeys(store: Store): ApiKeyRecord[] {
  return (store.db.prepare('SELECT * FROM api_keys ORDER BY rowid').all() as ApiKeyRow[]).map(toRecord);
}

export function getApiKey(store: Store, id: string): ApiKeyRecord | undefined {
  const r = store.db.prepare('SELECT * FROM api_keys WHERE id = ?').get(id) as ApiKeyRow | undefined;
  return r ? toRecord(r) : undefined;
}

export function setApiKeyState(store: Store, id: string, state: 'active' | 'inactive'): void {
  store.db.prepare('UPDATE api_keys SET state = ? WHERE id = ?').run(state, id);
}

export function deleteApiKey(store: Store, id: string): boolean {
  return store.db.prepare('DELETE FROM api_keys WHERE id = ?').run(id).changes > 0;
}

export function countAdminKeys(store: Store): number {
  return (store.db.prepare("SELECT COUNT(*) AS n FROM api_keys WHERE role = 'admin'").get() as { n: number }).n;
}

/** Checks HTTP basic credentials; throws UnauthorizedError with a reason the caller can act on. */
export function authenticate(store: Store, accessKey: string, secretKey: string): Principal {
  const r = store.db.prepare('SELECT * FROM api_keys WHERE access_key = ?').get(accessKey) as ApiKeyRow | undefined;
  const given = Buffer.from(hashSecret(secretKey), 'hex');
  // Compare against a dummy hash when the key is unknown, so timing does not reveal which keys exist.
  const want = Buffer.from(r?.secret_hash ?? hashSecret(randomKey(16)), 'hex');
  if (!r || !timingSafeEqual(given, want)) throw new UnauthorizedError('Unauthorized: unknown access key or wrong secret');
  if (r.state !== 'active') throw new UnauthorizedError(`Unauthorized: API key ${r.access_key} is ${r.state}`);
  return { keyId: r.id, role: r.role, envId: r.env_id, hostId: r.host_id };
}

export function parseBasicAuth(header: string | undefined): { accessKey: string; secretKey: string } | undefined {
  if (!header?.startsWith('Basic ')) return undefined;
  const decoded = Buffer.from(header.slice(6), 'base64').toString('utf8');
  const i = decoded.indexOf(':');
  if (i <= 0) return undefined;
  return { accessKey: decoded.slice(0, i), secretKey: decoded.slice(i + 1) };
}

// ---- registration tokens -------------------------------------------------------------------------

function serverKey(store: Store): Buffer {
  let k = store.getSetting('registration.hmacKey');
  if (!k) {
    k = randomBytes(32).toString('hex');
    store.setSetting('registration.hmacKey', k);
  }
  return Buffer.from(k, 'hex');
}

export interface RegistrationTokenRecord {
  id: string;
  envId: string;
  accessKey: string;
  state: string;
  created: string;
  token: string;
}

interface TokenRow {
  id: string;
  env_id: string;
  access_key: string;
  issued_at: number;
  state: string;
  created: string;
}

function sign(store: Store, accessKey: string, issuedAt: number): string {
  return createHmac('sha256', serverKey(store)).update(`${accessKey}:${issuedAt}`).digest('hex');
}

function tokenRecord(store: Store, r: TokenRow): RegistrationTokenRecord {
  return {
    id: r.id,
    envId: r.env_id,
    accessKey: r.access_key,
    state: r.state,
    created: r.created,
    token: `${r.access_key}:${r.issued_at}:${sign(store, r.access_key, r.issued_at)}`,
  };
}

export function createRegistrationToken(store: Store, envId: string): RegistrationTokenRecord {
  const id = store.nextId('1rt');
  const accessKey = randomKey(10).toUpperCase().replace(/[^A-Z0-9]/g, 'X');
  const issuedAt = Date.now();
  const created = nowIso();
  store.db
    .prepare(`INSERT INTO registration_tokens (id, env_id, access_key, issued_at, state, created) VALUES (?, ?, ?, ?, 'active', ?)`)
    .run(id, envId, accessKey, issuedAt, created);
  return tokenRecord(store, { id, env_id: envId, access_key: accessKey, issued_at: issuedAt, state: 'active', created });
}

export function listRegistrationTokens(store: Store, envId?: string): RegistrationTokenRecord[] {
  const rows = (
    envId
      ? store.db.prepare('SELECT * FROM registration_tokens WHERE env_id = ? ORDER BY rowid').all(envId)
      : store.db.prepare('SELECT * FROM registration_tokens ORDER BY rowid').all()
  ) as TokenRow[];
  return rows.map((r) => tokenRecord(store, r));
}

export function getRegistrationToken(store: Store, id: string): RegistrationTokenRecord | undefined {
  const r = store.db.prepare('SELECT * FROM registration_tokens WHERE id = ?').get(id) as TokenRow | undefined;
  return r ? tokenRecord(store, r) : undefined;
}

export function revokeRegistrationToken(store: Store, id: string): boolean {
  return store.db.prepare("UPDATE registration_tokens SET state = 'revoked' WHERE id = ?").run(id).changes > 0;
}

/** Verifies a token; returns the environment it registers hosts into. */
export function verifyRegistrationToken(store: Store, token: string): { envId: string; tokenId: string } {
  const parts = token.split(':');
  const bad = new UnauthorizedError('Unauthorized: invalid registration token (ask for a new one: POST /v1/registrationtokens)');
  if (parts.length !== 3) throw bad;
  const [accessKey, issued, sig] = parts as [string, string, string];
  const r = store.db.prepare('SELECT * FROM registration_tokens WHERE access_key = ?').get(accessKey) as TokenRow | undefined;
  if (!r || String(r.issued_at) !== issued) throw bad;
  const want = Buffer.from(sign(store, accessKey, r.issued_at), 'hex');
  const got = Buffer.from(/^[0-9a-f]{64}$/.test(sig) ? sig : '00'.repeat(32), 'hex');
  if (!timingSafeEqual(want, got)) throw bad;
  if (r.state !== 'active') throw new UnauthorizedError('Unauthorized: this registration token was revoked');
  return { envId: r.env_id, tokenId: r.id };
}
