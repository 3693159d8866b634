// The host firewall of the managed network, rendered (pure): this host's containers and published ports →
// iptables-restore input that declares and fills only our CATTLE_* chains (README.md "Host firewall").
// Under `iptables-restore --noflush` a `:CHAIN - [0:0]` line creates the chain or flushes it, and nothing
// else in the table is touched, so Docker's chains and rules stay as they are. The jumps into our chains
// from the built-in ones are not part of the text: the applier (apply.ts) puts them first and keeps them
// there, because Docker re-inserts its own jumps at the top whenever its networks change.
//
// Rules are written in the canonical form `iptables-save` prints them in (`-s/-d` as `/32`, `-s -d -i -o
// -p` first, `-p tcp -m tcp --dport`, matches in the order given), so the applier can compare what the
// kernel has with what was rendered line by line. test/integration/network-iptables.test.ts checks that
// the two are equal after a real apply.
import type { PublishedPort } from '../inputs.js';
import { ipToInt, isIpv4, parseSubnet } from '../../../../model/cidr.js';

export interface FirewallContainer {
  id: string;
  name: string;
  ip: string;
  /** Host side of the container's veth on the bridge; absent until the container runs and it was found. */
  veth?: string;
  ports: PublishedPort[];
}

export interface FirewallInput {
  /** The environment subnet, e.g. 10.42.0.0/16. */
  subnet: string;
  /** The managed network's bridge ('drover0'). */
  bridge: string;
  /** The overlay device ('drover.vx'), in both overlay modes. */
  overlayDev: string;
  /** DNS and metadata ('169.254.169.250'). */
  metadataIp: string;
  containers: FirewallContainer[];
}

export type FirewallTable = 'raw' | 'nat' | 'filter';
export type BuiltinChain = 'PREROUTING' | 'OUTPUT' | 'POSTROUTING' | 'FORWARD';

/** A jump from a built-in chain into one of ours; the applier keeps it there exactly once, as the first rule. */
export interface FirewallJump {
  table: FirewallTable;
  chain: BuiltinChain;
  target: string;
  position: 'first';
}

export const TABLES: readonly FirewallTable[] = ['raw', 'nat', 'filter'];

/** Our chains per table, in the order they are declared. */
export const FIREWALL_CHAINS: Readonly<Record<FirewallTable, readonly string[]>> = {
  raw: ['CATTLE_RAW_PREROUTING'],
  nat: ['CATTLE_PREROUTING', 'CATTLE_OUTPUT', 'CATTLE_POSTROUTING'],
  filter: ['CATTLE_FORWARD'],
};

export const FIREWALL_JUMPS: readonly FirewallJump[] = [
  { table: 'raw', chain: 'PREROUTING', target: 'CATTLE_RAW_PREROUTING', position: 'first' },
  { table: 'nat', chain: 'PREROUTING', target: 'CATTLE_PREROUTING', position: 'first' },
  { table: 'nat', chain: 'OUTPUT', target: 'CATTLE_OUTPUT', position: 'first' },
  { table: 'nat', chain: 'POSTROUTING', target: 'CATTLE_POSTROUTING', position: 'first' },
  { table: 'filter', chain: 'FORWARD', target: 'CATTLE_FORWARD', position: 'first' },
];

/** The jump's rule as iptables-save prints it (without `-A <chain> `). */
export function jumpRule(j: FirewallJump): string {
  return `-j ${j.target}`;
}

/** One rule in iptables-save's canonical order. */
interface Rule {
  src?: string;
  notSrc?: string;
  dst?: string;
  notDst?: string;
  in?: string;
  out?: string;
  notOut?: string;
  proto?: 'tcp' | 'udp';
  /** Matches after `-p`, in the order iptables-save keeps them. */
  matches?: string[];
  /** The container a rule is for, shown by `iptables -S` as a comment. */
  comment?: string;
  target: string;
}

function host(ip: string): string {
  return ip.includes('/') ? ip : `${ip}/32`;
}

