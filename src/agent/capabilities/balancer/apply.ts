// The balancer's applier: puts a render (render.ts) in force in one HAProxy, run in master-worker mode.
//
// Layout under `dir`: versions/<n>/ (haproxy.cfg + certs/, written whole into a temporary directory and
// renamed), `current` → versions/<n> (a symlink swapped with rename), admin.sock (the runtime API, with
// `expose-fd listeners`), master.sock (the master CLI), haproxy.pid (the master's pid, to stop a master a
// previous agent left behind — by that pid, after checking its command line is ours).
//
// An apply:
// - nothing changed (same config text, same files): nothing happens (HAProxy is started if it is not running);
// - only server lines changed (same skeleton, same files): the new version is written and checked, then the
//   slots are changed through the runtime API (`set server <b>/<s> addr … port …`, `state ready|maint`):
//   no reload, no new worker. A refused runtime command falls back to a reload;
// - certificate contents changed (same skeleton, same file names, each changed file loaded by a `crt`):
//   the new version is written, checked and swapped in (a restart uses it) and the new PEMs are put in
//   force through the runtime API (`set ssl cert <path> <<` + `commit ssl cert <path>`, the path as the
//   config names it: `default-path config` makes HAProxy keep it relative), together with any slot change:
//   no reload. A refused certificate (or one HAProxy does not list in `show ssl cert`) falls back to a reload;
// - otherwise the new version is checked with `haproxy -c` BEFORE the swap (a refused one is deleted, the
//   running config keeps serving, and the error carries HAProxy's message trimmed to the relevant lines),
//   `current` is swapped and the master is told to `reload`: it re-executes itself and hands the
//   listening sockets to the new worker (2.6 passes them over its own socket pair in master-worker mode;
//   `expose-fd listeners` on the runtime socket lets another process take them too), so no connection is
//   refused during a reload. Targets that are gone are put in maintenance before all that (a reload takes
//   a second or more on a busy host).
// HAProxy exiting on its own is restarted from `current` (the last good config) with backoff.
import { execa, type ResultPromise } from 'execa';
import { createConnection } from 'node:net';
import { mkdir, readFile, readdir, rename, rm, symlink, writeFile, readlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Logger } from '../../../common/log.js';
import { processAlive } from '../../../common/pid-lock.js';
import type { Applier } from '../capability.js';
import { configSkeleton, type BalancerRender, type RenderedBackend, type SlotTable } from './render.js';

export interface HaproxyApplierOptions {
  log: Logger;
  /** The balancer's own directory (one per balancer instance on the host). */
  dir: string;
  haproxyBin?: string;
  /** Restart backoff after HAProxy exits on its own; default 500 ms doubling to 30 s. */
  restartBackoff?: { initialMs: number; maxMs: number };
  /** Versions kept besides the one in force (for a look after the fact); default 2. */
  keepVersions?: number;
}

export type BalancerState = 'ok' | 'degraded' | 'stopped';

export interface BalancerStatus {
  state: BalancerState;
  /** Why degraded: HAProxy's message (refused config, exit) — the running config, if any, still serves. */
  message?: string;
  /** The render's warnings (rules left out) of the config in force. */
  warnings: string[];
  masterPid?: number;
  /** Reloads asked of the master since this applier started it (not counting restarts). */
  reloads: number;
  /** Applies done through the runtime API without a reload. */
  runtimeUpdates: number;
  restarts: number;
}

export interface HaproxyApplier extends Applier<BalancerRender> {
  /** Path of the runtime API socket: give it to renderHaproxy as `statsSocket`. */
  readonly statsSocket: string;
  readonly masterSocket: string;
  /** The slot table of the config in force: give it to renderHaproxy as `previousSlots`. */
  slots(): SlotTable | undefined;
  status(): BalancerStatus;
  onStatusChange(cb: () => void): void;
  /**
   * Takes the targets that `newest` (a render of the newest state) no longer has out of service now, without
   * waiting for an apply under way (a reload takes seconds on a busy host, longer than a removed container
   * drains): `set server … state maint` on the running worker, and again on the worker a reload under way
   * brings up. Never throws; the apply of the same state follows and is what puts the rest in force.
   */
  takeOutGone(newest: BalancerRender, revision: number): Promise<void>;
  /** apply, knowing the state revision `r` was rendered from (takeOutGone's renders of newer ones are then heeded). */
  applyAt(r: BalancerRender, revision: number): Promise<void>;
  /** Sends one command to the runtime API (stats socket) or, with `master`, to the master CLI. */
  command(cmd: string, opts?: { master?: boolean }): Promise<string>;
  close(): Promise<void>;
}

