// Capability: the DNS server on 169.254.169.250:53 (UDP and TCP), answering per asking container from
// the synced state. Render = prepared per-client views (pure); apply = start once, swap the data.
import type { Registry } from 'prom-client';
import type { Logger } from '../../../common/log.js';
import { DnsServer } from '../../../dns/server.js';
import { fullDelta } from '../../../model/state.js';
import { renderDns } from './render.js';
import type { DnsData } from '../../../dns/data.js';
import type { Capability } from '../capability.js';
import { listenWithAddress, splitHostPort } from '../listen-address.js';
import { readResolvConf } from '../../../dns/resolvconf.js';

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

export function dnsCapability(opts: DnsCapabilityOptions): Capability<DnsData> & { server: DnsServer } {
  const log = opts.log.child({ component: 'dns' });
  const server = new DnsServer({ log, ...(opts.registry ? { registry: opts.registry } : {}) });
  const { host, port } = splitHostPort(opts.listen);
  let listening = false;
  return {
    name: 'dns',
    server,
    render: (state, h) => renderDns(undefined, state, fullDelta(state.revision), h, { ttl: opts.ttl }),
    // Prepared views hold maps and encoded records; a new state is simply a new data set.
    same: () => false,
    applier: {
      async apply(data) {
        server.setData(data);
        if (!listening) {
          const resolvers = await readResolvConf(opts.resolvConf);
          if (resolvers.length === 0) log.warn('no host resolvers: names outside rancher.internal will get SERVFAIL');
          server.setHostResolvers(resolvers);
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