function rule(chain: string, r: Rule): string {
  const p: string[] = ['-A', chain];
  if (r.src !== undefined) p.push('-s', host(r.src));
  if (r.notSrc !== undefined) p.push('!', '-s', host(r.notSrc));
  if (r.dst !== undefined) p.push('-d', host(r.dst));
  if (r.notDst !== undefined) p.push('!', '-d', host(r.notDst));
  if (r.in !== undefined) p.push('-i', r.in);
  if (r.out !== undefined) p.push('-o', r.out);
  if (r.notOut !== undefined) p.push('!', '-o', r.notOut);
  if (r.proto !== undefined) p.push('-p', r.proto);
  p.push(...(r.matches ?? []));
  if (r.comment) p.push('-m', 'comment', '--comment', r.comment);
  p.push('-j', r.target);
  return p.join(' ');
}

/**
 * A container name as an iptables comment: only characters iptables-save prints without quoting, so the
 * rendered rule and the saved one are the same text (and nothing in a name can break the restore input).
 */
export function commentOf(name: string): string | undefined {
  const s = name.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 64);
  return s === '' ? undefined : s;
}

const IFNAME = /^[A-Za-z0-9_.@-]{1,15}$/;

function checkIfname(what: string, name: string): void {
  if (!IFNAME.test(name)) throw new Error(`firewall: ${what} "${name}" is not a valid interface name (1-15 characters of A-Z a-z 0-9 _ . @ -)`);
}

function checkIp(what: string, ip: string): void {
  if (!isIpv4(ip)) throw new Error(`firewall: ${what} "${ip}" is not an IPv4 address`);
}

function checkPort(what: string, port: number): void {
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`firewall: ${what} ${port} is not a port number (1-65535)`);
}

/** Host addresses that mean "every address of the host" (as Docker reads them). */
const ANY_HOST_IP = new Set(['', '0.0.0.0', '::', '[::]']);

interface Published {
  c: FirewallContainer;
  p: PublishedPort;
  hostIp: string | undefined;
}

const cmpNum = (a: number, b: number) => a - b;
const cmpStr = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/**
 * The restore input for our chains. Throws (naming the field) on an input iptables would refuse or that
 * could change the meaning of the text, so a bad value never reaches iptables-restore.
 */
