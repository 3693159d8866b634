// Placement: which host a deployment unit (a primary container and its sidekicks) goes to.
// Pure: hosts, the containers already placed and the unit's constraints in; a host id or a reason out.
import type { Constraints, LabelTerm } from './constraints.js';
import { describeTerms } from './constraints.js';

export interface PlacementHost {
  id: string;
  name: string;
  labels: Record<string, string>;
  active: boolean;
}

export interface PlacedContainer {
  hostId: string | null;
  name: string;
  labels: Record<string, string>;
  serviceId: string | null;
}

export type Placement = { ok: true; hostId: string } | { ok: false; reason: string };

/**
 * What placement needs to know of the containers already placed, per host, each answer O(1): so that
 * placing N units costs O(N × hosts), not O(N²) (a scan of every placed container per unit).
 */
export interface PlacementView {
  /** Containers on the host. */
  total(hostId: string): number;
  /** Containers of that service on the host. */
  ofService(hostId: string, serviceId: string): number;
  /** Containers on the host with the label `key=value`. */
  withLabel(hostId: string, key: string, value: string): number;
  /** Containers on the host with that name. */
  named(hostId: string, name: string): number;
}

interface HostTally {
  total: number;
  services: Map<string, number>;
  labels: Map<string, number>;
  names: Map<string, number>;
}

const bump = (m: Map<string, number>, k: string, d: number) => {
  const n = (m.get(k) ?? 0) + d;
  if (n === 0) m.delete(k);
  else m.set(k, n);
};

/** Per-host counts of placed containers, kept current as containers are added and removed. */
export class PlacementTally implements PlacementView {
  private readonly hosts = new Map<string, HostTally>();

  constructor(placed: Iterable<PlacedContainer> = []) {
    for (const p of placed) this.add(p);
  }

  add(p: PlacedContainer): void {
    this.change(p, 1);
  }

  remove(p: PlacedContainer): void {
    this.change(p, -1);
  }

  private change(p: PlacedContainer, d: number): void {
    if (!p.hostId) return;
    let t = this.hosts.get(p.hostId);
    if (!t) this.hosts.set(p.hostId, (t = { total: 0, services: new Map(), labels: new Map(), names: new Map() }));
    t.total += d;
    if (p.serviceId) bump(t.services, p.serviceId, d);
    for (const [k, v] of Object.entries(p.labels)) bump(t.labels, `${k}\0${v}`, d);
    bump(t.names, p.name, d);
  }

  total(hostId: string): number {
    return this.hosts.get(hostId)?.total ?? 0;
  }

  ofService(hostId: string, serviceId: string): number {
    return this.hosts.get(hostId)?.services.get(serviceId) ?? 0;
  }

  withLabel(hostId: string, key: string, value: string): number {
    return this.hosts.get(hostId)?.labels.get(`${key}\0${value}`) ?? 0;
  }

  named(hostId: string, name: string): number {
    return this.hosts.get(hostId)?.names.get(name) ?? 0;
  }
}

/** `base` without the containers of `minus` (e.g. a global service's own containers). */
export function withoutContainers(base: PlacementView, minus: PlacementView): PlacementView {
  return {
    total: (h) => base.total(h) - minus.total(h),
    ofService: (h, s) => base.ofService(h, s) - minus.ofService(h, s),
    withLabel: (h, k, v) => base.withLabel(h, k, v) - minus.withLabel(h, k, v),
    named: (h, n) => base.named(h, n) - minus.named(h, n),
  };
}

const viewOf = (placed: PlacedContainer[] | PlacementView): PlacementView =>
  Array.isArray(placed) ? new PlacementTally(placed) : placed;

const hasLabel = (labels: Record<string, string>, t: LabelTerm) => labels[t.key] === t.value;

