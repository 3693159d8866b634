// Connectivity between hosts, measured over the overlay: each agent answers `GET /ping` on its tunnel
// address and probes every peer's, so a tunnel that is up in charon but carries nothing shows as what it
// is. `GET /connectivity` answers 200 `OK` when every peer answers, 500 `NOT OK` otherwise, like the
// original network agent.
import { createServer, request, type Server } from 'node:http';
import type { Logger } from '../../../common/log.js';
import { errorMessage } from '../../../common/errors.js';

export const PROBE_PORT = 4791;

export interface PeerReachability {
  hostId: string;
  reachable: boolean;
  /** Since when `reachable` has had its current value (ISO time). */
  since: string;
  lastError?: string;
  rttMs?: number;
}

export interface ProbeTarget {
  hostId: string;
  tunnelIp: string;
}

export interface ProberOptions {
  log: Logger;
  port?: number;
  intervalMs?: number;
  timeoutMs?: number;
  /** Called when a peer's reachability changes (not on every probe). */
  onChange?: (peers: PeerReachability[]) => void;
}

/** One HTTP GET with a hard deadline; resolves with the RTT in ms. */
export function ping(ip: string, port: number, timeoutMs: number, localAddress?: string): Promise<number> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const req = request(
      { host: ip, port, path: '/ping', method: 'GET', timeout: timeoutMs, agent: false, ...(localAddress ? { localAddress } : {}) },
      (res) => {
        res.resume();
        res.on('end', () => (res.statusCode === 200 ? resolve(performance.now() - t0) : reject(new Error(`HTTP ${res.statusCode}`))));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

export class Prober {
  private server: Server | undefined;
  private listening: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private targets: ProbeTarget[] = [];
  private localIp: string | undefined;
  private readonly peers = new Map<string, PeerReachability>();
  private running = false;
  private readonly port: number;
  private readonly intervalMs: number;
  private readonly timeoutMs: number;

  constructor(private readonly opts: ProberOptions) {
    this.port = opts.port ?? PROBE_PORT;
    this.intervalMs = opts.intervalMs ?? 2000;
    this.timeoutMs = opts.timeoutMs ?? 1000;
  }

  /** Listens on `ip` (this host's tunnel address; it must be on an interface) and probes `targets`. */
  async update(ip: string, targets: ProbeTarget[]): Promise<void> {
    this.localIp = ip;
    this.targets = targets;
    const ids = new Set(targets.map((t) => t.hostId));
    let removed = false;
    for (const id of [...this.peers.keys()]) {
      if (!ids.has(id)) {
        this.peers.delete(id);
        removed = true;
      }
    }
    if (removed) this.opts.onChange?.(this.snapshot());
    if (this.listening !== ip) await this.listen(ip);
    if (!this.timer) {
      this.timer = setInterval(() => void this.round(), this.intervalMs);
      this.timer.unref();
      void this.round();
    }
  }

  snapshot(): PeerReachability[] {
    return [...this.peers.values()].sort((a, b) => (a.hostId < b.hostId ? -1 : 1));
  }

  /** Peers that answered at least once and then stopped, or never answered. */
  unreachable(): string[] {
    return this.snapshot()
      .filter((p) => !p.reachable)
      .map((p) => p.hostId);
  }

  private async listen(ip: string): Promise<void> {
    await this.closeServer();
    const server = createServer((req, res) => {
      if (req.url === '/ping') {
        res.writeHead(200, { 'content-type': 'text/plain' }).end('OK');
      } else if (req.url === '/connectivity') {
        const bad = this.unreachable();
        res.writeHead(bad.length ? 500 : 200, { 'content-type': 'text/plain' }).end(bad.length ? 'NOT OK' : 'OK');
      } else {
        res.writeHead(404).end();
      }
    });
    server.headersTimeout = 2000;
    server.requestTimeout = 2000;
    server.maxConnections = 256;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, ip, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => this.opts.log.warn({ err: errorMessage(err) }, 'probe server error'));
    this.server = server;
    this.listening = ip;
  }

  private async round(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      const targets = this.targets;
      const results = await Promise.all(
        targets.map(async (t) => {
          try {
            return { t, rtt: await ping(t.tunnelIp, this.port, this.timeoutMs, this.localIp) };
          } catch (err) {
            return { t, error: errorMessage(err) };
          }
        }),
      );
      let changed = false;
      const now = new Date().toISOString();
      for (const r of results) {
        if (!this.targets.some((x) => x.hostId === r.t.hostId)) continue;
        const cur = this.peers.get(r.t.hostId);
        const reachable = r.rtt !== undefined;
        const next: PeerReachability = {
          hostId: r.t.hostId,
          reachable,
          since: cur && cur.reachable === reachable ? cur.since : now,
          ...(r.error !== undefined ? { lastError: r.error } : cur?.lastError ? { lastError: cur.lastError } : {}),
          ...(r.rtt !== undefined ? { rttMs: Math.round(r.rtt * 100) / 100 } : {}),
        };
        if (!cur || cur.reachable !== reachable) changed = true;
        this.peers.set(r.t.hostId, next);
      }
      if (changed) this.opts.onChange?.(this.snapshot());
    } finally {
      this.running = false;
    }
  }

  private async closeServer(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    this.listening = undefined;
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.closeServer();
  }
}
