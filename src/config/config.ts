// Configuration: config/default.json, then config/local.json (if present), then a --config file, then
// DROVER_* environment variables, then command-line flags (the CLI applies those last).
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { z } from 'zod';
import { ValidationError } from '../common/errors.js';
import { LIMITS } from '../model/limits.js';

export const Config = z.strictObject({
  dataDir: z.string().min(1),
  log: z.strictObject({ level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']) }),
  server: z.strictObject({
    listen: z.string(),
    advertiseUrl: z.string(),
    agentImage: z.string(),
    maxWatchSeconds: z.number().int().positive(),
  }),
  agent: z.strictObject({
    serverUrl: z.string(),
    agentIp: z.string(),
    hostname: z.string(),
    labels: z.record(z.string(), z.string()),
    watchTimeoutSeconds: z.number().int().positive(),
    /** HOST:PORT of rancher-metadata ('' = off). */
    metadataListen: z.string(),
    /** HOST:PORT of DNS ('' = off). */
    dnsListen: z.string(),
    /** HOST:PORT of the agent's Prometheus endpoint ('' = off). */
    metricsListen: z.string(),
    /**
     * The managed network (IPsec/VXLAN overlay, CATTLE_* iptables chains): `on`, `off`, or `auto` = on
     * when the agent runs containers (a Docker socket) as root on Linux.
     */
    network: z.enum(['auto', 'on', 'off']).default('auto'),
    /** The HAProxy the balancers run (a name looked up in PATH, or a path). */
    haproxy: z.string().min(1).default('haproxy'),
    /**
     * How long a running container no longer scheduled here keeps running before it is removed, so that
     * DNS answers and balancer backends on every host drop it first (src/agent/runtime/docker-runtime.ts).
     */
    drainMs: z.coerce.number().int().min(0).max(LIMITS.maxDrainMs).default(2000),
    /**
     * Port of the agent's access endpoints on its agent IP: container logs, shells and stats for the control
     * plane only (signed requests; src/agent/access/server.ts). 0 = off.
     */
    accessPort: z.coerce.number().int().min(0).max(65535).default(9346),
  }),
});
export type Config = z.infer<typeof Config>;

/** The repository (or image) root: where config/ lives. */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'config'))) return dir;
    dir = dirname(dir);
  }
  return process.cwd();
}

type Json = Record<string, unknown>;

function merge(a: Json, b: Json): Json {
  const out: Json = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const prev = out[k];
    out[k] =
      v && typeof v === 'object' && !Array.isArray(v) && prev && typeof prev === 'object' && !Array.isArray(prev)
        ? merge(prev as Json, v as Json)
        : v;
  }
  return out;
}

function readJson(path: string): Json {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as Json;
  } catch (err) {
    throw new ValidationError('InvalidConfig', `cannot read config file ${path}: ${(err as Error).message}`);
  }
}

/** Environment variables and the config keys they set. */
export const ENV_VARS: Record<string, [string, ...string[]]> = {
  DROVER_DATA_DIR: ['dataDir'],
  DROVER_LOG_LEVEL: ['log', 'level'],
  DROVER_LISTEN: ['server', 'listen'],
  DROVER_ADVERTISE_URL: ['server', 'advertiseUrl'],
  DROVER_AGENT_IMAGE: ['server', 'agentImage'],
  DROVER_SERVER_URL: ['agent', 'serverUrl'],
  DROVER_AGENT_IP: ['agent', 'agentIp'],
  DROVER_HOSTNAME: ['agent', 'hostname'],
  DROVER_METADATA_LISTEN: ['agent', 'metadataListen'],
  DROVER_DNS_LISTEN: ['agent', 'dnsListen'],
  DROVER_AGENT_METRICS_LISTEN: ['agent', 'metricsListen'],
  DROVER_AGENT_NETWORK: ['agent', 'network'],
  DROVER_AGENT_HAPROXY: ['agent', 'haproxy'],
  DROVER_AGENT_DRAIN_MS: ['agent', 'drainMs'],
  DROVER_AGENT_ACCESS_PORT: ['agent', 'accessPort'],
};

export function loadConfig(opts: { file?: string; env?: NodeJS.ProcessEnv } = {}): Config {
  const root = packageRoot();
  let cfg = readJson(join(root, 'config', 'default.json'));
  const local = join(root, 'config', 'local.json');
  if (existsSync(local)) cfg = merge(cfg, readJson(local));
  if (opts.file) cfg = merge(cfg, readJson(opts.file));
  const env = opts.env ?? process.env;
  for (const [name, path] of Object.entries(ENV_VARS)) {
    const v = env[name];
    if (v === undefined || v === '') continue;
    let obj: Json = {};
    const patch = obj;
    path.slice(0, -1).forEach((k) => {
      const next: Json = {};
      obj[k] = next;
      obj = next;
    });
    obj[path[path.length - 1] as string] = v;
    cfg = merge(cfg, patch);
  }
  const r = Config.safeParse(cfg);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new ValidationError('InvalidConfig', `configuration ${i?.path.join('.')}: ${i?.message}`);
  }
  return r.data;
}

export function parseHostPort(s: string, what: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(s);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new ValidationError('InvalidAddress', `${what}: "${s}" is not HOST:PORT (e.g. 127.0.0.1:8080)`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

export function parseLabels(s: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of s.split(',').map((x) => x.trim()).filter(Boolean)) {
    const i = part.indexOf('=');
    if (i <= 0) throw new ValidationError('InvalidLabel', `label "${part}" is not key=value`);
    out[part.slice(0, i)] = part.slice(i + 1);
  }
  return out;
}

/** parseHostPort as a [host, port] pair (for listen calls). */
export function hostPort(s: string): [string, number] {
  const { host, port } = parseHostPort(s, 'address');
  return [host, port];
}
