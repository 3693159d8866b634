// Tearing a lab down from its state file, in the order that works (see docs in README.md):
// lab processes -> `docker rm -f` everything -> SIGTERM dockerd by PID and wait -> SIGKILL leftovers by PID
// (container processes by cgroup, anything in the lab netns) -> `ip netns del` -> root veth -> unmount
// leftovers under the lab dir (dockerd's nsfs `exec/netns/default` pins the netns) -> rm -rf.
// Every step is idempotent and tolerant (two reapers may race); success is judged by the end state.
import { readFileSync, readdirSync, rmSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import Docker from 'dockerode';
import { containerIdsOnDisk, pingDocker, removeAllContainers, stopDockerd } from './dockerd.js';
import { LAB_NAME_RE, hostLayout, newLabState } from './layout.js';
import { deleteNetns, deleteRootLink, labNetns, labRootLinks, netnsExists, netnsPids, rootLinkExists } from './netns.js';
import { isAlive, pidsInDockerCgroups, procRef, run, signal, stopProcesses, waitGone, type ProcRef } from './proc.js';
import { BASE_DIR, readState, registeredLabs, releaseSlot, unregister, type HostState, type LabState } from './state.js';

export type Log = (msg: string) => void;

const withTimeout = <T>(p: Promise<T>, ms: number, what: string): Promise<T> =>
  Promise.race([p, new Promise<T>((_, rej) => setTimeout(() => rej(new Error(`${what}: timed out after ${ms} ms`)), ms).unref())]);

/** The dockerd of a host: the recorded one, else the one named in its pidfile (if it serves this host's socket). */
function findDockerd(h: HostState): ProcRef | undefined {
  if (h.dockerd && isAlive(h.dockerd)) return h.dockerd;
  try {
    const pid = Number(readFileSync(join(h.dir, 'dockerd.pid'), 'utf8').trim());
    const ref = pid > 1 ? procRef(pid) : undefined;
    if (ref && readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(h.dockerSocket)) return ref;
  } catch {
    // no pidfile / process gone
  }
  return undefined;
}

async function stopHostDocker(h: HostState, log: Log): Promise<void> {
  const ref = findDockerd(h);
  if (!ref) return;
  if (await pingDocker(h.dockerSocket)) {
    try {
      const n = await withTimeout(removeAllContainers(new Docker({ socketPath: h.dockerSocket })), 30_000, `docker rm -f on ${h.name}`);
      if (n) log(`${h.name}: removed ${n} container(s)`);
    } catch (err) {
      log(`${h.name}: removing containers failed (${(err as Error).message}); stopping dockerd anyway`);
    }
  }
  await stopDockerd(ref);
}

/** SIGKILL every process left in the lab: container processes (by cgroup) and anything inside its netns. */
async function killLeftovers(st: LabState, log: Log): Promise<void> {
  const ids = st.hosts.flatMap((h) => containerIdsOnDisk(h.dataRoot));
  const pids = new Set(pidsInDockerCgroups(ids));
  for (const ns of [...st.hosts.map((h) => h.netns), st.switchNetns]) for (const p of await netnsPids(ns)) pids.add(p);
  pids.delete(process.pid);
  const refs = [...pids].map(procRef).filter((r): r is ProcRef => !!r);
  if (refs.length === 0) return;
  log(`SIGKILL ${refs.length} leftover process(es): ${refs.map((r) => r.pid).join(' ')}`);
  for (const r of refs) signal(r, 'SIGKILL');
  await waitGone(refs, 5000);
}

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** Mount points under `dir` (deepest first). */
export function mountsUnder(dir: string): string[] {
  const prefix = dir.replace(/\/$/, '') + '/';
  const text = readFileSync('/proc/self/mountinfo', 'utf8');
  const points = text
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((p): p is string => !!p)
    .map(unescapeMount)
    .filter((p) => p.startsWith(prefix) || p === dir);
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

async function unmountUnder(dir: string, log: Log): Promise<void> {
  for (let round = 0; round < 3; round++) {
    const points = mountsUnder(dir);
    if (points.length === 0) return;
    for (const m of points) {
      const r = await run(['umount', '-l', m]);
      if (r.exitCode === 0) log(`unmounted leftover ${m}`);
    }
  }
}

/** What is still there of a lab (empty = clean). */
export function leftovers(st: LabState): string[] {
  const out: string[] = [];
  for (const ns of [st.switchNetns, ...st.hosts.map((h) => h.netns)]) if (netnsExists(ns)) out.push(`netns ${ns}`);
  if (rootLinkExists(st.rootVeth)) out.push(`root link ${st.rootVeth}`);
  for (const m of mountsUnder(st.dir)) out.push(`mount ${m}`);
  for (const p of st.procs) if (isAlive(p)) out.push(`process ${p.pid} (${p.what})`);
  for (const h of st.hosts) if (h.dockerd && isAlive(h.dockerd)) out.push(`dockerd ${h.dockerd.pid} (${h.name})`);
  if (existsSync(st.dir)) out.push(`dir ${st.dir}`);
  return out;
}

/** Tears the lab down completely; throws (listing what is left) only if something could not be removed. */
export async function teardownLab(st: LabState, log: Log = () => undefined): Promise<void> {
  const errors: string[] = [];
  const step = async (what: string, fn: () => Promise<void>) => {
    try {
      await fn();
    } catch (err) {
      errors.push(`${what}: ${(err as Error).message}`);
    }
  };
  // 1. our processes first (an agent must not react to its containers disappearing)
  await step('stop processes', async () => {
    await Promise.all([
      stopProcesses(st.procs.filter((p) => p.group), { graceMs: 5000, group: true }),
      stopProcesses(st.procs.filter((p) => !p.group), { graceMs: 5000 }),
    ]);
  });
  // 2. containers, then the dockerds (parallel per host)
  await step('stop dockerds', async () => {
    await Promise.all(st.hosts.map((h) => stopHostDocker(h, log)));
  });
  // 3. leftovers by PID
  await step('kill leftovers', () => killLeftovers(st, log));
  // 4. namespaces and the root veth
  await step('delete netns', async () => {
    for (const ns of [...st.hosts.map((h) => h.netns), st.switchNetns]) await deleteNetns(ns);
  });
  await step('delete root veth', () => deleteRootLink(st.rootVeth));
  // 5. mounts and files
  await step('unmount', () => unmountUnder(st.dir, log));
  await step('remove dir', () => Promise.resolve(rmSync(st.dir, { recursive: true, force: true, maxRetries: 3 })));
  const left = leftovers(st);
  if (left.length > 0) throw new Error(`lab ${st.id} not fully torn down: ${left.join(', ')}${errors.length ? `\n${errors.join('\n')}` : ''}`);
  releaseSlot(st.slot, st.id);
  unregister(st.id);
}

/** The state of a registered lab, or one rebuilt from names (state file lost or unreadable). */
export function stateOrGuess(id: string, dir: string): LabState {
  const st = readState(dir);
  if (st) return st;
  const guess = newLabState(id, dir, 0, null);
  const prefix = `dl${id}-h`;
  for (const ns of labNetns()) {
    if (!ns.startsWith(prefix)) continue;
    const i = Number(ns.slice(prefix.length));
    if (Number.isInteger(i) && i > 0) guess.hosts.push(hostLayout(id, dir, i, ''));
  }
  // host dirs left without netns
  try {
    for (const n of readdirSync(dir)) {
      const m = /^h(\d+)$/.exec(n);
      if (m && !guess.hosts.some((h) => h.name === n)) guess.hosts.push(hostLayout(id, dir, Number(m[1]), ''));
    }
  } catch {
    // no dir
  }
  return guess;
}

export type LabOwnerStatus = 'alive' | 'kept' | 'dead';

export function ownerStatus(st: LabState): LabOwnerStatus {
  // a state rebuilt by stateOrGuess (no readable state file) has no owner to wait for: dead
  if (st.owner === null) return readState(st.dir) ? 'kept' : 'dead';
  return isAlive(st.owner) ? 'alive' : 'dead';
}

/** Registered labs plus orphans (lab netns/links whose id is not registered), as states. */
export function knownLabs(): LabState[] {
  const reg = registeredLabs();
  const out = reg.map((r) => stateOrGuess(r.id, r.dir));
  const ids = new Set(reg.map((r) => r.id));
  for (const n of [...labNetns(), ...labRootLinks()]) {
    const id = LAB_NAME_RE.exec(n)?.[1];
    if (id && !ids.has(id)) {
      ids.add(id);
      out.push(stateOrGuess(id, join(BASE_DIR, id)));
    }
  }
  return out;
}

/**
 * Tears down labs whose owner process is dead (and orphans). Labs kept on purpose (`npm run lab -- up`)
 * and labs of live processes are left alone. Never throws (failures are logged). Returns the ids torn down.
 */
export async function reapStaleLabs(log: Log = () => undefined): Promise<string[]> {
  const reaped: string[] = [];
  for (const st of knownLabs()) {
    if (ownerStatus(st) !== 'dead') continue;
    log(`reaping stale lab ${st.id} (${st.dir})`);
    try {
      await teardownLab(st, log);
      reaped.push(st.id);
    } catch (err) {
      // e.g. another process reaping it at the same time; its slot stays taken, so a new lab still works
      log(`reaping ${st.id} failed: ${(err as Error).message}`);
    }
  }
  return reaped;
}
