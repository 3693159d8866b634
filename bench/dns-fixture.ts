// The environment of the DNS bench: 10k containers in 1000 services of 50 stacks, `environment` scope
// (the largest per-client view), plus one client container at 127.0.0.2 (dnsperf's source address).
import { EnvBuilder } from '../test/fixtures/dns-env.js';
import type { EnvState } from '../src/model/state.js';

export const STACKS = 50;
export const SERVICES_PER_STACK = 20;
export const CONTAINERS_PER_SERVICE = 10;
export const CLIENT_IP = '127.0.0.2';
export const RECURSED_NAMES = 1000;

export function ipOf(n: number): string {
  return `10.${42 + (n >> 16)}.${(n >> 8) & 255}.${n & 255}`;
}

export interface BenchNames {
  services: { fqdn: string; ips: string[] }[];
  containers: { fqdn: string; ip: string }[];
}

export function benchEnv(): { state: EnvState; names: BenchNames } {
  const b = new EnvBuilder({ dnsScope: 'environment' });
  const names: BenchNames = { services: [], containers: [] };
  let n = 1;
  for (let s = 0; s < STACKS; s++) {
    const st = b.stack(`s${s}`);
    for (let v = 0; v < SERVICES_PER_STACK; v++) {
      const svc = b.service(st, `svc${v}`);
      const ips: string[] = [];
      for (let c = 0; c < CONTAINERS_PER_SERVICE; c++) {
        const ip = ipOf(n++);
        const name = `s${s}-svc${v}-${c + 1}`;
        b.container(name, ip, { stackId: st, serviceId: svc });
        ips.push(ip);
        names.containers.push({ fqdn: `${name}.rancher.internal`, ip });
      }
      names.services.push({ fqdn: `svc${v}.s${s}.rancher.internal`, ips });
    }
  }
  b.container('client', CLIENT_IP, { stackId: [...b.state.stacks.keys()][0] });
  return { state: b.state, names };
}
