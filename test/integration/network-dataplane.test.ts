// The overlay applier against the real kernel (root; skipped otherwise). Two host netns on an underlay
// switch netns (a bridge), as bench/network.ts builds them; each host has the Docker network's bridge
// drover0 (10.42.0.1/16) and a container netns with a flat address of the /16. The applier runs its
// commands inside each host netns. Checks: VXLAN mode carries container → container traffic across;
// a second apply runs nothing that writes; a container added is exactly one route; a neighbour deleted
// by hand is repaired by verify, which says so; IPsec mode (endpoint = tunnel address on lo) applies
// cleanly without charon; remove() takes the device and the tunnel address away.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { execa } from 'execa';
import { silentLogger } from '../../src/common/log.js';
import type { NetworkHost, NetworkInputs, RemoteContainer } from '../../src/agent/capabilities/network/inputs.js';
import { createDataplane, netnsSystem, type Dataplane, type DataplaneSystem } from '../../src/agent/capabilities/network/dataplane/apply.js';
import { vtepMac } from '../../src/agent/capabilities/network/dataplane/render.js';

const isRoot = process.getuid?.() === 0;
const BUSYBOX = '/bin/busybox';
const skip = !isRoot ? 'needs root (network namespaces)' : !existsSync(BUSYBOX) ? `needs ${BUSYBOX} (busybox-static) for ping` : false;

const id = randomBytes(3).toString('hex');
const NS = { sw: `dt${id}-dpsw`, h1: `dt${id}-dph1`, h2: `dt${id}-dph2`, c1: `dt${id}-dpc1`, c2: `dt${id}-dpc2` };
const H1: NetworkHost = { hostId: '1h1', name: 'h1', agentIp: '192.0.2.11', tunnelIp: '10.42.0.11' };
const H2: NetworkHost = { hostId: '1h2', name: 'h2', agentIp: '192.0.2.12', tunnelIp: '10.42.0.12' };
const C1 = '10.42.3.17';
const C2 = '10.42.140.9';