/** A render HAProxy refused (`haproxy -c`); the config in force is unchanged. */
export class HaproxyConfigError extends Error {
  constructor(readonly haproxyMessage: string) {
    super(`HAProxy refused the new balancer config (the previous one keeps serving): ${haproxyMessage}`);
    this.name = 'HaproxyConfigError';
  }
}

/**
 * HAProxy's output trimmed to what a user can act on: the ALERT lines (WARNING lines when there is no
 * alert) without their prefixes and the generic "errors found" lines, the candidate's path shown as
 * `haproxy.cfg`, and for `parsing [haproxy.cfg:N]` the text of line N.
 */
export function trimHaproxyMessage(output: string, cfgPath: string, configText: string): string {
  const lines = output.split('\n').map((l) => l.trimEnd());
  const pick = (tag: string): string[] => lines.filter((l) => l.startsWith(`[${tag}]`));
  const chosen = pick('ALERT').length ? pick('ALERT') : pick('WARNING');
  const cfgLines = configText.split('\n');
  const out: string[] = [];
  for (const l of chosen) {
    let m = l.replace(/^\[\w+\]\s*\(\d+\)\s*:\s*/, '').replace(/^config\s*:\s*/, '');
    if (/Error\(s\) found in configuration file|Fatal errors found in configuration|error\(s\) found/i.test(m)) continue;
    m = m.split(cfgPath).join('haproxy.cfg');
    const at = /parsing \[haproxy\.cfg:(\d+)\]/.exec(m);
    const src = at ? cfgLines[Number(at[1]) - 1]?.trim() : undefined;
    out.push(src ? `${m} (line ${at?.[1]}: ${src})` : m);
  }
  if (out.length === 0) {
    const tail = lines.filter((l) => l && !l.startsWith('[NOTICE]')).slice(-3);
    return tail.join('; ') || 'haproxy -c failed without a message';
  }
  return out.slice(0, 5).join('; ') + (out.length > 5 ? ` (and ${out.length - 5} more)` : '');
}

interface ProcInfo {
  masterPid: number;
  reloads: number;
  failed: number;
  workers: number[];
}

/** `show proc` of the master CLI. */
export function parseShowProc(text: string): ProcInfo | undefined {
  let section: 'head' | 'workers' | 'old' | 'other' = 'head';
  let info: ProcInfo | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('# workers')) section = 'workers';
    else if (line.startsWith('# old workers')) section = 'old';
    else if (line.startsWith('#')) section = line.startsWith('#<PID>') ? 'head' : 'other';
    else {
      const m = /^(\d+)\s+(\w+)\s+(\d+)(?:\s+\[failed:\s*(\d+)\])?/.exec(line);
      if (!m) continue;
      if (m[2] === 'master') info = { masterPid: Number(m[1]), reloads: Number(m[3]), failed: Number(m[4] ?? 0), workers: [] };
      else if (m[2] === 'worker' && section === 'workers' && info) info.workers.push(Number(m[1]));
    }
  }
  return info;
}

