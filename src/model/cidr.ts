// IPv4 and CIDR arithmetic for the environment subnet (shared by the control plane's IPAM and the agents).
import { ValidationError } from '../common/errors.js';

/** The IPv4 form of an IPv4-mapped IPv6 address (`::ffff:10.42.0.5` → `10.42.0.5`); other addresses as they are. */
export function plainIp(addr: string): string {
  return addr.startsWith('::ffff:') && addr.includes('.') ? addr.slice(7) : addr;
}

export function ipToInt(ip: string): number {
  const parts = ip.split('.');
  if (parts.length !== 4) throw new ValidationError('InvalidIpAddress', `"${ip}" is not an IPv4 address`);
  let n = 0;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p) || Number(p) > 255) {
      throw new ValidationError('InvalidIpAddress', `"${ip}" is not an IPv4 address`);
    }
    n = n * 256 + Number(p);
  }
  return n;
}

export function intToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

export function isIpv4(s: string): boolean {
  try {
    ipToInt(s);
    return true;
  } catch {
    return false;
  }
}

export interface Subnet {
  cidr: string;
  network: number;
  prefix: number;
  /** Gateway: the first address. */
  gateway: string;
  /** Usable range for containers, inclusive: network+2 … broadcast-5 (10.42.0.2 … 10.42.255.250 for a /16). */
  first: number;
  last: number;
}

export function parseSubnet(cidr: string): Subnet {
  const m = /^(\d+\.\d+\.\d+\.\d+)\/(\d{1,2})$/.exec(cidr);
  const prefix = m ? Number(m[2]) : NaN;
  if (!m || prefix < 8 || prefix > 28) {
    throw new ValidationError('InvalidSubnet', `"${cidr}" is not an IPv4 subnet between /8 and /28 (e.g. 10.42.0.0/16)`);
  }
  const size = 2 ** (32 - prefix);
  const network = ipToInt(m[1] as string) - (ipToInt(m[1] as string) % size);
  return { cidr: `${intToIp(network)}/${prefix}`, network, prefix, gateway: intToIp(network + 1), first: network + 2, last: network + size - 6 };
}

export function inRange(subnet: Subnet, ip: number): boolean {
  return ip >= subnet.first && ip <= subnet.last;
}
