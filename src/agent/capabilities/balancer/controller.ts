// The balancer controller: keeps one HAProxy (one HaproxyApplier, apply.ts) per balancer container
// scheduled on this host in line with the environment state. A reconcile reads the instances (inputs.ts,
// pure), renders each (render.ts, pure) with the applier's runtime socket and slot table — so endpoint
// churn keeps the skeleton and goes through the runtime API without a reload — applies it, and closes the
// HAProxy of every instance that is gone.
//
// Where an instance listens: with `addresses` (the managed network runs), on its managed address only —
// made local on the host (addresses.ts), reached from other hosts over the overlay, its published ports
// sent there by the agent's DNAT like any container's (client address kept) — so instances of different
// balancers on one host never collide on a port, and port 42 is per instance. Without it (no managed
// network), on `*`: the source ports are the host's ports.
//
// Reports (reports.ts): the state of each balancer container (running, error with the reason, stopped,
// removed) goes out through `states`, a ContainerStateSource the agent merges with the runtime's.
//
// Failures are per instance: a config HAProxy refuses (`haproxy -c`) leaves that instance's running config
// serving, shows HAProxy's message in health() and instanceStates(), and does not fail the reconcile (a
// retry would be refused again; the next state change or resync renders again). Any other failure (HAProxy
// does not start, a socket does not answer) fails the reconcile after every instance was tried, so the
// manager retries with backoff.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../../../common/log.js';
import { errorMessage } from '../../../common/errors.js';
import type { Controller, HostContext } from '../../controller/controller.js';
import type { EnvState, StateDelta } from '../../../model/state.js';
import type { ContainerReport } from '../../../model/reports.js';
import type { ContainerStateSource } from '../../agent.js';
import type { LocalAddresses } from './addresses.js';
import { balancerReports } from './reports.js';
import { createHaproxyApplier, HaproxyConfigError, type BalancerStatus, type HaproxyApplier } from './apply.js';
import { balancerInputs, type BalancerInstance } from './inputs.js';
import { renderHaproxy, type BalancerCertificate, type BalancerRender } from './render.js';
import { selfSignedCertificate } from './selfsigned.js';

export interface BalancerControllerOptions {
  log: Logger;
  /** The agent's data directory: instance `c` lives in `<dataDir>/balancer/<c>`. */
  dataDir: string;
  haproxyBin?: string;
  /** The default certificate for https/tls balancers without one; default: a self-signed one (selfsigned.ts). */
  selfSigned?: (name: string) => { cert: string; key: string };
  /** Where an instance listens, instead of the default (tests: 127.0.0.1). */
  bindAddresses?: (instance: BalancerInstance) => string[];
  /**
   * The managed network runs: instances listen on their managed addresses, made local through this.
   * Absent: they listen on `*`.
   */
  addresses?: LocalAddresses;
  /** Why no HAProxy can run on this host (not installed): every instance is reported in error with it. */
  unavailable?: string;
  /** The health listener's port instead of 42 (tests). */
  healthPort?: number;
  /** Minimum server slots per backend (render.ts's default when absent). */
  minSlots?: number;
  /** HAProxy restart backoff (apply.ts's default when absent). */
  restartBackoff?: { initialMs: number; maxMs: number };
}

export interface BalancerInstanceState {
  /** The balancer container's id. */
  id: string;
  /** running: its HAProxy serves the last rendered config; error: refused, not started, or restarting. */
  state: 'running' | 'error';
  message?: string;
  /** Rules and certificates left out (resolving and rendering). */
  warnings?: string[];
}

interface Instance {
  containerId: string;
  /** The managed address it listens on (managed binding). */
  ip: string | null;
  serviceId: string;
  name: string;
  applier: HaproxyApplier;
  /** The last render in force (verify restores it). */
  good: BalancerRender | undefined;
  /** Why the last apply failed (`refused`: HAProxy's `haproxy -c` refused the render); undefined when it succeeded. */
  failure: { message: string; refused: boolean } | undefined;
  warnings: string[];
}

export class BalancerController implements Controller {
  readonly name = 'balancer';
  private readonly log: Logger;
  private readonly instances = new Map<string, Instance>();
  private readonly certs = new Map<string, BalancerCertificate>();
  private readonly notify: (() => void)[] = [];
  private chain: Promise<unknown> = Promise.resolve();
  private stopped = false;
  private lastHealth = '';
  /** Instances that cannot start yet (no managed address), by container id. */
  private readonly waiting = new Map<string, BalancerInstanceState>();
  /** The last state reconciled (reports are derived from it). */
  private last: { state: EnvState; hostId: string } | undefined;
  /** What was last queued per container (JSON), so only changes are reported. */
  private readonly reported = new Map<string, string>();
  private readonly pending = new Map<string, ContainerReport>();
  private readonly reportListeners: (() => void)[] = [];
  /**
   * The reports of a state with no instance states (what health() and queueReports ask for when no HAProxy
   * can run here), kept for the revision they were derived from: the manager asks for the health several
   * times per revision, and each pass is over every container of the environment.
   */
  private noInstanceReports: { state: EnvState; revision: number; hostId: string; reports: ContainerReport[] } | undefined;