export function renderFirewall(i: FirewallInput): string {
  const subnet = parseSubnet(i.subnet).cidr;
  checkIfname('bridge', i.bridge);
  checkIfname('overlay device', i.overlayDev);
  checkIp('metadata address', i.metadataIp);
  for (const c of i.containers) {
    checkIp(`address of container ${c.name}`, c.ip);
    if (c.veth !== undefined) checkIfname(`veth of container ${c.name}`, c.veth);
    for (const p of c.ports) {
      checkPort(`public port of container ${c.name}:`, p.publicPort);
      checkPort(`private port of container ${c.name}:`, p.privatePort);
      if (p.protocol !== 'tcp' && p.protocol !== 'udp') throw new Error(`firewall: protocol "${String(p.protocol)}" of container ${c.name} is neither tcp nor udp`);
    }
  }
  const containers = [...i.containers].sort((a, b) => cmpNum(ipToInt(a.ip), ipToInt(b.ip)) || cmpStr(a.id, b.id));

  // Published ports, sorted by container address, then public port, protocol and host address.
  const published: Published[] = [];
  const skipped: string[] = [];
  for (const c of containers) {
    for (const p of c.ports) {
      const h = p.hostIp?.trim() ?? '';
      if (ANY_HOST_IP.has(h)) {
        published.push({ c, p, hostIp: undefined });
      } else if (isIpv4(h) && !h.startsWith('127.')) {
        published.push({ c, p, hostIp: h });
      } else {
        // IPv6 is not managed (no ip6tables), and a loopback address would need route_localnet on the
        // bridge (a DNAT from 127.0.0.1 to a container is otherwise dropped as a martian). The line says so
        // in the rendered text; the applier logs it.
        const why = isIpv4(h) ? 'a loopback host address is not supported' : 'the host address is not IPv4';
        skipped.push(`# not published: ${commentOf(c.name) ?? c.id} ${p.publicPort}/${p.protocol} (${why}: ${h.replace(/[^0-9A-Fa-f.:[\]]/g, '?')})`);
      }
    }
  }
  published.sort(
    (a, b) =>
      cmpNum(ipToInt(a.c.ip), ipToInt(b.c.ip)) ||
      cmpNum(a.p.publicPort, b.p.publicPort) ||
      cmpStr(a.p.protocol, b.p.protocol) ||
      cmpStr(a.hostIp ?? '', b.hostIp ?? '') ||
      cmpNum(a.p.privatePort, b.p.privatePort),
  );

  const out: string[] = ['# drover host firewall: the CATTLE_* chains only (iptables-restore --noflush)', ...skipped];

  // raw: anti-spoofing, before conntrack and DNAT. With bridge netfilter on, every IPv4 packet a container
  // sends enters here with `-i <bridge>` and `--physdev-in <its veth>`: routed traffic, traffic to the
  // metadata address and bridged traffic to another local container alike.
  out.push('*raw', ':CATTLE_RAW_PREROUTING - [0:0]');
  for (const c of containers) {
    const comment = commentOf(c.name);
    if (c.veth !== undefined) {
      const physdev = ['-m', 'physdev', '--physdev-in', c.veth];
      out.push(rule('CATTLE_RAW_PREROUTING', { notSrc: c.ip, matches: physdev, ...(comment ? { comment } : {}), target: 'DROP' }));
      out.push(rule('CATTLE_RAW_PREROUTING', { matches: physdev, ...(comment ? { comment } : {}), target: 'RETURN' }));
    } else {
      // Running before its veth was found (the agent looks it up when the container starts): its own
      // address is let through from any port of the bridge for that moment, so it is not cut off.
      out.push(rule('CATTLE_RAW_PREROUTING', { src: c.ip, in: i.bridge, ...(comment ? { comment } : {}), target: 'RETURN' }));
    }
  }
  // Anything else from the bridge comes from a port that is no container of this host (a container
  // attached to the managed network by hand, one whose address belongs to another container now, a
  // removed one still running): dropped. Only managed containers are on this bridge, so nothing legitimate
  // is lost, and such a port could otherwise pose as any address, a remote container's included, to DNS
  // and metadata.
  out.push(rule('CATTLE_RAW_PREROUTING', { in: i.bridge, target: 'DROP' }));
  out.push('COMMIT');

  // nat: published ports. No `! -i <bridge>` (unlike Docker with its userland proxy): a container reaching
  // a published port through the host's address is DNATed too (hairpin, below). The client's address is
  // kept (no SNAT on the way in).
  out.push('*nat', ':CATTLE_PREROUTING - [0:0]', ':CATTLE_OUTPUT - [0:0]', ':CATTLE_POSTROUTING - [0:0]');
  const dnat = (chain: string, x: Published, local: boolean): string => {
    const comment = commentOf(x.c.name);
    return rule(chain, {
      ...(x.hostIp !== undefined ? { dst: x.hostIp } : local ? { notDst: '127.0.0.0/8' } : {}),
      proto: x.p.protocol,
      matches: ['-m', 'addrtype', '--dst-type', 'LOCAL', '-m', x.p.protocol, '--dport', String(x.p.publicPort)],
      ...(comment ? { comment } : {}),
      target: `DNAT --to-destination ${x.c.ip}:${x.p.privatePort}`,
    });
  };
  for (const x of published) out.push(dnat('CATTLE_PREROUTING', x, false));
  // Locally originated: not to 127.0.0.0/8, whose source address could not leave the host (see above).
  for (const x of published) out.push(dnat('CATTLE_OUTPUT', x, true));
  // DNS and metadata see the container's own address.
  out.push(rule('CATTLE_POSTROUTING', { src: subnet, dst: i.metadataIp, target: 'ACCEPT' }));
  // Hairpin: a container reaching its own published port through the host comes back to itself; without
  // the MASQUERADE its answer would stay inside it. (Another local container reaching it needs none: the
  // answer is bridged back and un-DNATed by conntrack, bridge netfilter being on.)
  const hairpins = new Set<string>();
  for (const x of published) {
    const comment = commentOf(x.c.name);
    const r = rule('CATTLE_POSTROUTING', {
      src: x.c.ip,
      dst: x.c.ip,
      proto: x.p.protocol,
      matches: ['-m', x.p.protocol, '--dport', String(x.p.privatePort)],
      ...(comment ? { comment } : {}),
      target: 'MASQUERADE',
    });
    if (!hairpins.has(r)) {
      hairpins.add(r);
      out.push(r);
    }
  }
  // Inside the subnet (local, across the overlay, the hosts' tunnel addresses) addresses are kept.
  out.push(rule('CATTLE_POSTROUTING', { src: subnet, dst: subnet, target: 'RETURN' }));
  // Leaving the subnet: behind the host's address, as the original did.
  out.push(rule('CATTLE_POSTROUTING', { src: subnet, notDst: subnet, proto: 'tcp', target: 'MASQUERADE --to-ports 1024-65535' }));
  out.push(rule('CATTLE_POSTROUTING', { src: subnet, notDst: subnet, proto: 'udp', target: 'MASQUERADE --to-ports 1024-65535' }));
  out.push(rule('CATTLE_POSTROUTING', { src: subnet, notDst: subnet, target: 'MASQUERADE' }));
  out.push('COMMIT');

  // filter: what the managed network forwards, accepted before Docker's rules see it (whatever FORWARD's
  // policy is). Nothing is dropped here: what is not ours goes on to the rest of FORWARD.
  out.push('*filter', ':CATTLE_FORWARD - [0:0]');
  out.push(rule('CATTLE_FORWARD', { matches: ['-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED'], target: 'ACCEPT' }));
  out.push(rule('CATTLE_FORWARD', { src: subnet, dst: subnet, in: i.overlayDev, out: i.bridge, target: 'ACCEPT' }));
  out.push(rule('CATTLE_FORWARD', { src: subnet, dst: subnet, in: i.bridge, out: i.overlayDev, target: 'ACCEPT' }));
  // Local containers to each other (bridged, seen here because bridge netfilter is on).
  out.push(rule('CATTLE_FORWARD', { src: subnet, dst: subnet, in: i.bridge, out: i.bridge, target: 'ACCEPT' }));
  // Published ports (DNATed by CATTLE_PREROUTING to a container of the subnet).
  out.push(rule('CATTLE_FORWARD', { dst: subnet, out: i.bridge, matches: ['-m', 'conntrack', '--ctstate', 'DNAT'], target: 'ACCEPT' }));
  // Containers to the outside (MASQUERADEd by CATTLE_POSTROUTING).
  out.push(rule('CATTLE_FORWARD', { src: subnet, in: i.bridge, notOut: i.bridge, target: 'ACCEPT' }));
  out.push('COMMIT');
  return out.join('\n') + '\n';
}

