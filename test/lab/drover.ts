// drover itself in the lab: the control plane in the root netns (reachable from every host at
// http://<lab.rootIp>:<port>) and one agent per host netns, all run from the sources (node --import tsx)
// and tracked by the lab for teardown.
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT, startLab, waitFor, type Lab, type LabHost } from './lab.js';
import { isAlive, procRef } from './proc.js';
import { freePort } from '../helpers/ports.js';

/** The control plane's first admin key in the lab (DROVER_ADMIN_ACCESS_KEY / _SECRET_KEY). */
export const LAB_ADMIN = { accessKey: 'LABADMINKEY', secretKey: 'lab-admin-secret-0123456789' };

const MAIN = join(REPO_ROOT, 'src', 'cli', 'main.ts');

export interface ApiResponse<T> {
  status: number;
  body: T;
}

export interface ControlPlane {
  url: string;
  dataDir: string;
  logPath: string;
  pid: number;
  /** A request with the admin key; JSON in and out. */
  api<T = Record<string, unknown>>(method: string, path: string, body?: unknown): Promise<ApiResponse<T>>;
  /** A new registration token for the default environment. */
  registrationToken(): Promise<string>;
  stop(): Promise<void>;
}

export interface LabAgent {
  host: LabHost;
  logPath: string;
  pid(): number;
  stop(): Promise<void>;
  /** Stop, then start again with the same data dir (the agent keeps its identity and state). */
  restart(): Promise<void>;
}


