// The pure part: which containers this host checks, and how (state + what this host observed → targets).
//
// A container is checked by a host when it is listed (not being removed, not an upgrade's rollback
// copy), is its service's primary launch config (sidekicks have no check of their own here), its
// service has a `healthCheck`, it has a primary address, and the host is one of its checkers. Today a
// container's checker is its own host (`checkersOf`); the checks are addressed by IP, so other hosts can
// be added there once the overlay network makes every address reachable from every host.
//
// `TargetSet` keeps the targets up to date from a StateDelta in time proportional to the delta: a
// touched container is re-derived alone, a touched service re-derives this host's containers of that
// service (an index kept here), a full delta re-derives everything.
import type { Container, Service } from '../../../model/resources.js';
import type { EnvState, StateDelta } from '../../../model/state.js';
import { isListed } from '../../../model/serving.js';
import { HEALTH_STATES, type HealthState } from '../../../model/liveness.js';
import type { HealthTarget } from './checker.js';

/** What this host's runtime last reported for a container (fresher than the revisioned document). */
export interface Observed {
  state: string;
  startCount?: number | undefined;
  externalId?: string | null | undefined;
}

/** The hosts whose agents check a container: its own host (see the file comment). */
export function checkersOf(c: Container): string[] {
  return c.hostId ? [c.hostId] : [];
}

function asHealthState(s: string | null): HealthState | null {
  return (HEALTH_STATES as readonly string[]).includes(s ?? '') ? (s as HealthState) : null;
}

/** The target for one container, or undefined when this host does not check it. */
export function targetFor(c: Container, service: Service | undefined, hostId: string, observed?: Observed): HealthTarget | undefined {
  const hc = service?.healthCheck;
  if (!hc || !c.primaryIpAddress || c.launchConfigName !== '' || !isListed(c) || c.desiredState !== 'running') return undefined;
  if (!checkersOf(c).includes(hostId)) return undefined;
  const state = observed?.state ?? c.state;
  return {
    id: c.id,
    ip: c.primaryIpAddress,
    port: hc.port,
    requestLine: hc.requestLine,
    interval: hc.interval,
    responseTimeout: hc.responseTimeout,
    params: {
      healthyThreshold: hc.healthyThreshold,
      unhealthyThreshold: hc.unhealthyThreshold,
      initializingTimeout: hc.initializingTimeout,
      reinitializingTimeout: hc.reinitializingTimeout,
    },
    running: state === 'running',
    incarnation: (observed ? observed.externalId : c.externalId) ?? '',
    startCount: observed?.startCount,
    initial: asHealthState(c.healthState),
  };
}

export interface TargetChanges {
  upserts: HealthTarget[];
  removes: string[];
}

export function sameTarget(a: HealthTarget, b: HealthTarget): boolean {
  return (
    a.ip === b.ip &&
    a.port === b.port &&
    a.requestLine === b.requestLine &&
    a.interval === b.interval &&
    a.responseTimeout === b.responseTimeout &&
    a.running === b.running &&
    a.incarnation === b.incarnation &&
    a.startCount === b.startCount &&
    a.params.healthyThreshold === b.params.healthyThreshold &&
    a.params.unhealthyThreshold === b.params.unhealthyThreshold &&
    a.params.initializingTimeout === b.params.initializingTimeout &&
    a.params.reinitializingTimeout === b.params.reinitializingTimeout
  );
}

/** This host's targets, kept current from deltas and observations. */
export class TargetSet {
  private readonly targets = new Map<string, HealthTarget>();
  /** This host's containers by service id (whether checked or not: a service may gain a check). */
  private readonly byService = new Map<string, Set<string>>();
  private readonly serviceOf = new Map<string, string>();
  private readonly observed = new Map<string, Observed>();
  private hostId = '';

  get size(): number {
    return this.targets.size;
  }

  get(id: string): HealthTarget | undefined {
    return this.targets.get(id);
  }

  all(): IterableIterator<HealthTarget> {
    return this.targets.values();
  }

  /** Applies a state change; returns the targets to add or update and the ids to drop. */
  update(state: EnvState, delta: StateDelta, hostId: string): TargetChanges {
    const out: TargetChanges = { upserts: [], removes: [] };
    if (delta.full || hostId !== this.hostId) {
      this.hostId = hostId;
      const seen = new Set<string>();
      this.byService.clear();
      this.serviceOf.clear();
      for (const c of state.containers.values()) {
        if (c.hostId !== hostId) continue;
        seen.add(c.id);
        this.derive(state, c.id, out);
      }
      for (const id of [...this.targets.keys()]) if (!seen.has(id)) this.drop(id, out);
      return out;
    }
    const ids = new Set<string>();
    for (const t of delta.touched) {
      if (t.kind === 'container') {
        ids.add(t.id);
        if (t.op === 'remove') this.observed.delete(t.id);
      }
      else if (t.kind === 'service') for (const id of this.byService.get(t.id) ?? []) ids.add(id);
    }
    for (const id of ids) this.derive(state, id, out);
    return out;
  }

  /**
   * What this host's runtime reported for a container; returns the target change it makes, if any.
   * Kept even when the container is not in the state this set has seen yet (the runtime may act on a
   * state before the health controller gets it): it applies once the state has the container. Forgotten
   * on the runtime's `removed` report or when the state removes the container.
   */
  observe(state: EnvState | undefined, id: string, o: Observed): TargetChanges {
    const out: TargetChanges = { upserts: [], removes: [] };
    if (o.state === 'removed') this.observed.delete(id);
    else this.observed.set(id, o);
    if (state) this.derive(state, id, out);
    return out;
  }

  private derive(state: EnvState, id: string, out: TargetChanges): void {
    const c = state.containers.get(id);
    const mine = c !== undefined && c.hostId === this.hostId;
    const oldService = this.serviceOf.get(id);
    const newService = mine ? (c.serviceId ?? undefined) : undefined;
    if (oldService !== newService) {
      if (oldService !== undefined) {
        const set = this.byService.get(oldService);
        set?.delete(id);
        if (set?.size === 0) this.byService.delete(oldService);
      }
      if (newService !== undefined) {
        let set = this.byService.get(newService);
        if (!set) this.byService.set(newService, (set = new Set()));
        set.add(id);
        this.serviceOf.set(id, newService);
      } else {
        this.serviceOf.delete(id);
      }
    }
    const t = mine ? targetFor(c, c.serviceId ? state.services.get(c.serviceId) : undefined, this.hostId, this.observed.get(id)) : undefined;
    if (!t) {
      this.drop(id, out);
      return;
    }
    const prev = this.targets.get(id);
    if (prev && sameTarget(prev, t)) return;
    this.targets.set(id, t);
    out.upserts.push(t);
  }

  private drop(id: string, out: TargetChanges): void {
    if (this.targets.delete(id)) out.removes.push(id);
  }
}
