// The overlay's desired kernel state (dataplane/render.ts) and its difference against what the kernel
// has. Golden files hold the full render per mode (test/golden/network-dataplane/*.txt; regenerate with
// UPDATE_GOLDEN=1 after a deliberate change and review the diff); the other tests spell out each rule
// independently of the goldens: MTU arithmetic, VTEP MACs, and that a diff is exactly the changes.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NetworkHost, OverlayMode } from '../../src/agent/capabilities/network/inputs.js';
import {
  computeMtu,
  diffDataplane,
  EMPTY_KERNEL_STATE,
  renderBatch,
  renderDataplane,
  TUNNEL_LABEL,
  vtepMac,
  type DataplaneState,
  type KernelState,
} from '../../src/agent/capabilities/network/dataplane/render.js';
import { interfaceOf, parseAddrs, parseFdb, parseLink, parseNeighbours, parseRoutes } from '../../src/agent/capabilities/network/dataplane/kernel.js';

const GOLDEN_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'golden', 'network-dataplane');

const SELF: NetworkHost = { hostId: '1h1', name: 'h1', agentIp: '192.0.2.11', tunnelIp: '10.42.0.11' };
const H2: NetworkHost = { hostId: '1h2', name: 'h2', agentIp: '192.0.2.12', tunnelIp: '10.42.0.12' };
const H3: NetworkHost = { hostId: '1h3', name: 'h3', agentIp: '192.0.2.13', tunnelIp: '10.42.0.13' };
const REMOTE = [
  { ip: '10.42.3.17', hostId: '1h3' },
  { ip: '10.42.77.7', hostId: '1h2' },
  { ip: '10.42.140.9', hostId: '1h2' },
];

function render(mode: OverlayMode, o: { remote?: typeof REMOTE; peers?: NetworkHost[]; mtu?: number; vni?: number } = {}): DataplaneState {
  return renderDataplane({
    mode,
    vni: o.vni ?? 42,
    self: SELF,
    peers: o.peers ?? [H3, H2],
    remoteContainers: o.remote ?? REMOTE,
    underlayDev: 'eth0',
    mtu: o.mtu ?? (mode === 'ipsec' ? 1377 : 1450),
  });
}

/** What the kernel shows when it has exactly `s` (as kernel.ts parses it). */
function kernelOf(s: DataplaneState): KernelState {
  const onLo = s.tunnelAddr.dev === 'lo';
  return {
    link: { kind: 'vxlan', vni: s.link.vni, mac: s.link.mac, local: s.link.local, dev: s.link.dev, dstport: s.link.dstport, learning: false, mtu: s.link.mtu, up: true },
    lo: [{ ip: '127.0.0.1', prefixlen: 8, label: 'lo' }, ...(onLo ? [{ ip: s.tunnelAddr.ip, prefixlen: 32, label: TUNNEL_LABEL }] : [])],
    vxAddrs: onLo ? [] : [{ ip: s.tunnelAddr.ip, prefixlen: 32, label: 'drover.vx' }],
    neighbours: s.neighbours.map((n) => ({ ip: n.ip, mac: n.mac, permanent: true })),
    fdb: s.fdb.map((f) => ({ ...f })),
    // As `ip route` shows a /32: without the suffix.
    routes: s.routes.map((r) => ({ dst: r.dst.replace(/\/32$/, ''), via: r.via, onlink: true, metric: undefined, protocol: undefined })),
  };
}

function golden(mode: OverlayMode): string {
  const s = render(mode);
  const b = renderBatch(s);
  return `# desired state (${mode} mode, 2 peers, 3 remote containers)\n${JSON.stringify(s, null, 2)}\n# ip -batch\n${b.ip.join('\n')}\n# bridge -batch\n${b.bridge.join('\n')}\n# changes\n${b.changes.join('\n')}\n`;
}

describe('network dataplane render: golden', () => {
  for (const mode of ['ipsec', 'vxlan'] as const) {
    it(`renders ${mode} mode as the golden file`, () => {
      const file = join(GOLDEN_DIR, `${mode}.txt`);
      const text = golden(mode);
      if (process.env.UPDATE_GOLDEN === '1' || !existsSync(file)) {
        if (process.env.UPDATE_GOLDEN !== '1') assert.fail(`golden file ${file} is missing (run with UPDATE_GOLDEN=1)`);
        mkdirSync(GOLDEN_DIR, { recursive: true });
        writeFileSync(file, text);
      }
      assert.equal(text, readFileSync(file, 'utf8'));
    });
  }
});

