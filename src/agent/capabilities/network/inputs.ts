// What the network of this host is made of, read from the environment state (pure): the peers (other
// hosts with a tunnel address), this host's managed containers with their published ports, and the
// other hosts' containers that own an address (the address owner rule of model/serving.ts, the same
// one DNS and metadata use). The renderers of ipsec/, dataplane/ and iptables/ take their parts.
import type { EnvState } from '../../../model/state.js';
import type { Container, Host } from '../../../model/resources.js';
import { canOwnAddress, isGoneState, ownsBefore } from '../../../model/serving.js';

export type OverlayMode = 'ipsec' | 'vxlan';

export interface NetworkHost {
  hostId: string;
  name: string;
  agentIp: string;
  tunnelIp: string;
}

export interface PublishedPort {
  hostIp?: string;
  publicPort: number;
  privatePort: number;
  protocol: 'tcp' | 'udp';
}

export interface LocalContainer {
  id: string;
  name: string;
  ip: string;
  /** Docker's id, when the runtime has created it (the veth is found through it). */
  externalId: string | null;
  ports: PublishedPort[];
  /** Its service's drain_timeout_ms: how long it stays routed after it left the state (absent: lingerMs). */
  drainMs?: number;
}

export interface RemoteContainer {
  ip: string;
  hostId: string;
  drainMs?: number;
}

export interface NetworkInputs {
  mode: OverlayMode;
  auth: 'psk' | 'cert';
  subnet: string;
  vni: number;
  mtuOverride: number | undefined;
  /** This host; undefined until the control plane has given it a tunnel address. */
  self: NetworkHost | undefined;
  /** Other hosts of the environment that can be reached: active, with a tunnel address, not revoked. */
  peers: NetworkHost[];
  localContainers: LocalContainer[];
  remoteContainers: RemoteContainer[];
}

/** Host fields the network needs; `tunnelIp` and revocation come from the control plane. */
type NetHostFields = Host;

function netHost(h: NetHostFields): NetworkHost | undefined {
  if (!h.tunnelIp || !h.agentIpAddress) return undefined;
  return { hostId: h.id, name: h.name, agentIp: h.agentIpAddress, tunnelIp: h.tunnelIp };
}

function isPeerHost(h: NetHostFields): boolean {
  return !isGoneState(h.state) && h.state !== 'inactive' && h.certificateRevoked !== true;
}

/** Orders containers by address (numerically). */
export const byIp = (a: { ip: string }, b: { ip: string }) => ipKey(a.ip) - ipKey(b.ip);

function ipKey(ip: string): number {
  const p = ip.split('.');
  return (((Number(p[0]) * 256 + Number(p[1])) * 256 + Number(p[2])) * 256 + Number(p[3])) >>> 0;
}

export function networkInputs(state: EnvState, hostId: string): NetworkInputs {
  const net = state.environment.network;
  const selfRecord = state.hosts.get(hostId);
  const self = selfRecord ? netHost(selfRecord) : undefined;
  const peers: NetworkHost[] = [];
  for (const h of state.hosts.values()) {
    if (h.id === hostId || !isPeerHost(h)) continue;
    const p = netHost(h);
    if (p) peers.push(p);
  }
  peers.sort((a, b) => (a.hostId < b.hostId ? -1 : a.hostId > b.hostId ? 1 : 0));
  const peerIds = new Set(peers.map((p) => p.hostId));

  // One owner per address over the whole environment (as DNS and metadata decide it).
  const owners = new Map<string, Container & { primaryIpAddress: string }>();
  for (const c of state.containers.values()) {
    if (!canOwnAddress(c)) continue;
    const cur = owners.get(c.primaryIpAddress);
    if (cur === undefined || ownsBefore(c, cur)) owners.set(c.primaryIpAddress, c);
  }
  const localContainers: LocalContainer[] = [];
  const remoteContainers: RemoteContainer[] = [];
  for (const c of owners.values()) {
    const drainMs = c.serviceId ? state.services.get(c.serviceId)?.drainTimeoutMs : undefined;
    const drain = drainMs !== undefined ? { drainMs } : {};
    if (c.hostId === hostId) {
      const ports: PublishedPort[] = [];
      for (const p of c.config.ports) {
        if (p.publicPort === undefined) continue;
        ports.push({ ...(p.hostIp ? { hostIp: p.hostIp } : {}), publicPort: p.publicPort, privatePort: p.privatePort, protocol: p.protocol });
      }
      localContainers.push({ id: c.id, name: c.name, ip: c.primaryIpAddress, externalId: c.externalId, ports, ...drain });
    } else if (c.hostId !== null && peerIds.has(c.hostId)) {
      remoteContainers.push({ ip: c.primaryIpAddress, hostId: c.hostId, ...drain });
    }
  }
  localContainers.sort(byIp);
  remoteContainers.sort(byIp);
  return {
    mode: net.overlay,
    auth: net.ipsecAuth ?? 'psk',
    subnet: net.subnet,
    vni: net.vxlanVni ?? 42,
    mtuOverride: net.mtu,
    self,
    peers,
    localContainers,
    remoteContainers,
  };
}
