// A data directory belongs to one drover process at a time: a lock file holding the owner's PID.
// A lock whose process is gone (crashed, killed -9) is stale and taken over. A PID reused by an
// unrelated process after a crash keeps the lock "held" until that process ends: the error names the
// PID and the file, so a user can check it and delete the file.
import { closeSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { z } from 'zod';
import { StartupError } from './errors.js';

const LockContent = z.object({ pid: z.number().int().positive(), role: z.string(), since: z.string() });
export type LockHolder = z.infer<typeof LockContent>;

export interface PidLock {
  path: string;
  release(): void;
}

function reason(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e.code === 'EACCES' || e.code === 'EPERM'
    ? 'permission denied'
    : e.code === 'EROFS'
      ? 'read-only file system'
      : e.code === 'ENOTDIR' || e.code === 'EEXIST'
        ? 'a file is in the way'
        : e.code === 'ENOSPC'
          ? 'no space left on the device'
          : e.message;
}

/** Whether a process with this PID is running (a zombie, killed but not reaped, is not). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    // /proc/<pid>/stat: "pid (comm) S …"; the state follows the last ')'.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true; // no /proc: trust kill(0)
  }
}

/** The live process holding the lock file, if any (a missing, unreadable or stale lock has none). */
export function lockHolder(path: string): LockHolder | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return undefined; // half written by a process that died at once
  }
  const r = LockContent.safeParse(parsed);
  return r.success && processAlive(r.data.pid) ? r.data : undefined;
}

export function inUseError(dir: string, holder: LockHolder, path: string): StartupError {
  return new StartupError(
    'DataDirInUse',
    `data directory ${dir} is in use by ${holder.role} (pid ${holder.pid}, since ${holder.since}); stop it first, or use --data (lock: ${path})`,
  );
}

/** Makes sure dir exists and is writable, as a one-line error a user can act on. */
function ensureDataDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new StartupError('DataDirUnusable', `cannot use data directory ${dir}: ${reason(err)}`);
  }
}

/**
 * Takes the lock file at `path` for this process (creating its directory, the data directory it locks),
 * or throws a StartupError naming the live holder. Released by release() and when the process exits.
 */
export function acquirePidLock(path: string, role: string): PidLock {
  const dir = dirname(path);
  ensureDataDir(dir);
  const mine = JSON.stringify({ pid: process.pid, role, since: new Date().toISOString() });
  for (let attempt = 0; ; attempt++) {
    let fd: number;
    try {
      fd = openSync(path, 'wx', 0o644);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new StartupError('DataDirUnusable', `cannot use data directory ${dir}: ${reason(err)}`);
      }
      const holder = lockHolder(path);
      if (holder && holder.pid !== process.pid) throw inUseError(dir, holder, path);
      if (attempt >= 3) throw new StartupError('DataDirUnusable', `cannot take the lock ${path}: it keeps coming back`);
      try {
        unlinkSync(path); // stale: its process is gone (or it is ours from an earlier start)
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
          throw new StartupError('DataDirUnusable', `cannot use data directory ${dir}: ${reason(e)}`);
        }
      }
      continue;
    }
    try {
      writeSync(fd, mine);
    } finally {
      closeSync(fd);
    }
    break;
  }
  let released = false;
  const release = (): void => {
    if (released) return;
    released = true;
    process.off('exit', release);
    try {
      const held = LockContent.safeParse(JSON.parse(readFileSync(path, 'utf8')));
      if (held.success && held.data.pid === process.pid) unlinkSync(path);
    } catch {
      // gone already, or not ours any more
    }
  };
  process.on('exit', release);
  return { path, release };
}
