// What the runtime capability renders from the environment state (pure), and how two renders compare.
import type { EnvState } from '../../model/state.js';
import type { HostContext } from '../capabilities/capability.js';
import { desiredContainers, type DesiredContainer } from './desired.js';
import { canonicalJson } from '../../common/canonical-json.js';

export interface AdoptedRecord {
  recordId: string;
  externalId: string;
  ipAddress: string | null;
}

export interface RuntimeArtefact {
  hostId: string;
  subnet: string;
  /** The environment's overlay (its MTU is the containers' MTU) and MTU override. */
  overlay: 'ipsec' | 'vxlan';
  mtuOverride?: number;
  containers: DesiredContainer[];
  /** Containers adopted on this host (started by hand, reported by drover). */
  adopted: AdoptedRecord[];
  /** uuids of every non-adopted record on this host: a container with one of them is drover's. */
  knownUuids: string[];
  /** The start counts the server holds (the baseline after an agent restart); ignored by `sameArtefact`. */
  startCounts: Record<string, number>;
}

export function renderRuntime(state: EnvState, host: HostContext): RuntimeArtefact {
  const here = [...state.containers.values()].filter((c) => host.hostId !== '' && c.hostId === host.hostId);
  return {
    hostId: host.hostId,
    subnet: state.environment.network.subnet,
    overlay: state.environment.network.overlay,
    ...(state.environment.network.mtu !== undefined ? { mtuOverride: state.environment.network.mtu } : {}),
    containers: desiredContainers(state, host.hostId),
    adopted: here
      .filter((c) => c.adopted && c.externalId)
      .map((c) => ({ recordId: c.id, externalId: c.externalId as string, ipAddress: c.primaryIpAddress }))
      .sort((a, b) => (a.recordId < b.recordId ? -1 : 1)),
    knownUuids: here
      .filter((c) => !c.adopted)
      .map((c) => c.uuid)
      .sort(),
    startCounts: Object.fromEntries(here.map((c) => [c.id, c.startCount])),
  };
}

/** Equal when they ask for the same containers; start counts (which our own reports change) do not count. */
export function sameArtefact(a: RuntimeArtefact, b: RuntimeArtefact): boolean {
  const strip = ({ startCounts: _s, ...rest }: RuntimeArtefact) => rest;
  return canonicalJson(strip(a)) === canonicalJson(strip(b));
}
