// The network controller (README.md): one reconcile puts this host's part of the managed network in
// place — charon's connections (IPsec mode), the overlay (VXLAN device, neighbours, FDB, routes) and the
// host firewall (CATTLE_* chains) — each through its own idempotent applier, and keeps probing the peers.
// The parts are injected (parts.ts builds the real ones), so the order and the failure handling are
// tested here without root.
import type { Logger } from '../../../common/log.js';
import { errorMessage } from '../../../common/errors.js';
import type { Controller, HostContext } from '../../controller/controller.js';
import type { EnvState } from '../../../model/state.js';
import { byIp, networkInputs, type LocalContainer, type NetworkHost, type NetworkInputs, type OverlayMode, type RemoteContainer } from './inputs.js';
import { Prober, type PeerReachability } from './probe.js';

export type EspBackend = 'kernel' | 'libipsec';

/** First repair of an unreachable peer's tunnel (two failed probes' worth), then doubling up to a minute. */
const REPAIR_FIRST_MS = 3000;
const REPAIR_MAX_MS = 60_000;

/** IPsec authentication material for this host. */
export type IpsecAuth = { kind: 'psk'; psk: string } | { kind: 'cert'; certPem: string; keyPem: string; caPem: string; crlPem?: string };

export interface IpsecPart {
  /** Starts charon (once); resolves with the ESP backend it found. */
  start(): Promise<{ backend: EspBackend; reason: string }>;
  /** Worst-case bytes the ESP-in-UDP tunnel adds to a packet (for the MTU). */
  overhead(): number;
  /** Loads the connections to `peers` (only new or changed ones), unloads the others. */
  apply(self: NetworkHost, peers: NetworkHost[], auth: IpsecAuth): Promise<void>;
  /** Repairs what charon lost; re-initiates `stale` peers (no traffic through their tunnel). */
  verify(stale: string[]): Promise<string | undefined>;
  /** Stops charon (the overlay mode changed away from IPsec). */
  stop(): Promise<void>;
  /** Lets go of charon without stopping it (agent shutdown). */
  detach?(): Promise<void>;
}

export interface DataplanePart {
  /** Puts the overlay in place; resolves with what it repaired or changed, if anything. */
  apply(inputs: NetworkInputs & { self: NetworkHost }, overhead: number): Promise<void>;
  verify(): Promise<string | undefined>;
  remove(): Promise<void>;
  /** The containers' MTU the last apply computed. */
  mtu?(): number | undefined;
}

export interface FirewallPart {
  /** `veths`: host-side interface of local containers, by container id (anti-spoofing needs it). */
  apply(inputs: NetworkInputs, veths: ReadonlyMap<string, string>): Promise<void>;
  verify(): Promise<string | undefined>;
  remove(): Promise<void>;
}

export interface NetworkParts {
  ipsec: () => IpsecPart;
  dataplane: DataplanePart;
  firewall: FirewallPart;
  /** The host-side veth of a running container (by its Docker id), undefined when not running. */
  vethOf(externalId: string): Promise<string | undefined>;
  /** This host's IPsec identity (certificate mode): issued by the control plane's CA. */
  identity?: () => Promise<{ certPem: string; keyPem: string; caPem: string }>;
}

export interface NetworkReport {
  mode: OverlayMode;
  backend: EspBackend | 'none';
  mtu?: number;
  peers: PeerReachability[];
}

export interface NetworkControllerOptions {
  log: Logger;
  parts: NetworkParts;
  /** Called with the network's part of the host status whenever it changes. */
  onReport?: (r: NetworkReport) => void;
  prober?: Prober;
  /** Probe settings of the prober built here (tests: a free port, short intervals). */
  probe?: { port?: number; intervalMs?: number; timeoutMs?: number };
  /** CRL of the environment's CA (certificate mode), from the control plane. */
  crl?: () => string | undefined;
  /**
   * A container that leaves the state (scaled down, removed) keeps its route, and on its own host its
   * anti-spoofing allowance, this long — unless another container takes its address — while its host's
   * runtime drains it (the same period, docker-runtime.ts `drainMs`): the connections it still serves
   * finish, and a balancer or client that has not yet heard of the removal is not black-holed. Default 0.
   * A container whose service sets drain_timeout_ms (its `drainMs` in the inputs) lingers that long instead.
   */
  lingerMs?: number;
}

