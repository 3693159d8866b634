// Capability: the DNS server on 169.254.169.250:53 (UDP and TCP), answering per asking container from
// the synced state. Render = prepared per-client views (pure); apply = start once, swap the data.
import { readFile } from 'node:fs/promises';
import type { Registry } from 'prom-client';
import type { Logger } from '../../common/log.js';
import { DnsServer } from '../../dns/server.js';
import { buildDnsData } from '../../dns/view.js';
import type { DnsData } from '../../dns/data.js';
import type { Capability } from './capability.js';
import { AGENT_SERVICE_IP, listenWithAddress, splitHostPort } from './listen-address.js';

export interface DnsCapabilityOptions {
  log: Logger;
  registry?: Registry;
  /** HOST:PORT, default 169.254.169.250:53. */
  listen: string;
  /** TTL of local answers in seconds (default 1). */
  ttl?: number;
  /** The host's resolv.conf, for recursion (default /etc/resolv.conf). */
  resolvConf?: string;
}

/** Nameservers of a resolv.conf, minus our own address (never recurse to ourselves). */
export function nameserversOf(text: string): string[] {
  return text
    .split('\n')
    .map((l) => /^\s*nameserver\s+(\S+)/.exec(l)?.[1])
    .filter((x): x is string => !!x && x !== AGENT_SERVICE_IP);
}

export function dnsCapability(opts: DnsCapabilityOptions): Capability<DnsData> & { server: DnsServer } {
  const log = opts.log.child({ component: 'dns' });
  const server = new DnsServer({ log, ...(opts.registry ? { registry: opts.registry } : {}) });
  const { host, port } = splitHostPort(opts.listen);
  let listening = false;
  return {
    name: 'dns',
    server,
    render: (state, h) => buildDnsData(state, { hostId: h.hostId, ...(opts.ttl !== undefined ? { ttl: opts.ttl } : {}) }),
    // Prepared views hold maps and encoded records; a new state is simply a new data set.
    same: () => false,
    applier: {
      async apply(data) {
        server.setData(data);
        if (!listening) {
          try {
            server.setHostResolvers(nameserversOf(await readFile(opts.resolvConf ?? '/etc/resolv.conf', 'utf8')));
          } catch (err) {
            log.warn({ err: (err as Error).message }, 'no host resolvers: names outside rancher.internal will get SERVFAIL');
          }
          await listenWithAddress(host, () => server.listen(host, port), log);
          listening = true;
          log.info({ address: opts.listen }, 'DNS listening');
        }
      },
      async close() {
        await server.close();
      },
    },
  };
}