/** Hosts that satisfy every hard constraint (in host order). */
export function eligibleHosts(
  hosts: PlacementHost[],
  placed: PlacedContainer[] | PlacementView,
  c: Constraints,
): { hosts: PlacementHost[]; reason?: string } {
  const view = viewOf(placed);
  const labelled = (h: PlacementHost, t: LabelTerm) => view.withLabel(h.id, t.key, t.value) > 0;
  const named = (h: PlacementHost, n: string) => view.named(h.id, n) > 0;
  let candidates = hosts.filter((h) => h.active);
  if (candidates.length === 0) return { hosts: [], reason: 'there is no active host in the environment' };
  const steps: [string, (h: PlacementHost) => boolean][] = [];
  if (c.requestedHostId) steps.push([`requested host ${c.requestedHostId}`, (h) => h.id === c.requestedHostId]);
  if (c.hostLabel.length)
    steps.push([`host labels ${describeTerms(c.hostLabel)}`, (h) => c.hostLabel.every((t) => hasLabel(h.labels, t))]);
  if (c.hostLabelNe.length)
    steps.push([
      `no host label ${describeTerms(c.hostLabelNe)}`,
      (h) => !c.hostLabelNe.some((t) => hasLabel(h.labels, t)),
    ]);
  if (c.containerLabel.length)
    steps.push([`a container labelled ${describeTerms(c.containerLabel)}`, (h) => c.containerLabel.every((t) => labelled(h, t))]);
  if (c.containerLabelNe.length)
    steps.push([`no container labelled ${describeTerms(c.containerLabelNe)}`, (h) => !c.containerLabelNe.some((t) => labelled(h, t))]);
  if (c.container.length) steps.push([`containers ${c.container.join(',')}`, (h) => c.container.every((n) => named(h, n))]);
  if (c.containerNe.length)
    steps.push([`none of the containers ${c.containerNe.join(',')}`, (h) => !c.containerNe.some((n) => named(h, n))]);
  for (const [what, ok] of steps) {
    const next = candidates.filter(ok);
    if (next.length === 0) {
      return {
        hosts: [],
        reason: `no host has ${what} (active hosts considered: ${candidates.map((h) => h.name).join(', ')})`,
      };
    }
    candidates = next;
  }
  return { hosts: candidates };
}

/**
 * Picks a host for one unit: hard constraints filter, soft constraints score, then spread (fewest
 * containers of the same service, then fewest containers overall), then host order.
 */
export function placeUnit(
  hosts: PlacementHost[],
  placed: PlacedContainer[] | PlacementView,
  c: Constraints,
  serviceId: string | null,
): Placement {
  const view = viewOf(placed);
  const { hosts: candidates, reason } = eligibleHosts(hosts, view, c);
  if (candidates.length === 0) return { ok: false, reason: reason ?? 'no eligible host' };
  const score = (h: PlacementHost): number[] => {
    const labelled = (t: LabelTerm) => view.withLabel(h.id, t.key, t.value) > 0;
    const named = (n: string) => view.named(h.id, n) > 0;
    let soft = 0;
    soft += c.hostLabelSoft.filter((t) => hasLabel(h.labels, t)).length;
    soft -= c.hostLabelSoftNe.filter((t) => hasLabel(h.labels, t)).length;
    soft += c.containerLabelSoft.filter(labelled).length;
    soft -= c.containerLabelSoftNe.filter(labelled).length;
    soft += c.containerSoft.filter(named).length;
    soft -= c.containerSoftNe.filter(named).length;
    const sameService = serviceId ? view.ofService(h.id, serviceId) : 0;
    return [-soft, sameService, view.total(h.id)];
  };
  // One pass for the best (lowest score, then host order): O(hosts), no sort.
  let best: { h: PlacementHost; s: number[] } | undefined;
  for (const h of candidates) {
    const s = score(h);
    if (!best || less(s, best.s)) best = { h, s };
  }
  return { ok: true, hostId: (best as { h: PlacementHost }).h.id };
}

function less(a: number[], b: number[]): boolean {
  for (let i = 0; i < a.length; i++) {
    const d = (a[i] as number) - (b[i] as number);
    if (d !== 0) return d < 0;
  }
  return false;
}
