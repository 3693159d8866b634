// The real parts of the network controller (controller.ts takes them injected): charon over VICI
// (ipsec/), the overlay (dataplane/), the host firewall (iptables/), and the veth lookup through the
// Docker API. Also the rule that decides whether the managed network runs at all, and the containers'
// MTU the runtime gives the Docker network before the dataplane has run (the same computation).
import { readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import Dockerode from 'dockerode';
import { z } from 'zod';
import type { Logger } from '../../../common/log.js';
import { MANAGED_NETWORK } from '../../runtime/create-spec.js';
import type { NetworkParts } from './controller.js';
import { createDataplane } from './dataplane/apply.js';
import { computeMtu } from './dataplane/render.js';
import { createFirewall } from './iptables/apply.js';
import { createIpsec } from './ipsec/apply.js';
import { hostVethOf } from './veth.js';

export type NetworkSetting = 'auto' | 'on' | 'off';

/**
 * Whether this agent runs the managed network: `on` always, `off` never, `auto` when it runs containers
 * (a Docker socket) as root on Linux — what the network needs (netlink, iptables, charon).
 */
export function networkEnabled(setting: NetworkSetting, env: { dockerSocket: string | undefined; uid: number | undefined; platform: string }): { enabled: boolean; reason: string } {
  if (setting === 'on') return { enabled: true, reason: '--network on' };
  if (setting === 'off') return { enabled: false, reason: '--network off' };
  if (env.platform !== 'linux') return { enabled: false, reason: `auto: not on Linux (${env.platform})` };
  if (!env.dockerSocket) return { enabled: false, reason: 'auto: no Docker socket (no containers to connect)' };
  if (env.uid !== 0) return { enabled: false, reason: 'auto: not root (the managed network needs netlink, iptables and charon)' };
  return { enabled: true, reason: 'auto: root with a Docker socket' };
}

/** The interface holding `ip` and its MTU (the underlay of the overlay). */
export function underlayOf(ip: string): { dev: string; mtu: number } | undefined {
  for (const [dev, addrs] of Object.entries(networkInterfaces())) {
    if (!addrs?.some((a) => a.family === 'IPv4' && a.address === ip)) continue;
    let mtu = 1500;
    try {
      const n = Number(readFileSync(`/sys/class/net/${dev}/mtu`, 'utf8').trim());
      if (Number.isInteger(n) && n > 0) mtu = n;
    } catch {
      // /sys not readable: the Ethernet default.
    }
    return { dev, mtu };
  }
  return undefined;
}

const Inspected = z
  .object({
    State: z.object({ Pid: z.number().int().default(0), Running: z.boolean().default(false) }).loose(),
    NetworkSettings: z
      .object({
        Networks: z
          .record(z.string(), z.object({ IPAddress: z.string().default('') }).loose())
          .nullish()
          .transform((n) => n ?? {}),
      })
      .loose(),
  })
  .loose();

export interface RealPartsOptions {
  log: Logger;
  dockerSocket: string;
  /** Where charon's configuration, socket and log live (default: <dataDir>/ipsec). */
  ipsecDir: string;
  /** This host's certificate (certificate mode), see identity.ts. */
  identity?: NetworkParts['identity'];
}

export function realNetworkParts(o: RealPartsOptions): NetworkParts & { ipsecOverhead(): number } {
  const docker = new Dockerode({ socketPath: o.dockerSocket });
  const ipsec = createIpsec({ log: o.log, dir: o.ipsecDir });
  return {
    ipsec: () => ipsec,
    ipsecOverhead: () => ipsec.overhead(),
    dataplane: createDataplane({ log: o.log }),
    firewall: createFirewall({ log: o.log }),
    ...(o.identity ? { identity: o.identity } : {}),
    async vethOf(externalId) {
      const raw: unknown = await docker.getContainer(externalId).inspect();
      const c = Inspected.parse(raw);
      const ip = c.NetworkSettings.Networks[MANAGED_NETWORK]?.IPAddress;
      if (!c.State.Running || !ip) return undefined;
      return hostVethOf(c.State.Pid, ip);
    },
  };
}

/**
 * The containers' MTU for the Docker network, before the dataplane ran: the same computation it makes
 * (underlay of the agent address − VXLAN − the IPsec overhead), or the environment's override.
 */
export function containerMtu(agentIp: string, overlay: 'ipsec' | 'vxlan', override: number | undefined, ipsecOverhead: number): number | undefined {
  if (override !== undefined) return override;
  const u = underlayOf(agentIp);
  if (!u) return undefined;
  return computeMtu({ underlayMtu: u.mtu, mode: overlay, ipsecOverhead, override: undefined });
}
