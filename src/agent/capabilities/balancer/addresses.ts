// The balancer instances' managed addresses, made local on the host: HAProxy runs in the agent's network
// namespace, not in a container, so the address a balancer container was given (what DNS answers, what
// other hosts route to this host, what the agent's DNAT sends published ports to) is put on a dummy device
// of its own, `drover-lb`, as a /32. The device holds exactly the addresses of the instances that run
// here: sync() adds the missing ones and removes the others; close() deletes the device.
//
// The device is the controller's alone: nothing else of the agent (network/dataplane manages lo and
// drover.vx) touches it, and it touches nothing else.
import { localSystem, type DataplaneSystem } from '../network/dataplane/apply.js';
import { parseAddrs } from '../network/dataplane/kernel.js';

export const BALANCER_DEVICE = 'drover-lb';

export interface LocalAddresses {
  /** Makes exactly `ips` local on the device (creating it when absent). */
  sync(ips: readonly string[]): Promise<void>;
  /** Removes the device and its addresses. */
  close(): Promise<void>;
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

export function balancerAddresses(sys: DataplaneSystem = localSystem(), device = BALANCER_DEVICE): LocalAddresses {
  const must = async (args: string[]): Promise<string> => {
    const r = await sys.run('ip', args);
    if (r.exitCode !== 0) throw new Error(`\`ip ${args.join(' ')}\` failed: ${r.stderr.trim() || `exit ${r.exitCode}`}`);
    return r.stdout;
  };
  return {
    async sync(ips) {
      for (const ip of ips) if (!IPV4.test(ip)) throw new Error(`not an IPv4 address for a balancer: ${ip}`);
      const shown = await sys.run('ip', ['-j', '-4', 'addr', 'show', 'dev', device]);
      if (shown.exitCode !== 0) {
        // Absent: create it (a dummy answers for its addresses like lo, and is ours to delete).
        await must(['link', 'add', device, 'type', 'dummy']);
      }
      const have = shown.exitCode === 0 ? parseAddrs(shown.stdout) : [];
      await must(['link', 'set', device, 'up']);
      const want = new Set(ips);
      for (const a of have) {
        if (!want.has(a.ip) || a.prefixlen !== 32) await must(['addr', 'del', `${a.ip}/${a.prefixlen}`, 'dev', device]);
      }
      const kept = new Set(have.filter((a) => a.prefixlen === 32).map((a) => a.ip));
      for (const ip of want) if (!kept.has(ip)) await must(['addr', 'add', `${ip}/32`, 'dev', device]);
    },
    async close() {
      const r = await sys.run('ip', ['link', 'del', device]);
      if (r.exitCode !== 0 && !/Cannot find device|does not exist/i.test(r.stderr)) {
        throw new Error(`\`ip link del ${device}\` failed: ${r.stderr.trim()}`);
      }
    },
  };
}
