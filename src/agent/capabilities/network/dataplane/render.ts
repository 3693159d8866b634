// The overlay's kernel state (README.md, "Data path"), pure: from this host, its peers and the other
// hosts' containers to the VXLAN device `drover.vx`, the tunnel address, one permanent neighbour and one
// FDB entry per peer, and one /32 route per remote address; and the difference between that and what the
// kernel has, as `ip -batch` / `bridge -batch` lines (apply.ts runs them, kernel.ts reads the kernel).
//
// Routing is L3, flannel-vxlan style: a remote container's /32 goes `via <peer tunnel address> dev
// drover.vx onlink`; the peer's tunnel address resolves (permanent neighbour) to the peer's VTEP MAC, and
// that MAC (FDB) to the peer's VXLAN endpoint — its tunnel address in IPsec mode (charon then routes it
// into the CHILD_SA), its underlay address in VXLAN mode. VTEP MACs are derived from the host id, so no
// host has to learn another's: nolearning, no flooding entry.
import { createHash } from 'node:crypto';
import { ipToInt } from '../../../../model/cidr.js';
import type { NetworkHost, OverlayMode, RemoteContainer } from '../inputs.js';

export const VXLAN_DEVICE = 'drover.vx';
/** IANA's VXLAN port (Linux's default is 8472, so it is always given). */
export const VXLAN_PORT = 4789;
/**
 * What VXLAN adds to every inner packet, counted against the underlay MTU: outer IPv4 header 20 + UDP 8
 * + VXLAN header 8 + the inner Ethernet header 14 (the inner frame travels whole; no FCS, no 802.1Q tag).
 */
export const VXLAN_OVERHEAD = 50;
/**
 * The label of the tunnel address on `lo` (IPsec mode). `lo` holds other addresses (127.0.0.1, whatever
 * the admin added); the label is how the applier knows which ones are its own to remove. A label must
 * start with the device name, and fit IFNAMSIZ (15).
 */
export const TUNNEL_LABEL = 'lo:drover';

export interface RenderInput {
  mode: OverlayMode;
  vni: number;
  self: NetworkHost;
  peers: NetworkHost[];
  remoteContainers: RemoteContainer[];
  /** The interface holding the agent address (VXLAN mode binds the device to it). */
  underlayDev: string;
  /** The containers' MTU, also the VXLAN device's (see computeMtu). */
  mtu: number;
}

export interface VxlanLink {
  name: string;
  vni: number;
  mac: string;
  /** Source address of the encapsulated packets: the tunnel address (IPsec), the agent address (VXLAN). */
  local: string;
  /** VXLAN mode only: the underlay interface. IPsec mode has none (the packets go into the CHILD_SA). */
  dev?: string;
  dstport: number;
  nolearning: true;
  mtu: number;
}

export interface TunnelAddr {
  ip: string;
  dev: 'lo' | typeof VXLAN_DEVICE;
}

export interface Neighbour {
  ip: string;
  mac: string;
}

export interface FdbEntry {
  mac: string;
  dst: string;
}

export interface Route {
  /** Always a /32. */
  dst: string;
  via: string;
}

/** The overlay as the kernel should have it. */
export interface DataplaneState {
  link: VxlanLink;
  tunnelAddr: TunnelAddr;
  neighbours: Neighbour[];
  fdb: FdbEntry[];
  routes: Route[];
}

/**
 * The VTEP MAC of a host: `02:d7` and the first 4 bytes of sha256(hostId). 0x02 = locally administered,
 * unicast; the same on every host for the same id, so nobody exchanges MACs. (A collision of 32 bits
 * between two hosts of one environment is as likely as 1 in 4·10⁹ per pair.)
 */
export function vtepMac(hostId: string): string {
  const h = createHash('sha256').update(hostId).digest();
  return ['02', 'd7', ...[...h.subarray(0, 4)].map((b) => b.toString(16).padStart(2, '0'))].join(':');
}

/**
 * The containers' MTU: the environment's override when it has one, else
 *   underlay MTU − VXLAN (50, see VXLAN_OVERHEAD) − [IPsec mode: the ESP-in-UDP tunnel's worst case]
 * e.g. 1500 − 50 = 1450 in VXLAN mode; 1500 − 50 − 73 = 1377 in IPsec mode with an overhead of 73
 * (outer IPv4 20 + UDP encapsulation 8 + ESP header 8 + IV 8 + padding ≤ 3 + pad length/next header 2
 * + ICV 16 + alignment, as the IPsec part computes it for the negotiated proposals).
 */
