// The per-host agent: registers once, then keeps its environment state current by watching the control
// plane, persists it (incrementally: sync/state-file.ts), hands every new state with what changed to its
// controllers (src/agent/controller) and reports their status. A restarted agent serves from its
// persisted state before the server answers; a missing server means retries with backoff, never a crash.
//
// The revision the agent asks the server `after` is its confirmed one: persisted AND handed to the
// controllers. A failed persist (disk full) leaves it where it was, so the same changes come again on
// the next watch (after a backoff) and nothing is skipped. State listeners (onState) only observe: one
// that throws is logged and holds nothing back.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { hostname as osHostname } from 'node:os';
import { z } from 'zod';
import type { Logger } from '../common/log.js';
import { errorMessage } from '../common/errors.js';
import { writeFileAtomic } from '../common/atomic-file.js';
import type { Registry } from 'prom-client';
import { applyChanges, fullDelta, mergeDeltas, stateFromSnapshot, type EnvState, type StateDelta } from '../model/state.js';
import { ControlPlaneClient, ServerUnavailableError } from './client.js';
import { PersistError, StateStore } from './sync/state-file.js';
import { ControllerManager } from './controller/manager.js';
import { accessKeyOfSecret } from '../common/access-token.js';
import type { Controller } from './controller/controller.js';
import { Backoff, type BackoffPolicy } from './sync/backoff.js';
import { FoundAnswer, type AdoptRequest, type CapabilityStatus, type ContainerReport, type NetworkStatus } from '../model/reports.js';

const Identity = z.object({
  serverUrl: z.string(),
  hostId: z.string(),
  hostUuid: z.string(),
  environmentId: z.string(),
  accessKey: z.string(),
  secretKey: z.string(),
  /** Key of the metadata service tokens (from the watch responses; kept so a restarted agent serves the same tokens). */
  metadataTokenKey: z.string().optional(),
});
type Identity = z.infer<typeof Identity>;

export interface AgentOptions {
  dataDir: string;
  serverUrl: string;
  /** Needed only for the first start (no stored identity). */
  registrationToken?: string;
  hostname?: string;
  agentIp: string;
  labels?: Record<string, string>;
  log: Logger;
  /** Controllers, run in this order (a plain Capability{render, applier} through capabilityController). */
  capabilities?: Controller[];
  /** The agent's metrics registry (controller run durations, errors, health). */
  registry?: Registry;
  /** Controllers' drift check period in ms (default 60 s; 0: none). */
  resyncMs?: number;
  /** Controllers' retry delays after a failure (default 500 ms doubling to 60 s, with jitter). */
  controllerBackoff?: BackoffPolicy;
  /** Retry delays of the watch loop (default 250 ms doubling to 15 s). */
  syncBackoff?: BackoffPolicy;
  /** Seconds a watch request waits on the server. */
  watchTimeoutSec?: number;
  /** Where container states come from (the Docker runtime); reported to the control plane. */
  containerStates?: ContainerStateSource;
  /** The managed network's status of this host (network controller), reported when it changes. */
  networkStatus?: () => NetworkStatus | undefined;
  /** The port of the agent's access endpoints (src/agent/access/server.ts), told to the control plane. */
  accessPort?: () => number | undefined;
}

/** A source of container state reports (the runtime); `onReports` fires when new ones are waiting. */
export interface ContainerStateSource {
  drainReports(): ContainerReport[];
  onReports(cb: () => void): void;
  /** Hand-started containers found on the host, sent in the next report (the control plane adopts them). */
  drainFound?(): AdoptRequest[];
  /** The control plane's answer to the containers sent as found (the record, or why not). */
  foundAnswered?(answers: FoundAnswer[]): void;
}

