// The host's resolvers, for DnsServer.setHostResolvers: the `nameserver` lines of a resolv.conf.
import { readFile } from 'node:fs/promises';
import { parseUpstream } from './data.js';

/** Nameserver addresses of resolv.conf text, in order (invalid entries and IPv6 zone ids skipped). */
export function parseResolvConf(text: string): string[] {
  const out: string[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/[#;].*$/, '').trim();
    const m = /^nameserver\s+(\S+)$/.exec(line);
    if (m && parseUpstream(m[1]!) !== undefined && !out.includes(m[1]!)) out.push(m[1]!);
  }
  return out;
}

/** Reads a resolv.conf (default /etc/resolv.conf); a missing file means no resolvers. */
export async function readResolvConf(path = '/etc/resolv.conf'): Promise<string[]> {
  try {
    return parseResolvConf(await readFile(path, 'utf8'));
  } catch {
    return [];
  }
}