export function computeMtu(o: { underlayMtu: number; mode: OverlayMode; ipsecOverhead: number; override: number | undefined }): number {
  if (o.override !== undefined) return o.override;
  return o.underlayMtu - VXLAN_OVERHEAD - (o.mode === 'ipsec' ? o.ipsecOverhead : 0);
}

const byIp = (a: string, b: string) => ipToInt(a) - ipToInt(b);

export function renderDataplane(i: RenderInput): DataplaneState {
  const ipsec = i.mode === 'ipsec';
  const link: VxlanLink = {
    name: VXLAN_DEVICE,
    vni: i.vni,
    mac: vtepMac(i.self.hostId),
    local: ipsec ? i.self.tunnelIp : i.self.agentIp,
    ...(ipsec ? {} : { dev: i.underlayDev }),
    dstport: VXLAN_PORT,
    nolearning: true,
    mtu: i.mtu,
  };
  const peers = [...i.peers].filter((p) => p.hostId !== i.self.hostId).sort((a, b) => byIp(a.tunnelIp, b.tunnelIp));
  const peerById = new Map(peers.map((p) => [p.hostId, p]));
  const neighbours = peers.map((p) => ({ ip: p.tunnelIp, mac: vtepMac(p.hostId) }));
  const fdb = peers.map((p) => ({ mac: vtepMac(p.hostId), dst: ipsec ? p.tunnelIp : p.agentIp }));

  // One /32 per address; the first claim wins (the inputs already give one owner per address).
  const routes = new Map<string, Route>();
  const add = (ip: string, via: string) => {
    if (ip === i.self.tunnelIp || routes.has(ip)) return;
    routes.set(ip, { dst: `${ip}/32`, via });
  };
  // VXLAN mode: the tunnel address is on drover.vx and routed like a container's, so the probes travel
  // the overlay. IPsec mode: charon routes the peer's tunnel address (table 220) into the CHILD_SA.
  if (!ipsec) for (const p of peers) add(p.tunnelIp, p.tunnelIp);
  for (const c of i.remoteContainers) {
    const p = peerById.get(c.hostId);
    if (p) add(c.ip, p.tunnelIp);
  }
  return {
    link,
    tunnelAddr: { ip: i.self.tunnelIp, dev: ipsec ? 'lo' : VXLAN_DEVICE },
    neighbours,
    fdb,
    routes: [...routes.values()].sort((a, b) => byIp(a.dst.slice(0, -3), b.dst.slice(0, -3))),
  };
}

// ---------- what the kernel has (kernel.ts reads it) ----------

export interface KernelLink {
  kind: string | undefined;
  vni: number | undefined;
  mac: string | undefined;
  local: string | undefined;
  dev: string | undefined;
  dstport: number | undefined;
  learning: boolean | undefined;
  /** Outer UDP checksums (undefined: an iproute2 that does not say). */
  udpCsum?: boolean | undefined;
  mtu: number;
  up: boolean;
}

export interface KernelAddr {
  ip: string;
  prefixlen: number;
  label: string | undefined;
}

export interface KernelNeighbour {
  ip: string;
  mac: string | undefined;
  permanent: boolean;
}

export interface KernelRoute {
  /** As `ip route` shows it: `10.42.3.17` for a /32, `10.42.0.0/16` otherwise. */
  dst: string;
  via: string | undefined;
  onlink: boolean;
  metric: number | undefined;
  /** `kernel` for the routes of an address' prefix: they come and go with the address. */
  protocol: string | undefined;
}

export interface KernelState {
  link: KernelLink | undefined;
  /** IPv4 addresses of `lo`. */
  lo: KernelAddr[];
  /** IPv4 addresses, neighbours, FDB entries and main-table routes of drover.vx (empty without it). */
  vxAddrs: KernelAddr[];
  neighbours: KernelNeighbour[];
  fdb: FdbEntry[];
  routes: KernelRoute[];
}

export const EMPTY_KERNEL_STATE: KernelState = { link: undefined, lo: [], vxAddrs: [], neighbours: [], fdb: [], routes: [] };

// ---------- the difference ----------

export interface DataplaneDiff {
  /** `ip -batch` lines, in order (the link before what hangs on it). */
  ip: string[];
  /** `bridge -batch` lines, run after the ip ones (the FDB needs the link). */
  bridge: string[];
  /** What they change, one phrase each (for logs and verify's answer). */
  changes: string[];
}

