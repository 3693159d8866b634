// Runs what the control plane scheduled on this host through Docker, and reports what happens to it.
//
// A reconciler: every container converges on its own. The capability's `apply` stores the desired
// containers and runs a pass: the pass makes sure the managed network exists, lists the containers once
// and puts every container that needs looking at into a work queue keyed by its record uuid
// (work-queue.ts: at most one operation in flight per container, at most `concurrency` at once, retries
// with exponential backoff per container). One container's job:
//   - removes it when it is no longer desired (and duplicates of one record),
//   - recreates it when its launch config changed (`io.drover.config-hash`) or it was removed by hand,
//   - creates it once its dependencies exist (volumes_from sidekicks) and no stopping container of
//     drover still holds its address (an upgrade's previous generation, a rollback's new one),
//   - starts/stops it to match the desired state: a container that exited while desired running is
//     started again (with a crash-loop backoff) unless it is start_once and has run,
//   - reports the record's state (only changes reach the control plane).
// A container whose image must be pulled asks the pull queue (pull-queue.ts: one pull per image, shared,
// bounded) and steps aside; the end of the pull wakes it. So a pull (up to pullTimeoutMs) never delays
// stops, removals or restarts of other containers. The runtime's status says what is going on: ok,
// degraded ("pulling busybox:latest for 2 containers") or failed (with each container's error).
// Docker events wake the containers they are about; the periodic pass is the resync that repairs drift.
// Hand-started containers labelled io.rancher.container.network=true are reported as found (with the
// next container reports; the control plane adopts them and answers with the record) — never a call
// to the control plane inside a pass; adopted ones are kept on the managed network with their address
// and reported `removed` once they are gone.
// Only containers carrying drover's labels are touched, besides the network attachment of adopted ones.
import Dockerode from 'dockerode';
import type { Logger } from '../../common/log.js';
import { errorMessage } from '../../common/errors.js';
import { MAX_FOUND_PER_REPORT, type AdoptRequest, type ContainerReport, type FoundAnswer } from '../../model/reports.js';
import type { Capability } from '../capabilities/capability.js';
import type { ContainerStateSource } from '../agent.js';
import { renderRuntime, sameArtefact, type RuntimeArtefact } from './artefact.js';
import { LABEL_CONFIG_HASH, LABEL_RECORD_ID, type DesiredContainer } from './desired.js';
import { canonicalJson } from '../../common/canonical-json.js';
import { LABELS } from '../../model/labels.js';
import { MANAGED_NETWORK, createOptions } from './create-spec.js';
import {
  InspectedContainer,
  ListedContainers,
  dockerMessage,
  dockerStatus,
  hasStarted,
  lastRunMs,
  type DockerEvent,
  type ListedContainer,
} from './docker-api.js';
import { PullFailures, hasImage, pullImage } from './images.js';
import { ensureManagedNetwork } from './network.js';
import { DockerEventWatcher } from './events.js';
import { Coalescer } from './coalesce.js';
import { ReportBook, type RuntimeState } from './report-book.js';
import { adoptRequestOf, attachToManagedNetwork } from './adoption.js';
import { ContainerActionError, ConvergeError, ImageUnavailableError, RuntimeError } from './errors.js';
import { KeyedQueue, type KeyedQueueStats } from './work-queue.js';
import { PullQueue } from './pull-queue.js';
import { backoffDelayMs, type BackoffPolicy } from '../sync/backoff.js';

export interface DockerRuntimeOptions {
  /** The Docker socket (`/var/run/docker.sock`). */
  socketPath: string;
  log: Logger;
  /** dockerd's network namespace (a netns file) when it is not the agent's: where the bridge sysctls go. */
  netns?: string;
  /** Resync (a pass over every container) interval; default 30 s. */
  resyncIntervalMs?: number;
  /** Seconds Docker waits after SIGTERM when stopping; default 10. */
  stopTimeoutSec?: number;
  pullTimeoutMs?: number;
  /** A container that ran shorter than this before exiting counts towards the crash-loop backoff. */
  quickExitMs?: number;
  maxRestartDelayMs?: number;
  /**
   * A container found stopped while desired running is started again only after this long (default
   * 2 s): when dockerd itself is shutting down it stops every container first, and starting them again
   * while it goes away leaves containerd tasks behind that block later starts.
   */
  restartGraceMs?: number;
  /** Events wait this long for more before they wake their containers (coalescing bursts). */
  eventDebounceMs?: number;
  /**
   * How long `apply` waits for the containers' operations to settle (default 20 s). Pulls are never
   * waited for: the status says they are going on.
   */
  applyWaitMs?: number;
  /** Containers converging at once (default 4). */
  concurrency?: number;
  /** Image pulls at once (default 2). */
  pullConcurrency?: number;
  /**
   * The containers' MTU for an overlay (capabilities/network computes it from the underlay); absent:
   * Docker's default.
   */
  networkMtu?: (overlay: 'ipsec' | 'vxlan', override: number | undefined) => number | undefined;
  /** Publish managed containers' ports through Docker (default true); false when the network controller does. */
  publishPorts?: boolean;
  /** Backoff of a container whose operation failed: first retry, and the longest wait (default 1 s, 60 s). */
  retryBackoff?: BackoffPolicy;
  /**
   * A running container that is no longer desired here (scaled down, its service or stack removed, moved)
   * keeps running this long before it is removed, and one desired stopped (an upgrade's old generation, a
   * deactivated service) before it is stopped (default 0: at once). The control plane takes it out of
   * every host's DNS answers and balancer backends the moment it is no longer desired; the drain lets
   * those changes land first, so that no new connection is sent to a container that is already gone.
   */
  drainMs?: number;
  /**
   * Awaited before a new managed container is started (the host agent: until the network's firewall
   * lets its address through, capabilities/network/controller.ts whenAllowed).
   */
  beforeStart?: (c: { name: string; ip: string }) => Promise<void>;
}

export interface PassResult {
  failures: string[];
}