describe('network dataplane render: rules', () => {
  it('IPsec mode: endpoints are tunnel addresses, the tunnel address on lo, no device binding, routes only for containers', () => {
    const s = render('ipsec');
    assert.equal(s.link.local, SELF.tunnelIp);
    assert.equal(s.link.dev, undefined);
    assert.deepEqual(s.tunnelAddr, { ip: SELF.tunnelIp, dev: 'lo' });
    assert.deepEqual(
      s.fdb.map((f) => f.dst),
      [H2.tunnelIp, H3.tunnelIp],
    );
    assert.deepEqual(
      s.routes.map((r) => r.dst),
      ['10.42.3.17/32', '10.42.77.7/32', '10.42.140.9/32'],
    );
  });

  it('VXLAN mode: endpoints are agent addresses on the underlay device, the tunnel address on drover.vx and routed like a container', () => {
    const s = render('vxlan');
    assert.equal(s.link.local, SELF.agentIp);
    assert.equal(s.link.dev, 'eth0');
    assert.deepEqual(s.tunnelAddr, { ip: SELF.tunnelIp, dev: 'drover.vx' });
    assert.deepEqual(
      s.fdb.map((f) => f.dst),
      [H2.agentIp, H3.agentIp],
    );
    assert.deepEqual(
      s.routes.map((r) => `${r.dst} via ${r.via}`),
      ['10.42.0.12/32 via 10.42.0.12', '10.42.0.13/32 via 10.42.0.13', '10.42.3.17/32 via 10.42.0.13', '10.42.77.7/32 via 10.42.0.12', '10.42.140.9/32 via 10.42.0.12'],
    );
  });

  it('neighbours and FDB use the peers’ derived MACs; a container on a host that is not a peer gets no route', () => {
    const s = render('vxlan', { remote: [...REMOTE, { ip: '10.42.9.9', hostId: '1h9' }] });
    assert.deepEqual(s.neighbours, [
      { ip: H2.tunnelIp, mac: vtepMac(H2.hostId) },
      { ip: H3.tunnelIp, mac: vtepMac(H3.hostId) },
    ]);
    assert.equal(s.link.mac, vtepMac(SELF.hostId));
    assert.ok(!s.routes.some((r) => r.dst === '10.42.9.9/32'));
  });

  it('vtepMac: stable, locally administered unicast, distinct per host', () => {
    assert.equal(vtepMac('1h1'), vtepMac('1h1'));
    // Pinned: every host computes its peers' MACs, so the derivation must never change across versions.
    assert.equal(vtepMac('1h1'), '02:d7:32:df:fc:56');
    assert.match(vtepMac('anything'), /^02:d7(:[0-9a-f]{2}){4}$/);
    const first = parseInt(vtepMac('x').slice(0, 2), 16);
    assert.equal(first & 0b10, 0b10, 'locally administered bit');
    assert.equal(first & 0b1, 0, 'unicast');
    const macs = new Set(Array.from({ length: 1000 }, (_, i) => vtepMac(`1h${i}`)));
    assert.equal(macs.size, 1000);
  });

  it('computeMtu: underlay − 50 (VXLAN) − the IPsec overhead in IPsec mode; an override wins', () => {
    assert.equal(computeMtu({ underlayMtu: 1500, mode: 'vxlan', ipsecOverhead: 73, override: undefined }), 1450);
    assert.equal(computeMtu({ underlayMtu: 1500, mode: 'ipsec', ipsecOverhead: 73, override: undefined }), 1377);
    assert.equal(computeMtu({ underlayMtu: 9001, mode: 'ipsec', ipsecOverhead: 98, override: undefined }), 8853);
    assert.equal(computeMtu({ underlayMtu: 1500, mode: 'ipsec', ipsecOverhead: 73, override: 1300 }), 1300);
    assert.equal(computeMtu({ underlayMtu: 1500, mode: 'vxlan', ipsecOverhead: 73, override: 1400 }), 1400);
  });
});