/** A container that left the state, kept in the inputs until `until` (lingerMs). */
type Lingering = { until: number } & ({ kind: 'local'; c: LocalContainer } | { kind: 'remote'; c: RemoteContainer });

export class NetworkController implements Controller {
  readonly name = 'network';
  private readonly log: Logger;
  private ipsec: IpsecPart | undefined;
  private backend: EspBackend | 'none' = 'none';
  private mode: OverlayMode | undefined;
  private readonly prober: Prober;
  private last: { state: EnvState; host: HostContext } | undefined;
  private veths = new Map<string, string>();
  private chain: Promise<void> = Promise.resolve();
  private stopped = false;
  private mtu: number | undefined;

  /** Local container addresses the firewall in force lets through (anti-spoofing), and who waits for one. */
  private allowedIps = new Set<string>();
  private readonly ipWaiters = new Map<string, Set<() => void>>();
  /** By address: containers that left the state, still routed (lingerMs). */
  private readonly lingering = new Map<string, Lingering>();
  private lingerTimer: NodeJS.Timeout | undefined;
  private prevInputs: NetworkInputs | undefined;

  constructor(private readonly o: NetworkControllerOptions) {
    this.log = o.log.child({ component: 'network' });
    this.prober = o.prober ?? new Prober({ log: this.log, ...(o.probe ?? {}), onChange: () => this.probesChanged() });
  }

  // ---- repair on probe failure: a peer unreachable over the overlay gets its SA re-initiated within
  // seconds (not at the next resync): e.g. the peer tore the old SA down to re-authenticate while our
  // configuration was not loaded yet, and nobody would retry. Retried with backoff while it lasts.
  private repairTimer: NodeJS.Timeout | undefined;
  private repairs = 0;

  private probesChanged(): void {
    this.report();
    if (this.tunnelSuspects().length) this.scheduleRepair();
    else this.repairs = 0;
  }

  /**
   * Peers whose probes get no answer at all. A refused connection crossed the tunnel (the peer's kernel
   * answered): its agent is down or restarting, the tunnel is fine and must not be torn down.
   */
  private tunnelSuspects(): string[] {
    return this.prober
      .snapshot()
      .filter((p) => !p.reachable && !/ECONNREFUSED/.test(p.lastError ?? ''))
      .map((p) => p.hostId);
  }

  private scheduleRepair(): void {
    if (this.repairTimer || this.stopped || !this.ipsec) return;
    const wait = Math.min(REPAIR_MAX_MS, REPAIR_FIRST_MS * 2 ** Math.min(this.repairs, 6));
    this.repairTimer = setTimeout(() => {
      this.repairTimer = undefined;
      const stale = this.tunnelSuspects();
      if (!stale.length || this.stopped) {
        this.repairs = 0;
        return;
      }
      this.repairs++;
      this.exclusive(async () => {
        const r = await this.ipsec?.verify(stale);
        if (r) this.log.warn({ peers: stale, repaired: r }, 'peers unreachable over the overlay: IPsec repaired');
      })
        .catch((err: unknown) => this.log.warn({ peers: stale, err: errorMessage(err) }, 'could not repair the tunnels of unreachable peers'))
        .finally(() => {
          if (this.tunnelSuspects().length) this.scheduleRepair();
          else this.repairs = 0;
        });
    }, wait);
    this.repairTimer.unref();
  }

  /** Serializes reconciles, resyncs and veth refreshes (they share the appliers). */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  async reconcile(state: EnvState, _delta: unknown, host: HostContext): Promise<void> {
    await this.exclusive(() => this.reconcileNow(state, host));
  }

  private async reconcileNow(state: EnvState, host: HostContext): Promise<void> {
    if (this.stopped) return;
    this.last = { state, host };
    const fresh = networkInputs(state, host.hostId);
    this.updateLingering(fresh);
    const inputs = this.withLingering(fresh);
    const self = inputs.self;
    if (!self) {
      throw new Error(
        'this host has no tunnel address yet (the control plane allocates one per host); the managed network waits for it',
      );
    }
    let overhead = 0;
    if (inputs.mode === 'ipsec') {
      const ipsec = await this.ensureIpsec();
      overhead = ipsec.overhead();
      await ipsec.apply(self, inputs.peers, await this.auth(state, inputs));
    } else if (this.ipsec) {
      await this.ipsec.stop();
      this.ipsec = undefined;
      this.backend = 'none';
    }
    this.mode = inputs.mode;
    await this.o.parts.dataplane.apply({ ...inputs, self }, overhead);
    this.mtu = this.o.parts.dataplane.mtu?.() ?? this.mtu;
    await this.refreshVeths(inputs.localContainers);
    await this.o.parts.firewall.apply(inputs, this.veths);
    this.firewallApplied(inputs);
    await this.prober.update(
      self.tunnelIp,
      inputs.peers.map((p) => ({ hostId: p.hostId, tunnelIp: p.tunnelIp })),
    );
    this.report();
  }