/** What the runtime is doing, honestly: `degraded` while pulls keep containers waiting, `failed` when containers cannot converge. */
export interface RuntimeStatus {
  state: 'ok' | 'degraded' | 'failed';
  /** '' when ok. */
  message: string;
  /** Pulls queued or running, with the docker names of the containers waiting for them. */
  pulls: { image: string; state: 'queued' | 'pulling'; containers: string[]; since: string }[];
  /** `name: error` of every container that failed its last operation. */
  failures: string[];
  /** Container operations running / waiting for a slot / scheduled (retries, crash-loop delays). */
  queue: KeyedQueueStats;
  /** When the status was last `ok` (ISO), if ever. */
  lastOkAt?: string;
}

interface RestartBook {
  consecutive: number;
  at: number;
}

/** The handle the agent wiring gets: the capability, the report source, the status, and shutdown. */
export interface DockerRuntimeHandle {
  capability: Capability<RuntimeArtefact>;
  states: ContainerStateSource & {
    drainFound(): AdoptRequest[];
    foundAnswered(answers: FoundAnswer[]): void;
  };
  /** The runtime's own status (a controller adapter reports it; it changes without a new state). */
  status(): RuntimeStatus;
  /** Called when the status changes (state or message). */
  onStatus(cb: (st: RuntimeStatus) => void): void;
  /** The status in a controller's terms: undefined when ok. */
  health(): { state: 'degraded' | 'failed'; message: string } | undefined;
  runtime: DockerRuntime;
  close(): Promise<void>;
}

export function createDockerRuntime(opts: DockerRuntimeOptions): DockerRuntimeHandle {
  const runtime = new DockerRuntime(opts);
  const capability: Capability<RuntimeArtefact> = {
    name: 'docker-runtime',
    render: renderRuntime,
    same: sameArtefact,
    applier: { apply: (a) => runtime.apply(a), close: () => runtime.close() },
  };
  return {
    capability,
    states: {
      drainReports: () => runtime.reports.drain(),
      onReports: (cb) => runtime.reports.onReports(cb),
      drainFound: () => runtime.drainFound(),
      foundAnswered: (answers) => runtime.foundAnswered(answers),
    },
    status: () => runtime.status(),
    onStatus: (cb) => runtime.onStatus(cb),
    health: () => runtime.health(),
    runtime,
    close: () => runtime.close(),
  };
}

/** A container job that cannot go on until another container's job has run (its dependency, or the holder of its address). */
type Step = 'done' | 'waiting';

const KEY_CONTAINER = 'c:';
const KEY_ADOPTED = 'a:';
const KEY_FOUND = 'f:';
/** A found container not answered within this long is offered again. */
const FOUND_ANSWER_WAIT_MS = 30_000;

export class DockerRuntime {
  readonly docker: Dockerode;
  readonly reports = new ReportBook();
  private readonly log: Logger;
  private artefact: RuntimeArtefact | undefined;
  private byUuid = new Map<string, DesiredContainer>();
  private byRecord = new Map<string, DesiredContainer>();
  private known = new Set<string>();
  /** Record ids of uuids no longer desired, until their job ran (which forgets them). */
  private readonly gone = new Map<string, string>();
  /** uuids whose desired container changed since the last pass: enqueued even when backing off. */
  private readonly changed = new Set<string>();
  private readonly passes: Coalescer<void>;
  private readonly events: DockerEventWatcher;
  /** Container jobs (keys `c:<uuid>` for drover's, `a:<docker id>` for adopted ones). */
  private readonly queue: KeyedQueue;
  /** Hand-started containers to adopt, by docker id: offered in reports until the control plane adopted them. */
  private readonly found = new Map<string, { req: AdoptRequest; dueAt: number; refusals: number }>();
  private readonly pulls: PullQueue;
  private readonly pullAbort = new AbortController();
  /** The outcome of the pull a container waited for (consumed by its next job). */
  private readonly pullOutcomes = new Map<string, { image: string; error: string | undefined }>();
  /** Failed pulls are asked again only after 30 s (the resync), not on every retry. */
  private readonly pullFailures = new PullFailures(30_000);
  /** uuid → uuids of containers waiting for its job (dependencies, address holders). */
  private readonly waitingOn = new Map<string, Set<string>>();
  /** uuid → its docker id, once a job saw or created it. */
  private readonly present = new Map<string, string>();
  /** uuid of a running container no longer desired → when its drain ends (drainMs). */
  private readonly draining = new Map<string, number>();
  /** uuid of a container no longer desired → its service's drain_timeout_ms, kept from its last desired state. */
  private readonly drainOf = new Map<string, number>();
  private networkReadyFor: string | undefined;
  private passError: string | undefined;
  private passFailures = 0;
  private forceNextPass = false;
  private passErrorThrown = false;
  private closed = false;
  private started = false;
  /** The event stream is down: dockerd is stopping or away. No container is started meanwhile. */
  private daemonAway = false;
  private resyncTimer: NodeJS.Timeout | undefined;
  private debounceTimer: NodeJS.Timeout | undefined;
  private passRetryTimer: NodeJS.Timeout | undefined;
  private readonly eventKeys = new Set<string>();
  private eventPass = false;
  /** Start events seen per record (and the server's count after an agent restart). */
  private readonly startCounts = new Map<string, number>();
  private readonly restarts = new Map<string, RestartBook>();
  /** Sticky notes per record: why drover last acted on its own (restart) or why it cannot (error). */
  private readonly notes = new Map<string, string>();
  private readonly errors = new Map<string, string>();
  /** Adopted containers by docker id, learnt from the state and from adopt answers. */
  private readonly adoptedLocal = new Map<string, { recordId: string; ipAddress: string | null }>();
  /** Docker id → record id, for start events. */
  private readonly recordOfDocker = new Map<string, string>();
  private readonly statusListeners: ((st: RuntimeStatus) => void)[] = [];
  private lastStatusKey = '';
  private lastOkAt: string | undefined;
  private statusQueued = false;
  private readonly o: Required<Omit<DockerRuntimeOptions, 'netns' | 'socketPath' | 'log' | 'networkMtu' | 'publishPorts' | 'beforeStart'>>;

