// One dockerd per host netns. Started with `nsenter --net=...` (NOT `ip netns exec`: that remounts /sys
// and the cgroup v1 hierarchies vanish - "Devices cgroup isn't mounted"), with its own data-root,
// exec-root (and so its own managed containerd), socket, pidfile and an empty config file.
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import Docker from 'dockerode';
import { isAlive, procRef, sleep, stopProcesses, type ProcRef } from './proc.js';
import type { HostState } from './state.js';

/** docker0 stays out of 10.42.0.0/16 (the managed network) and out of the root's 172.17/16. */
export const DOCKER0_BIP = '172.18.0.1/16';

export function dockerdArgs(h: HostState, id: string): string[] {
  return [
    `--data-root=${h.dataRoot}`,
    `--exec-root=${h.execRoot}`,
    `--pidfile=${join(h.dir, 'dockerd.pid')}`,
    `--host=unix://${h.dockerSocket}`,
    `--config-file=${join(h.dir, 'daemon.json')}`,
    `--bip=${DOCKER0_BIP}`,
    // no MASQUERADE for container traffic: the overlay must see container source addresses
    '--ip-masq=false',
    '--userland-proxy=false',
    // only matters if dockerd finds a system containerd at /run/containerd/containerd.sock and uses it
    `--containerd-namespace=dl${id}-${h.name}`,
    `--containerd-plugins-namespace=dl${id}-${h.name}-plugins`,
  ];
}

/** Starts dockerd in the host's netns, detached (own session), output appended to its log. */
export function spawnDockerd(h: HostState, id: string): ProcRef {
  mkdirSync(h.dir, { recursive: true });
  writeFileSync(join(h.dir, 'daemon.json'), '{}\n');
  rmSync(h.dockerSocket, { force: true });
  const fd = openSync(h.dockerdLog, 'a');
  try {
    const child = spawn('nsenter', [`--net=/run/netns/${h.netns}`, 'dockerd', ...dockerdArgs(h, id)], {
      detached: true,
      stdio: ['ignore', fd, fd],
    });
    child.on('error', () => undefined); // reported through the missing PID / readiness check
    child.unref();
    const ref = child.pid !== undefined ? procRef(child.pid) : undefined;
    if (!ref) throw new Error(`could not start dockerd for ${h.name} (nsenter missing? apt-get install util-linux)`);
    return ref;
  } finally {
    closeSync(fd);
  }
}

/** GET /_ping on the socket: true when the daemon answers OK. */
export function pingDocker(socketPath: string, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ socketPath, path: '/_ping', method: 'GET', timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve(res.statusCode === 200 && body.trim() === 'OK'));
      res.on('error', () => resolve(false));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
    req.end();
  });
}

function logTail(file: string, lines = 8): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Waits until the daemon answers /_ping; fails early (with the log's tail) when it dies. */
export async function waitDockerd(h: HostState, ref: ProcRef, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await pingDocker(h.dockerSocket)) return;
    if (!isAlive(ref)) throw new Error(`dockerd of ${h.name} exited during start; ${h.dockerdLog}:\n${logTail(h.dockerdLog)}`);
    if (Date.now() > deadline) throw new Error(`dockerd of ${h.name} not ready after ${ms} ms; ${h.dockerdLog}:\n${logTail(h.dockerdLog)}`);
    await sleep(50);
  }
}

/** SIGTERM by PID and wait (dockerd stops its containers and containerd), SIGKILL after `graceMs`. */
export async function stopDockerd(ref: ProcRef, graceMs = 30_000): Promise<void> {
  await stopProcesses([ref], { graceMs });
}

/** `docker rm -f` of every container (SIGKILL: no 10 s stop timeout for PID 1s that ignore SIGTERM). */
export async function removeAllContainers(docker: Docker): Promise<number> {
  const list = await docker.listContainers({ all: true });
  await Promise.all(list.map((c) => docker.getContainer(c.Id).remove({ force: true, v: true })));
  return list.length;
}

/** IDs of the containers a data-root knows (from <data-root>/containers/), for the leftover-process sweep. */
export function containerIdsOnDisk(dataRoot: string): string[] {
  try {
    return readdirSync(join(dataRoot, 'containers')).filter((n) => /^[0-9a-f]{64}$/.test(n));
  } catch {
    return [];
  }
}