  // ---- start gate: a container starts once the firewall lets its address through ----------------

  private firewallApplied(inputs: NetworkInputs): void {
    this.allowedIps = new Set(inputs.localContainers.map((c) => c.ip));
    for (const [ip, ws] of this.ipWaiters) {
      if (!this.allowedIps.has(ip)) continue;
      this.ipWaiters.delete(ip);
      for (const w of ws) w();
    }
  }

  /**
   * Resolves true once the firewall in force lets `ip` (a container of this host) through, false after
   * `timeoutMs`. The runtime waits for it before starting a new container: until then the anti-spoofing
   * rules drop what the container sends, and a peer (a balancer) that already sees it running would have
   * its connections' first packets lost.
   */
  whenAllowed(ip: string, timeoutMs = 10_000): Promise<boolean> {
    if (this.allowedIps.has(ip) || this.stopped) return Promise.resolve(true);
    return new Promise((resolve) => {
      let ws = this.ipWaiters.get(ip);
      if (!ws) this.ipWaiters.set(ip, (ws = new Set()));
      const set = ws;
      const done = () => {
        clearTimeout(timer);
        resolve(true);
      };
      const timer = setTimeout(() => {
        set.delete(done);
        if (!set.size) this.ipWaiters.delete(ip);
        resolve(false);
      }, timeoutMs);
      set.add(done);
    });
  }

  // ---- lingering: containers that left the state stay routed for lingerMs (see the option) ----------

  /** Notes the containers `fresh` no longer has (from the previous inputs), forgets expired or re-taken ones. */
  private updateLingering(fresh: NetworkInputs): void {
    const linger = (c: { drainMs?: number }) => c.drainMs ?? this.o.lingerMs ?? 0;
    const prev = this.prevInputs;
    this.prevInputs = fresh;
    const now = Date.now();
    const taken = new Set([...fresh.localContainers.map((c) => c.ip), ...fresh.remoteContainers.map((c) => c.ip)]);
    if (prev) {
      for (const c of prev.localContainers) {
        if (!taken.has(c.ip) && !this.lingering.has(c.ip) && linger(c) > 0) this.lingering.set(c.ip, { kind: 'local', c: { ...c, ports: [] }, until: now + linger(c) });
      }
      for (const c of prev.remoteContainers) {
        if (!taken.has(c.ip) && !this.lingering.has(c.ip) && linger(c) > 0) this.lingering.set(c.ip, { kind: 'remote', c, until: now + linger(c) });
      }
    }
    for (const [ip, l] of this.lingering) if (taken.has(ip) || l.until <= now) this.lingering.delete(ip);
    this.scheduleLingerEnd();
  }

  /** `fresh` plus the lingering containers (a remote one only while its host is still a peer). */
  private withLingering(fresh: NetworkInputs): NetworkInputs {
    if (!this.lingering.size) return fresh;
    const peers = new Set(fresh.peers.map((p) => p.hostId));
    const local = [...fresh.localContainers];
    const remote = [...fresh.remoteContainers];
    for (const l of this.lingering.values()) {
      if (l.kind === 'local') local.push(l.c);
      else if (peers.has(l.c.hostId)) remote.push(l.c);
    }
    local.sort(byIp);
    remote.sort(byIp);
    return { ...fresh, localContainers: local, remoteContainers: remote };
  }