export class Agent {
  private identity?: Identity;
  private state?: EnvState;
  /** The revision persisted and handed to the controllers: what the agent asks the server `after`. */
  private confirmed = 0;
  /** What changed since `confirmed`, not yet handed over (a persist failed). */
  private unconfirmed: StateDelta | undefined;
  private readonly store: StateStore;
  /** The persisted state's own status (reported as `agent-state`): a full disk shows on the host. */
  private persistStatus: { failures: number; error?: string; lastSuccess?: string; attempts: number } = { failures: 0, attempts: 0 };
  private readonly runner: ControllerManager;
  private readonly log: Logger;
  private readonly abort = new AbortController();
  private loop?: Promise<void>;
  private lastReported = '';
  private lastNetwork = '';
  private lastAccessPort: number | undefined;
  private readonly listeners = new Set<(st: EnvState) => void>();
  private readonly pending = new Map<string, ContainerReport>();
  private reporting: Promise<void> = Promise.resolve();
  private reportTimer: NodeJS.Timeout | undefined;
  private client?: ControlPlaneClient;

  constructor(private readonly opts: AgentOptions) {
    this.log = opts.log.child({ component: 'agent' });
    this.store = new StateStore({ path: join(opts.dataDir, 'state.json') });
    this.runner = new ControllerManager(opts.capabilities ?? [], {
      log: this.log,
      registry: opts.registry,
      resyncMs: opts.resyncMs,
      backoff: opts.controllerBackoff,
      onStatus: () => this.scheduleReport(),
    });
  }

  get statePath(): string {
    return join(this.opts.dataDir, 'state.json');
  }

  get identityPath(): string {
    return join(this.opts.dataDir, 'agent.json');
  }

  currentState(): EnvState | undefined {
    return this.state;
  }

  /** The revision persisted and handed to the controllers (what the next watch asks after). */
  confirmedRevision(): number {
    return this.confirmed;
  }

  /** Each controller's status (what the agent reports in `applied`). */
  statuses(): Record<string, CapabilityStatus> {
    return this.runner.statuses();
  }

  /** Runs every controller's drift check now (tests; normally periodic). */
  resync(): Promise<Record<string, CapabilityStatus>> {
    return this.runner.resync();
  }

  hostId(): string | undefined {
    return this.identity?.hostId;
  }

  /** Called after each new state is in place (tests and embedders); a listener's error is logged, never the sync's. */
  onState(fn: (st: EnvState) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Loads identity and persisted state, applies that state at once, then starts syncing in the background. */
  async start(): Promise<void> {
    this.identity = await this.loadIdentity();
    try {
      const loaded = await this.store.load();
      if (loaded) {
        this.state = loaded.state;
        if (loaded.torn) this.log.warn({ path: this.store.logPath, revision: loaded.state.revision }, 'the persisted state log ends in a torn line: using what is before it');
      }
    } catch (err) {
      this.log.warn({ err: errorMessage(err), path: this.statePath }, 'ignoring an unreadable persisted state; resyncing');
    }
    // Controllers bind their sockets now (a port in use is retried in the background).
    this.runner.start();
    if (this.state && this.identity) {
      this.log.info({ revision: this.state.revision }, 'serving the persisted state until the control plane answers');
      this.unconfirmed = fullDelta(this.state.revision);
      try {
        await this.handOver();
      } catch (err) {
        this.log.error({ err: errorMessage(err) }, 'applying the persisted state failed; the control plane will send it again');
      }
    }
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.abort.abort();
    if (this.reportTimer) clearTimeout(this.reportTimer);
    await this.loop?.catch(() => undefined);
    await this.runner.close();
    this.log.info('agent stopped');
  }

  /** The key of the control plane's access tokens (common/access-token.ts); undefined before registration. */
  accessKey(): string | undefined {
    return this.identity ? accessKeyOfSecret(this.identity.secretKey) : undefined;
  }

  private async loadIdentity(): Promise<Identity | undefined> {
    try {
      return Identity.parse(JSON.parse(await readFile(this.identityPath, 'utf8')));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        this.log.warn({ err: errorMessage(err) }, 'stored agent identity unreadable; registering again');
      }
      return undefined;
    }
  }

  private async register(client: ControlPlaneClient): Promise<Identity> {
    if (!this.opts.registrationToken) {
      throw new Error('this agent has no stored identity and no registration token: pass --token (see `drover agent --help`)');
    }
    const reg = await client.register({
      token: this.opts.registrationToken,
      hostname: this.opts.hostname ?? osHostname(),
      agentIpAddress: this.opts.agentIp,
      ...(this.opts.labels ? { labels: this.opts.labels } : {}),
    });
    const id: Identity = {
      serverUrl: this.opts.serverUrl,
      hostId: reg.host.id,
      hostUuid: reg.host.uuid,
      environmentId: reg.environmentId,
      accessKey: reg.accessKey,
      secretKey: reg.secretKey,
    };
    await writeFileAtomic(this.identityPath, JSON.stringify(id), 0o600);
    this.log.info({ hostId: id.hostId, environmentId: id.environmentId }, 'registered with the control plane');
    return id;
  }

