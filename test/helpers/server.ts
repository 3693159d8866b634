// Test harness: a real control plane on an ephemeral loopback port with its own data directory.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, type RunningServer } from '../../src/server/server.js';
import { silentLogger } from '../../src/common/log.js';
import { createRegistrationToken } from '../../src/server/auth/credentials.js';
import { defaultEnvironment } from '../../src/server/domain/environments.js';

export const ADMIN = { accessKey: 'TESTADMINKEY', secretKey: 'test-admin-secret-0123456789' };

export interface TestServer {
  srv: RunningServer;
  dir: string;
  url: string;
  api: <T = Record<string, unknown>>(method: string, path: string, body?: unknown) => Promise<{ status: number; body: T }>;
  register: (hostname: string, labels?: Record<string, string>, agentIp?: string) => Promise<{ hostId: string; accessKey: string; secretKey: string }>;
  close: () => Promise<void>;
}

export function tempDir(prefix = 'drover-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export async function request<T>(url: string, method: string, path: string, body: unknown, creds?: { accessKey: string; secretKey: string }) {
  const res = await fetch(url + path, {
    method,
    headers: {
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      ...(creds ? { authorization: 'Basic ' + Buffer.from(`${creds.accessKey}:${creds.secretKey}`).toString('base64') } : {}),
    },
    ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : undefined) as T };
}

export async function startTestServer(opts: { dir?: string; port?: number; statusCoalesceMs?: number } = {}): Promise<TestServer> {
  const dir = opts.dir ?? tempDir();
  const srv = await startServer({
    dataDir: dir,
    host: '127.0.0.1',
    port: opts.port ?? 0,
    log: silentLogger(),
    adminAccessKey: ADMIN.accessKey,
    adminSecretKey: ADMIN.secretKey,
    ...(opts.statusCoalesceMs !== undefined ? { statusCoalesceMs: opts.statusCoalesceMs } : {}),
  });
  const api = <T>(method: string, path: string, body?: unknown) => request<T>(srv.url, method, path, body, ADMIN);
  return {
    srv,
    dir,
    url: srv.url,
    api,
    async register(hostname, labels = {}, agentIp = '192.0.2.10') {
      const token = createRegistrationToken(srv.store, defaultEnvironment(srv.store).id).token;
      const r = await request<{ host: { id: string }; accessKey: string; secretKey: string }>(srv.url, 'POST', '/v1/agent/register', {
        token,
        hostname,
        agentIpAddress: agentIp,
        labels,
      });
      if (r.status !== 201) throw new Error(`register failed: ${r.status} ${JSON.stringify(r.body)}`);
      return { hostId: r.body.host.id, accessKey: r.body.accessKey, secretKey: r.body.secretKey };
    },
    async close() {
      await srv.close();
    },
  };
}

export function cleanup(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

export { eventually } from './wait.js';