async function sh(cmd: string, args: string[], input?: string): Promise<string> {
  const r = await execa(cmd, args, { reject: false, timeout: 30_000, ...(input !== undefined ? { input } : {}) });
  assert.equal(r.exitCode, 0, `${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}
const inNs = (ns: string, ...cmd: string[]) => sh('ip', ['netns', 'exec', ns, ...cmd]);
const batch = (ns: string, lines: string[]) => sh('ip', ['-n', ns, '-batch', '-'], `${lines.join('\n')}\n`);

/** Every call of the applier, run in `ns` (netnsSystem) and recorded; writes = batches and sysctl writes. */
function recording(ns: string): { system: DataplaneSystem; writes: string[]; reset(): void } {
  const inner = netnsSystem(ns);
  const writes: string[] = [];
  return {
    writes,
    reset: () => void writes.splice(0),
    system: {
      run(file, args, input) {
        if (args.includes('-batch')) writes.push(`${file} ${args.join(' ')}\n${input ?? ''}`);
        return inner.run(file, args, input);
      },
      readSysctl: (p) => inner.readSysctl(p),
      writeSysctl(p, v) {
        writes.push(`sysctl ${p}=${v}`);
        return inner.writeSysctl(p, v);
      },
    },
  };
}

function inputs(self: NetworkHost, peer: NetworkHost, remote: RemoteContainer[], mode: 'ipsec' | 'vxlan' = 'vxlan'): NetworkInputs & { self: NetworkHost } {
  return { mode, auth: 'psk', subnet: '10.42.0.0/16', vni: 42, mtuOverride: undefined, self, peers: [peer], localContainers: [], remoteContainers: remote };
}

async function linkJson(ns: string): Promise<{ mtu: number; linkinfo: { info_data: { local?: string; link?: string } } } | undefined> {
  const r = await execa('ip', ['-n', ns, '-j', '-d', 'link', 'show', 'dev', 'drover.vx'], { reject: false });
  if (r.exitCode !== 0) return undefined;
  return (JSON.parse(r.stdout) as { mtu: number; linkinfo: { info_data: { local?: string; link?: string } } }[])[0];
}

async function ping(from: string, to: string): Promise<void> {
  const r = await execa('ip', ['netns', 'exec', from, BUSYBOX, 'ping', '-c', '3', '-w', '15', to], { reject: false });
  assert.equal(r.exitCode, 0, `ping ${to} from ${from}: ${r.stdout} ${r.stderr}`);
  assert.match(r.stdout, /[1-3] packets received/);
}

describe('network dataplane on the kernel', { skip, timeout: 300_000 }, () => {
  const rec1 = recording(NS.h1);
  const rec2 = recording(NS.h2);
  let dp1: Dataplane;
  let dp2: Dataplane;

  before(async () => {
    for (const ns of Object.values(NS)) {
      await sh('ip', ['netns', 'add', ns]);
      await sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    }
    await batch(NS.sw, ['link add br0 type bridge', 'link set br0 up']);
    const hosts = [
      { h: NS.h1, c: NS.c1, n: 1, underlay: H1.agentIp, ct: C1 },
      { h: NS.h2, c: NS.c2, n: 2, underlay: H2.agentIp, ct: C2 },
    ];
    for (const x of hosts) {
      await sh('ip', ['link', 'add', `u${x.n}`, 'netns', NS.sw, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', x.h]);
      await batch(NS.sw, [`link set u${x.n} master br0 up`]);
      await sh('ip', ['link', 'add', `ct${x.n}`, 'netns', x.h, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', x.c]);
      // The host as the agent finds it: the underlay NIC, and Docker's bridge drover0 with the gateway.
      // Forwarding and proxy ARP are left to the applier.
      await batch(x.h, [
        `addr add ${x.underlay}/24 dev eth0`,
        'link set eth0 mtu 1500 up',
        'link add drover0 type bridge',
        'addr add 10.42.0.1/16 dev drover0',
        'link set drover0 up',
        `link set ct${x.n} mtu 1450 master drover0 up`,
      ]);
      await batch(x.c, [`addr add ${x.ct}/16 dev eth0`, 'link set eth0 mtu 1450 up', 'route add default via 10.42.0.1']);
    }
    dp1 = createDataplane({ log: silentLogger(), system: rec1.system });
    dp2 = createDataplane({ log: silentLogger(), system: rec2.system });
  });

  after(async () => {
    for (const ns of Object.values(NS)) await execa('ip', ['netns', 'del', ns], { reject: false });
  });

  it('VXLAN mode: container → container across the hosts', async () => {
    await dp1.apply(inputs(H1, H2, [{ ip: C2, hostId: H2.hostId }]), 0);
    await dp2.apply(inputs(H2, H1, [{ ip: C1, hostId: H1.hostId }]), 0);
    assert.equal(dp1.mtu(), 1450, 'underlay 1500 − 50');
    const l = await linkJson(NS.h1);
    assert.equal(l?.mtu, 1450);
    assert.equal(l?.linkinfo.info_data.local, H1.agentIp);
    assert.equal(l?.linkinfo.info_data.link, 'eth0', 'bound to the interface holding the agent address');
    assert.equal((await inNs(NS.h1, 'sysctl', '-n', 'net.ipv4.conf.drover0.proxy_arp')).trim(), '1');
    assert.equal((await inNs(NS.h1, 'sysctl', '-n', 'net/ipv4/conf/drover.vx/rp_filter')).trim(), '2');
    await ping(NS.c1, C2);
    await ping(NS.c2, C1);
    // The tunnel addresses travel the overlay too (the probes use them).
    await ping(NS.h1, H2.tunnelIp);
  });

  it('a second apply runs nothing that writes', async () => {
    rec1.reset();
    rec2.reset();
    await dp1.apply(inputs(H1, H2, [{ ip: C2, hostId: H2.hostId }]), 0);
    await dp2.apply(inputs(H2, H1, [{ ip: C1, hostId: H1.hostId }]), 0);
    assert.deepEqual(rec1.writes, []);
    assert.deepEqual(rec2.writes, []);
  });

  it('a remote container added is exactly one route', async () => {
    rec1.reset();
    await dp1.apply(
      inputs(H1, H2, [
        { ip: C2, hostId: H2.hostId },
        { ip: '10.42.200.3', hostId: H2.hostId },
      ]),
      0,
    );
    assert.deepEqual(rec1.writes, ['ip -force -batch -\nroute replace 10.42.200.3/32 via 10.42.0.12 dev drover.vx onlink\n']);
    const routes = await sh('ip', ['-n', NS.h1, 'route', 'show', '10.42.200.3']);
    assert.match(routes, /10\.42\.200\.3 via 10\.42\.0\.12 dev drover\.vx onlink/);
  });

  it('verify repairs a neighbour deleted by hand and says so; then finds nothing', async () => {
    await sh('ip', ['-n', NS.h1, 'neigh', 'del', H2.tunnelIp, 'dev', 'drover.vx']);
    const said = await dp1.verify();
    assert.match(said ?? '', /neighbour 10\.42\.0\.12/);
    const neigh = await sh('ip', ['-n', NS.h1, 'neigh', 'show', H2.tunnelIp, 'dev', 'drover.vx']);
    assert.match(neigh, new RegExp(`lladdr ${vtepMac(H2.hostId)} PERMANENT`));
    assert.equal(await dp1.verify(), undefined);
    await ping(NS.c1, C2);
  });

  it('IPsec mode applies cleanly without charon: endpoint = tunnel address on lo, MTU less the overhead', async () => {
    await dp1.apply(inputs(H1, H2, [{ ip: C2, hostId: H2.hostId }], 'ipsec'), 73);
    assert.equal(dp1.mtu(), 1377, '1500 − 50 − 73');
    const l = await linkJson(NS.h1);
    assert.equal(l?.mtu, 1377);
    assert.equal(l?.linkinfo.info_data.local, H1.tunnelIp);
    assert.equal(l?.linkinfo.info_data.link, undefined, 'not bound to a device: the packets go to charon’s route');
    const lo = await sh('ip', ['-n', NS.h1, '-4', 'addr', 'show', 'dev', 'lo']);
    assert.match(lo, /inet 10\.42\.0\.11\/32 scope global lo:drover/);
    const vxAddrs = await sh('ip', ['-n', NS.h1, '-4', 'addr', 'show', 'dev', 'drover.vx']);
    assert.doesNotMatch(vxAddrs, /inet /, 'the tunnel address moved to lo');
    const fdb = await sh('bridge', ['-n', NS.h1, 'fdb', 'show', 'dev', 'drover.vx']);
    assert.match(fdb, new RegExp(`${vtepMac(H2.hostId)} dst 10\\.42\\.0\\.12 self permanent`));
    rec1.reset();
    await dp1.apply(inputs(H1, H2, [{ ip: C2, hostId: H2.hostId }], 'ipsec'), 73);
    assert.deepEqual(rec1.writes, [], 'idempotent in IPsec mode too');
  });

  it('remove() takes the device and the tunnel address away', async () => {
    await dp1.remove();
    await dp2.remove();
    assert.equal(await linkJson(NS.h1), undefined);
    assert.equal(await linkJson(NS.h2), undefined);
    assert.doesNotMatch(await sh('ip', ['-n', NS.h1, '-4', 'addr', 'show', 'dev', 'lo']), /10\.42\.0\.11/);
    assert.equal(dp1.mtu(), undefined);
    assert.equal(await dp1.verify(), undefined, 'nothing to verify after remove');
  });

  it('a device the kernel refuses: the error names the command and the cause, not the lines that needed it', async () => {
    await sh('ip', ['-n', NS.h2, 'link', 'add', 'other.vx', 'type', 'vxlan', 'id', '42', 'local', H2.agentIp, 'dstport', '4789', 'nolearning']);
    const dp = createDataplane({ log: silentLogger(), system: netnsSystem(NS.h2) });
    await assert.rejects(dp.apply(inputs(H2, H1, [{ ip: C1, hostId: H1.hostId }]), 0), (err: Error) => {
      assert.match(err.message, /"link add drover\.vx [^"]*": A VXLAN device with the specified VNI already exists\. \(another VXLAN device/);
      assert.match(err.message, /network\.vxlanVni/);
      assert.match(err.message, /\d+ more that need drover\.vx/);
      assert.doesNotMatch(err.message, /Cannot find device/);
      assert.doesNotMatch(err.message, /bridge -force/, 'no FDB attempted without the device');
      return true;
    });
    await sh('ip', ['-n', NS.h2, 'link', 'del', 'other.vx']);
    assert.match((await dp.verify()) ?? '', /created drover\.vx/, 'verify retries the last rendered state');
    assert.ok(await linkJson(NS.h2));
    await dp.remove();
  });
});