function tail(file: string, lines = 15): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Waits until the child answers (ready() true); fails at once, with its log's tail, when it dies. */
async function waitReady(child: ChildProcess, what: string, log: string, ms: number, ready: () => Promise<boolean>): Promise<void> {
  const ref = child.pid !== undefined ? procRef(child.pid) : undefined;
  const deadline = Date.now() + ms;
  for (;;) {
    if (!ref || !isAlive(ref)) throw new Error(`${what} exited during start; ${log}:\n${tail(log)}`);
    if (await ready().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`${what} not ready after ${ms} ms; ${log}:\n${tail(log)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function startControlPlane(lab: Lab, opts: { logLevel?: string; uiDir?: string } = {}): Promise<ControlPlane> {
  const port = await freePort(lab.rootIp);
  const url = `http://${lab.rootIp}:${port}`;
  const dataDir = join(lab.dir, 'control-plane');
  const logPath = join(lab.dir, 'control-plane.log');
  const cmd = [
    process.execPath,
    '--import',
    'tsx',
    MAIN,
    'server',
    '--data',
    dataDir,
    '--listen',
    `${lab.rootIp}:${port}`,
    '--advertise-url',
    url,
    '--log-level',
    opts.logLevel ?? 'warn',
    ...(opts.uiDir !== undefined ? ['--ui-dir', opts.uiDir] : []),
  ];
  const env = { ...process.env, DROVER_ADMIN_ACCESS_KEY: LAB_ADMIN.accessKey, DROVER_ADMIN_SECRET_KEY: LAB_ADMIN.secretKey };
  const child = lab.spawnRoot(cmd, { logFile: logPath, env, cwd: REPO_ROOT, what: 'control-plane' });
  const auth = 'Basic ' + Buffer.from(`${LAB_ADMIN.accessKey}:${LAB_ADMIN.secretKey}`).toString('base64');
  const api = async <T>(method: string, path: string, body?: unknown): Promise<ApiResponse<T>> => {
    const res = await fetch(url + path, {
      method,
      headers: { authorization: auth, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      signal: AbortSignal.timeout(15_000),
    });
    const text = await res.text();
    return { status: res.status, body: (text ? JSON.parse(text) : undefined) as T };
  };
  await waitReady(child, 'control plane', logPath, 30_000, async () => {
    const res = await fetch(`${url}/v1/version`, { signal: AbortSignal.timeout(1000) });
    return res.ok;
  });
  lab.setControlPlane({ url, accessKey: LAB_ADMIN.accessKey, secretKey: LAB_ADMIN.secretKey, dataDir, log: logPath });
  return {
    url,
    dataDir,
    logPath,
    pid: child.pid ?? -1,
    api,
    async registrationToken() {
      const r = await api<{ token?: string }>('POST', '/v1/registrationtokens', {});
      if (r.status !== 201 || !r.body.token) throw new Error(`creating a registration token failed: ${r.status} ${JSON.stringify(r.body)}`);
      return r.body.token;
    },
    stop: () => lab.stopProcess(child),
  };
}

/**
 * Whether `drover agent` has --docker-socket yet (being added with the Docker runtime). Without it the
 * agent still gets DOCKER_HOST=unix://<socket> in its environment.
 */
export function agentHasDockerSocketFlag(): boolean {
  try {
    return readFileSync(join(REPO_ROOT, 'src', 'cli', 'commands', 'agent.ts'), 'utf8').includes("'--docker-socket");
  } catch {
    return false;
  }
}

export interface AgentOptions {
  serverUrl: string;
  token: string;
  labels?: Record<string, string>;
  logLevel?: string;
  /** The agent's --network (default: its own default, auto = on in the lab: root with a Docker socket). */
  network?: 'auto' | 'on' | 'off';
}

export function startAgent(lab: Lab, host: LabHost, opts: AgentOptions): LabAgent {
  const logPath = join(host.dataDir, 'agent.log');
  const labels = Object.entries(opts.labels ?? {})
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
  const cmd = [
    process.execPath,
    '--import',
    'tsx',
    MAIN,
    'agent',
    '--server',
    opts.serverUrl,
    '--token',
    opts.token,
    '--data',
    join(host.dataDir, 'agent'),
    '--agent-ip',
    host.ip,
    '--hostname',
    host.name,
    ...(labels ? ['--labels', labels] : []),
    ...(agentHasDockerSocketFlag() ? ['--docker-socket', host.dockerSocket] : []),
    '--log-level',
    opts.logLevel ?? 'info',
    ...(opts.network ? ['--network', opts.network] : []),
  ];
  const env = { ...process.env, DOCKER_HOST: `unix://${host.dockerSocket}` };
  const start = () => host.spawn(cmd, { logFile: logPath, env, cwd: REPO_ROOT, what: 'agent' });
  let child = start();
  return {
    host,
    logPath,
    pid: () => child.pid ?? -1,
    stop: () => lab.stopProcess(child),
    async restart() {
      await lab.stopProcess(child);
      child = start();
    },
  };
}

interface HostRecord {
  id: string;
  hostname: string;
  agentIpAddress: string;
  state: string;
  agentState: string;
  labels: Record<string, string>;
}

/** Waits until a host with this hostname is registered; returns its record. */
export async function waitForHost(cp: ControlPlane, hostname: string, ms = 30_000): Promise<HostRecord> {
  return waitFor(
    async () => {
      const r = await cp.api<{ data: HostRecord[] }>('GET', '/v1/hosts');
      return r.body.data.find((h) => h.hostname === hostname);
    },
    ms,
    `host ${hostname} to register`,
  );
}

/** Control plane plus one agent per host with label hostname=<hN>; what `npm run lab -- up` runs. */
export interface DroverLabOptions {
  agentLogLevel?: string;
  waitMs?: number;
  /** The agents' --network (the managed network runs by default). */
  network?: 'auto' | 'on' | 'off';
  /** The environment's overlay, set before the agents start (default: the environment's, ipsec). */
  overlay?: 'ipsec' | 'vxlan';
  /** The control plane's --ui-dir (the web UI tests build their own). */
  uiDir?: string;
}

export async function startDrover(lab: Lab, opts: DroverLabOptions = {}): Promise<{ cp: ControlPlane; agents: LabAgent[] }> {
  const cp = await startControlPlane(lab, opts.uiDir !== undefined ? { uiDir: opts.uiDir } : {});
  if (opts.overlay) {
    const envs = await cp.api<{ data: { id: string }[] }>('GET', '/v1/environments');
    const envId = envs.body.data[0]?.id;
    if (!envId) throw new Error('the control plane has no environment');
    const put = await cp.api('PUT', `/v1/environments/${envId}`, { network: { overlay: opts.overlay } });
    if (put.status !== 200) throw new Error(`setting the overlay to ${opts.overlay}: HTTP ${put.status} ${JSON.stringify(put.body)}`);
  }
  const token = await cp.registrationToken();
  const agents = lab.hosts.map((h) =>
    startAgent(lab, h, {
      serverUrl: cp.url,
      token,
      labels: { hostname: h.name },
      ...(opts.agentLogLevel ? { logLevel: opts.agentLogLevel } : {}),
      ...(opts.network ? { network: opts.network } : {}),
    }),
  );
  await Promise.all(
    agents.map((a) =>
      waitForHost(cp, a.host.name, opts.waitMs ?? 60_000).catch((err: unknown) => {
        throw new Error(`${(err as Error).message}; ${a.logPath}:\n${tail(a.logPath)}`);
      }),
    ),
  );
  return { cp, agents };
}

/**
 * The end of a lab test: when it failed, the tail of each agent's log first (the lab directory goes with
 * the lab); then the agents, the control plane and the lab (an agent or control plane that fails to stop
 * does not keep the lab up).
 */
export async function stopDroverLab(lab: Lab | undefined, run: { cp?: ControlPlane | undefined; agents: LabAgent[] }, failed: boolean): Promise<void> {
  if (failed) for (const a of run.agents) console.log(`--- ${a.host.name} agent log (tail) ---\n${tail(a.logPath, 30)}`);
  if (failed && lab && process.env.DROVER_LAB_KEEP === '1') {
    // For a post-mortem: everything stays up; `npm run lab -- down --id <id>` removes it.
    lab.keep();
    console.log(`DROVER_LAB_KEEP=1: lab ${lab.id} kept (dir ${lab.dir}); npm run lab -- down --id ${lab.id}`);
    return;
  }
  for (const a of run.agents) await a.stop().catch(() => undefined);
  await run.cp?.stop().catch(() => undefined);
  await lab?.down();
}

/** What a test on a running drover lab gets: the lab, the control plane and the agents. */
export interface DroverLab {
  lab: Lab;
  cp: ControlPlane;
  agents: LabAgent[];
  /** The admin key as the CLI's environment (DROVER_URL, DROVER_ACCESS_KEY, DROVER_SECRET_KEY). */
  cliEnv: Record<string, string>;
}

/**
 * Runs `fn` on a lab of `hosts` hosts with drover up (control plane + one agent per host), then tears it
 * all down; when `fn` throws, the agents' log tails are printed first (and with DROVER_LAB_KEEP=1 the
 * lab is kept). The lab tests' common frame.
 */
export async function withDroverLab<T>(hosts: number, opts: DroverLabOptions, fn: (d: DroverLab) => Promise<T>): Promise<T> {
  let lab: Lab | undefined;
  let run: { cp?: ControlPlane; agents: LabAgent[] } = { agents: [] };
  let failed = true;
  try {
    lab = await startLab({ hosts });
    const started = await startDrover(lab, opts);
    run = started;
    const cliEnv = { DROVER_URL: started.cp.url, DROVER_ACCESS_KEY: LAB_ADMIN.accessKey, DROVER_SECRET_KEY: LAB_ADMIN.secretKey };
    const out = await fn({ lab, cp: started.cp, agents: started.agents, cliEnv });
    failed = false;
    return out;
  } finally {
    await stopDroverLab(lab, run, failed);
  }
}