/** Rules by table and chain (`-A` lines without `-A <chain> `), and the chains that exist. */
export interface ParsedRules {
  rules: Map<FirewallTable | string, Map<string, string[]>>;
  chains: Map<FirewallTable | string, Set<string>>;
}

/** Parses iptables-save output (or a rendered text) into rules per table and chain. */
export function parseRules(text: string): ParsedRules {
  const rules: ParsedRules['rules'] = new Map();
  const chains: ParsedRules['chains'] = new Map();
  let table: string | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    if (line.startsWith('*')) {
      table = line.slice(1);
      if (!rules.has(table)) rules.set(table, new Map());
      if (!chains.has(table)) chains.set(table, new Set());
      continue;
    }
    if (table === undefined || line === 'COMMIT') continue;
    if (line.startsWith(':')) {
      const name = line.slice(1).split(' ')[0] ?? '';
      chains.get(table)?.add(name);
      continue;
    }
    const m = /^-A (\S+) (.*)$/.exec(line);
    if (!m) continue;
    const [, chain = '', body = ''] = m;
    const t = rules.get(table) as Map<string, string[]>;
    const list = t.get(chain) ?? [];
    list.push(body);
    t.set(chain, list);
  }
  return { rules, chains };
}

/** The rules of one chain (empty when the chain has none or does not exist). */
export function chainRules(p: ParsedRules, table: string, chain: string): string[] {
  return p.rules.get(table)?.get(chain) ?? [];
}
