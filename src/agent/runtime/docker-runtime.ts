// Runs what the control plane scheduled on this host through Docker, and reports what happens to it.
//
// The capability renders the desired containers (desired.ts); `apply` stores them and runs a reconcile
// pass. Passes are serialised and coalesced (Coalescer): a pass lists every container, then
//   - removes drover containers that are no longer desired (and duplicates of one record),
//   - recreates those whose launch config changed (`io.drover.config-hash`),
//   - creates the missing ones (dependencies first: volumes_from sidekicks before their primary),
//   - starts/stops them to match the desired state: a container that exited while desired running is
//     started again (with a crash-loop backoff) unless it is start_once and has run,
//   - adopts hand-started containers labelled io.rancher.container.network=true, keeps adopted ones on
//     the managed network with their address, and reports them `removed` once they are gone,
//   - reports every record's state (only changes reach the control plane).
// Docker events (events.ts) trigger passes; a periodic pass is the safety net. Only containers carrying
// drover's labels are touched, besides the network attachment of adopted ones.
import Dockerode from 'dockerode';
import type { Logger } from '../../common/log.js';
import { errorMessage } from '../../common/errors.js';
import type { ContainerReport } from '../../model/reports.js';
import type { Capability } from '../capabilities/capability.js';
import type { AgentControlPlane, ContainerStateSource } from '../agent.js';
import { renderRuntime, sameArtefact, type RuntimeArtefact } from './artefact.js';
import { LABEL_CONFIG_HASH, LABEL_NETWORK, LABEL_RECORD_ID, LABEL_UUID, type DesiredContainer } from './desired.js';
import { createOptions } from './create-spec.js';
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
import { PullFailures, ensureImage } from './images.js';
import { ensureManagedNetwork } from './network.js';
import { DockerEventWatcher } from './events.js';
import { Coalescer } from './coalesce.js';
import { ReportBook, type RuntimeState } from './report-book.js';
import { adoptRequestOf, attachToManagedNetwork } from './adoption.js';
import { ContainerActionError, ConvergeError, ImageUnavailableError } from './errors.js';

/** What the runtime needs from the control plane (given by the agent once it has credentials). */
export type RuntimeControlPlane = AgentControlPlane;

export interface DockerRuntimeOptions {
  /** The Docker socket (`/var/run/docker.sock`). */
  socketPath: string;
  log: Logger;
  /** dockerd's network namespace (a netns file) when it is not the agent's: where the bridge sysctls go. */
  netns?: string;
  /** Safety-net pass interval; default 30 s. */
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
  /** Events that trigger a pass wait this long for more (coalescing bursts). */
  eventDebounceMs?: number;
  /**
   * How long `apply` waits for its pass (default 20 s). A longer pass (image pulls) goes on in the
   * background, so the agent's other capabilities are not held up; the container reports tell the rest.
   */
  applyWaitMs?: number;
}

export interface PassResult {
  failures: string[];
}

interface RestartBook {
  consecutive: number;
  at: number;
}

/** The handle the agent wiring gets: the capability, the report source, and shutdown. */
export interface DockerRuntimeHandle {
  capability: Capability<RuntimeArtefact>;
  states: ContainerStateSource & { connectControlPlane(cp: RuntimeControlPlane): void };
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
      connectControlPlane: (cp) => runtime.connectControlPlane(cp),
    },
    runtime,
    close: () => runtime.close(),
  };
}