  constructor(private readonly opts: DockerRuntimeOptions) {
    this.log = opts.log.child({ component: 'docker-runtime' });
    this.docker = new Dockerode({ socketPath: opts.socketPath });
    this.o = {
      resyncIntervalMs: opts.resyncIntervalMs ?? 30_000,
      stopTimeoutSec: opts.stopTimeoutSec ?? 10,
      pullTimeoutMs: opts.pullTimeoutMs ?? 10 * 60_000,
      quickExitMs: opts.quickExitMs ?? 10_000,
      maxRestartDelayMs: opts.maxRestartDelayMs ?? 60_000,
      restartGraceMs: opts.restartGraceMs ?? 2_000,
      eventDebounceMs: opts.eventDebounceMs ?? 100,
      applyWaitMs: opts.applyWaitMs ?? 20_000,
      concurrency: opts.concurrency ?? 4,
      pullConcurrency: opts.pullConcurrency ?? 2,
      retryBackoff: opts.retryBackoff ?? { initialMs: 1000, maxMs: 60_000 },
      drainMs: opts.drainMs ?? 0,
    };
    this.passes = new Coalescer(() => this.pass());
    this.queue = new KeyedQueue({
      concurrency: this.o.concurrency,
      backoff: this.o.retryBackoff,
      run: (key) => this.runKey(key),
      onDone: (key) => {
        if (key.startsWith(KEY_CONTAINER)) this.wakeWaiters(key.slice(KEY_CONTAINER.length));
        this.statusChanged();
      },
      onError: (key, err, retryInMs) => {
        this.log.debug({ key, err: errorMessage(err), retryInMs }, 'container operation failed; retrying with backoff');
        if (key.startsWith(KEY_CONTAINER)) this.wakeWaiters(key.slice(KEY_CONTAINER.length)); // they fail with it
        this.statusChanged();
      },
    });
    this.pulls = new PullQueue({
      concurrency: this.o.pullConcurrency,
      pull: (image) => this.pull(image),
      errorMessage: dockerMessage,
      onDone: (image, waiters, error) => {
        for (const uuid of waiters) {
          this.pullOutcomes.set(uuid, { image, error });
          this.queue.enqueue(KEY_CONTAINER + uuid);
        }
        this.statusChanged();
      },
    });
    this.events = new DockerEventWatcher({
      docker: this.docker,
      log: this.log,
      onEvent: (ev) => this.onEvent(ev),
      onConnected: ({ reconnect }) => {
        this.daemonAway = false;
        if (reconnect) {
          this.networkReadyFor = undefined; // dockerd may have restarted: check again
          this.forceNextPass = true; // and the retries scheduled while it was away run now
        }
        this.kick();
      },
      onDisconnected: () => {
        this.daemonAway = true;
      },
    });
  }

  /**
   * The capability's apply: converge on this artefact. Waits (up to applyWaitMs) for the container
   * operations it started, never for pulls. Throws only when the pass itself failed (dockerd
   * unreachable, the managed network unusable): containers that fail are retried by the runtime with
   * backoff, and they — like pulls keeping containers waiting — are the runtime's status (status(),
   * health(), onStatus), which changes without a new state.
   */
  async apply(artefact: RuntimeArtefact): Promise<void> {
    if (this.closed) return;
    if (!artefact.hostId) {
      // Without a host id nothing is "ours to run": converging would remove every drover container.
      this.log.warn('no host id yet; not touching containers');
      return;
    }
    for (const [id, n] of Object.entries(artefact.startCounts)) {
      if (n > (this.startCounts.get(id) ?? 0)) this.startCounts.set(id, n);
    }
    for (const a of artefact.adopted) {
      this.adoptedLocal.set(a.externalId, { recordId: a.recordId, ipAddress: a.ipAddress });
      this.found.delete(a.externalId);
    }
    this.setArtefact(artefact);
    this.start();
    try {
      await this.passes.trigger();
    } catch (err) {
      this.passErrorThrown = true; // the controller has it as its error: health() does not say it again
      throw err;
    }
    let timer: NodeJS.Timeout | undefined;
    const slow = new Promise<'slow'>((resolve) => {
      timer = setTimeout(() => resolve('slow'), this.o.applyWaitMs);
    });
    const res = await Promise.race([this.queue.settled().then(() => 'settled' as const), slow]).finally(() => clearTimeout(timer));
    if (res === 'slow') this.log.info({ waitedMs: this.o.applyWaitMs }, 'still converging; continuing in the background');
  }

  /** Runs a pass now and waits until the container operations it started settled (tests, and callers that want the result). */
  async reconcile(): Promise<PassResult> {
    await this.passes.trigger();
    await this.queue.settled();
    return { failures: this.failureList() };
  }

  /** What the runtime is doing now. */
  status(): RuntimeStatus {
    return this.computeStatus(true);
  }

  private statusWithoutPassError(): RuntimeStatus {
    return this.computeStatus(false);
  }

  private computeStatus(withPassError: boolean): RuntimeStatus {
    const failures = this.failureList();
    const nameOfUuid = (uuid: string) => this.byUuid.get(uuid)?.name ?? uuid;
    const pulls = this.pulls
      .pending()
      .filter((p) => p.waiters.length > 0)
      .map((p) => ({ image: p.image, state: p.state, containers: p.waiters.map(nameOfUuid).sort(), since: new Date(p.sinceMs).toISOString() }));
    const pulling = pulls.map((p) => `${p.state === 'queued' ? 'waiting to pull' : 'pulling'} ${p.image} for ${p.containers.length} container${p.containers.length === 1 ? '' : 's'}`);
    let state: RuntimeStatus['state'] = 'ok';
    let message = '';
    if (withPassError && this.passError !== undefined) {
      state = 'failed';
      message = this.passError;
    } else if (failures.length) {
      state = 'failed';
      message = new ConvergeError(failures).message;
      if (pulling.length) message += `; ${pulling.join('; ')}`;
    } else if (pulling.length) {
      state = 'degraded';
      message = pulling.join('; ');
    }
    if (state === 'ok' && withPassError) this.lastOkAt = new Date().toISOString();
    return { state, message, pulls, failures, queue: this.queue.stats(), ...(this.lastOkAt ? { lastOkAt: this.lastOkAt } : {}) };
  }

