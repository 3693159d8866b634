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

const hasLabel = (labels: Record<string, string>, t: LabelTerm) => labels[t.key] === t.value;

/** Hosts that satisfy every hard constraint (in host order). */
export function eligibleHosts(
  hosts: PlacementHost[],
  placed: PlacedContainer[],
  c: Constraints,
): { hosts: PlacementHost[]; reason?: string } {
  const byHost = groupByHost(placed);
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
    steps.push([
      `a container labelled ${describeTerms(c.containerLabel)}`,
      (h) => c.containerLabel.every((t) => (byHost.get(h.id) ?? []).some((x) => hasLabel(x.labels, t))),
    ]);
  if (c.containerLabelNe.length)
    steps.push([
      `no container labelled ${describeTerms(c.containerLabelNe)}`,
      (h) => !c.containerLabelNe.some((t) => (byHost.get(h.id) ?? []).some((x) => hasLabel(x.labels, t))),
    ]);
  if (c.container.length)
    steps.push([
      `containers ${c.container.join(',')}`,
      (h) => c.container.every((n) => (byHost.get(h.id) ?? []).some((x) => x.name === n)),
    ]);
  if (c.containerNe.length)
    steps.push([
      `none of the containers ${c.containerNe.join(',')}`,
      (h) => !c.containerNe.some((n) => (byHost.get(h.id) ?? []).some((x) => x.name === n)),
    ]);
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
  placed: PlacedContainer[],
  c: Constraints,
  serviceId: string | null,
): Placement {
  const { hosts: candidates, reason } = eligibleHosts(hosts, placed, c);
  if (candidates.length === 0) return { ok: false, reason: reason ?? 'no eligible host' };
  const byHost = groupByHost(placed);
  const score = (h: PlacementHost): number[] => {
    const here = byHost.get(h.id) ?? [];
    let soft = 0;
    soft += c.hostLabelSoft.filter((t) => hasLabel(h.labels, t)).length;
    soft -= c.hostLabelSoftNe.filter((t) => hasLabel(h.labels, t)).length;
    soft += c.containerLabelSoft.filter((t) => here.some((x) => hasLabel(x.labels, t))).length;
    soft -= c.containerLabelSoftNe.filter((t) => here.some((x) => hasLabel(x.labels, t))).length;
    soft += c.containerSoft.filter((n) => here.some((x) => x.name === n)).length;
    soft -= c.containerSoftNe.filter((n) => here.some((x) => x.name === n)).length;
    const sameService = serviceId ? here.filter((x) => x.serviceId === serviceId).length : 0;
    return [-soft, sameService, here.length];
  };
  const ranked = candidates
    .map((h, i) => ({ h, s: [...score(h), i] }))
    .sort((a, b) => {
      for (let i = 0; i < a.s.length; i++) {
        const d = (a.s[i] as number) - (b.s[i] as number);
        if (d !== 0) return d;
      }
      return 0;
    });
  return { ok: true, hostId: (ranked[0] as { h: PlacementHost }).h.id };
}

function groupByHost(placed: PlacedContainer[]): Map<string, PlacedContainer[]> {
  const m = new Map<string, PlacedContainer[]>();
  for (const p of placed) {
    if (!p.hostId) continue;
    let l = m.get(p.hostId);
    if (!l) m.set(p.hostId, (l = []));
    l.push(p);
  }
  return m;
}