  private async run(): Promise<void> {
    const signal = this.abort.signal;
    const client = new ControlPlaneClient(this.identity?.serverUrl ?? this.opts.serverUrl);
    this.client = client;
    this.opts.containerStates?.onReports(() => this.scheduleReport());
    const backoff = new Backoff(this.opts.syncBackoff ?? { initialMs: 250, maxMs: 15_000 });
    let connected = true;
    while (!signal.aborted) {
      try {
        if (!this.identity) this.identity = await this.register(client);
        client.setCredentials(this.identity);
        this.scheduleReport();
        const after = this.state ? this.confirmed : 0;
        const res = await client.watch(after, this.opts.watchTimeoutSec ?? 30, signal);
        if (!connected) this.log.info('control plane reachable again');
        connected = true;
        const keyChanged = await this.keepTokenKey(res.metadataTokenKey);
        if (res.snapshot) {
          this.state = stateFromSnapshot(res.revision, res.snapshot);
          this.unconfirmed = fullDelta(res.revision);
          await this.persist({ replaced: true });
        } else if (this.state && (res.changes.length || res.environment || res.revision !== this.state.revision || this.unconfirmed)) {
          // Changes after `confirmed`; some may already be in memory (a persist failed after they were
          // applied): upserts and removals of a resource's latest form apply again the same way.
          const delta = applyChanges(this.state, res.revision, res.changes, res.environment);
          this.unconfirmed = this.unconfirmed ? mergeDeltas(this.unconfirmed, delta) : delta;
          await this.persist({ replaced: false, changes: res.changes, environment: res.environment });
        } else if (!this.state) {
          continue;
        } else {
          backoff.reset();
          if (keyChanged) {
            this.unconfirmed = fullDelta(this.state.revision);
            await this.handOver();
          }
          await this.report(client);
          continue;
        }
        await this.handOver();
        backoff.reset();
        await this.report(client);
      } catch (err) {
        if (signal.aborted) break;
        if (err instanceof ServerUnavailableError) {
          if (connected) this.log.warn({ err: err.message }, 'control plane unavailable; retrying with backoff');
          connected = false;
        } else if ((err as { status?: number }).status === 401 && this.identity) {
          this.log.error({ err: errorMessage(err) }, 'credentials rejected; will register again if a token was given');
          if (this.opts.registrationToken) this.identity = undefined;
        } else if (err instanceof PersistError) {
          this.log.error({ err: err.message, revision: this.confirmed }, 'cannot persist the state: the revision stays where it was; retrying');
          this.scheduleReport();
        } else {
          this.log.error({ err: errorMessage(err) }, 'sync failed');
        }
        await backoff.wait(signal);
      }
    }
  }

  private async persist(step: Parameters<StateStore['persist']>[1]): Promise<void> {
    const st = this.state;
    if (!st) return;
    this.persistStatus.attempts++;
    try {
      await this.store.persist(st, step);
    } catch (err) {
      this.persistStatus.failures++;
      this.persistStatus.error = errorMessage(err);
      throw err;
    }
    this.persistStatus = { failures: 0, attempts: this.persistStatus.attempts, lastSuccess: new Date().toISOString() };
  }

  private persistReport(): CapabilityStatus | undefined {
    const p = this.persistStatus;
    if (p.attempts === 0) return undefined;
    const failing = p.failures > 0;
    return {
      revision: this.confirmed,
      ok: !failing,
      state: failing ? 'degraded' : 'ok',
      ...(failing && p.error ? { error: p.error, message: `${p.error} (serving revision ${this.confirmed} meanwhile)` } : {}),
      ...(p.lastSuccess ? { lastSuccess: p.lastSuccess } : {}),
      attempts: p.attempts,
      consecutiveFailures: p.failures,
    };
  }