const V = VXLAN_DEVICE;
const lc = (s: string | undefined) => s?.toLowerCase();
const with32 = (dst: string) => (dst.includes('/') ? dst : `${dst}/32`);

function linkAddLine(l: VxlanLink): string {
  return `link add ${V} address ${l.mac} mtu ${l.mtu} type vxlan id ${l.vni} local ${l.local}${l.dev ? ` dev ${l.dev}` : ''} dstport ${l.dstport} nolearning noudpcsum`;
}

/** Why the existing link must be deleted and created again (properties netlink cannot change), if so. */
function recreateReason(want: VxlanLink, have: KernelLink): string | undefined {
  if (have.kind !== 'vxlan') return `it is a ${have.kind ?? 'plain'} device, not vxlan`;
  const diffs: string[] = [];
  if (have.vni !== want.vni) diffs.push(`vni ${have.vni ?? '?'} → ${want.vni}`);
  if (have.local !== want.local) diffs.push(`local ${have.local ?? '(none)'} → ${want.local}`);
  if (have.dstport !== want.dstport) diffs.push(`dstport ${have.dstport ?? '?'} → ${want.dstport}`);
  if ((have.dev ?? undefined) !== (want.dev ?? undefined)) diffs.push(`dev ${have.dev ?? '(none)'} → ${want.dev ?? '(none)'}`);
  // RFC 7348 §5: the outer UDP checksum SHOULD be zero over IPv4 (the inner packet has its own); computing
  // it costs 15-30 % of VXLAN throughput here (bench/network.ts). Only settable at creation.
  if (have.udpCsum === true) diffs.push('outer UDP checksums on → off (RFC 7348)');
  return diffs.length ? diffs.join(', ') : undefined;
}

/**
 * The commands that turn `have` into `want`, and nothing else: what is there and right is not touched,
 * so a container coming is one `route replace`. Extra entries on drover.vx are removed (drover owns the
 * device); on `lo` only addresses with drover's label. Neighbours the kernel made itself (not permanent)
 * are left to age unless they hold a desired address.
 */
