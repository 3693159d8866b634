// Controller: the DNS server on 169.254.169.250:53 (UDP and TCP), answering per asking container from
// the synced state. start = read the host's resolvers and bind the sockets (a port in use is retried by
// the manager with backoff); reconcile = render (render.ts) and swap the data in; stop = close.
import type { Registry } from 'prom-client';
import type { Logger } from '../../../common/log.js';
import { DnsServer } from '../../../dns/server.js';
import type { DnsData } from '../../../dns/data.js';
import { readResolvConf } from '../../../dns/resolvconf.js';
import type { Controller } from '../../controller/controller.js';
import { listenWithAddress, splitHostPort } from '../listen-address.js';
import { renderDns } from './render.js';

export interface DnsControllerOptions {
  log: Logger;
  registry?: Registry | undefined;
  /** HOST:PORT, default 169.254.169.250:53. */
  listen: string;
  /** TTL of local answers in seconds (default 1). */
  ttl?: number | undefined;
  /** The host's resolv.conf, for recursion (default /etc/resolv.conf). */
  resolvConf?: string | undefined;
}

export type DnsController = Controller & { readonly server: DnsServer };

export function dnsController(opts: DnsControllerOptions): DnsController {
  const log = opts.log.child({ component: 'dns' });
  const server = new DnsServer({ log, ...(opts.registry ? { registry: opts.registry } : {}) });
  splitHostPort(opts.listen); // a bad address is a configuration error here, not a start to retry
  let previous: DnsData | undefined;
  const bind = async (): Promise<void> => {
    await listenWithAddress(opts.listen, log, (host, port) => server.listen(host, port), 'another DNS server on this host?');
    log.info({ address: opts.listen }, 'DNS listening');
  };
  return {
    name: 'dns',
    server,
    async start() {
      const resolvers = await readResolvConf(opts.resolvConf);
      if (resolvers.length === 0) log.warn('no host resolvers: names outside rancher.internal will get SERVFAIL');
      server.setHostResolvers(resolvers);
      await bind();
    },
    reconcile(state, delta, h) {
      const data = renderDns(previous, state, delta, h, { ttl: opts.ttl });
      server.setData(data);
      previous = data;
      return Promise.resolve();
    },
    // The data lives in this process; what can drift is the sockets (lost under us): bound again.
    async verify() {
      if (server.addresses().length > 0) return undefined;
      await bind();
      return `DNS was not listening on ${opts.listen}: bound again`;
    },
    async stop() {
      await server.close();
    },
  };
}