export class DockerRuntime {
  readonly docker: Dockerode;
  readonly reports = new ReportBook();
  private readonly log: Logger;
  private artefact: RuntimeArtefact | undefined;
  private controlPlane: RuntimeControlPlane | undefined;
  private readonly passes: Coalescer<PassResult>;
  private readonly events: DockerEventWatcher;
  private networkReadyFor: string | undefined;
  private closed = false;
  private started = false;
  /** The event stream is down: dockerd is stopping or away. No container is started meanwhile. */
  private daemonAway = false;
  private resyncTimer: NodeJS.Timeout | undefined;
  private debounceTimer: NodeJS.Timeout | undefined;
  private retryTimer: { at: number; t: NodeJS.Timeout } | undefined;
  /** Start events seen per record (and the server's count after an agent restart). */
  private readonly startCounts = new Map<string, number>();
  private readonly restarts = new Map<string, RestartBook>();
  /** Sticky notes per record: why drover last acted on its own (restart) or why it cannot (error). */
  private readonly notes = new Map<string, string>();
  private readonly errors = new Map<string, string>();
  /** Adopted containers by docker id, learnt from the state and from adopt answers. */
  private readonly adoptedLocal = new Map<string, { recordId: string; ipAddress: string | null }>();
  private readonly adoptFailures = new Map<string, { at: number; message: string }>();
  /** Failed pulls are retried after 30 s (the periodic pass), not on every pass. */
  private readonly pullFailures = new PullFailures(30_000);
  /** Docker id → record id, for start events. */
  private readonly recordOfDocker = new Map<string, string>();
  private readonly o: Required<Omit<DockerRuntimeOptions, 'netns' | 'socketPath' | 'log'>>;

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
    };
    this.passes = new Coalescer(() => this.pass());
    this.events = new DockerEventWatcher({
      docker: this.docker,
      log: this.log,
      onEvent: (ev) => this.onEvent(ev),
      onConnected: ({ reconnect }) => {
        this.daemonAway = false;
        if (reconnect) this.networkReadyFor = undefined; // dockerd may have restarted: check again
        this.kick();
      },
      onDisconnected: () => {
        this.daemonAway = true;
      },
    });
  }

  connectControlPlane(cp: RuntimeControlPlane): void {
    this.controlPlane = cp;
    this.kick();
  }

  /** The capability's apply: converge on this artefact; throws ConvergeError when containers failed. */
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
    for (const a of artefact.adopted) this.adoptedLocal.set(a.externalId, { recordId: a.recordId, ipAddress: a.ipAddress });
    this.artefact = artefact;
    this.start();
    const pass = this.passes.trigger();
    let timer: NodeJS.Timeout | undefined;
    const slow = new Promise<'slow'>((resolve) => {
      timer = setTimeout(() => resolve('slow'), this.o.applyWaitMs);
    });
    const res = await Promise.race([pass, slow]).finally(() => clearTimeout(timer));
    if (res === 'slow') {
      this.log.info({ waitedMs: this.o.applyWaitMs }, 'still converging (image pulls?); continuing in the background');
      pass.then(
        (r) => r.failures.length && this.log.warn({ failures: r.failures }, 'background pass finished with failures'),
        (err: unknown) => this.log.warn({ err: errorMessage(err) }, 'background pass failed'),
      );
      return;
    }
    if (res.failures.length) throw new ConvergeError(res.failures);
  }

  /** Runs a pass now (tests, and callers that want the result). */
  reconcile(): Promise<PassResult> {
    return this.passes.trigger();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const t of [this.resyncTimer, this.debounceTimer, this.retryTimer?.t]) if (t) clearTimeout(t);
    await this.events.close();
    await this.passes.idle();
    this.log.info('docker runtime stopped');
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

  private kickSoon(): void {
    if (this.debounceTimer) return;
    this.debounceTimer = setTimeout(() => {
      this.debounceTimer = undefined;
      this.kick();
    }, this.o.eventDebounceMs);
    this.debounceTimer.unref();
  }

  /** A pass at `ms` from now (crash-loop backoff), unless one is already due earlier. */
  private retryIn(ms: number): void {
    const at = Date.now() + ms;
    if (this.retryTimer && this.retryTimer.at <= at) return;
    if (this.retryTimer) clearTimeout(this.retryTimer.t);
    const t = setTimeout(() => {
      this.retryTimer = undefined;
      this.kick();
    }, ms);
    t.unref();
    this.retryTimer = { at, t };
  }

  private onEvent(ev: DockerEvent): void {
    const attrs = ev.Actor.Attributes;
    const recordId = attrs[LABEL_RECORD_ID] ?? this.recordOfDocker.get(ev.Actor.ID) ?? this.adoptedLocal.get(ev.Actor.ID)?.recordId;
    const relevant = recordId !== undefined || attrs[LABEL_UUID] !== undefined || attrs[LABEL_NETWORK] === 'true';
    if (!relevant) return;
    this.log.debug({ action: ev.Action, container: attrs.name, id: ev.Actor.ID.slice(0, 12) }, 'docker event');
    if (ev.Action === 'start' && recordId !== undefined) {
      this.startCounts.set(recordId, (this.startCounts.get(recordId) ?? 0) + 1);
    }
    this.kickSoon();
  }

  // ---- the pass --------------------------------------------------------------------------------

  private async pass(): Promise<PassResult> {
    const art = this.artefact;
    if (!art || this.closed) return { failures: [] };
    const failures: string[] = [];
    if (this.networkReadyFor !== art.subnet) {
      await ensureManagedNetwork({ docker: this.docker, subnet: art.subnet, log: this.log, ...(this.opts.netns ? { netns: this.opts.netns } : {}) });
      this.networkReadyFor = art.subnet;
    }
    const listed = ListedContainers.parse(await this.docker.listContainers({ all: true }));
    const known = new Set(art.knownUuids);
    const desiredByUuid = new Map(art.containers.map((d) => [d.uuid, d]));
    const ours = new Map<string, ListedContainer[]>();
    const adoptedHere = new Map<string, ListedContainer>();
    const candidates: ListedContainer[] = [];
    for (const c of listed) {
      const uuid = c.Labels[LABEL_UUID];
      if (uuid !== undefined && (c.Labels[LABEL_CONFIG_HASH] !== undefined || known.has(uuid))) {
        const list = ours.get(uuid) ?? [];
        list.push(c);
        ours.set(uuid, list);
      } else if (this.adoptedLocal.has(c.Id)) {
        adoptedHere.set(c.Id, c);
      } else if (c.Labels[LABEL_NETWORK] === 'true') {
        candidates.push(c);
      }
    }

    // Not desired any more (scaled down, moved, removed): remove, and say so.
    for (const [uuid, cs] of ours) {
      if (desiredByUuid.has(uuid)) continue;
      for (const c of cs) {
        const recordId = c.Labels[LABEL_RECORD_ID];
        try {
          await this.remove(c.Id, c.State);
          this.log.info({ container: nameOf(c), recordId }, 'removed a container that is no longer scheduled here');
          if (recordId) {
            this.put(recordId, { state: 'removed', externalId: c.Id });
            this.forget(recordId);
          }
        } catch (err) {
          failures.push(`remove ${nameOf(c)}: ${dockerMessage(err)}`);
        }
      }
      ours.delete(uuid);
    }

    // Stops first: an upgrade's previous generation holds the slot's address until it is stopped.
    for (const d of art.containers) {
      if (d.desiredState !== 'stopped') continue;
      for (const c of ours.get(d.uuid) ?? []) {
        if (c.State !== 'running' && c.State !== 'restarting' && c.State !== 'paused') continue;
        try {
          await this.act(d, 'stop', () => this.docker.getContainer(c.Id).stop({ t: this.o.stopTimeoutSec }), [304, 404]);
          c.State = 'exited';
          this.log.info({ container: d.name }, 'stopped (desired stopped)');
        } catch (err) {
          this.log.warn({ container: d.name, err: errorMessage(err) }, 'stop failed');
        }
      }
    }

    // Desired containers, dependencies first.
    const failed = new Set<string>();
    for (const d of art.containers) {
      if (this.closed) break;
      const blocker = d.after.find((id) => failed.has(id));
      if (blocker) {
        failed.add(d.recordId);
        const msg = `waiting for ${art.containers.find((x) => x.recordId === blocker)?.name ?? blocker}, which failed`;
        this.setError(d, msg);
        failures.push(`${d.name}: ${msg}`);
        continue;
      }
      try {
        await this.converge(d, ours.get(d.uuid) ?? []);
        this.errors.delete(d.recordId);
      } catch (err) {
        failed.add(d.recordId);
        const msg = err instanceof ContainerActionError || err instanceof ImageUnavailableError ? err.message : dockerMessage(err);
        this.setError(d, msg);
        failures.push(`${d.name}: ${msg}`);
        this.log.warn({ container: d.name, recordId: d.recordId, err: msg }, 'container not converged');
      }
    }

    await this.adopted(adoptedHere);
    await this.adopt(candidates);
    return { failures };
  }

  /** Brings one desired container to its state. Throws with a message worth reporting. */
  private async converge(d: DesiredContainer, existing: ListedContainer[]): Promise<void> {
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
      current = undefined;
    }
    if (!current) {
      await this.create(d);
      return;
    }
    this.recordOfDocker.set(current.Id, d.recordId);
    if (current.State === 'removing') return; // the next event brings it back here

    if (d.desiredState === 'stopped') {
      // Stopped on purpose: when it is wanted again (e.g. a rollback) that is no crash loop.
      this.restarts.delete(d.recordId);
      if (current.State === 'running' || current.State === 'restarting' || current.State === 'paused') {
        await this.act(d, 'stop', () => this.docker.getContainer(current.Id).stop({ t: this.o.stopTimeoutSec }), [304]);
        this.log.info({ container: d.name }, 'stopped (desired stopped)');
      }
      await this.reportFromInspect(d, current.Id);
      return;
    }

    // Desired running.
    if (current.State === 'running' || current.State === 'restarting' || current.State === 'paused') {
      this.put(d.recordId, {
        state: current.State === 'restarting' ? 'starting' : 'running',
        exitCode: null,
        externalId: current.Id,
      });
      return;
    }
    const info = await this.inspect(current.Id);
    if (!info) return; // gone meanwhile; the destroy event brings us back
    if (d.startOnce && hasStarted(info)) {
      this.reportInspected(d, info); // ran once: done
      return;
    }
    // created (never started) or exited/stopped by hand/crashed while desired running: start it (again).
    const book = this.restarts.get(d.recordId) ?? { consecutive: 0, at: 0 };
    const quick = !hasStarted(info) || lastRunMs(info) < this.o.quickExitMs;
    const consecutive = quick ? book.consecutive + 1 : 1;
    const delay = consecutive <= 1 ? 0 : Math.min(this.o.maxRestartDelayMs, 1000 * 2 ** (consecutive - 2));
    // Never start while the daemon's event stream is down (it is stopping or restarting; the resync
    // after it comes back starts what is needed), and give a stop a grace period to show whether the
    // daemon is going away before starting again.
    if (this.daemonAway) return;
    const stoppedFor = hasStarted(info) ? Date.now() - Date.parse(info.State.FinishedAt) : Infinity;
    const grace = Number.isFinite(stoppedFor) ? this.o.restartGraceMs - stoppedFor : 0;
    const wait = Math.max(book.at + delay - Date.now(), grace);
    if (wait > 0) {
      this.retryIn(wait);
      this.reportInspected(d, info, `exited (code ${info.State.ExitCode}); restarting in ${Math.ceil(wait / 1000)} s (crash-loop backoff)`);
      return;
    }
    this.restarts.set(d.recordId, { consecutive, at: Date.now() });
    await this.act(d, 'start', () => this.docker.getContainer(current.Id).start(), [304]);
    if (hasStarted(info)) {
      const note = `restarted by drover at ${new Date().toISOString()}: it had exited (code ${info.State.ExitCode}) while desired running`;
      this.notes.set(d.recordId, note);
      this.log.warn({ container: d.name, exitCode: info.State.ExitCode, consecutive }, 'restarted a container that had stopped');
    }
    await this.reportFromInspect(d, current.Id);
  }

  private async create(d: DesiredContainer): Promise<void> {
    if (d.networkMode === 'managed' && !d.ipAddress) {
      throw new ContainerActionError(d.recordId, d.name, 'create', 'it has no managed IP address yet');
    }
    this.put(d.recordId, { state: 'creating', externalId: null });
    const img = await ensureImage(this.docker, d.image, d.pullPolicy, this.log, this.o.pullTimeoutMs, this.pullFailures);
    if (img.warning) this.notes.set(d.recordId, img.warning);
    let id: string;
    try {
      const created = await this.docker.createContainer(createOptions(d));
      id = created.id;
    } catch (err) {
      if (dockerStatus(err) === 409) {
        // The name is taken: a container of ours we did not list (race) is handled next pass; anything
        // else is a foreign container in the way.
        throw new ContainerActionError(d.recordId, d.name, 'create', `the name is taken by another container (${dockerMessage(err)})`);
      }
      throw new ContainerActionError(d.recordId, d.name, 'create', dockerMessage(err));
    }
    this.recordOfDocker.set(id, d.recordId);
    this.restarts.set(d.recordId, { consecutive: 0, at: Date.now() });
    this.log.info({ container: d.name, id: id.slice(0, 12), ip: d.ipAddress, image: d.image }, 'created');
    if (d.desiredState === 'running') {
      this.put(d.recordId, { state: 'starting', externalId: id });
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
   * Adopted containers: keep them on the managed network with their address, report them, and report
   * `removed` once they are gone (the server then deletes the record and frees the address). Problems
   * are reported on the record only: the user runs these containers, they do not fail the capability.
   */
  private async adopted(present: Map<string, ListedContainer>): Promise<void> {
    for (const [externalId, rec] of [...this.adoptedLocal]) {
      const c = present.get(externalId);
      if (!c) {
        this.log.info({ recordId: rec.recordId, id: externalId.slice(0, 12) }, 'an adopted container is gone');
        this.put(rec.recordId, { state: 'removed', externalId });
        this.forget(rec.recordId);
        this.adoptedLocal.delete(externalId);
        continue;
      }
      this.recordOfDocker.set(externalId, rec.recordId);
      const info = await this.inspect(externalId);
      if (!info) continue;
      let message: string | undefined;
      if (rec.ipAddress) {
        try {
          if (await attachToManagedNetwork(this.docker, info, rec.ipAddress)) {
            this.log.info({ container: nameOf(c), ip: rec.ipAddress }, 'joined an adopted container to the managed network');
          }
        } catch (err) {
          message = errorMessage(err);
          this.log.warn({ container: nameOf(c), err: message }, 'adopted container not on the managed network');
        }
      }
      this.put(rec.recordId, {
        state: message ? 'error' : stateOf(info),
        exitCode: info.State.Running ? null : info.State.ExitCode,
        externalId,
        ...(message ? { message } : {}),
      });
    }
  }

  /** Hand-started containers with io.rancher.container.network=true become container records. */
  private async adopt(candidates: ListedContainer[]): Promise<void> {
    if (candidates.length === 0) return;
    const cp = this.controlPlane;
    if (!cp) {
      this.log.debug({ count: candidates.length }, 'containers to adopt, but no control plane connection yet');
      return;
    }
    for (const c of candidates) {
      if (c.State === 'removing' || c.State === 'dead') continue;
      const failedBefore = this.adoptFailures.get(c.Id);
      if (failedBefore && Date.now() - failedBefore.at < 30_000) continue;
      const info = await this.inspect(c.Id);
      if (!info) continue;
      try {
        const rec = await cp.adopt(adoptRequestOf(info));
        this.adoptFailures.delete(c.Id);
        this.adoptedLocal.set(c.Id, { recordId: rec.id, ipAddress: rec.primaryIpAddress });
        this.recordOfDocker.set(c.Id, rec.id);
        this.log.info({ container: nameOf(c), recordId: rec.id, ip: rec.primaryIpAddress }, 'adopted a container started by hand');
        this.kick(); // the next pass joins it to the network and reports it
      } catch (err) {
        const message = errorMessage(err);
        this.adoptFailures.set(c.Id, { at: Date.now(), message });
        this.log.warn({ container: nameOf(c), err: message }, 'adoption failed; retrying later');
        this.retryIn(30_000);
      }
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
