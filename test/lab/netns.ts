// The lab topology: an underlay switch netns (bridge br0), one netns per host with eth0 on the switch,
// and a veth from the root netns to the switch, so that test code and the control plane (root netns)
// reach the hosts and the hosts reach them. Names carry the run id: dl<id>-sw, dl<id>-h1.., dl<id>-r.
import { existsSync, readdirSync } from 'node:fs';
import { mustRun, run } from './proc.js';
import type { LabState } from './state.js';
import { LAB_NAME_RE } from './layout.js';

/** The address of the agent's DNS and metadata servers, on `lo` of every host netns. */
export const LINK_LOCAL_SERVICE_IP = '169.254.169.250';
const SW_BRIDGE = 'br0';

/** Runs `ip [-n netns] -batch -` with one command per line (stops at the first failing line). */
const ipBatch = (lines: string[], netns?: string) =>
  mustRun(['ip', ...(netns ? ['-n', netns] : []), '-batch', '-'], { input: lines.join('\n') + '\n' });

/** Creates the whole topology described by the state (names, addresses): four rounds of `ip -batch`. */
export async function createTopology(st: LabState): Promise<void> {
  const sw = st.switchNetns;
  await ipBatch([
    `netns add ${sw}`,
    ...st.hosts.map((h) => `netns add ${h.netns}`),
    `link add ${st.rootVeth} type veth peer name root netns ${sw}`,
    ...st.hosts.map((h) => `link add ${h.name} netns ${sw} type veth peer name eth0 netns ${h.netns}`),
    `addr add ${st.rootIp}/24 dev ${st.rootVeth}`,
    `link set ${st.rootVeth} up`,
  ]);
  await ipBatch(
    [
      'link set lo up',
      `link add ${SW_BRIDGE} type bridge`,
      `link set ${SW_BRIDGE} up`,
      `link set root master ${SW_BRIDGE} up`,
      ...st.hosts.map((h) => `link set ${h.name} master ${SW_BRIDGE} up`),
    ],
    sw,
  );
  await Promise.all(
    st.hosts.map(async (h) => {
      await ipBatch(['link set lo up', `addr add ${LINK_LOCAL_SERVICE_IP}/32 dev lo`, `addr add ${h.ip}/24 dev eth0`, 'link set eth0 up'], h.netns);
      // before dockerd starts: a dockerd that has to turn forwarding on also sets FORWARD policy DROP
      await mustRun(['ip', 'netns', 'exec', h.netns, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
    }),
  );
}

export const netnsExists = (ns: string): boolean => existsSync(`/run/netns/${ns}`);

/** Lab netns names on this machine (dl<id>-...). */
export function labNetns(): string[] {
  try {
    return readdirSync('/run/netns').filter((n) => LAB_NAME_RE.test(n));
  } catch {
    return [];
  }
}

/** Links of the root netns whose names look like a lab's root veth. */
export function labRootLinks(): string[] {
  try {
    return readdirSync('/sys/class/net').filter((n) => LAB_NAME_RE.test(n));
  } catch {
    return [];
  }
}

export const rootLinkExists = (name: string): boolean => existsSync(`/sys/class/net/${name}`);

/** Slots n whose 198.18.n.0/24 already has an address in the root netns (another lab, or something else). */
export async function usedUnderlaySlots(): Promise<Set<number>> {
  const r = await run(['ip', '-4', '-o', 'addr', 'show']);
  const used = new Set<number>();
  for (const m of r.stdout.matchAll(/inet 198\.18\.(\d+)\./g)) used.add(Number(m[1]));
  return used;
}

export async function netnsPids(ns: string): Promise<number[]> {
  if (!netnsExists(ns)) return [];
  const r = await run(['ip', 'netns', 'pids', ns]);
  return r.stdout
    .split(/\s+/)
    .filter((s) => /^\d+$/.test(s))
    .map(Number);
}

export async function deleteNetns(ns: string): Promise<void> {
  if (!netnsExists(ns)) return;
  const r = await run(['ip', 'netns', 'del', ns]);
  if (r.exitCode !== 0 && netnsExists(ns)) throw new Error(`ip netns del ${ns} failed: ${r.stderr.trim()}`);
}

export async function deleteRootLink(name: string): Promise<void> {
  if (!rootLinkExists(name)) return;
  const r = await run(['ip', 'link', 'del', name]);
  if (r.exitCode !== 0 && rootLinkExists(name)) throw new Error(`ip link del ${name} failed: ${r.stderr.trim()}`);
}

/**
 * proxy_arp=1 and neigh proxy_delay=0 on `bridge` in a host netns, if the bridge exists (returns whether
 * it did). Needed when containers have a /16 mask but only this host's part of it is local: they ARP for
 * remote addresses, the host answers (without the default random delay of up to 0.8 s).
 */
export async function setBridgeProxyArp(netns: string, bridge: string): Promise<boolean> {
  const shown = await run(['ip', '-n', netns, 'link', 'show', 'dev', bridge]);
  if (shown.exitCode !== 0) return false;
  await mustRun([
    'ip',
    'netns',
    'exec',
    netns,
    'sysctl',
    '-qw',
    `net.ipv4.conf.${bridge}.proxy_arp=1`,
    `net.ipv4.neigh.${bridge}.proxy_delay=0`,
  ]);
  return true;
}