export function diffDataplane(want: DataplaneState, have: KernelState): DataplaneDiff {
  const ip: string[] = [];
  const bridge: string[] = [];
  const changes: string[] = [];
  let h = have;

  // The link.
  const wl = want.link;
  if (h.link) {
    const why = recreateReason(wl, h.link);
    if (why) {
      ip.push(`link del ${V}`);
      changes.push(`recreated ${V} (${why})`);
      // Everything that hung on the old device went with it.
      h = { ...h, link: undefined, vxAddrs: [], neighbours: [], fdb: [], routes: [] };
    }
  } else {
    changes.push(`created ${V}`);
  }
  // IPsec mode: the VXLAN source address must be local before packets leave, so it comes first.
  const lines: string[] = [];
  const hl = h.link;
  if (!hl) {
    lines.push(linkAddLine(wl), `link set ${V} up`);
  } else {
    if (lc(hl.mac) !== lc(wl.mac)) {
      lines.push(`link set ${V} address ${wl.mac}`);
      changes.push(`set ${V} address ${wl.mac} (was ${hl.mac ?? 'none'})`);
    }
    if (hl.mtu !== wl.mtu) {
      lines.push(`link set ${V} mtu ${wl.mtu}`);
      changes.push(`set ${V} mtu ${wl.mtu} (was ${hl.mtu})`);
    }
    if (hl.learning !== false) {
      lines.push(`link set ${V} type vxlan nolearning`);
      changes.push(`set ${V} nolearning`);
    }
    if (!hl.up) {
      lines.push(`link set ${V} up`);
      changes.push(`set ${V} up`);
    }
  }

  // The tunnel address.
  const ta = want.tunnelAddr;
  const onLo = ta.dev === 'lo';
  if (onLo) {
    if (!h.lo.some((a) => a.ip === ta.ip && a.prefixlen === 32)) {
      ip.push(`addr add ${ta.ip}/32 dev lo label ${TUNNEL_LABEL}`);
      changes.push(`added ${ta.ip}/32 on lo`);
    }
  }
  ip.push(...lines);
  if (!onLo && !h.vxAddrs.some((a) => a.ip === ta.ip && a.prefixlen === 32)) {
    ip.push(`addr add ${ta.ip}/32 dev ${V}`);
    changes.push(`added ${ta.ip}/32 on ${V}`);
  }
  for (const a of h.vxAddrs) {
    if (!onLo && a.ip === ta.ip && a.prefixlen === 32) continue;
    ip.push(`addr del ${a.ip}/${a.prefixlen} dev ${V}`);
    changes.push(`removed ${a.ip}/${a.prefixlen} from ${V}`);
  }
  for (const a of h.lo) {
    if (a.label !== TUNNEL_LABEL || (onLo && a.ip === ta.ip && a.prefixlen === 32)) continue;
    ip.push(`addr del ${a.ip}/${a.prefixlen} dev lo`);
    changes.push(`removed ${a.ip}/${a.prefixlen} from lo`);
  }

  // Neighbours: one permanent entry per peer.
  const wantN = new Map(want.neighbours.map((n) => [n.ip, n]));
  for (const n of h.neighbours) {
    if (!wantN.has(n.ip) && n.permanent) {
      ip.push(`neigh del ${n.ip} dev ${V}`);
      changes.push(`removed neighbour ${n.ip}`);
    }
  }
  for (const n of want.neighbours) {
    const cur = h.neighbours.find((x) => x.ip === n.ip);
    if (cur && cur.permanent && lc(cur.mac) === lc(n.mac)) continue;
    ip.push(`neigh replace ${n.ip} lladdr ${n.mac} dev ${V} nud permanent`);
    changes.push(cur ? `replaced neighbour ${n.ip} → ${n.mac} (was ${cur.mac ?? 'none'}${cur.permanent ? '' : ', not permanent'})` : `added neighbour ${n.ip} → ${n.mac}`);
  }

  // Routes: per dst the one we want; the kernel's own (an address' prefix) follow their address.
  const wantR = new Map(want.routes.map((r) => [r.dst, r]));
  const matches = (k: KernelRoute, r: Route) => k.via === r.via && k.onlink && (k.metric ?? 0) === 0;
  for (const k of h.routes) {
    if (k.protocol === 'kernel') continue;
    const w = wantR.get(with32(k.dst));
    // The entry `route replace` overwrites (same dst, metric 0) is not deleted first.
    if (w && (matches(k, w) || (k.metric ?? 0) === 0)) continue;
    ip.push(`route del ${with32(k.dst)}${k.via ? ` via ${k.via}` : ''} dev ${V}${k.metric ? ` metric ${k.metric}` : ''}`);
    changes.push(`removed route ${with32(k.dst)}${k.via ? ` via ${k.via}` : ''}${k.metric ? ` metric ${k.metric}` : ''}`);
  }
  for (const r of want.routes) {
    const same = h.routes.filter((k) => k.protocol !== 'kernel' && with32(k.dst) === r.dst);
    if (same.some((k) => matches(k, r))) continue;
    ip.push(`route replace ${r.dst} via ${r.via} dev ${V} onlink`);
    const old = same.find((k) => (k.metric ?? 0) === 0);
    changes.push(old ? `replaced route ${r.dst} via ${r.via} (was via ${old.via ?? 'none'}${old.onlink ? '' : ', not onlink'})` : `added route ${r.dst} via ${r.via}`);
  }

  // FDB: per peer MAC exactly one remote. A VXLAN FDB entry can hold several remotes (`append`), so a
  // wrong one is deleted and the right one appended, never `replace`d (which rewrites only the first).
  const wantF = new Map(want.fdb.map((f) => [lc(f.mac), f]));
  for (const f of h.fdb) {
    if (lc(wantF.get(lc(f.mac))?.dst) === lc(f.dst)) continue;
    bridge.push(`fdb del ${f.mac} dev ${V} dst ${f.dst} self`);
    changes.push(`removed fdb ${f.mac} → ${f.dst}`);
  }
  for (const f of want.fdb) {
    if (h.fdb.some((x) => lc(x.mac) === lc(f.mac) && x.dst === f.dst)) continue;
    bridge.push(`fdb append ${f.mac} dev ${V} dst ${f.dst} self permanent`);
    changes.push(`added fdb ${f.mac} → ${f.dst}`);
  }
  return { ip, bridge, changes };
}

/** The whole desired state as batch lines (what a host without any of it gets). */
export function renderBatch(want: DataplaneState): DataplaneDiff {
  return diffDataplane(want, EMPTY_KERNEL_STATE);
}

/** A short description of changes: the first few, then how many more. */
export function describeChanges(changes: string[], max = 8): string | undefined {
  if (!changes.length) return undefined;
  const head = changes.slice(0, max).join('; ');
  return changes.length > max ? `${head}; and ${changes.length - max} more` : head;
}
