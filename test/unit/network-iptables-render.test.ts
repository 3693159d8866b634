// The host firewall's render (pure): golden texts in test/golden/network-iptables/*.rules (regenerate
// with UPDATE_GOLDEN=1 after a deliberate change and review the diff), then the rules behind them one by
// one, the input checks, and the parser the applier compares the kernel's rules with.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  FIREWALL_CHAINS,
  FIREWALL_JUMPS,
  chainRules,
  commentOf,
  parseRules,
  renderFirewall,
  type FirewallInput,
} from '../../src/agent/capabilities/network/iptables/render.js';
import { chainDrift } from '../../src/agent/capabilities/network/iptables/apply.js';

const GOLDEN_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'golden', 'network-iptables');

function golden(name: string, text: string): void {
  const file = join(GOLDEN_DIR, `${name}.rules`);
  if (process.env.UPDATE_GOLDEN === '1') {
    mkdirSync(GOLDEN_DIR, { recursive: true });
    writeFileSync(file, text);
  }
  assert.ok(existsSync(file), `${file} is missing (run with UPDATE_GOLDEN=1 to write it, then review it)`);
  assert.equal(text, readFileSync(file, 'utf8'), `${name}.rules differs (UPDATE_GOLDEN=1 rewrites it after a deliberate change)`);
}

const base: Omit<FirewallInput, 'containers'> = { subnet: '10.42.0.0/16', bridge: 'drover0', overlayDev: 'drover.vx', metadataIp: '169.254.169.250' };

/** Two containers, given out of address order: web publishes tcp and udp ports, one of them on a host address. */
const twoContainers: FirewallInput = {
  ...base,
  containers: [
    {
      id: '1i20',
      name: 'web-1',
      ip: '10.42.7.20',
      veth: 'veth1a2b3c4',
      ports: [
        { publicPort: 8443, privatePort: 443, protocol: 'tcp', hostIp: '192.0.2.11' },
        { publicPort: 8080, privatePort: 80, protocol: 'tcp' },
        { publicPort: 5353, privatePort: 53, protocol: 'udp' },
      ],
    },
    { id: '1i3', name: 'db-1', ip: '10.42.0.3', veth: 'veth9f8e7d6', ports: [] },
  ],
};

describe('renderFirewall: golden output', () => {
  it('no containers', () => golden('empty', renderFirewall({ ...base, containers: [] })));
  it('two containers, one with published tcp and udp ports and a host address', () => golden('two-containers', renderFirewall(twoContainers)));
  it('a container whose veth is not known yet', () =>
    golden(
      'no-veth',
      renderFirewall({ ...base, containers: [{ id: '1i9', name: 'starting', ip: '10.42.1.9', ports: [{ publicPort: 9000, privatePort: 9000, protocol: 'tcp' }] }] }),
    ));
});