describe('network dataplane diff', () => {
  it('nothing to do when the kernel has exactly the desired state', () => {
    for (const mode of ['ipsec', 'vxlan'] as const) {
      const s = render(mode);
      assert.deepEqual(diffDataplane(s, kernelOf(s)), { ip: [], bridge: [], changes: [] });
    }
  });

  it('a container added is one route, nothing else', () => {
    const have = kernelOf(render('ipsec'));
    const want = render('ipsec', { remote: [...REMOTE, { ip: '10.42.200.1', hostId: '1h3' }] });
    const d = diffDataplane(want, have);
    assert.deepEqual(d.ip, ['route replace 10.42.200.1/32 via 10.42.0.13 dev drover.vx onlink']);
    assert.deepEqual(d.bridge, []);
    assert.deepEqual(d.changes, ['added route 10.42.200.1/32 via 10.42.0.13']);
  });

  it('a container gone is one route deleted; a container moved is one route replaced', () => {
    const have = kernelOf(render('vxlan'));
    const gone = diffDataplane(render('vxlan', { remote: REMOTE.filter((c) => c.ip !== '10.42.77.7') }), have);
    assert.deepEqual(gone.ip, ['route del 10.42.77.7/32 via 10.42.0.12 dev drover.vx']);
    assert.deepEqual(gone.bridge, []);
    const moved = diffDataplane(render('vxlan', { remote: REMOTE.map((c) => (c.ip === '10.42.77.7' ? { ...c, hostId: '1h3' } : c)) }), have);
    assert.deepEqual(moved.ip, ['route replace 10.42.77.7/32 via 10.42.0.13 dev drover.vx onlink']);
    assert.deepEqual(moved.changes, ['replaced route 10.42.77.7/32 via 10.42.0.13 (was via 10.42.0.12)']);
  });

  it('a host joining is one neighbour, one FDB entry and its routes; leaving removes exactly those', () => {
    const two = render('vxlan', { peers: [H2], remote: REMOTE.filter((c) => c.hostId === '1h2') });
    const three = render('vxlan');
    const join = diffDataplane(three, kernelOf(two));
    assert.deepEqual(join.ip, [
      `neigh replace 10.42.0.13 lladdr ${vtepMac('1h3')} dev drover.vx nud permanent`,
      'route replace 10.42.0.13/32 via 10.42.0.13 dev drover.vx onlink',
      'route replace 10.42.3.17/32 via 10.42.0.13 dev drover.vx onlink',
    ]);
    assert.deepEqual(join.bridge, [`fdb append ${vtepMac('1h3')} dev drover.vx dst 192.0.2.13 self permanent`]);
    const leave = diffDataplane(two, kernelOf(three));
    assert.deepEqual(leave.ip, ['neigh del 10.42.0.13 dev drover.vx', 'route del 10.42.0.13/32 via 10.42.0.13 dev drover.vx', 'route del 10.42.3.17/32 via 10.42.0.13 dev drover.vx']);
    assert.deepEqual(leave.bridge, [`fdb del ${vtepMac('1h3')} dev drover.vx dst 192.0.2.13 self`]);
  });

  it('repairs a lost or wrong neighbour, a wrong FDB remote, a route that is not onlink', () => {
    const want = render('ipsec');
    const have = kernelOf(want);
    have.neighbours = [{ ip: '10.42.0.12', mac: '02:d7:00:00:00:99', permanent: true }, { ip: '10.42.0.13', mac: vtepMac('1h3'), permanent: false }, { ip: '10.42.0.99', mac: undefined, permanent: false }];
    have.fdb = [{ mac: vtepMac('1h2'), dst: '10.42.0.12' }, { mac: vtepMac('1h3'), dst: '10.42.0.66' }];
    have.routes = have.routes.map((r) => (r.dst === '10.42.3.17' ? { ...r, onlink: false } : r));
    const d = diffDataplane(want, have);
    assert.deepEqual(d.ip, [
      `neigh replace 10.42.0.12 lladdr ${vtepMac('1h2')} dev drover.vx nud permanent`,
      `neigh replace 10.42.0.13 lladdr ${vtepMac('1h3')} dev drover.vx nud permanent`,
      'route replace 10.42.3.17/32 via 10.42.0.13 dev drover.vx onlink',
    ], 'the kernel-made entry for 10.42.0.99 is left to age');
    assert.deepEqual(d.bridge, [`fdb del ${vtepMac('1h3')} dev drover.vx dst 10.42.0.66 self`, `fdb append ${vtepMac('1h3')} dev drover.vx dst 10.42.0.13 self permanent`]);
  });

  it('removes extras on drover.vx (permanent neighbours, FDB entries, routes, addresses) but not the kernel’s prefix routes; on lo only its own label', () => {
    const want = render('ipsec');
    const have = kernelOf(want);
    have.neighbours.push({ ip: '10.42.0.50', mac: '02:d7:00:00:00:50', permanent: true });
    have.fdb.push({ mac: '00:00:00:00:00:00', dst: '192.0.2.99' });
    have.routes.push({ dst: '10.42.5.5', via: '10.42.0.12', onlink: true, metric: undefined, protocol: undefined });
    have.routes.push({ dst: '10.42.3.17', via: '10.42.0.12', onlink: true, metric: 100, protocol: undefined });
    have.routes.push({ dst: '10.99.0.0/16', via: undefined, onlink: false, metric: undefined, protocol: 'kernel' });
    have.vxAddrs.push({ ip: '10.99.0.1', prefixlen: 16, label: 'drover.vx' });
    have.lo.push({ ip: '10.42.0.5', prefixlen: 32, label: TUNNEL_LABEL }, { ip: '192.168.77.1', prefixlen: 32, label: 'lo' });
    const d = diffDataplane(want, have);
    assert.deepEqual(d.ip, [
      'addr del 10.99.0.1/16 dev drover.vx',
      'addr del 10.42.0.5/32 dev lo',
      'neigh del 10.42.0.50 dev drover.vx',
      'route del 10.42.5.5/32 via 10.42.0.12 dev drover.vx',
      'route del 10.42.3.17/32 via 10.42.0.12 dev drover.vx metric 100',
    ]);
    assert.deepEqual(d.bridge, ['fdb del 00:00:00:00:00:00 dev drover.vx dst 192.0.2.99 self']);
  });

  it('changes MTU, MAC, learning and up state in place', () => {
    const want = render('vxlan');
    const have = kernelOf(want);
    have.link = { ...have.link!, mtu: 1500, mac: '02:d7:00:00:00:01', learning: true, up: false };
    const d = diffDataplane(want, have);
    assert.deepEqual(d.ip, [`link set drover.vx address ${want.link.mac}`, 'link set drover.vx mtu 1450', 'link set drover.vx type vxlan nolearning', 'link set drover.vx up']);
    assert.deepEqual(d.bridge, []);
  });

  it('recreates the link (and everything on it) when the VNI, local address, port or device differ', () => {
    const want = render('vxlan');
    for (const change of [{ vni: 43 }, { local: '192.0.2.99' }, { dstport: 8472 }, { dev: 'eth1' }, { kind: 'bridge' }]) {
      const have = kernelOf(want);
      have.link = { ...have.link!, ...change };
      const d = diffDataplane(want, have);
      const full = renderBatch(want);
      assert.deepEqual(d.ip, ['link del drover.vx', ...full.ip], JSON.stringify(change));
      assert.deepEqual(d.bridge, full.bridge);
      assert.match(d.changes[0] ?? '', /^recreated drover\.vx \(/);
    }
  });

  it('a device with outer UDP checksums (made before RFC 7348 zero checksums) is recreated without them', () => {
    const have = kernelOf(render('vxlan'));
    assert.ok(have.link);
    assert.deepEqual(diffDataplane(render('vxlan'), have).ip, [], 'the same device: nothing to do');
    const d = diffDataplane(render('vxlan'), { ...have, link: { ...have.link, udpCsum: true } });
    assert.equal(d.ip[0], 'link del drover.vx');
    assert.match(d.changes[0] ?? '', /outer UDP checksums on → off/);
    assert.ok(d.ip.some((l) => l.startsWith('link add drover.vx') && l.endsWith('noudpcsum')));
  });

  it('switching IPsec → VXLAN mode recreates the link, moves the tunnel address from lo to drover.vx', () => {
    const d = diffDataplane(render('vxlan'), kernelOf(render('ipsec')));
    assert.equal(d.ip[0], 'link del drover.vx');
    assert.ok(d.ip.includes('addr add 10.42.0.11/32 dev drover.vx'));
    assert.ok(d.ip.includes('addr del 10.42.0.11/32 dev lo'));
    assert.match(d.changes[0] ?? '', /local 10\.42\.0\.11 → 192\.0\.2\.11, dev \(none\) → eth0/);
  });

  it('from nothing: tunnel address first (IPsec), then the link, neighbours, routes; FDB in the bridge batch', () => {
    const b = diffDataplane(render('ipsec'), EMPTY_KERNEL_STATE);
    assert.equal(b.ip[0], `addr add 10.42.0.11/32 dev lo label ${TUNNEL_LABEL}`);
    assert.equal(b.ip[1], `link add drover.vx address ${vtepMac('1h1')} mtu 1377 type vxlan id 42 local 10.42.0.11 dstport 4789 nolearning noudpcsum`);
    assert.equal(b.ip[2], 'link set drover.vx up');
    assert.equal(b.bridge.length, 2);
  });
});

describe('network dataplane: kernel JSON', () => {
  // Captured from iproute2 6.1 on Linux 6.18 (a VXLAN-mode device as the applier makes it).
  const LINK =
    '[{"ifindex":3,"ifname":"drover.vx","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1450,"qdisc":"noqueue","operstate":"UNKNOWN","linkmode":"DEFAULT","group":"default","txqlen":1000,"link_type":"ether","address":"02:d7:00:00:00:01","broadcast":"ff:ff:ff:ff:ff:ff","promiscuity":0,"allmulti":0,"min_mtu":68,"max_mtu":65535,"linkinfo":{"info_kind":"vxlan","info_data":{"id":42,"local":"192.0.2.11","link":"br0","port_range":{"low":0,"high":0},"port":4789,"learning":false,"ttl":0,"df":"unset","ageing":300,"udp_csum":true,"udp_zero_csum6_tx":false,"udp_zero_csum6_rx":false}},"inet6_addr_gen_mode":"eui64","num_tx_queues":1,"num_rx_queues":1,"gso_max_size":65536,"gso_max_segs":65535,"tso_max_size":65536,"tso_max_segs":65535,"gro_max_size":65536}]';
  const LO =
    '[{"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"mtu":65536,"qdisc":"noqueue","operstate":"UNKNOWN","group":"default","txqlen":1000,"addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8,"scope":"host","label":"lo","valid_life_time":4294967295,"preferred_life_time":4294967295},{"family":"inet","local":"10.42.0.11","prefixlen":32,"scope":"global","label":"lo:drover","valid_life_time":4294967295,"preferred_life_time":4294967295}]}]';

  it('parses link, addresses, neighbours, FDB and routes', () => {
    assert.deepEqual(parseLink(LINK), { kind: 'vxlan', vni: 42, mac: '02:d7:00:00:00:01', local: '192.0.2.11', dev: 'br0', dstport: 4789, learning: false, udpCsum: true, mtu: 1450, up: true });
    assert.equal(parseLink('[]'), undefined);
    assert.deepEqual(parseAddrs(LO), [
      { ip: '127.0.0.1', prefixlen: 8, label: 'lo' },
      { ip: '10.42.0.11', prefixlen: 32, label: 'lo:drover' },
    ]);
    assert.deepEqual(interfaceOf(LO, '10.42.0.11'), { dev: 'lo', mtu: 65536 });
    assert.equal(interfaceOf(LO, '10.42.0.12'), undefined);
    assert.deepEqual(parseNeighbours('[{"dst":"10.42.0.12","lladdr":"02:d7:00:00:00:02","state":["PERMANENT"]},{"dst":"10.42.0.9","state":["FAILED"]}]'), [
      { ip: '10.42.0.12', mac: '02:d7:00:00:00:02', permanent: true },
      { ip: '10.42.0.9', mac: undefined, permanent: false },
    ]);
    assert.deepEqual(parseFdb('[{"mac":"02:d7:00:00:00:02","dst":"192.0.2.12","flags":["self"],"state":"permanent"},{"mac":"33:33:00:00:00:01","flags":["self"],"state":"permanent"}]'), [
      { mac: '02:d7:00:00:00:02', dst: '192.0.2.12' },
    ]);
    assert.deepEqual(parseRoutes('[{"dst":"10.42.140.9","gateway":"10.42.0.12","flags":["onlink"]},{"dst":"10.99.0.0/16","protocol":"kernel","scope":"link","prefsrc":"10.99.0.1","flags":[]}]'), [
      { dst: '10.42.140.9', via: '10.42.0.12', onlink: true, metric: undefined, protocol: undefined },
      { dst: '10.99.0.0/16', via: undefined, onlink: false, metric: undefined, protocol: 'kernel' },
    ]);
    assert.deepEqual(parseNeighbours(''), []);
  });

  it('names the command when the output is not what it expects', () => {
    assert.throws(() => parseRoutes('not json'), /ip -j route show.*not JSON/);
    assert.throws(() => parseLink('[{"ifname":"x"}]'), /ip -j -d link show.*unexpected shape: 0\.mtu/);
  });
});
