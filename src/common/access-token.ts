// Tokens the control plane gives the agents' access endpoints (container logs, shells, stats: the
// agent's src/agent/access/server.ts). The key is the SHA-256 of the agent's API secret: the agent knows
// its secret, the control plane keeps only that hash (auth/credentials.ts), so no new secret travels.
// A token is `<expiry ms>.<hex HMAC-SHA256 of "<expiry> <METHOD> <path>">`: bound to one request line and
// good for a short time (default 30 s), so one seen on the wire opens nothing else.
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

export const ACCESS_TOKEN_HEADER = 'x-drover-access-token';
const DEFAULT_TTL_MS = 30_000;

/** The key of an agent whose API secret is `secret` (what the control plane stores as secret_hash). */
export function accessKeyOfSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

const mac = (keyHex: string, expiry: number, method: string, path: string) =>
  createHmac('sha256', Buffer.from(keyHex, 'hex')).update(`${expiry} ${method.toUpperCase()} ${path}`).digest('hex');

export function signAccess(keyHex: string, method: string, path: string, now = Date.now(), ttlMs = DEFAULT_TTL_MS): string {
  const expiry = now + ttlMs;
  return `${expiry}.${mac(keyHex, expiry, method, path)}`;
}

/** Why the token does not open `method path` (undefined: it does). */
export function checkAccess(keyHex: string, token: string | undefined, method: string, path: string, now = Date.now()): string | undefined {
  if (!token) return 'no access token';
  const m = /^(\d{1,16})\.([0-9a-f]{64})$/.exec(token);
  if (!m) return 'malformed access token';
  const expiry = Number(m[1]);
  if (expiry < now) return 'expired access token';
  if (expiry > now + 10 * DEFAULT_TTL_MS) return 'access token valid for too long';
  const want = Buffer.from(mac(keyHex, expiry, method, path), 'hex');
  const got = Buffer.from(m[2] as string, 'hex');
  return timingSafeEqual(want, got) ? undefined : 'bad access token';
}
