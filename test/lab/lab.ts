// The multi-host lab: N "hosts" as network namespaces on an underlay switch, each with its own real
// dockerd, reachable from the root netns (test code, control plane) over 198.18.<slot>.0/24.
// See test/lab/README.md for the topology, the teardown order and what each piece is for.
import { spawn, type ChildProcess } from 'node:child_process';
import { eventually } from '../helpers/wait.js';
import { randomBytes } from 'node:crypto';
import { accessSync, closeSync, constants, existsSync, mkdirSync, openSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';
import Docker from 'dockerode';
import { spawnDockerd, stopDockerd, waitDockerd } from './dockerd.js';
import { BUSYBOX, TEST_IMAGE, busyboxRootfsTar, importTestImage, isStaticElf } from './image.js';
import { assignSlot, names, newLabState } from './layout.js';
import { createTopology, netnsExists, rootLinkExists, setBridgeProxyArp, usedUnderlaySlots, LINK_LOCAL_SERVICE_IP } from './netns.js';
import { isAlive, procRef, run, signal, stopProcesses, type ProcRef, type RunResult } from './proc.js';
import { BASE_DIR, claimSlot, isRegistered, register, writeState, type ControlPlaneInfo, type LabState } from './state.js';
import { reapStaleLabs, teardownLab, type Log } from './teardown.js';

export { reapStaleLabs, TEST_IMAGE, LINK_LOCAL_SERVICE_IP, BASE_DIR, setBridgeProxyArp };
export type { RunResult, LabState };

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const LAB_SCRIPT = join(REPO_ROOT, 'scripts', 'lab.ts');

export interface ExecOptions {
  input?: string;
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
}

export interface SpawnOptions {
  /** stdout and stderr appended to this file (the process can outlive this one); else piped. */
  logFile?: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Shown by `npm run lab -- status` and in teardown logs. */
  what?: string;
}

export interface LabHost {
  index: number;
  /** 'h1' */
  name: string;
  netns: string;
  /** underlay address, e.g. 198.18.0.11 */
  ip: string;
  dockerSocket: string;
  docker: Docker;
  /** per-host scratch dir for agent data */
  dataDir: string;
  /** A short command inside the host netns (`ip netns exec`). Never throws for a non-zero exit. */
  exec(cmd: string[], opts?: ExecOptions): Promise<RunResult>;
  /** A long-running process inside the host netns, tracked by PID for teardown. */
  spawn(cmd: string[], opts?: SpawnOptions): ChildProcess;
}

export interface Lab {
  id: string;
  dir: string;
  hosts: LabHost[];
  /** The root netns end of the underlay: 198.18.0.1 for the first lab on the machine (198.18.<slot>.1). */
  rootIp: string;
  image: typeof TEST_IMAGE;
  /** Phase durations of startLab (and `down` once it ran), in ms. */
  timings: Record<string, number>;
  /** Stops this host's dockerd (SIGTERM, wait) and starts it again on the same data-root. */
  restartDockerd(host: LabHost): Promise<void>;
  /** A long-running process in the root netns, tracked by PID for teardown. */
  spawnRoot(cmd: string[], opts?: SpawnOptions): ChildProcess;
  /** Stops a process started with spawn/spawnRoot (SIGTERM to its group, SIGKILL after graceMs). */
  stopProcess(child: ChildProcess, graceMs?: number): Promise<void>;
  /** Recorded in lab.json for `npm run lab -- status`. */
  setControlPlane(info: ControlPlaneInfo): void;
  /** Leave the lab running when this process exits (`npm run lab -- up`): never reaped, only `down` removes it. */
  keep(): void;
  /** Tears everything down. Idempotent; safe after a failed start. */
  down(): Promise<void>;
}

export interface StartLabOptions {
  hosts: number;
  /** The lab's own directory (default /tmp/drover-lab/<id>); must not exist or be empty. */
  dir?: string;
  log?: Log;
}

// ---- prerequisites ------------------------------------------------------------------------------

function inPath(cmd: string): boolean {
  for (const d of (process.env.PATH ?? '').split(':')) {
    try {
      accessSync(join(d, cmd), constants.X_OK);
      return true;
    } catch {
      // next
    }
  }
  return false;
}

/** Why the lab cannot run on this machine (undefined = it can). Tests skip with this message. */
export function labUnavailable(): string | undefined {
  if (process.platform !== 'linux') return 'the lab needs Linux network namespaces';
  if (process.getuid?.() !== 0) return 'the lab needs root (network namespaces, dockerd)';
  if (!inPath('dockerd')) return 'dockerd not found: apt-get install docker.io';
  if (!inPath('containerd')) return 'containerd not found: apt-get install docker.io';
  if (!inPath('ip')) return 'ip not found: apt-get install iproute2';
  if (!inPath('nsenter')) return 'nsenter not found: apt-get install util-linux';
  if (!inPath('sysctl')) return 'sysctl not found: apt-get install procps';
  if (!existsSync(BUSYBOX)) return `${BUSYBOX} not found: apt-get install busybox-static`;
  if (!isStaticElf(BUSYBOX)) return `${BUSYBOX} is dynamically linked: apt-get install busybox-static`;
  return undefined;
}

// ---- last-resort teardown when the process ends without down() ---------------------------------

const liveLabs = new Set<LabImpl>();
let handlersInstalled = false;
let signalled = false;

function onExit(): void {
  for (const lab of liveLabs) lab.lastResort();
}

function onSignal(sig: NodeJS.Signals): void {
  const code = 128 + (sig === 'SIGINT' ? 2 : 15);
  if (signalled) process.exit(code); // second signal: exit now (the exit hook still runs)
  signalled = true;
  process.stderr.write(`\nlab: ${sig}, tearing down ${liveLabs.size} lab(s)...\n`);
  void Promise.allSettled([...liveLabs].map((l) => l.down())).then(() => process.exit(code));
}

function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', onExit);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

function removeHandlersIfIdle(): void {
  if (!handlersInstalled || liveLabs.size > 0) return;
  handlersInstalled = false;
  process.off('exit', onExit);
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
}

// ---- the lab -------------------------------------------------------------------------------------

class LabImpl implements Lab {
  readonly image = TEST_IMAGE;
  readonly timings: Record<string, number> = {};
  hosts: LabHost[] = [];
  private downing?: Promise<void>;
  private readonly children = new Map<number, ChildProcess>();

  constructor(
    private readonly st: LabState,
    private readonly log: Log,
  ) {}

  get id(): string {
    return this.st.id;
  }
  get dir(): string {
    return this.st.dir;
  }
  get rootIp(): string {
    return this.st.rootIp;
  }
  get state(): LabState {
    return this.st;
  }

  save(): void {
    if (!this.downing) writeState(this.st);
  }

  buildHosts(): void {
    this.hosts = this.st.hosts.map((h) => ({
      index: h.index,
      name: h.name,
      netns: h.netns,
      ip: h.ip,
      dockerSocket: h.dockerSocket,
      docker: new Docker({ socketPath: h.dockerSocket }),
      dataDir: h.dataDir,
      exec: (cmd, opts = {}) => run(['ip', 'netns', 'exec', h.netns, ...cmd], opts),
      spawn: (cmd, opts = {}) => this.spawnTracked(['ip', 'netns', 'exec', h.netns, ...cmd], opts, h.name),
    }));
  }

  private spawnTracked(cmd: string[], opts: SpawnOptions, host?: string): ChildProcess {
    if (this.downing) throw new Error(`lab ${this.id} is down`);
    const [file, ...args] = cmd as [string, ...string[]];
    const fd = opts.logFile ? openSync(opts.logFile, 'a') : undefined;
    let child: ChildProcess;
    try {
      child = spawn(file, args, {
        detached: true, // own process group: teardown signals the group; Ctrl-C does not hit it out of order
        stdio: fd !== undefined ? ['ignore', fd, fd] : ['ignore', 'pipe', 'pipe'],
        ...(opts.env ? { env: opts.env } : {}),
        ...(opts.cwd ? { cwd: opts.cwd } : {}),
      });
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
    child.on('error', (e) => this.log(`${cmd.join(' ')}: ${e.message}`));
    const ref = child.pid !== undefined ? procRef(child.pid) : undefined;
    if (!ref) throw new Error(`could not start ${cmd.join(' ')}`);
    const pid = ref.pid;
    this.children.set(pid, child);
    this.st.procs.push({
      ...ref,
      what: opts.what ?? 'spawn',
      group: true,
      cmd,
      ...(host ? { host } : {}),
      ...(opts.logFile ? { log: opts.logFile } : {}),
    });
    this.save();
    child.on('exit', () => {
      this.children.delete(pid);
      this.st.procs = this.st.procs.filter((p) => p.pid !== pid);
      this.save();
    });
    if (opts.logFile) child.unref();
    return child;
  }

  spawnRoot(cmd: string[], opts: SpawnOptions = {}): ChildProcess {
    return this.spawnTracked(cmd, opts);
  }

  async stopProcess(child: ChildProcess, graceMs = 5000): Promise<void> {
    const entry = this.st.procs.find((p) => p.pid === child.pid);
    if (!entry) return;
    await stopProcesses([entry], { graceMs, group: entry.group });
    this.st.procs = this.st.procs.filter((p) => p.pid !== entry.pid);
    this.save();
  }

  setControlPlane(info: ControlPlaneInfo): void {
    this.st.controlPlane = info;
    this.save();
  }

  private hostState(host: LabHost) {
    const h = this.st.hosts.find((x) => x.name === host.name);
    if (!h) throw new Error(`lab ${this.id} has no host ${host.name}`);
    return h;
  }

  async startDockerd(host: LabHost): Promise<void> {
    const h = this.hostState(host);
    h.dockerd = spawnDockerd(h, this.id);
    this.save();
    await waitDockerd(h, h.dockerd);
  }

  async restartDockerd(host: LabHost): Promise<void> {
    const h = this.hostState(host);
    if (h.dockerd && isAlive(h.dockerd)) await stopDockerd(h.dockerd);
    await this.startDockerd(host);
  }

  down(): Promise<void> {
    this.downing ??= (async () => {
      const t0 = Date.now();
      try {
        await teardownLab(this.st, this.log);
      } catch (err) {
        this.downing = undefined; // let a later down() retry
        throw err;
      }
      for (const c of this.children.values()) c.unref();
      this.timings.down = Date.now() - t0;
      liveLabs.delete(this);
      removeHandlersIfIdle();
    })();
    return this.downing;
  }

  /** Process exit without down(): kill our processes by PID now, hand the rest to a detached `lab down`. */
  lastResort(): void {
    for (const p of this.st.procs) signal(p, 'SIGKILL', { group: p.group });
    try {
      const reaper = spawn(process.execPath, ['--import', 'tsx', LAB_SCRIPT, 'down', '--id', this.id], {
        cwd: REPO_ROOT,
        detached: true,
        stdio: 'ignore',
      });
      reaper.unref();
    } catch {
      for (const h of this.st.hosts) if (h.dockerd) signal(h.dockerd, 'SIGTERM');
    }
  }

  keep(): void {
    this.st.owner = null;
    this.save();
    liveLabs.delete(this);
    removeHandlersIfIdle();
    for (const c of this.children.values()) c.unref();
  }
}

function newId(): string {
  for (;;) {
    const id = randomBytes(3).toString('hex');
    if (!isRegistered(id) && !netnsExists(names.switchNetns(id)) && !rootLinkExists(names.rootVeth(id))) return id;
  }
}

async function timed<T>(timings: Record<string, number>, phase: string, fn: () => Promise<T>): Promise<T> {
  const t0 = Date.now();
  try {
    return await fn();
  } finally {
    timings[phase] = Date.now() - t0;
  }
}

export async function startLab(opts: StartLabOptions): Promise<Lab> {
  const log = opts.log ?? (() => undefined);
  const why = labUnavailable();
  if (why) throw new Error(`cannot start the lab: ${why}`);
  if (!Number.isInteger(opts.hosts) || opts.hosts < 1 || opts.hosts > 50) throw new Error(`hosts must be 1..50, not ${opts.hosts}`);
  const t0 = Date.now();
  const timings: Record<string, number> = {};
  await timed(timings, 'reap', () => reapStaleLabs(log));

  const id = newId();
  const dir = opts.dir ?? join(BASE_DIR, id);
  if (join(dir, `h${opts.hosts}`, 'exec', 'containerd', 'containerd.sock.ttrpc').length > 100) {
    throw new Error(`lab dir ${dir} is too long for unix socket paths (keep it under ~40 characters)`);
  }
  if (existsSync(dir) && readdirSync(dir).length > 0) throw new Error(`lab dir ${dir} exists and is not empty`);
  mkdirSync(dir, { recursive: true });
  const owner = procRef(process.pid) as ProcRef;
  const st = newLabState(id, dir, opts.hosts, owner);
  writeState(st);
  register(id, dir);
  const lab = new LabImpl(st, log);
  Object.assign(lab.timings, timings);
  liveLabs.add(lab);
  installHandlers();
  try {
    const used = await usedUnderlaySlots();
    assignSlot(st, claimSlot(id, (n) => used.has(n)));
    for (const h of st.hosts) mkdirSync(h.dataDir, { recursive: true });
    lab.save();
    lab.buildHosts();
    log(`lab ${id}: ${opts.hosts} host(s) on ${st.subnetPrefix}.0/24 in ${dir}`);
    const tar = busyboxRootfsTar(); // built while the daemons start
    await timed(lab.timings, 'topology', () => createTopology(st));
    await timed(lab.timings, 'dockerd', () => Promise.all(lab.hosts.map((h) => lab.startDockerd(h))));
    await tar;
    await timed(lab.timings, 'image', () => Promise.all(lab.hosts.map((h) => importTestImage(h.docker))));
    lab.timings.up = Date.now() - t0;
    return lab;
  } catch (err) {
    log(`lab ${id}: start failed (${(err as Error).message}); tearing down`);
    await lab.down().catch((e: unknown) => log(`lab ${id}: teardown after failed start: ${(e as Error).message}`));
    throw err;
  }
}

// ---- helpers for tests ---------------------------------------------------------------------------

/** Runs `cmd` in a container (docker exec) and collects its output and exit code. */
export async function runInContainer(host: LabHost, container: string, cmd: string[], opts: { timeoutMs?: number } = {}): Promise<RunResult> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const ex = await host.docker.getContainer(container).exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true, Tty: false });
  const stream = await ex.start({ hijack: true, stdin: false });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const so = new PassThrough();
  const se = new PassThrough();
  so.on('data', (c: Buffer) => out.push(c));
  se.on('data', (c: Buffer) => err.push(c));
  host.docker.modem.demuxStream(stream, so, se);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      stream.destroy();
      reject(new Error(`docker exec ${container} ${cmd.join(' ')}: timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    const done = () => {
      clearTimeout(timer);
      resolve();
    };
    stream.on('end', done);
    stream.on('close', done);
    stream.on('error', (e: Error) => {
      clearTimeout(timer);
      reject(e);
    });
  });
  let info = await ex.inspect();
  for (let i = 0; info.Running && i < 100; i++) {
    await new Promise((r) => setTimeout(r, 20));
    info = await ex.inspect();
  }
  return { stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), exitCode: info.ExitCode ?? -1 };
}

/** Polls `fn` until it returns a truthy value; throws after `ms` with the last error. */
export function waitFor<T>(fn: () => T | Promise<T>, ms: number, what: string): Promise<NonNullable<T>> {
  return eventually(fn, ms, what, 100);
}

/** proxy_arp + proxy_delay=0 on a bridge of a lab host, if it exists (e.g. the runtime's drover0). */
export function enableProxyArp(host: LabHost, bridge: string): Promise<boolean> {
  return setBridgeProxyArp(host.netns, bridge);
}