  /** When the first lingering container expires, reconcile again without it. */
  private scheduleLingerEnd(): void {
    if (this.lingerTimer) clearTimeout(this.lingerTimer);
    this.lingerTimer = undefined;
    if (!this.lingering.size || this.stopped) return;
    const next = Math.min(...[...this.lingering.values()].map((l) => l.until));
    this.lingerTimer = setTimeout(() => {
      this.lingerTimer = undefined;
      const last = this.last;
      if (!last || this.stopped) return;
      this.exclusive(() => this.reconcileNow(last.state, last.host)).catch((err: unknown) =>
        this.log.warn({ err: errorMessage(err) }, 'could not remove the routes of drained containers (the next reconcile does)'),
      );
    }, Math.max(0, next - Date.now()) + 10);
    this.lingerTimer.unref();
  }

  /** A container of this host started or stopped: its veth changed, so did the anti-spoofing rules. */
  containersChanged(): void {
    const last = this.last;
    if (!last || this.stopped) return;
    void this.exclusive(async () => {
      const inputs = this.withLingering(networkInputs(last.state, last.host.hostId));
      const before = JSON.stringify([...this.veths]);
      await this.refreshVeths(inputs.localContainers);
      if (JSON.stringify([...this.veths]) !== before) {
        await this.o.parts.firewall.apply(inputs, this.veths);
        this.firewallApplied(inputs);
      }
    }).catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, 'could not refresh the anti-spoofing rules'));
  }

  async verify(state: EnvState, host: HostContext): Promise<string | undefined> {
    return this.exclusive(async () => {
      this.last = { state, host };
      const repaired: string[] = [];
      if (this.ipsec) {
        const r = await this.ipsec.verify(this.tunnelSuspects());
        if (r) repaired.push(`ipsec: ${r}`);
      }
      const d = await this.o.parts.dataplane.verify();
      if (d) repaired.push(`overlay: ${d}`);
      const f = await this.o.parts.firewall.verify();
      if (f) repaired.push(`iptables: ${f}`);
      return repaired.length ? repaired.join('; ') : undefined;
    });
  }

  health(): { state: 'degraded'; message: string } | undefined {
    const down = this.prober.snapshot().filter((p) => !p.reachable);
    if (!down.length) return undefined;
    return { state: 'degraded', message: `peers not reachable over the overlay: ${down.map((p) => `${p.hostId} (${p.lastError ?? 'no answer'})`).join(', ')}` };
  }

  private notifyHealth: (() => void) | undefined;
  onHealthChange(notify: () => void): void {
    this.notifyHealth = notify;
  }

  private report(): void {
    this.notifyHealth?.();
    if (!this.mode) return;
    this.o.onReport?.({ mode: this.mode, backend: this.backend, ...(this.mtu !== undefined ? { mtu: this.mtu } : {}), peers: this.prober.snapshot() });
  }

  private async ensureIpsec(): Promise<IpsecPart> {
    if (this.ipsec) return this.ipsec;
    const ipsec = this.o.parts.ipsec();
    const { backend, reason } = await ipsec.start();
    this.log.info({ backend, reason }, 'charon started');
    this.ipsec = ipsec;
    this.backend = backend;
    return ipsec;
  }

  private async auth(state: EnvState, inputs: NetworkInputs): Promise<IpsecAuth> {
    if (inputs.auth === 'cert') {
      if (!this.o.parts.identity) throw new Error('the environment uses certificate authentication but this agent has no identity provider');
      const id = await this.o.parts.identity();
      const crl = this.o.crl?.();
      return { kind: 'cert', ...id, ...(crl ? { crlPem: crl } : {}) };
    }
    const psk = state.environment.network.ipsecPsk;
    if (!psk) throw new Error('the environment has no IPsec pre-shared key (the control plane sends it to registered agents)');
    return { kind: 'psk', psk };
  }

  private async refreshVeths(local: LocalContainer[]): Promise<void> {
    const next = new Map<string, string>();
    await Promise.all(
      local.map(async (c) => {
        if (!c.externalId) return;
        try {
          const veth = await this.o.parts.vethOf(c.externalId);
          if (veth) next.set(c.id, veth);
        } catch (err) {
          this.log.debug({ container: c.name, err: errorMessage(err) }, 'no veth for container');
        }
      }),
    );
    this.veths = next;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.repairTimer) clearTimeout(this.repairTimer);
    if (this.lingerTimer) clearTimeout(this.lingerTimer);
    await this.prober.stop();
    // The data path stays in place when the agent stops, charon included: containers keep talking while
    // the agent restarts, and the restarted agent adopts the running charon (ipsec/charon.ts).
    await this.exclusive(async () => {
      await this.ipsec?.detach?.();
    });
  }
}
