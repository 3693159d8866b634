// Process helpers for the lab: identify processes by PID *and* start time (so a PID reused after a
// reboot or a long pause is never signalled), treat zombies as gone (PID 1 on this VM reaps late and
// `kill -0` succeeds on zombies), stop processes by PID (never by name), run short commands.
import { readFileSync, readdirSync } from 'node:fs';
import { execa } from 'execa';

/** A process identity that survives PID reuse: the PID plus its start time (clock ticks since boot). */
export interface ProcRef {
  pid: number;
  startTime: string;
}

interface ProcStat {
  state: string;
  ppid: number;
  pgrp: number;
  startTime: string;
}

function readStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // "pid (comm) state ppid pgrp ..." - comm may contain spaces and parentheses: split after the last ')'.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const state = rest[0];
  const startTime = rest[19];
  if (!state || !startTime) return undefined;
  return { state, ppid: Number(rest[1]), pgrp: Number(rest[2]), startTime };
}

/** The identity of a running process, or undefined when there is no such (live) process. */
export function procRef(pid: number): ProcRef | undefined {
  const st = readStat(pid);
  if (!st || st.state === 'Z' || st.state === 'X') return undefined;
  return { pid, startTime: st.startTime };
}

/** True while the process exists, is not a zombie and is still the same process (start time). */
export function isAlive(ref: ProcRef): boolean {
  const st = readStat(ref.pid);
  return !!st && st.state !== 'Z' && st.state !== 'X' && st.startTime === ref.startTime;
}

/** Sends `sig` to the process (or its whole process group) if it is still the process we started. */
export function signal(ref: ProcRef, sig: NodeJS.Signals, opts: { group?: boolean } = {}): boolean {
  if (!isAlive(ref) || ref.pid <= 1 || ref.pid === process.pid) return false;
  const st = readStat(ref.pid);
  const group = opts.group && st?.pgrp === ref.pid;
  try {
    process.kill(group ? -ref.pid : ref.pid, sig);
    return true;
  } catch {
    return false;
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Waits until none of the processes is alive; returns those still alive after `ms`. */
export async function waitGone(refs: ProcRef[], ms: number): Promise<ProcRef[]> {
  const deadline = Date.now() + ms;
  for (;;) {
    const alive = refs.filter(isAlive);
    if (alive.length === 0 || Date.now() >= deadline) return alive;
    await sleep(50);
  }
}

/** SIGTERM, wait up to `graceMs`, then SIGKILL what is left (and wait for it briefly). */
export async function stopProcesses(refs: ProcRef[], opts: { graceMs: number; group?: boolean }): Promise<void> {
  const group = opts.group ?? false;
  for (const r of refs) signal(r, 'SIGTERM', { group });
  const left = await waitGone(refs, opts.graceMs);
  for (const r of left) signal(r, 'SIGKILL', { group });
  await waitGone(left, 3000);
}

/** PIDs whose cgroup path names one of the given Docker container IDs (container processes of a lab dockerd). */
export function pidsInDockerCgroups(containerIds: string[]): number[] {
  if (containerIds.length === 0) return [];
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let cg: string;
    try {
      cg = readFileSync(`/proc/${name}/cgroup`, 'utf8');
    } catch {
      continue;
    }
    if (containerIds.some((id) => cg.includes(id))) out.push(Number(name));
  }
  return out;
}

export interface RunResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

/** Runs a short command; never throws for a non-zero exit (see `mustRun`). */
export async function run(cmd: string[], opts: { input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  const [file, ...args] = cmd;
  if (!file) throw new Error('run: empty command');
  const r = await execa(file, args, {
    reject: false,
    stripFinalNewline: false,
    timeout: opts.timeoutMs ?? 30_000,
    ...(opts.input !== undefined ? { input: opts.input } : { stdin: 'ignore' }),
    ...(opts.env ? { env: opts.env } : {}),
  });
  if (r.failed && r.exitCode === undefined) {
    // spawn failure (ENOENT) or timeout: no exit code
    const why = r.timedOut ? `timed out after ${opts.timeoutMs ?? 30_000} ms` : r.shortMessage;
    return { stdout: String(r.stdout ?? ''), stderr: `${String(r.stderr ?? '')}${why}`, exitCode: -1 };
  }
  return { stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? ''), exitCode: r.exitCode ?? -1 };
}

/** Runs a command and throws with its stderr when it fails. */
export async function mustRun(cmd: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<string> {
  const r = await run(cmd, opts);
  if (r.exitCode !== 0) throw new Error(`command failed (exit ${r.exitCode}): ${cmd.join(' ')}\n${r.stderr.trim()}`);
  return r.stdout;
}