  /** The balancer containers' observed states, for the agent to report (merged with the runtime's). */
  readonly states: ContainerStateSource = {
    drainReports: () => {
      const out = [...this.pending.values()];
      this.pending.clear();
      return out;
    },
    onReports: (cb) => {
      this.reportListeners.push(cb);
      if (this.pending.size) cb();
    },
  };

  constructor(private readonly o: BalancerControllerOptions) {
    this.log = o.log.child({ component: 'balancer' });
  }

  /** One reconcile, resync or stop at a time (they share the appliers). */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => undefined);
    return run;
  }

  private selfSigned(serviceId: string, name: string): BalancerCertificate {
    let c = this.certs.get(serviceId);
    if (!c) {
      const made = this.o.selfSigned ? this.o.selfSigned(name) : selfSignedCertificate(name);
      c = { name: 'drover-default', cert: made.cert, key: made.key };
      this.certs.set(serviceId, c);
      this.log.info({ service: name }, 'generated a self-signed default certificate for a balancer with https/tls rules and no certificate');
    }
    return c;
  }

  reconcile(state: EnvState, _delta: StateDelta, host: HostContext): Promise<void> {
    return this.exclusive(async () => {
      if (this.stopped) return;
      this.last = { state, hostId: host.hostId };
      const failures: string[] = [];
      try {
        await this.reconcileInstances(state, host.hostId, failures);
      } finally {
        this.healthMaybeChanged();
      }
      if (failures.length) throw new Error(failures.join('; '));
    });
  }

  private async reconcileInstances(state: EnvState, hostId: string, failures: string[]): Promise<void> {
    const all = this.o.unavailable !== undefined ? [] : balancerInputs(state, hostId, { selfSigned: (id, name) => this.selfSigned(id, name) });
    const managed = this.o.addresses !== undefined && this.o.bindAddresses === undefined;
    this.waiting.clear();
    const wanted: BalancerInstance[] = [];
    for (const w of all) {
      if (managed && !w.ip) {
        this.waiting.set(w.containerId, { id: w.containerId, state: 'error', message: 'waiting for its managed address from the control plane' });
      } else {
        wanted.push(w);
      }
    }
    const wantedIps = managed ? wanted.map((w) => w.ip as string) : [];
    if (managed && this.o.addresses) {
      // Addresses first (the running ones kept until their HAProxy is gone), so a new bind finds its address.
      const running = [...this.instances.values()].flatMap((i) => (i.ip ? [i.ip] : []));
      await this.o.addresses.sync([...new Set([...wantedIps, ...running])]);
    }
    for (const w of wanted) {
      try {
        await this.applyInstance(w, managed, state.revision);
      } catch (err) {
        failures.push(`balancer ${w.name}: ${errorMessage(err)}`);
      }
    }
    const keep = new Set(wanted.map((w) => w.containerId));
    for (const [id, inst] of this.instances) {
      if (keep.has(id)) continue;
      await this.closeInstance(inst, true);
    }
    if (managed && this.o.addresses) await this.o.addresses.sync(wantedIps);
    const services = new Set(wanted.map((w) => w.serviceId));
    for (const id of this.certs.keys()) if (!services.has(id)) this.certs.delete(id);
  }

  private instanceFor(w: BalancerInstance): Instance {
    let inst = this.instances.get(w.containerId);
    if (!inst) {
      const applier = createHaproxyApplier({
        log: this.log.child({ balancer: w.name, container: w.containerId }),
        dir: join(this.o.dataDir, 'balancer', w.containerId),
        ...(this.o.haproxyBin ? { haproxyBin: this.o.haproxyBin } : {}),
        ...(this.o.restartBackoff ? { restartBackoff: this.o.restartBackoff } : {}),
      });
      applier.onStatusChange(() => this.healthMaybeChanged());
      inst = { containerId: w.containerId, ip: w.ip, serviceId: w.serviceId, name: w.name, applier, good: undefined, failure: undefined, warnings: [] };
      this.instances.set(w.containerId, inst);
    }
    inst.name = w.name;
    inst.ip = w.ip;
    return inst;
  }

  /**
   * Controller.preview: the targets a new state no longer has leave every running HAProxy at once, also
   * while a reconcile (a reload: seconds on a busy host) runs — a removed container drains only so long.
   */
  preview(state: EnvState, host: HostContext): void {
    if (this.stopped || this.o.unavailable !== undefined || this.instances.size === 0) return;
    const managed = this.o.addresses !== undefined && this.o.bindAddresses === undefined;
    // Certificates do not matter here (only the backends are used): no self-signed one is made for it.
    const placeholder: BalancerCertificate = { name: 'drover-default', cert: '', key: '' };
    for (const w of balancerInputs(state, host.hostId, { selfSigned: (id) => this.certs.get(id) ?? placeholder })) {
      const inst = this.instances.get(w.containerId);
      if (!inst || (managed && !w.ip)) continue;
      void inst.applier.takeOutGone(this.render(w, inst, managed), state.revision);
    }
  }

  private render(w: BalancerInstance, inst: Instance, managed: boolean): BalancerRender {
    const binds = this.o.bindAddresses ? this.o.bindAddresses(w) : managed && w.ip ? [w.ip] : ['*'];
    return renderHaproxy({
      ...w.input,
      bindAddresses: binds,
      // Bound on its managed address: connect to the targets from it too (render.ts, sourceAddress).
      ...(managed && !this.o.bindAddresses && w.ip ? { sourceAddress: w.ip } : {}),
      ...(this.o.healthPort !== undefined ? { healthPort: this.o.healthPort } : {}),
      ...(this.o.minSlots !== undefined ? { minSlots: this.o.minSlots } : {}),
      statsSocket: inst.applier.statsSocket,
      previousSlots: inst.applier.slots(),
    });
  }

  private async applyInstance(w: BalancerInstance, managed: boolean, revision: number): Promise<void> {
    const inst = this.instanceFor(w);
    const r = this.render(w, inst, managed);
    const warnings = [...w.warnings, ...r.warnings];
    if (JSON.stringify(warnings) !== JSON.stringify(inst.warnings) && warnings.length) {
      this.log.warn({ balancer: w.name, warnings }, 'balancer rules left out');
    }
    inst.warnings = warnings;
    try {
      await inst.applier.applyAt(r, revision);
      inst.good = r;
      inst.failure = undefined;
    } catch (err) {
      if (err instanceof HaproxyConfigError) {
        // The running config (if any) keeps serving; retrying the same render would be refused again.
        inst.failure = { message: err.message, refused: true };
        this.log.warn({ balancer: w.name, message: err.haproxyMessage }, 'HAProxy refused the balancer config');
        return;
      }
      inst.failure = { message: errorMessage(err), refused: false };
      throw err;
    }
  }

  private async closeInstance(inst: Instance, removeDir: boolean): Promise<void> {
    this.instances.delete(inst.containerId);
    try {
      await inst.applier.close();
      this.log.info({ balancer: inst.name, container: inst.containerId }, 'balancer instance gone: HAProxy stopped');
    } catch (err) {
      this.log.warn({ balancer: inst.name, err: errorMessage(err) }, 'could not stop a balancer HAProxy');
    }
    if (removeDir) {
      await rm(join(this.o.dataDir, 'balancer', inst.containerId), { recursive: true, force: true }).catch((err: unknown) =>
        this.log.warn({ err: errorMessage(err) }, 'could not remove a gone balancer instance directory'),
      );
    }
  }

  verify(state: EnvState, host: HostContext): Promise<string | undefined> {
    return this.exclusive(async () => {
      if (this.stopped) return undefined;
      const repaired: string[] = [];
      const failures: string[] = [];
      if (this.o.unavailable !== undefined) return undefined;
      const wanted = new Set(balancerInputs(state, host.hostId, { selfSigned: (id, name) => this.selfSigned(id, name) }).map((w) => w.containerId));
      if (this.o.addresses && !this.o.bindAddresses) {
        // An address removed by hand would leave its HAProxy deaf: put the set back.
        try {
          await this.o.addresses.sync([...this.instances.values()].flatMap((i) => (i.ip && wanted.has(i.containerId) ? [i.ip] : [])));
        } catch (err) {
          failures.push(`balancer addresses: ${errorMessage(err)}`);
        }
      }
      for (const inst of this.instances.values()) {
        if (!inst.good || !wanted.has(inst.containerId)) continue;
        try {
          const r = await inst.applier.verify?.(inst.good);
          if (r) repaired.push(`balancer ${inst.name}: ${r}`);
        } catch (err) {
          failures.push(`balancer ${inst.name}: ${errorMessage(err)}`);
        }
      }
      this.healthMaybeChanged();
      if (failures.length) throw new Error(failures.join('; '));
      return repaired.length ? repaired.join('; ') : undefined;
    });
  }

  private stateOf(inst: Instance): BalancerInstanceState {
    const st = inst.applier.status();
    const warnings = inst.warnings.length ? { warnings: [...inst.warnings] } : {};
    if (inst.failure?.refused && inst.good && st.masterPid !== undefined) {
      // HAProxy refused the new config: the previous one keeps serving, so the instance stays running (in
      // DNS and behind its published ports) and says why its rules are not the latest.
      const message = `HAProxy refused the new configuration; the previous one keeps serving: ${inst.failure.message}`;
      return { id: inst.containerId, state: 'running', message, ...warnings };
    }
    if (inst.failure) return { id: inst.containerId, state: 'error', message: inst.failure.message, ...warnings };
    if (st.state !== 'ok') return { id: inst.containerId, state: 'error', message: st.message ?? `HAProxy is ${st.state}`, ...warnings };
    return { id: inst.containerId, state: 'running', ...warnings };
  }

  /** Per balancer container on this host: whether its HAProxy serves the last render (for the runtime/agent to report). */
  instanceStates(): BalancerInstanceState[] {
    return [...[...this.instances.values()].map((i) => this.stateOf(i)), ...this.waiting.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** Queues the reports that changed since the last ones (reports.ts) and tells the agent. */
  private queueReports(): void {
    if (!this.last) return;
    const states = new Map(this.instanceStates().map((s) => [s.id, s]));
    const seen = new Set<string>();
    let queued = false;
    for (const r of this.reports(this.last.state, this.last.hostId, states)) {
      seen.add(r.id);
      const key = JSON.stringify(r);
      if (this.reported.get(r.id) === key) continue;
      this.reported.set(r.id, key);
      this.pending.set(r.id, r);
      queued = true;
    }
    for (const id of this.reported.keys()) if (!seen.has(id)) this.reported.delete(id);
    if (queued) for (const cb of this.reportListeners) cb();
  }

  /**
   * balancerReports of a state; without instance states, derived once per revision of the state (a state
   * is changed in place, its revision with it). The caller must not change the list.
   */
  private reports(state: EnvState, hostId: string, instances: ReadonlyMap<string, BalancerInstanceState>): ContainerReport[] {
    if (instances.size > 0) return balancerReports(state, hostId, instances, this.o.unavailable);
    const m = this.noInstanceReports;
    if (m && m.state === state && m.revision === state.revision && m.hostId === hostId) return m.reports;
    const reports = balancerReports(state, hostId, instances, this.o.unavailable);
    this.noInstanceReports = { state, revision: state.revision, hostId, reports };
    return reports;
  }

  /** The applier status of one instance (reloads, runtime updates, restarts), for reports and tests. */
  applierStatus(containerId: string): BalancerStatus | undefined {
    return this.instances.get(containerId)?.applier.status();
  }

  health(): { state: 'degraded' | 'failed'; message: string } | undefined {
    if (this.o.unavailable !== undefined) {
      const n = this.last ? this.reports(this.last.state, this.last.hostId, new Map()).filter((r) => r.state === 'error').length : 0;
      return n ? { state: 'degraded', message: `${n} balancer instance(s) cannot run: ${this.o.unavailable}` } : undefined;
    }
    // In error, or serving the previous config after a refusal (running, with the reason).
    const bad = [...this.instances.values()]
      .filter((i) => i.failure !== undefined || this.stateOf(i).state === 'error')
      .map((i) => ({ name: i.name, s: this.stateOf(i) }));
    for (const [id, w] of this.waiting) bad.push({ name: this.last?.state.containers.get(id)?.name ?? id, s: w });
    if (!bad.length) return undefined;
    return { state: 'degraded', message: bad.map((x) => `balancer ${x.name}: ${x.s.message ?? 'error'}`).join('; ') };
  }

  onHealthChange(notify: () => void): void {
    this.notify.push(notify);
  }

  private healthMaybeChanged(): void {
    this.queueReports();
    const h = JSON.stringify(this.health() ?? null);
    if (h === this.lastHealth) return;
    this.lastHealth = h;
    for (const n of this.notify) n();
  }

  stop(): Promise<void> {
    return this.exclusive(async () => {
      this.stopped = true;
      for (const inst of [...this.instances.values()]) await this.closeInstance(inst, false);
      if (this.o.addresses) {
        await this.o.addresses.close().catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, 'could not remove the balancer addresses'));
      }
    });
  }
}
