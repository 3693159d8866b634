// Servers of the agent listen on 169.254.169.250 (the original's address for DNS and metadata). When
// the address is not on the host yet and the agent may change the host's network (root), it is added to
// `lo` (the host-side half of the managed network; the network capability owns the rest).
import { execa } from 'execa';
import type { Logger } from '../../common/log.js';
import { RANCHER_SERVICES_IP } from '../../model/labels.js';

/**
 * Binds `listen` (HOST:PORT) with `bind`; on EADDRNOTAVAIL for 169.254.169.250 adds the address to lo
 * (as root) and retries once. A port in use or a privileged port is an error naming the address
 * (`inUseHint` says who may hold it), for the controller's status.
 */
export async function listenWithAddress<T>(listen: string, log: Logger, bind: (host: string, port: number) => Promise<T>, inUseHint = ''): Promise<T> {
  const { host, port } = splitHostPort(listen);
  try {
    try {
      return await bind(host, port);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'EADDRNOTAVAIL' || host !== RANCHER_SERVICES_IP || process.getuid?.() !== 0) throw err;
      log.info({ address: host }, `adding ${host}/32 to lo for the agent's DNS and metadata`);
      const r = await execa('ip', ['addr', 'add', `${host}/32`, 'dev', 'lo'], { reject: false });
      if (r.exitCode !== 0 && !/File exists/.test(r.stderr)) {
        throw new Error(`cannot add ${host}/32 to lo: ${r.stderr.trim()}`);
      }
      return await bind(host, port);
    }
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE') throw new Error(`cannot listen on ${listen}: the port is in use${inUseHint ? ` (${inUseHint})` : ''}`, { cause: err });
    if (code === 'EACCES') throw new Error(`cannot listen on ${listen}: permission denied (port ${port} needs root or CAP_NET_BIND_SERVICE)`, { cause: err });
    throw err;
  }
}

export function splitHostPort(s: string): { host: string; port: number } {
  const i = s.lastIndexOf(':');
  const port = Number(s.slice(i + 1));
  if (i <= 0 || !Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`"${s}" is not HOST:PORT`);
  return { host: s.slice(0, i).replace(/^\[|\]$/g, ''), port };
}