  /** Stores a new metadata token key with the identity (mode 0600); true when it changed. */
  private async keepTokenKey(key: string | undefined): Promise<boolean> {
    const id = this.identity;
    if (!id || key === undefined || key === id.metadataTokenKey) return false;
    this.identity = { ...id, metadataTokenKey: key };
    await writeFileAtomic(this.identityPath, JSON.stringify(this.identity), 0o600);
    return true;
  }

  /**
   * Hands the state with what changed since `confirmed` to the controllers, confirms the revision, then
   * tells the listeners. Controllers' own failures are theirs to retry (they have the state).
   */
  private async handOver(): Promise<void> {
    const st = this.state;
    if (!st) return;
    const delta = this.unconfirmed ?? fullDelta(st.revision);
    const hostId = this.identity?.hostId ?? '';
    await this.runner.update(st, delta, { hostId, host: st.hosts.get(hostId), metadataTokenKey: this.identity?.metadataTokenKey });
    // Handed over: the controllers merge what comes next onto it themselves.
    this.unconfirmed = undefined;
    this.confirmed = st.revision;
    // Observers: holding the revision back for one would make every watch answer at once with the same
    // changes (no long poll) and delay every later change by the sync backoff, for nothing the
    // controllers need.
    for (const fn of this.listeners) {
      try {
        fn(st);
      } catch (err) {
        this.log.error({ err: errorMessage(err), revision: st.revision }, 'a state listener failed');
      }
    }
  }

  /** Reports capability statuses (when changed) and container states (latest per container). */
  private async report(client: ControlPlaneClient): Promise<void> {
    const run = this.reporting.then(() => this.sendReport(client));
    this.reporting = run.catch(() => undefined);
    return run;
  }

  private async sendReport(client: ControlPlaneClient): Promise<void> {
    for (const r of this.opts.containerStates?.drainReports() ?? []) this.pending.set(r.id, r);
    const applied: Record<string, CapabilityStatus> = this.runner.statuses();
    const persisted = this.persistReport();
    if (persisted) applied['agent-state'] = persisted;
    const key = JSON.stringify(applied);
    const network = this.opts.networkStatus?.();
    const networkKey = network ? JSON.stringify(network) : '';
    const sendNetwork = network !== undefined && networkKey !== this.lastNetwork;
    const found = this.opts.containerStates?.drainFound?.() ?? [];
    const accessPort = this.opts.accessPort?.();
    const sendAccess = accessPort !== undefined && accessPort !== this.lastAccessPort;
    if (key === this.lastReported && this.pending.size === 0 && found.length === 0 && !sendNetwork && !sendAccess) return;
    const containers = [...this.pending.values()];
    this.pending.clear();
    try {
      const res = await client.report({ containers, applied, ...(found.length ? { found } : {}), ...(sendNetwork ? { network } : {}), ...(sendAccess ? { accessPort } : {}) });
      this.lastReported = key;
      if (sendAccess) this.lastAccessPort = accessPort;
      if (sendNetwork) this.lastNetwork = networkKey;
      if (found.length) {
        const answers = z.object({ found: z.array(FoundAnswer).default([]) }).safeParse(res);
        this.opts.containerStates?.foundAnswered?.(answers.success ? answers.data.found : []);
      }
    } catch (err) {
      for (const r of containers) if (!this.pending.has(r.id)) this.pending.set(r.id, r);
      this.log.warn({ err: errorMessage(err) }, 'report failed; will retry');
      if (!this.abort.signal.aborted) setTimeout(() => this.scheduleReport(), 1000).unref();
    }
  }

  /** The control plane signs this host's IPsec CSR (certificate mode); the answer is checked by the caller. */
  async signCertificate(csr: string): Promise<unknown> {
    if (!this.client || !this.identity) throw new Error('the agent is not registered with the control plane yet');
    return this.client.certificate(csr);
  }

  /** Something reported through the options (e.g. the network status) changed: report soon. */
  statusChanged(): void {
    this.scheduleReport();
  }

  private scheduleReport(): void {
    if (this.reportTimer || !this.client || !this.identity) return;
    this.reportTimer = setTimeout(() => {
      this.reportTimer = undefined;
      if (this.client) void this.report(this.client);
    }, 50);
    this.reportTimer.unref();
  }
}