describe('renderFirewall: rules', () => {
  const p = parseRules(renderFirewall(twoContainers));

  it('declares only our chains, each table committed', () => {
    const text = renderFirewall(twoContainers);
    const declared = text.split('\n').filter((l) => l.startsWith(':'));
    assert.deepEqual(declared, [':CATTLE_RAW_PREROUTING - [0:0]', ':CATTLE_PREROUTING - [0:0]', ':CATTLE_OUTPUT - [0:0]', ':CATTLE_POSTROUTING - [0:0]', ':CATTLE_FORWARD - [0:0]']);
    assert.deepEqual(text.split('\n').filter((l) => l.startsWith('*')), ['*raw', '*nat', '*filter']);
    assert.equal(text.split('\n').filter((l) => l === 'COMMIT').length, 3);
    for (const l of text.split('\n').filter((x) => x.startsWith('-A'))) assert.match(l, /^-A CATTLE_/, 'every rule goes into one of our chains');
    assert.deepEqual(
      FIREWALL_JUMPS.map((j) => `${j.table} ${j.chain} -> ${j.target} ${j.position}`),
      ['raw PREROUTING -> CATTLE_RAW_PREROUTING first', 'nat PREROUTING -> CATTLE_PREROUTING first', 'nat OUTPUT -> CATTLE_OUTPUT first', 'nat POSTROUTING -> CATTLE_POSTROUTING first', 'filter FORWARD -> CATTLE_FORWARD first'],
    );
    for (const j of FIREWALL_JUMPS) assert.ok(FIREWALL_CHAINS[j.table].includes(j.target));
  });

  it('DNATs published ports by container address then port, to the local addresses (or the given host address), without SNAT', () => {
    assert.deepEqual(chainRules(p, 'nat', 'CATTLE_PREROUTING'), [
      '-p udp -m addrtype --dst-type LOCAL -m udp --dport 5353 -m comment --comment web-1 -j DNAT --to-destination 10.42.7.20:53',
      '-p tcp -m addrtype --dst-type LOCAL -m tcp --dport 8080 -m comment --comment web-1 -j DNAT --to-destination 10.42.7.20:80',
      '-d 192.0.2.11/32 -p tcp -m addrtype --dst-type LOCAL -m tcp --dport 8443 -m comment --comment web-1 -j DNAT --to-destination 10.42.7.20:443',
    ]);
    assert.deepEqual(
      chainRules(p, 'nat', 'CATTLE_OUTPUT').map((r) => r.replace(/^! -d 127\.0\.0\.0\/8 /, '')),
      chainRules(p, 'nat', 'CATTLE_PREROUTING'),
      'locally originated: the same DNAT, not for 127.0.0.0/8',
    );
    const post = chainRules(p, 'nat', 'CATTLE_POSTROUTING');
    assert.equal(post[0], '-s 10.42.0.0/16 -d 169.254.169.250/32 -j ACCEPT', 'DNS and metadata see the container address');
    assert.ok(post.includes('-s 10.42.7.20/32 -d 10.42.7.20/32 -p tcp -m tcp --dport 80 -m comment --comment web-1 -j MASQUERADE'), 'hairpin');
    const ret = post.indexOf('-s 10.42.0.0/16 -d 10.42.0.0/16 -j RETURN');
    assert.ok(ret > post.findLastIndex((r) => r.includes('--dport')), 'hairpin before the no-NAT-inside-the-subnet rule');
    assert.deepEqual(post.slice(ret + 1), [
      '-s 10.42.0.0/16 ! -d 10.42.0.0/16 -p tcp -j MASQUERADE --to-ports 1024-65535',
      '-s 10.42.0.0/16 ! -d 10.42.0.0/16 -p udp -j MASQUERADE --to-ports 1024-65535',
      '-s 10.42.0.0/16 ! -d 10.42.0.0/16 -j MASQUERADE',
    ]);
  });

  it('binds each local container with a veth to its address; the rest of the bridge is dropped', () => {
    assert.deepEqual(chainRules(p, 'raw', 'CATTLE_RAW_PREROUTING'), [
      '! -s 10.42.0.3/32 -m physdev --physdev-in veth9f8e7d6 -m comment --comment db-1 -j DROP',
      '-m physdev --physdev-in veth9f8e7d6 -m comment --comment db-1 -j RETURN',
      '! -s 10.42.7.20/32 -m physdev --physdev-in veth1a2b3c4 -m comment --comment web-1 -j DROP',
      '-m physdev --physdev-in veth1a2b3c4 -m comment --comment web-1 -j RETURN',
      '-i drover0 -j DROP',
    ]);
  });

  it('forwards established flows, overlay <-> bridge, DNATed ports and the way out', () => {
    assert.deepEqual(chainRules(p, 'filter', 'CATTLE_FORWARD'), [
      '-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
      '-s 10.42.0.0/16 -d 10.42.0.0/16 -i drover.vx -o drover0 -j ACCEPT',
      '-s 10.42.0.0/16 -d 10.42.0.0/16 -i drover0 -o drover.vx -j ACCEPT',
      '-s 10.42.0.0/16 -d 10.42.0.0/16 -i drover0 -o drover0 -j ACCEPT',
      '-d 10.42.0.0/16 -o drover0 -m conntrack --ctstate DNAT -j ACCEPT',
      '-s 10.42.0.0/16 -i drover0 ! -o drover0 -j ACCEPT',
    ]);
  });

  it('does not depend on the order of its input', () => {
    const shuffled: FirewallInput = {
      ...twoContainers,
      containers: [...twoContainers.containers].reverse().map((c) => ({ ...c, ports: [...c.ports].reverse() })),
    };
    assert.equal(renderFirewall(shuffled), renderFirewall(twoContainers));
  });

  it('skips (and says so) host addresses it cannot publish on; "0.0.0.0" and "::" mean every address', () => {
    const text = renderFirewall({
      ...base,
      containers: [
        {
          id: '1i5',
          name: 'odd',
          ip: '10.42.0.5',
          ports: [
            { publicPort: 1, privatePort: 1, protocol: 'tcp', hostIp: 'fe80::1' },
            { publicPort: 2, privatePort: 2, protocol: 'tcp', hostIp: '127.0.0.1' },
            { publicPort: 3, privatePort: 3, protocol: 'tcp', hostIp: '0.0.0.0' },
            { publicPort: 4, privatePort: 4, protocol: 'tcp', hostIp: '::' },
          ],
        },
      ],
    });
    assert.match(text, /^# not published: odd 1\/tcp \(the host address is not IPv4: fe80::1\)$/m);
    assert.match(text, /^# not published: odd 2\/tcp \(a loopback host address is not supported: 127\.0\.0\.1\)$/m);
    const pre = chainRules(parseRules(text), 'nat', 'CATTLE_PREROUTING');
    assert.deepEqual(pre.map((r) => /--dport (\d+)/.exec(r)?.[1]), ['3', '4']);
    assert.ok(pre.every((r) => !r.includes(' -d ') && !r.startsWith('-d')), 'every address');
  });

  it('refuses values that are no address, port or interface name, naming the container', () => {
    const one = (c: Partial<FirewallInput['containers'][number]>, o: Partial<FirewallInput> = {}) => () =>
      renderFirewall({ ...base, ...o, containers: [{ id: 'x', name: 'bad', ip: '10.42.0.9', ports: [], ...c }] });
    assert.throws(one({ ip: '10.42.0.999' }), /address of container bad "10\.42\.0\.999" is not an IPv4 address/);
    assert.throws(one({ veth: 'veth0 -j ACCEPT' }), /veth of container bad .* is not a valid interface name/);
    assert.throws(one({ ports: [{ publicPort: 70000, privatePort: 80, protocol: 'tcp' }] }), /public port of container bad: 70000/);
    assert.throws(one({}, { bridge: 'br\n-A' }), /bridge [\s\S]* is not a valid interface name/);
    assert.throws(one({}, { subnet: '10.42.0.0' }), /not an IPv4 subnet/);
    assert.equal(commentOf('web 1"; -j ACCEPT'), 'web_1___-j_ACCEPT');
  });
});

describe('parseRules and chainDrift', () => {
  it('reads iptables-save output per table and chain, and names what differs in our chains', () => {
    const saved = [
      '# Generated by iptables-save v1.8.9 (nf_tables)',
      '*nat',
      ':PREROUTING ACCEPT [0:0]',
      ':CATTLE_PREROUTING - [0:0]',
      '-A PREROUTING -j CATTLE_PREROUTING',
      '-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER',
      'COMMIT',
    ].join('\n');
    const p = parseRules(saved);
    assert.deepEqual(chainRules(p, 'nat', 'PREROUTING'), ['-j CATTLE_PREROUTING', '-m addrtype --dst-type LOCAL -j DOCKER']);
    assert.ok(p.chains.get('nat')?.has('CATTLE_PREROUTING'));
    const want = parseRules(renderFirewall(twoContainers));
    const drift = chainDrift(want, p);
    assert.ok(drift.includes('nat CATTLE_PREROUTING had 3 rule(s) missing and 0 unexpected'), drift.join('; '));
    assert.ok(drift.includes('raw CATTLE_RAW_PREROUTING was missing'), drift.join('; '));
    assert.deepEqual(chainDrift(want, want), []);
  });
});
