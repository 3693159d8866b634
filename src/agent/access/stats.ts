// Stats samples in one shape for hosts and containers, as the originals' hoststats/containerstats gave
// them: CPU percent (of one core × cores), memory used/limit in bytes, network bytes received/sent
// (cumulative; a client takes differences).
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import type Dockerode from 'dockerode';

export interface StatsSample {
  at: string;
  cpuPercent: number;
  memory: { usage: number; limit: number };
  network: { rxBytes: number; txBytes: number };
}

const round = (n: number) => Math.round(n * 10) / 10;

/** Samples of this host from /proc (CPU since the previous sample). */
export function hostSampler(procDir = '/proc'): () => StatsSample {
  let prev: { busy: number; total: number } | undefined;
  return () => {
    const cpuLine = readFileSync(`${procDir}/stat`, 'utf8').split('\n')[0] ?? '';
    const v = cpuLine.trim().split(/\s+/).slice(1).map(Number);
    const idle = (v[3] ?? 0) + (v[4] ?? 0);
    const total = v.reduce((a, b) => a + (Number.isFinite(b) ? b : 0), 0);
    const now = { busy: total - idle, total };
    const cpuPercent = prev && now.total > prev.total ? ((now.busy - prev.busy) / (now.total - prev.total)) * 100 * cpus().length : 0;
    prev = now;
    const mem = Object.fromEntries(
      readFileSync(`${procDir}/meminfo`, 'utf8')
        .split('\n')
        .map((l) => /^(\w+):\s+(\d+)/.exec(l))
        .filter((m): m is RegExpExecArray => m !== null)
        .map((m) => [m[1], Number(m[2]) * 1024]),
    ) as Record<string, number>;
    let rx = 0;
    let tx = 0;
    for (const l of readFileSync(`${procDir}/net/dev`, 'utf8').split('\n').slice(2)) {
      const m = /^\s*([^:]+):\s*(.*)$/.exec(l);
      if (!m || m[1] === 'lo') continue;
      const f = (m[2] ?? '').trim().split(/\s+/).map(Number);
      rx += f[0] ?? 0;
      tx += f[8] ?? 0;
    }
    const limit = mem.MemTotal ?? 0;
    return { at: new Date().toISOString(), cpuPercent: round(cpuPercent), memory: { usage: limit - (mem.MemAvailable ?? 0), limit }, network: { rxBytes: rx, txBytes: tx } };
  };
}

interface DockerStats {
  cpu_stats?: { cpu_usage?: { total_usage?: number }; system_cpu_usage?: number; online_cpus?: number };
  precpu_stats?: { cpu_usage?: { total_usage?: number }; system_cpu_usage?: number };
  memory_stats?: { usage?: number; limit?: number; stats?: { inactive_file?: number; cache?: number } };
  networks?: Record<string, { rx_bytes?: number; tx_bytes?: number }>;
}

/** One sample of a container (Docker's one-shot stats with its previous CPU reading); undefined when it is gone. */
export async function containerSample(docker: Dockerode, id: string): Promise<StatsSample | undefined> {
  let s: DockerStats;
  try {
    s = (await docker.getContainer(id).stats({ stream: false })) as unknown as DockerStats;
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode === 404) return undefined;
    throw err;
  }
  return fromDockerStats(s);
}

export function fromDockerStats(s: DockerStats): StatsSample {
  const cpuDelta = (s.cpu_stats?.cpu_usage?.total_usage ?? 0) - (s.precpu_stats?.cpu_usage?.total_usage ?? 0);
  const sysDelta = (s.cpu_stats?.system_cpu_usage ?? 0) - (s.precpu_stats?.system_cpu_usage ?? 0);
  const online = s.cpu_stats?.online_cpus ?? 1;
  const cpuPercent = sysDelta > 0 && cpuDelta > 0 ? (cpuDelta / sysDelta) * online * 100 : 0;
  const cache = s.memory_stats?.stats?.inactive_file ?? s.memory_stats?.stats?.cache ?? 0;
  let rx = 0;
  let tx = 0;
  for (const n of Object.values(s.networks ?? {})) {
    rx += n.rx_bytes ?? 0;
    tx += n.tx_bytes ?? 0;
  }
  return {
    at: new Date().toISOString(),
    cpuPercent: round(cpuPercent),
    memory: { usage: Math.max(0, (s.memory_stats?.usage ?? 0) - cache), limit: s.memory_stats?.limit ?? 0 },
    network: { rxBytes: rx, txBytes: tx },
  };
}
