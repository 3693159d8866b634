// The balancer instances' managed addresses, made local on the host: HAProxy runs in the agent's network
// namespace, not in a container, so the address a balancer container was given (what DNS answers, what
// other hosts route to this host, what the agent's DNAT sends published ports to) is put on `lo` as a /32
// with a label of its own, `lo:drover-lb`. The label is how these addresses are told apart from the rest
// of `lo` (127.0.0.1, the network's tunnel address labelled `lo:drover`, whatever the admin added): sync()
// makes the labelled set exactly the instances that run here; close() removes them all. (`lo`, not a
// dummy device: not every kernel has the dummy module — the lab's does not.)
//
// Nothing else of the agent touches addresses with this label (network/dataplane removes only its own
// label's), and this touches no other address.
import { localSystem, type DataplaneSystem } from '../network/dataplane/apply.js';
import { parseAddrs } from '../network/dataplane/kernel.js';

/** The label of the balancer addresses on `lo` (starts with the device name, fits IFNAMSIZ 15). */
export const BALANCER_LABEL = 'lo:drover-lb';

export interface LocalAddresses {
  /** Makes exactly `ips` local (as /32s with the balancer label on lo). */
  sync(ips: readonly string[]): Promise<void>;
  /** Removes every address with the label. */
  close(): Promise<void>;
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

export function balancerAddresses(sys: DataplaneSystem = localSystem(), label = BALANCER_LABEL): LocalAddresses {
  if (!/^lo:[A-Za-z0-9_.-]{1,12}$/.test(label)) throw new Error(`a balancer address label is lo:<at most 12 characters>, not ${label}`);
  const must = async (args: string[]): Promise<string> => {
    const r = await sys.run('ip', args);
    if (r.exitCode !== 0) throw new Error(`\`ip ${args.join(' ')}\` failed: ${r.stderr.trim() || `exit ${r.exitCode}`}`);
    return r.stdout;
  };
  const onLo = async () => parseAddrs(await must(['-j', '-4', 'addr', 'show', 'dev', 'lo']));
  const ours = async () => (await onLo()).filter((a) => a.label === label);
  return {
    async sync(ips) {
      for (const ip of ips) if (!IPV4.test(ip)) throw new Error(`not an IPv4 address for a balancer: ${ip}`);
      const all = await onLo();
      const have = all.filter((a) => a.label === label);
      // Already on lo under another label (put there by hand): local already, and not ours to add or remove.
      const elsewhere = new Set(all.filter((a) => a.label !== label).map((a) => a.ip));
      const want = new Set(ips.filter((ip) => !elsewhere.has(ip)));
      for (const a of have) {
        if (!want.has(a.ip) || a.prefixlen !== 32) await must(['addr', 'del', `${a.ip}/${a.prefixlen}`, 'dev', 'lo', 'label', label]);
      }
      const kept = new Set(have.filter((a) => a.prefixlen === 32).map((a) => a.ip));
      for (const ip of want) if (!kept.has(ip)) await must(['addr', 'add', `${ip}/32`, 'dev', 'lo', 'label', label]);
    },
    async close() {
      for (const a of await ours()) await must(['addr', 'del', `${a.ip}/${a.prefixlen}`, 'dev', 'lo', 'label', label]);
    },
  };
}