/** One command over a unix socket (HAProxy's CLI answers and closes in non-interactive mode). */
export function socketCommand(path: string, cmd: string, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = createConnection(path);
    let out = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no answer from ${path} to "${cmd}" within ${timeoutMs} ms`));
    }, timeoutMs);
    s.setEncoding('utf8');
    s.on('connect', () => s.end(`${cmd}\n`));
    s.on('data', (d: string) => (out += d));
    s.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    s.on('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
  });
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function sameFiles(a: Record<string, string>, b: Record<string, string>): boolean {
  const ka = Object.keys(a).sort();
  const kb = Object.keys(b).sort();
  return ka.length === kb.length && ka.every((k, i) => k === kb[i] && a[k] === b[k]);
}

/** The same server slots (what the runtime API changes): targets, addresses and ports per backend. */
function sameSlots(a: BalancerRender, b: BalancerRender): boolean {
  return JSON.stringify(a.backends) === JSON.stringify(b.backends);
}

/** `from`'s backends with the slots freed whose target no slot of the same backend in `to` has. */
function withoutGone(from: BalancerRender, to: BalancerRender): RenderedBackend[] {
  const next = new Map(to.backends.map((b) => [b.name, new Set(b.slots.map((x) => x.target).filter((t) => t !== null))] as const));
  return from.backends.map((b) => {
    const keep = next.get(b.name);
    if (!keep) return b; // the whole backend goes away with the reload
    return { ...b, slots: b.slots.map((x) => (x.target !== null && !keep.has(x.target) ? { ...x, target: null } : x)) };
  });
}

/**
 * The certificate files whose contents changed from `from` to `to`, when the file names are the same and
 * every changed one is loaded with `crt <path>` (what `set ssl cert` can replace); otherwise undefined.
 */
export function changedCertFiles(from: BalancerRender, to: BalancerRender): string[] | undefined {
  const names = Object.keys(to.files).sort();
  const prev = Object.keys(from.files).sort();
  if (names.length !== prev.length || names.some((n, i) => n !== prev[i])) return undefined;
  const changed = names.filter((n) => from.files[n] !== to.files[n]);
  const loaded = new Set([...to.config.matchAll(/\scrt\s+(\S+)/g)].map((m) => m[1]));
  return changed.every((n) => loaded.has(n)) ? changed : undefined;
}

/** A PEM as a runtime API payload: the payload ends at the first empty line, so there must be none inside. */
function pemPayload(pem: string): string {
  return pem
    .replace(/\r/g, '')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .join('\n');
}

export function createHaproxyApplier(o: HaproxyApplierOptions): HaproxyApplier {
  const log = o.log;
  const bin = o.haproxyBin ?? 'haproxy';
  const versionsDir = join(o.dir, 'versions');
  const currentLink = join(o.dir, 'current');
  const currentCfg = join(currentLink, 'haproxy.cfg');
  const statsSocket = join(o.dir, 'admin.sock');
  const masterSocket = join(o.dir, 'master.sock');
  const pidFile = join(o.dir, 'haproxy.pid');
  const backoff = o.restartBackoff ?? { initialMs: 500, maxMs: 30_000 };
  const keep = o.keepVersions ?? 2;

  let inForce: BalancerRender | undefined;
  let version = 0;
  let proc: ResultPromise | undefined;
  let procPid: number | undefined;
  let stderrTail: string[] = [];
  let closing = false;
  let restartTimer: NodeJS.Timeout | undefined;
  let restartDelay = backoff.initialMs;
  let startedAt = 0;
  const st: BalancerStatus = { state: 'stopped', warnings: [], reloads: 0, runtimeUpdates: 0, restarts: 0 };
  const listeners: (() => void)[] = [];
  let chain: Promise<unknown> = Promise.resolve();
  /** The newest render seen by takeOutGone: what a worker brought up by a reload must not serve beyond. */
  let newest: { render: BalancerRender; revision: number } | undefined;

  const setStatus = (patch: Partial<BalancerStatus>): void => {
    const before = JSON.stringify(st);
    Object.assign(st, patch);
    if (patch.message === undefined && 'message' in patch) delete st.message;
    if (JSON.stringify(st) !== before) for (const cb of listeners) cb();
  };

  /** Runs `fn` after every earlier apply/restart: one change of HAProxy at a time. */
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const p = chain.then(fn, fn);
    chain = p.catch(() => undefined);
    return p;
  };

  async function nextVersion(): Promise<number> {
    if (version === 0) {
      await mkdir(versionsDir, { recursive: true });
      const names = await readdir(versionsDir);
      version = Math.max(0, ...names.map((n) => Number(n)).filter((n) => Number.isInteger(n)));
    }
    return ++version;
  }

  async function writeVersion(r: BalancerRender): Promise<string> {
    const n = await nextVersion();
    const tmp = join(versionsDir, `.tmp-${n}`);
    const final = join(versionsDir, String(n));
    await rm(tmp, { recursive: true, force: true });
    await mkdir(tmp, { recursive: true, mode: 0o700 });
    await writeFile(join(tmp, 'haproxy.cfg'), r.config, { mode: 0o600 });
    for (const [rel, content] of Object.entries(r.files)) {
      if (rel.startsWith('/') || rel.split('/').includes('..')) throw new Error(`balancer file path ${rel} is not relative to the config directory`);
      await mkdir(dirname(join(tmp, rel)), { recursive: true, mode: 0o700 });
      await writeFile(join(tmp, rel), content, { mode: 0o600 });
    }
    await rename(tmp, final);
    return final;
  }

  async function check(versionDir: string, config: string): Promise<void> {
    const cfg = join(versionDir, 'haproxy.cfg');
    const r = await execa(bin, ['-c', '-f', cfg], { reject: false, timeout: 30_000 });
    if (r.exitCode !== 0) throw new HaproxyConfigError(trimHaproxyMessage(`${r.stdout}\n${r.stderr}`, cfg, config));
  }

  async function swap(versionDir: string): Promise<void> {
    const tmp = `${currentLink}.tmp`;
    await rm(tmp, { force: true });
    await symlink(join('versions', versionDir.split('/').pop() ?? ''), tmp);
    await rename(tmp, currentLink);
  }

  async function prune(): Promise<void> {
    const inUse = (await readlink(currentLink).catch(() => '')).split('/').pop();
    const names = (await readdir(versionsDir)).filter((n) => /^\d+$/.test(n) && n !== inUse).map(Number).sort((a, b) => b - a);
    for (const n of names.slice(keep)) await rm(join(versionsDir, String(n)), { recursive: true, force: true });
  }

  async function showProc(): Promise<ProcInfo | undefined> {
    try {
      return parseShowProc(await socketCommand(masterSocket, 'show proc', 3000));
    } catch {
      return undefined;
    }
  }

  /** Stops a master a previous run left behind (its pid file names it and its command line is ours). */
  async function stopStale(): Promise<void> {
    const pid = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim());
    if (!Number.isInteger(pid) || pid <= 1 || pid === procPid) return;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (!cmdline.includes(masterSocket)) return;
    log.warn({ pid }, 'stopping the HAProxy a previous run left behind');
    await stopPid(pid);
  }

  async function stopPid(pid: number): Promise<void> {
    try {
      process.kill(pid, 'SIGUSR1'); // soft stop: listeners closed, connections finish
    } catch {
      return;
    }
    for (let i = 0; i < 50 && processAlive(pid); i++) await sleep(100);
    if (processAlive(pid)) process.kill(pid, 'SIGTERM');
    for (let i = 0; i < 30 && processAlive(pid); i++) await sleep(100);
    if (processAlive(pid)) process.kill(pid, 'SIGKILL');
  }

  async function start(): Promise<void> {
    await stopStale();
    stderrTail = [];
    const p = execa(bin, ['-W', '-S', `${masterSocket},mode,600`, '-f', currentCfg, '-p', pidFile], {
      reject: false,
      stdin: 'ignore',
      stdout: 'pipe',
      stderr: 'pipe',
      cleanup: true,
      buffer: false,
    });
    proc = p;
    procPid = p.pid;
    startedAt = Date.now();
    const keepTail = (d: Buffer | string): void => {
      for (const l of d.toString().split('\n')) if (l.trim()) stderrTail.push(l.trim());
      stderrTail = stderrTail.slice(-20);
    };
    p.stdout?.on('data', keepTail);
    p.stderr?.on('data', keepTail);
    let exited = false;
    void p.then((res) => {
      exited = true;
      if (proc !== p) return;
      proc = undefined;
      procPid = undefined;
      if (closing) return;
      onUnexpectedExit(`HAProxy (pid ${p.pid}) exited (${res.signal ?? `code ${res.exitCode}`}): ${trimHaproxyMessage(stderrTail.join('\n'), currentCfg, inForce?.config ?? '')}`);
    });
    // Ready when the master answers with a worker.
    for (let i = 0; i < 100; i++) {
      if (exited) throw new Error(`HAProxy did not start: ${trimHaproxyMessage(stderrTail.join('\n'), currentCfg, inForce?.config ?? '')}`);
      const info = await showProc();
      if (info && info.masterPid === p.pid && info.workers.length > 0) {
        log.info({ pid: p.pid, worker: info.workers[0] }, 'HAProxy started');
        setStatus({ masterPid: p.pid });
        return;
      }
      await sleep(100);
    }
    throw new Error(`HAProxy (pid ${p.pid}) did not answer on ${masterSocket} within 10 s`);
  }

  function onUnexpectedExit(message: string): void {
    log.error({ message }, 'HAProxy exited; restarting it with the last good config');
    setStatus({ state: 'degraded', message, masterPid: undefined });
    if (Date.now() - startedAt > 30_000) restartDelay = backoff.initialMs;
    const delay = restartDelay;
    restartDelay = Math.min(restartDelay * 2, backoff.maxMs);
    restartTimer = setTimeout(() => {
      restartTimer = undefined;
      void serial(async () => {
        if (closing || proc) return;
        try {
          await start();
          st.restarts++;
          setStatus({ state: 'ok', message: undefined });
        } catch (err) {
          // start() failing after spawning leaves the exit handler to schedule the next try; a failure
          // before spawning (stopStale, spawn errors) is retried here.
          if (!proc) onUnexpectedExit((err as Error).message);
        }
      });
    }, delay);
  }

  async function reload(): Promise<void> {
    const before = await showProc();
    if (!before) throw new Error(`the HAProxy master does not answer on ${masterSocket}`);
    // The master re-executes itself and closes the CLI connection without an answer (2.6).
    await socketCommand(masterSocket, 'reload', 5000).catch(() => '');
    st.reloads++;
    for (let i = 0; i < 150; i++) {
      await sleep(100);
      const now = await showProc();
      if (!now) continue;
      if (now.failed > before.failed) throw new Error(`HAProxy refused the reload: ${trimHaproxyMessage(stderrTail.join('\n'), currentCfg, inForce?.config ?? '')}`);
      if (now.reloads > before.reloads && now.workers.length > 0 && now.workers.every((w) => !before.workers.includes(w))) return;
    }
    throw new Error('HAProxy did not finish its reload within 15 s');
  }

  /** The slot changes from `from` to `to` as runtime API commands. */
  function runtimeCommands(from: BalancerRender, to: BalancerRender): string[] {
    const cmds: string[] = [];
    const old = new Map(from.backends.map((b) => [b.name, b] as const));
    for (const b of to.backends) {
      const prev = old.get(b.name);
      b.slots.forEach((s, i) => {
        const p = prev?.slots[i];
        if (p && p.target === s.target && p.ip === s.ip && p.port === s.port) return;
        const id = `${b.name}/${s.server}`;
        if (s.target === null) cmds.push(`set server ${id} state maint`);
        else cmds.push(`set server ${id} addr ${s.ip} port ${s.port}`, `set server ${id} state ready`);
      });
    }
    return cmds;
  }

  async function runtimeUpdate(cmds: string[]): Promise<boolean> {
    for (const c of cmds) {
      const answer = (await socketCommand(statsSocket, c)).trim();
      if (answer && !/changed|no need to change/i.test(answer)) {
        log.warn({ command: c, answer }, 'HAProxy runtime API refused a change; reloading instead');
        return false;
      }
    }
    return true;
  }

  /** New contents for loaded certificates: `set ssl cert` + `commit ssl cert` each; false when refused. */
  async function runtimeCertUpdate(paths: string[], files: Record<string, string>): Promise<boolean> {
    if (paths.length === 0) return true;
    try {
      const listed = (await socketCommand(statsSocket, 'show ssl cert')).split('\n').map((l) => l.trim().replace(/^\*/, ''));
      for (const path of paths) {
        if (!listed.includes(path)) {
          log.warn({ path }, 'HAProxy does not list the certificate in `show ssl cert`; reloading instead');
          return false;
        }
        const set = (await socketCommand(statsSocket, `set ssl cert ${path} <<\n${pemPayload(files[path] ?? '')}\n`)).trim();
        const commit = /^Transaction (created|updated)/i.test(set) ? (await socketCommand(statsSocket, `commit ssl cert ${path}`)).trim() : '';
        if (!/Success!/.test(commit)) {
          await socketCommand(statsSocket, `abort ssl cert ${path}`).catch(() => '');
          log.warn({ path, answer: commit || set }, 'HAProxy runtime API refused a certificate; reloading instead');
          return false;
        }
      }
      return true;
    } catch (err) {
      log.warn({ err }, 'HAProxy runtime API did not take the certificates; reloading instead');
      return false;
    }
  }

  /** `set server … state maint` for the slots of `from` whose targets `to` no longer has; inForce follows. */
  async function dropGone(from: BalancerRender, to: BalancerRender): Promise<void> {
    const now: BalancerRender = { ...from, backends: withoutGone(from, to) };
    const cmds = runtimeCommands(from, now);
    if (!cmds.length) return;
    if (await runtimeUpdate(cmds).catch(() => false)) {
      if (inForce === from) inForce = now;
      log.info({ commands: cmds.length }, 'balancer targets that are gone taken out of service');
    }
  }

  async function applyNow(r: BalancerRender, revision?: number): Promise<void> {
    if (!r.config.includes(`stats socket ${statsSocket} `)) {
      throw new Error(`the balancer config does not have the runtime socket ${statsSocket} (render it with statsSocket: applier.statsSocket)`);
    }
    const running = proc !== undefined;
    const previous = running ? inForce : undefined;
    const sameShape = previous !== undefined && configSkeleton(previous.config) === configSkeleton(r.config) && sameFiles(previous.files, r.files);
    if (previous && sameShape && previous.config === r.config && sameSlots(previous, r)) {
      // Nothing to change; a refused render in between is no longer what is asked for.
      setStatus({ state: 'ok', message: undefined, warnings: r.warnings });
      return;
    }
    // Runtime API first, before the version is written and checked: with only server lines changed
    // (endpoint churn) all of them — the new endpoints serve now; otherwise the targets that are gone — a
    // reload takes a second or more on a busy host, and a removed container drains only so long
    // (docker-runtime.ts drainMs).
    let endpointsDone = false;
    if (previous) {
      const now: BalancerRender = { ...previous, backends: sameShape ? r.backends : withoutGone(previous, r) };
      const cmds = runtimeCommands(previous, now);
      if (cmds.length && (await runtimeUpdate(cmds).catch(() => false))) {
        endpointsDone = sameShape;
        // What runs now, should the new version be refused below (the next apply compares against it).
        inForce = now;
        if (sameShape) {
          st.runtimeUpdates++;
          log.info({ commands: cmds.length }, 'balancer endpoints changed through the runtime API');
        }
      } else if (cmds.length && !sameShape) log.warn({ commands: cmds.length }, 'could not take gone targets out before the reload');
    }
    const dir = await writeVersion(r);
    try {
      await check(dir, r.config);
    } catch (err) {
      await rm(dir, { recursive: true, force: true });
      if (err instanceof HaproxyConfigError) setStatus({ state: 'degraded', message: err.haproxyMessage });
      throw err;
    }
    await swap(dir);
    inForce = r;
    if (!running) {
      await start();
    } else if (endpointsDone) {
      // In force already; the version on disk is for a restart.
    } else if (previous && configSkeleton(previous.config) === configSkeleton(r.config) && changedCertFiles(previous, r)) {
      const certs = changedCertFiles(previous, r) ?? [];
      const cmds = runtimeCommands(previous, r);
      if ((await runtimeCertUpdate(certs, r.files)) && (await runtimeUpdate(cmds))) {
        st.runtimeUpdates++;
        log.info({ commands: cmds.length, certificates: certs }, 'balancer endpoints or certificates changed through the runtime API');
      } else await reload();
    } else {
      await reload();
      log.info({ version }, 'HAProxy reloaded');
      // Targets removed while the reload ran: the new worker has them from r; out they go now.
      if (newest && revision !== undefined && newest.revision > revision) await dropGone(r, newest.render);
    }
    setStatus({ state: 'ok', message: undefined, warnings: r.warnings, ...(procPid ? { masterPid: procPid } : {}) });
    await prune().catch((err: unknown) => log.warn({ err }, 'could not remove old balancer versions'));
  }

  return {
    statsSocket,
    masterSocket,
    slots: () => inForce?.slots,
    status: () => ({ ...st, warnings: [...st.warnings] }),
    onStatusChange: (cb) => void listeners.push(cb),
    command: (cmd, opts) => socketCommand(opts?.master ? masterSocket : statsSocket, cmd),
    applyAt: (r, revision) => serial(() => applyNow(r, revision)),
    async takeOutGone(r, revision) {
      if (newest && newest.revision > revision) return;
      newest = { render: r, revision };
      const from = inForce;
      if (!proc || !from) return;
      await dropGone(from, r).catch((err: unknown) => log.warn({ err: (err as Error).message }, 'could not take gone targets out of service'));
    },
    apply: (r) => serial(() => applyNow(r)),
    async verify(r) {
      return serial(async () => {
        const onDisk = await readFile(currentCfg, 'utf8').catch(() => undefined);
        if (proc && onDisk === r.config && inForce?.config === r.config) return undefined;
        const why = !proc ? 'HAProxy was not running' : `${currentCfg} had been changed`;
        if (inForce) inForce = { ...inForce, config: `${inForce.config}# drifted\n` }; // force a full apply
        await applyNow(r);
        return `${why}: restored`;
      });
    },
    async close() {
      closing = true;
      if (restartTimer) clearTimeout(restartTimer);
      await chain;
      const pid = procPid;
      const p = proc;
      proc = undefined;
      procPid = undefined;
      if (pid !== undefined) await stopPid(pid);
      if (p) await p;
      setStatus({ state: 'stopped', message: undefined, masterPid: undefined });
    },
  };
}
