// The health capability of an agent: keeps the checker's targets in line with the state (reconcile:
// state + StateDelta → O(change) target updates) and with what this host's runtime reports (a restart, a
// stop, a new docker container), and reports every healthState change to the control plane through the
// agent's report channel.
//
// Reporting: `wrap(runtimeStates)` returns the ContainerStateSource the agent drains. It passes the
// runtime's reports through (and learns from them what runs), adds the health state to the report of
// the same container when both are waiting, and otherwise sends the container's last runtime report with
// the new health state (so that one report per container never loses what the runtime said).
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Logger } from '../../../common/log.js';
import { registeredMetric } from '../../../common/metrics.js';
import type { ContainerReport, FoundAnswer } from '../../../model/reports.js';
import type { EnvState, StateDelta } from '../../../model/state.js';
import type { HealthState } from '../../../model/liveness.js';
import type { ContainerStateSource } from '../../agent.js';
import type { HostContext } from '../capability.js';
import { HealthChecker, type HealthCheckerOptions, type HealthTransition } from './checker.js';
import { TargetSet, type TargetChanges } from './targets.js';

export interface HealthMonitorOptions {
  log: Logger;
  registry?: Registry | undefined;
  /** Checks in flight at most (default 64). */
  maxConcurrent?: number;
  /** For tests: probe, timers and randomness of the checker. */
  checker?: Pick<HealthCheckerOptions, 'probe' | 'timers' | 'random'>;
}

interface Metrics {
  targets: Gauge;
  transitions: Counter<'to'>;
}

/** The health metrics, registered once per registry (the targets gauge reads the monitor that registered it first). */
function metrics(registry: Registry, monitor: HealthMonitor): Metrics {
  const isGauge = (m: unknown): m is Gauge => m instanceof Gauge;
  const isCounter = (m: unknown): m is Counter<'to'> => m instanceof Counter;
  const targets = registeredMetric(registry, 'drover_agent_health_targets', isGauge) ?? new Gauge({
    name: 'drover_agent_health_targets',
    help: 'Containers whose health check this agent runs',
    registers: [registry],
    collect() {
      this.set(monitor.stats().targets);
    },
  });
  const transitions = registeredMetric(registry, 'drover_agent_health_transitions_total', isCounter) ?? new Counter({
    name: 'drover_agent_health_transitions_total',
    help: 'Health state changes of the containers this agent checks, by new state',
    labelNames: ['to'] as const,
    registers: [registry],
  });
  return { targets, transitions };
}

export class HealthMonitor {
  readonly name = 'health';
  private readonly log: Logger;
  private readonly checker: HealthChecker;
  private readonly targets = new TargetSet();
  private state: EnvState | undefined;
  private hostId = '';
  /** Health states waiting to be reported, by container id. */
  private readonly pending = new Map<string, HealthState>();
  /** The last report the runtime made per container (the base of health-only reports). */
  private readonly lastRuntime = new Map<string, ContainerReport>();
  private readonly reportListeners: (() => void)[] = [];
  private readonly transitionListeners: ((t: HealthTransition) => void)[] = [];
  private readonly m: Metrics | undefined;
  private stopped = false;

  constructor(opts: HealthMonitorOptions) {
    this.log = opts.log.child({ component: 'health' });
    this.checker = new HealthChecker({
      ...opts.checker,
      ...(opts.maxConcurrent !== undefined ? { maxConcurrent: opts.maxConcurrent } : {}),
      log: this.log,
      onTransition: (t) => this.transition(t),
    });
    this.m = opts.registry ? metrics(opts.registry, this) : undefined;
  }

  stats(): ReturnType<HealthChecker['stats']> {
    return this.checker.stats();
  }

  /** The checker's current state of a container (undefined: not checked here). */
  stateOf(id: string): HealthState | undefined {
    return this.checker.stateOf(id);
  }

  /** Every transition as it happens (tests, embedders). */
  onTransition(fn: (t: HealthTransition) => void): void {
    this.transitionListeners.push(fn);
  }

  /** The controller's reconcile: the targets follow the state in time proportional to `delta`. */
  reconcile(state: EnvState, delta: StateDelta, host: HostContext): Promise<void> {
    if (this.stopped) return Promise.resolve();
    this.state = state;
    this.hostId = host.hostId;
    this.apply(this.targets.update(state, delta, host.hostId));
    return Promise.resolve();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.checker.close();
  }

  /**
   * The source the agent drains: the runtime's reports (when there is a runtime) with the health states
   * merged in. Without a runtime the health reports alone.
   */
  wrap(inner?: ContainerStateSource): ContainerStateSource {
    return {
      drainReports: () => this.drain(inner?.drainReports() ?? []),
      onReports: (cb) => {
        this.reportListeners.push(cb);
        inner?.onReports(cb);
        if (this.pending.size) cb();
      },
      // Hand-started containers the runtime found (adopted through the report), passed through.
      ...(inner?.drainFound ? { drainFound: () => inner.drainFound?.() ?? [] } : {}),
      ...(inner?.foundAnswered ? { foundAnswered: (answers: FoundAnswer[]) => inner.foundAnswered?.(answers) } : {}),
    };
  }

  private drain(runtime: ContainerReport[]): ContainerReport[] {
    // Learn from the runtime first: a restart seen here is a `reinitializing` in this same batch.
    for (const r of runtime) {
      if (r.state === 'removed') this.lastRuntime.delete(r.id);
      else this.lastRuntime.set(r.id, r);
      // Kept even before this controller has a state: the runtime may have acted on one it has not yet.
      this.apply(this.targets.observe(this.state, r.id, { state: r.state, startCount: r.startCount, externalId: r.externalId }));
    }
    const out: ContainerReport[] = [];
    for (const r of runtime) {
      const h = this.pending.get(r.id);
      if (h !== undefined && r.state !== 'removed') {
        out.push({ ...r, healthState: h });
        this.pending.delete(r.id);
      } else {
        out.push(r);
      }
    }
    for (const [id, h] of this.pending) {
      const base = this.lastRuntime.get(id);
      const doc = this.state?.containers.get(id);
      if (!base && !doc) continue;
      out.push(base ? { ...base, healthState: h } : { id, state: doc?.state ?? 'running', healthState: h });
    }
    this.pending.clear();
    return out;
  }

  private apply(ch: TargetChanges): void {
    for (const id of ch.removes) {
      this.checker.remove(id);
      this.pending.delete(id);
    }
    for (const t of ch.upserts) this.checker.upsert(t);
  }

  private transition(t: HealthTransition): void {
    this.m?.transitions.inc({ to: t.to });
    const level = t.to === 'unhealthy' ? 'warn' : 'info';
    this.log[level]({ container: t.id, from: t.from, to: t.to, successes: t.successes, failures: t.failures, detail: t.detail }, 'health state changed');
    this.pending.set(t.id, t.to);
    for (const fn of this.transitionListeners) fn(t);
    for (const cb of this.reportListeners) cb();
  }
}