  /** The status in a controller's terms (undefined when ok); a pass error apply threw is the controller's own error already. */
  health(): { state: 'degraded' | 'failed'; message: string } | undefined {
    const st = this.status();
    if (st.state === 'ok') return undefined;
    if (this.passErrorThrown && this.passError !== undefined) {
      const rest = this.statusWithoutPassError();
      return rest.state === 'ok' ? undefined : { state: rest.state, message: rest.message };
    }
    return { state: st.state, message: st.message };
  }

  onStatus(cb: (st: RuntimeStatus) => void): void {
    this.statusListeners.push(cb);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const t of [this.resyncTimer, this.debounceTimer, this.passRetryTimer]) if (t) clearTimeout(t);
    this.pulls.close();
    this.pullAbort.abort();
    await this.events.close();
    await this.passes.idle();
    await this.queue.close();
    this.log.info('docker runtime stopped');
  }

  private setArtefact(art: RuntimeArtefact): void {
    const prev = this.byUuid;
    const next = new Map(art.containers.map((d) => [d.uuid, d]));
    for (const [uuid, d] of next) {
      const p = prev.get(uuid);
      if (!p || canonicalJson(p) !== canonicalJson(d)) this.changed.add(uuid);
    }
    for (const [uuid, p] of prev) {
      if (next.has(uuid)) continue;
      this.changed.add(uuid);
      this.gone.set(uuid, p.recordId);
      if (p.drainMs !== undefined) this.drainOf.set(uuid, p.drainMs);
    }
    for (const uuid of next.keys()) {
      this.gone.delete(uuid);
      this.drainOf.delete(uuid);
    }
    this.artefact = art;
    this.byUuid = next;
    this.byRecord = new Map(art.containers.map((d) => [d.recordId, d]));
    this.known = new Set(art.knownUuids);
  }

  private failureList(): string[] {
    const out: string[] = [];
    for (const [recordId, msg] of this.errors) {
      const d = this.byRecord.get(recordId);
      if (d) out.push(`${d.name}: ${msg}`);
    }
    return out.sort();
  }

  /** Tells the status listeners (once per turn) when the status changed. */
  private statusChanged(): void {
    if (this.statusQueued || this.statusListeners.length === 0) return;
    this.statusQueued = true;
    queueMicrotask(() => {
      this.statusQueued = false;
      const st = this.status();
      const key = `${st.state}|${st.message}`;
      if (key === this.lastStatusKey) return;
      this.lastStatusKey = key;
      for (const cb of this.statusListeners) {
        try {
          cb(st);
        } catch (err) {
          this.log.error({ err: errorMessage(err) }, 'status listener failed');
        }
      }
    });
  }

  private start(): void {
    if (this.started || this.closed) return;
    this.started = true;
    this.events.start();
    const tick = () => {
      this.resyncTimer = setTimeout(() => {
        this.kick();
        tick();
      }, this.o.resyncIntervalMs);
      this.resyncTimer.unref();
    };
    tick();
  }

  /** Requests a pass, logging (not throwing) its failure. */
  private kick(): void {
    if (this.closed || !this.artefact) return;
    this.passes.trigger().catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, 'reconcile pass failed'));
  }

  private onEvent(ev: DockerEvent): void {
    const attrs = ev.Actor.Attributes;
    const recordId = attrs[LABEL_RECORD_ID] ?? this.recordOfDocker.get(ev.Actor.ID) ?? this.adoptedLocal.get(ev.Actor.ID)?.recordId;
    const uuid = attrs[LABELS.containerUuid];
    const relevant = recordId !== undefined || uuid !== undefined || attrs[LABELS.containerNetwork] === 'true';
    if (!relevant) return;
    this.log.debug({ action: ev.Action, container: attrs.name, id: ev.Actor.ID.slice(0, 12) }, 'docker event');
    if (ev.Action === 'start' && recordId !== undefined) {
      this.startCounts.set(recordId, (this.startCounts.get(recordId) ?? 0) + 1);
    }
    if (this.adoptedLocal.has(ev.Actor.ID)) this.eventKeys.add(KEY_ADOPTED + ev.Actor.ID);
    else if (uuid !== undefined && (this.byUuid.has(uuid) || this.known.has(uuid) || attrs[LABEL_CONFIG_HASH] !== undefined)) {
      this.eventKeys.add(KEY_CONTAINER + uuid);
    } else this.eventPass = true; // a candidate for adoption (or a container we do not know yet)
    if (this.debounceTimer) return;
    this.debounceTimer = setTimeout(() => {
      this.debounceTimer = undefined;
      const keys = [...this.eventKeys];
      this.eventKeys.clear();
      for (const k of keys) this.queue.poke(k);
      if (this.eventPass) {
        this.eventPass = false;
        this.kick();
      }
    }, this.o.eventDebounceMs);
    this.debounceTimer.unref();
  }

  // ---- the pass: one listing, then every container that needs it goes to the queue ---------------

  private async pass(): Promise<void> {
    const art = this.artefact;
    if (!art || this.closed) return;
    try {
      const mtu = this.opts.networkMtu?.(art.overlay, art.mtuOverride);
      const networkKey = `${art.subnet} mtu ${mtu ?? 'default'}`;
      if (this.networkReadyFor !== networkKey) {
        await ensureManagedNetwork({ docker: this.docker, subnet: art.subnet, log: this.log, mtu, ...(this.opts.netns ? { netns: this.opts.netns } : {}) });
        this.networkReadyFor = networkKey;
      }
      const listed = ListedContainers.parse(await this.docker.listContainers({ all: true }));
      this.passError = undefined;
      this.passErrorThrown = false;
      this.passFailures = 0;
      const force = this.forceNextPass;
      this.forceNextPass = false;
      const touch = (uuid: string) => {
        if (this.changed.delete(uuid) || force) this.queue.enqueue(KEY_CONTAINER + uuid);
        else this.queue.poke(KEY_CONTAINER + uuid);
      };
      const present = new Set<string>();
      for (const c of listed) {
        present.add(c.Id);
        const uuid = c.Labels[LABELS.containerUuid];
        if (uuid !== undefined && (c.Labels[LABEL_CONFIG_HASH] !== undefined || this.known.has(uuid))) {
          if (!this.byUuid.has(uuid)) touch(uuid); // no longer desired here: removed by its job
        } else if (this.adoptedLocal.has(c.Id)) {
          if (force) this.queue.enqueue(KEY_ADOPTED + c.Id);
          else this.queue.poke(KEY_ADOPTED + c.Id);
        } else if (c.Labels[LABELS.containerNetwork] === 'true' && c.State !== 'removing' && c.State !== 'dead') {
          if (!this.found.has(c.Id)) this.queue.poke(KEY_FOUND + c.Id);
        }
      }
      for (const id of this.found.keys()) if (!present.has(id)) this.found.delete(id);
      if ([...this.found.values()].some((f) => f.dueAt <= Date.now())) this.reports.poke();
      for (const uuid of this.byUuid.keys()) touch(uuid);
      for (const uuid of [...this.changed]) {
        this.changed.delete(uuid);
        this.queue.enqueue(KEY_CONTAINER + uuid);
      }
      // Adopted containers that are gone: their jobs report them removed.
      for (const id of this.adoptedLocal.keys()) if (!present.has(id)) this.queue.poke(KEY_ADOPTED + id);
    } catch (err) {
      this.passError = `reconcile pass failed: ${errorMessage(err)}`;
      this.passFailures++;
      const delay = backoffDelayMs(this.o.retryBackoff, this.passFailures);
      if (this.passRetryTimer) clearTimeout(this.passRetryTimer);
      this.passRetryTimer = setTimeout(() => {
        this.passRetryTimer = undefined;
        this.kick();
      }, delay);
      this.passRetryTimer.unref();
      this.statusChanged();
      throw err;
    }
    this.statusChanged();
  }

  private runKey(key: string): Promise<number | void> {
    if (this.closed) return Promise.resolve();
    if (key.startsWith(KEY_ADOPTED)) return this.adoptedOne(key.slice(KEY_ADOPTED.length));
    if (key.startsWith(KEY_FOUND)) return this.foundOne(key.slice(KEY_FOUND.length));
    return this.containerJob(key.slice(KEY_CONTAINER.length));
  }

  private wakeWaiters(uuid: string): void {
    const ws = this.waitingOn.get(uuid);
    if (!ws) return;
    this.waitingOn.delete(uuid);
    for (const w of ws) this.queue.enqueue(KEY_CONTAINER + w);
  }

  /** `uuid` runs again after `blocker`'s next job; that job is asked for unless it waits for a pull (the pull's end runs it). */
  private waitFor(uuid: string, blocker: string, poke = true): Step {
    let ws = this.waitingOn.get(blocker);
    if (!ws) this.waitingOn.set(blocker, (ws = new Set()));
    ws.add(uuid);
    if (poke && !this.pulls.isWaiting(blocker)) this.queue.poke(KEY_CONTAINER + blocker);
    return 'waiting';
  }

  // ---- one container ----------------------------------------------------------------------------

  /** The job of one record uuid; throws (→ retry with backoff) when it could not converge. */
  private async containerJob(uuid: string): Promise<number | void> {
    const listed = ListedContainers.parse(await this.docker.listContainers({ all: true, filters: { label: [`${LABELS.containerUuid}=${uuid}`] } }));
    const known = this.known.has(uuid);
    const ours = listed.filter((c) => c.Labels[LABELS.containerUuid] === uuid && (c.Labels[LABEL_CONFIG_HASH] !== undefined || known));
    const d = this.byUuid.get(uuid);
    if (!d) {
      // Not desired any more (scaled down, moved, removed): remove, and say so.
      this.pulls.withdraw(uuid);
      this.pullOutcomes.delete(uuid);
      const running = ours.find((c) => c.State === 'running');
      const wait = this.drainLeft(uuid, running && nameOf(running), 'no longer scheduled here: draining before removal', this.drainOf.get(uuid));
      if (wait > 0) return wait;
      for (const c of ours) {
        const recordId = c.Labels[LABEL_RECORD_ID];
        await this.remove(c.Id, c.State);
        this.log.info({ container: nameOf(c), recordId }, 'removed a container that is no longer scheduled here');
        if (recordId) {
          this.put(recordId, { state: 'removed', externalId: c.Id });
          this.forget(recordId);
        }
      }
      this.present.delete(uuid);
      const recordId = this.gone.get(uuid);
      this.gone.delete(uuid);
      if (recordId && ours.length === 0) this.forget(recordId); // never had a container (e.g. its image failed)
      return;
    }
    try {
      const later = await this.converge(d, ours);
      this.errors.delete(d.recordId);
      return later;
    } catch (err) {
      const msg = err instanceof RuntimeError ? err.message : dockerMessage(err);
      this.setError(d, msg);
      this.log.warn({ container: d.name, recordId: d.recordId, err: msg }, 'container not converged');
      throw err;
    }
  }

  /** Brings one desired container to its state; returns a delay when it wants to run again later. */
  private async converge(d: DesiredContainer, existing: ListedContainer[]): Promise<number | void> {
    // Duplicates of one record (e.g. created twice around a crash): keep the best one.
    const ranked = [...existing].sort((a, b) => score(b, d) - score(a, d));
    for (const dup of ranked.slice(1)) {
      this.log.warn({ container: nameOf(dup), id: dup.Id.slice(0, 12) }, 'removing a duplicate container of one record');
      await this.remove(dup.Id, dup.State);
    }
    let current = ranked[0];
    if (current && (current.Labels[LABEL_CONFIG_HASH] !== d.configHash || current.State === 'dead')) {
      this.log.info({ container: d.name, had: current.Labels[LABEL_CONFIG_HASH], want: d.configHash, state: current.State }, 'recreating the container');
      await this.remove(current.Id, current.State);
      this.present.delete(d.uuid);
      current = undefined;
    }
    if (!current) {
      this.present.delete(d.uuid);
      await this.create(d);
      return;
    }
    this.present.set(d.uuid, current.Id);
    this.pulls.withdraw(d.uuid);
    this.recordOfDocker.set(current.Id, d.recordId);
    if (current.State === 'removing') return; // the next event brings it back here

    if (d.desiredState === 'stopped') {
      // Stopped on purpose: when it is wanted again (e.g. a rollback) that is no crash loop.
      this.restarts.delete(d.recordId);
      // An upgrade's old generation, a deactivated service: drained before the stop.
      const wait = this.drainLeft(d.uuid, current.State === 'running' ? d.name : undefined, 'desired stopped: draining before the stop', d.drainMs);
      if (wait > 0) return wait;
      if (current.State === 'running' || current.State === 'restarting' || current.State === 'paused') {
        await this.act(d, 'stop', () => this.docker.getContainer(current.Id).stop({ t: this.o.stopTimeoutSec }), [304, 404]);
        this.log.info({ container: d.name }, 'stopped (desired stopped)');
      }
      await this.reportFromInspect(d, current.Id);
      return;
    }

    // Desired running. The state comes from inspect, not the listing: Docker updates the view its
    // listing reads after it has sent the `die` event, so a job run for that event can still list an
    // exited container as running — and no other event would come to correct it.
    this.draining.delete(d.uuid); // wanted again during a drain (a rollback): it stays
    const info = await this.inspect(current.Id);
    if (!info) return; // gone meanwhile; the destroy event brings us back
    if (info.State.Running || info.State.Restarting || info.State.Status === 'paused') {
      this.put(d.recordId, {
        state: info.State.Restarting ? 'starting' : 'running',
        exitCode: null,
        externalId: current.Id,
      });
      return;
    }
    if (d.startOnce && hasStarted(info)) {
      this.reportInspected(d, info); // ran once: done
      return;
    }
    // created (never started) or exited/stopped by hand/crashed while desired running: start it (again).
    const book = this.restarts.get(d.recordId) ?? { consecutive: 0, at: 0 };
    const quick = !hasStarted(info) || lastRunMs(info) < this.o.quickExitMs;
    const consecutive = quick ? book.consecutive + 1 : 1;
    // The first quick exit restarts at once; the next ones wait 1 s, 2 s, … up to maxRestartDelayMs.
    const delay = consecutive <= 1 ? 0 : backoffDelayMs({ initialMs: 1000, maxMs: this.o.maxRestartDelayMs }, consecutive - 1);
    // Never start while the daemon's event stream is down (it is stopping or restarting; the resync
    // after it comes back starts what is needed), and give a stop a grace period to show whether the
    // daemon is going away before starting again.
    if (this.daemonAway) return;
    const stoppedFor = hasStarted(info) ? Date.now() - Date.parse(info.State.FinishedAt) : Infinity;
    const grace = Number.isFinite(stoppedFor) ? this.o.restartGraceMs - stoppedFor : 0;
    const wait = Math.max(book.at + delay - Date.now(), grace);
    if (wait > 0) {
      this.reportInspected(d, info, `exited (code ${info.State.ExitCode}); restarting in ${Math.ceil(wait / 1000)} s (crash-loop backoff)`);
      return wait;
    }
    if ((await this.addressHolder(d)) === 'waiting') return;
    this.restarts.set(d.recordId, { consecutive, at: Date.now() });
    await this.act(d, 'start', () => this.docker.getContainer(current.Id).start(), [304]);
    if (hasStarted(info)) {
      const note = `restarted by drover at ${new Date().toISOString()}: it had exited (code ${info.State.ExitCode}) while desired running`;
      this.notes.set(d.recordId, note);
      this.log.warn({ container: d.name, exitCode: info.State.ExitCode, consecutive }, 'restarted a container that had stopped');
    }
    await this.reportFromInspect(d, current.Id);
  }

  /**
   * Dependencies first: every record this one mounts volumes from (or shares a network with) must have
   * its container. A failed dependency fails this one; a missing one makes it wait for that job.
   */
  private dependencies(d: DesiredContainer): Step {
    for (const dep of d.after) {
      const dd = this.byRecord.get(dep);
      if (!dd) continue;
      if (this.errors.has(dep)) {
        this.waitFor(d.uuid, dd.uuid, false); // its success brings this one back before the backoff ends
        throw new ContainerActionError(d.recordId, d.name, 'create', `waiting for ${dd.name}, which failed`);
      }
      if (!this.present.has(dd.uuid)) return this.waitFor(d.uuid, dd.uuid);
    }
    return 'done';
  }

  /**
   * A running drover container that holds this one's managed address and is desired stopped or not
   * desired at all (an upgrade's previous generation, a rollback's newer one): this one waits until
   * that one's job stopped or removed it.
   */
  private async addressHolder(d: DesiredContainer): Promise<Step> {
    if (d.networkMode !== 'managed' || !d.ipAddress) return 'done';
    const running = ListedContainers.parse(
      await this.docker.listContainers({ filters: { network: [MANAGED_NETWORK], status: ['running', 'restarting', 'paused'] } }),
    );
    for (const c of running) {
      const uuid = c.Labels[LABELS.containerUuid];
      if (uuid === undefined || uuid === d.uuid || c.NetworkSettings?.Networks[MANAGED_NETWORK]?.IPAddress !== d.ipAddress) continue;
      const other = this.byUuid.get(uuid);
      if (other?.desiredState === 'running') continue; // two desired owners: the create error says so
      if (!other && c.Labels[LABEL_CONFIG_HASH] === undefined && !this.known.has(uuid)) continue;
      this.log.info({ container: d.name, holder: nameOf(c), ip: d.ipAddress }, 'waiting for the container holding the address to stop');
      return this.waitFor(d.uuid, uuid);
    }
    return 'done';
  }

  /**
   * The image for a create, by pull policy. 'waiting' when a pull was asked for: the job ends and the
   * end of the pull runs it again (with the outcome). A warning is a failed `always` pull with a local
   * image to fall back on.
   */
  private async image(d: DesiredContainer): Promise<{ step: Step; warning?: string }> {
    const local = await hasImage(this.docker, d.image);
    if (d.pullPolicy === 'never') {
      if (!local) throw new ImageUnavailableError(d.image, 'is not on this host and its pull policy is "never" (load it with docker load / docker pull)');
      return { step: 'done' };
    }
    if (d.pullPolicy === 'missing' && local) return { step: 'done' };
    const outcome = this.pullOutcomes.get(d.uuid);
    this.pullOutcomes.delete(d.uuid);
    let failed: string | undefined;
    if (outcome && outcome.image === d.image) {
      if (outcome.error === undefined) return { step: 'done' };
      failed = outcome.error;
    } else {
      failed = this.pullFailures.recent(d.image);
    }
    if (failed === undefined) {
      this.pulls.request(d.image, d.uuid);
      this.put(d.recordId, { state: 'creating', externalId: null, message: `pulling image ${d.image}` });
      this.statusChanged();
      return { step: 'waiting' };
    }
    if (local) {
      this.log.warn({ image: d.image, err: failed }, 'pull failed; using the local image');
      return { step: 'done', warning: `pull of ${d.image} failed (${failed}); using the local image` };
    }
    throw new ImageUnavailableError(d.image, `is not on this host and pulling it failed: ${failed}`);
  }

  private async pull(image: string): Promise<void> {
    this.log.info({ image }, 'pulling image');
    try {
      await pullImage(this.docker, image, this.o.pullTimeoutMs, this.pullAbort.signal);
    } catch (err) {
      this.pullFailures.record(image, dockerMessage(err));
      this.log.warn({ image, err: dockerMessage(err) }, 'pull failed');
      throw err;
    }
    this.pullFailures.clear(image);
    this.log.info({ image }, 'pulled image');
  }

  /**
   * The drain of a container about to be stopped or removed (drainMs): how long it still has, starting it
   * on the first call; 0 once it is over, or when it does not run (`running` is its name when it does).
   * DNS and the balancers of every host have already left it, so what it still serves finishes.
   */
  private drainLeft(uuid: string, running: string | undefined, what: string, serviceDrainMs: number | undefined): number {
    const drainMs = serviceDrainMs ?? this.o.drainMs;
    if (drainMs <= 0 || running === undefined) {
      this.draining.delete(uuid);
      this.drainOf.delete(uuid);
      return 0;
    }
    const now = Date.now();
    let until = this.draining.get(uuid);
    if (until === undefined) {
      until = now + drainMs;
      this.draining.set(uuid, until);
      this.log.info({ container: running, drainMs }, what);
    }
    if (until > now) return until - now;
    this.draining.delete(uuid);
    this.drainOf.delete(uuid);
    return 0;
  }

  private async create(d: DesiredContainer): Promise<void> {
    if (d.networkMode === 'managed' && !d.ipAddress) {
      throw new ContainerActionError(d.recordId, d.name, 'create', 'it has no managed IP address yet');
    }
    if (this.dependencies(d) === 'waiting') return;
    const img = await this.image(d);
    if (img.step === 'waiting') return;
    if (img.warning) this.notes.set(d.recordId, img.warning);
    if (d.desiredState === 'running' && (await this.addressHolder(d)) === 'waiting') return;
    this.put(d.recordId, { state: 'creating', externalId: null });
    let id: string;
    try {
      const created = await this.docker.createContainer(createOptions(d, { publishPorts: this.opts.publishPorts !== false }));
      id = created.id;
    } catch (err) {
      if (dockerStatus(err) === 409) {
        // The name is taken: a container of ours we did not list (race) is handled by the retry; anything
        // else is a foreign container in the way.
        throw new ContainerActionError(d.recordId, d.name, 'create', `the name is taken by another container (${dockerMessage(err)})`);
      }
      throw new ContainerActionError(d.recordId, d.name, 'create', dockerMessage(err));
    }
    this.recordOfDocker.set(id, d.recordId);
    this.present.set(d.uuid, id);
    this.restarts.set(d.recordId, { consecutive: 0, at: Date.now() });
    this.log.info({ container: d.name, id: id.slice(0, 12), ip: d.ipAddress, image: d.image }, 'created');
    if (d.desiredState === 'running') {
      this.put(d.recordId, { state: 'starting', externalId: id });
      if (d.networkMode === 'managed' && d.ipAddress && this.opts.beforeStart) await this.opts.beforeStart({ name: d.name, ip: d.ipAddress });
      await this.act(d, 'start', () => this.docker.getContainer(id).start(), [304]);
    }
    await this.reportFromInspect(d, id);
  }

  /** Runs a Docker action; statuses in `ok` (e.g. 304 "already started") are not errors. */
  private async act(d: DesiredContainer, action: string, fn: () => Promise<unknown>, ok: number[] = []): Promise<void> {
    try {
      await fn();
    } catch (err) {
      const s = dockerStatus(err);
      if (s !== undefined && ok.includes(s)) return;
      throw new ContainerActionError(d.recordId, d.name, action, dockerMessage(err));
    }
  }

  private async remove(id: string, state: string): Promise<void> {
    if (state === 'removing') return;
    try {
      await this.docker.getContainer(id).remove({ force: true, v: true });
    } catch (err) {
      const s = dockerStatus(err);
      if (s === 404 || (s === 409 && /already in progress/i.test(dockerMessage(err)))) return;
      throw err;
    }
    this.recordOfDocker.delete(id);
  }

  private async inspect(id: string): Promise<InspectedContainer | undefined> {
    try {
      return InspectedContainer.parse(await this.docker.getContainer(id).inspect());
    } catch (err) {
      if (dockerStatus(err) === 404) return undefined;
      throw err;
    }
  }

  // ---- adoption --------------------------------------------------------------------------------

  /**
   * An adopted container: keep it on the managed network with its address, report it, and report
   * `removed` once it is gone (the server then deletes the record and frees the address). Problems
   * are reported on the record only: the user runs these containers, they do not fail the capability.
   */
  private async adoptedOne(externalId: string): Promise<void> {
    const rec = this.adoptedLocal.get(externalId);
    if (!rec) return;
    const info = await this.inspect(externalId);
    if (!info) {
      this.log.info({ recordId: rec.recordId, id: externalId.slice(0, 12) }, 'an adopted container is gone');
      this.put(rec.recordId, { state: 'removed', externalId });
      this.forget(rec.recordId);
      this.adoptedLocal.delete(externalId);
      this.recordOfDocker.delete(externalId);
      return;
    }
    this.recordOfDocker.set(externalId, rec.recordId);
    let message: string | undefined;
    if (rec.ipAddress && info.State.Status !== 'removing') {
      try {
        if (await attachToManagedNetwork(this.docker, info, rec.ipAddress)) {
          this.log.info({ container: info.Name.replace(/^\//, ''), ip: rec.ipAddress }, 'joined an adopted container to the managed network');
        }
      } catch (err) {
        message = errorMessage(err);
        this.log.warn({ container: info.Name.replace(/^\//, ''), err: message }, 'adopted container not on the managed network');
      }
    }
    this.put(rec.recordId, {
      state: message ? 'error' : stateOf(info),
      exitCode: info.State.Running ? null : info.State.ExitCode,
      externalId,
      ...(message ? { message } : {}),
    });
  }

  /** A hand-started container with io.rancher.container.network=true: described, to be reported as found. */
  private async foundOne(id: string): Promise<void> {
    if (this.adoptedLocal.has(id) || this.found.has(id)) return;
    const info = await this.inspect(id);
    if (!info || info.State.Status === 'removing' || info.State.Status === 'dead') return;
    this.found.set(id, { req: adoptRequestOf(info), dueAt: 0, refusals: 0 });
    this.log.info({ container: info.Name.replace(/^\//, ''), id: id.slice(0, 12) }, 'found a container started by hand; reporting it for adoption');
    this.reports.poke();
  }

  /** The found containers due to be reported (never offered, refused a while ago, or not answered). */
  drainFound(): AdoptRequest[] {
    const now = Date.now();
    const out: AdoptRequest[] = [];
    for (const f of this.found.values()) {
      if (f.dueAt > now) continue;
      if (out.length === MAX_FOUND_PER_REPORT) {
        this.reports.poke(); // the rest in the next report
        break;
      }
      f.dueAt = now + FOUND_ANSWER_WAIT_MS;
      out.push(f.req);
    }
    return out;
  }

  /** The control plane's answers: adopted ones join the managed network now; refused ones are offered again later. */
  foundAnswered(answers: FoundAnswer[]): void {
    for (const a of answers) {
      const f = this.found.get(a.externalId);
      if (!f) continue;
      if (a.id) {
        this.found.delete(a.externalId);
        this.adoptedLocal.set(a.externalId, { recordId: a.id, ipAddress: a.primaryIpAddress ?? null });
        this.recordOfDocker.set(a.externalId, a.id);
        this.log.info({ container: f.req.name, recordId: a.id, ip: a.primaryIpAddress }, 'adopted a container started by hand');
        this.queue.enqueue(KEY_ADOPTED + a.externalId);
        continue;
      }
      f.refusals++;
      const retryInMs = backoffDelayMs({ initialMs: 5_000, maxMs: 5 * 60_000 }, f.refusals);
      f.dueAt = Date.now() + retryInMs;
      this.log.warn({ container: f.req.name, err: a.error, retryInMs }, 'the control plane did not adopt a container started by hand; offering it again later');
    }
  }

  // ---- reports ---------------------------------------------------------------------------------

  private async reportFromInspect(d: DesiredContainer, id: string): Promise<void> {
    const info = await this.inspect(id);
    if (info) this.reportInspected(d, info);
  }

  private reportInspected(d: DesiredContainer, info: InspectedContainer, message?: string): void {
    this.put(d.recordId, {
      state: stateOf(info, d),
      exitCode: info.State.Running ? null : hasStarted(info) ? info.State.ExitCode : null,
      externalId: info.Id,
      ...(message ? { message } : {}),
    });
  }

  private setError(d: DesiredContainer, message: string): void {
    this.errors.set(d.recordId, message);
    this.put(d.recordId, { state: 'error', message });
  }

  private put(recordId: string, r: Omit<ContainerReport, 'id' | 'startCount'> & { state: RuntimeState }): void {
    const prev = this.reports.lastOf(recordId);
    const message = r.message ?? (r.state === 'error' ? this.errors.get(recordId) : undefined) ?? this.notes.get(recordId);
    const report: ContainerReport = {
      id: recordId,
      state: r.state,
      exitCode: r.exitCode !== undefined ? r.exitCode : (prev?.exitCode ?? null),
      externalId: r.externalId !== undefined ? r.externalId : (prev?.externalId ?? null),
      startCount: this.startCounts.get(recordId) ?? 0,
      ...(message ? { message } : {}),
    };
    this.reports.update(report);
  }

  private forget(recordId: string): void {
    this.reports.forget(recordId);
    this.notes.delete(recordId);
    this.errors.delete(recordId);
    this.restarts.delete(recordId);
    this.startCounts.delete(recordId);
  }
}

function nameOf(c: ListedContainer): string {
  return (c.Names[0] ?? c.Id.slice(0, 12)).replace(/^\//, '');
}

/** Which of several containers of one record to keep: matching config, then running. */
function score(c: ListedContainer, d: DesiredContainer): number {
  return (c.Labels[LABEL_CONFIG_HASH] === d.configHash ? 2 : 0) + (c.State === 'running' ? 1 : 0);
}

function stateOf(info: InspectedContainer, d?: DesiredContainer): RuntimeState {
  if (info.State.Restarting) return 'starting';
  if (info.State.Running) return 'running';
  if (info.State.Status === 'created' && d?.desiredState === 'running') return 'starting';
  return 'stopped';
}
