// The host firewall against the real iptables (root; skipped otherwise), in a fresh network namespace
// that plays the host: a bridge drover0 with two "containers" (netns on veths), one more netns on the
// bridge that is no container of the host, and an outside client on another link. Checks that apply puts
// exactly our rules in (in iptables-save's form), that it is idempotent, that Docker's rules are left
// alone while our jumps stay first, that verify repairs drift and says what, that a render iptables
// refuses leaves the previous rules in force, that remove leaves only the foreign rules, and the traffic:
// a published port reached with the client address kept, hairpin, MASQUERADE, spoofing dropped.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { silentLogger } from '../../src/common/log.js';
import type { NetworkInputs } from '../../src/agent/capabilities/network/inputs.js';
import { createFirewall, type ExecResult, type Firewall, type FirewallExec } from '../../src/agent/capabilities/network/iptables/apply.js';
import { FIREWALL_CHAINS, FIREWALL_JUMPS, TABLES, chainRules, parseRules, renderFirewall } from '../../src/agent/capabilities/network/iptables/render.js';

const isRoot = process.getuid?.() === 0;
const id = randomBytes(3).toString('hex');
const NS = { host: `dt${id}-ipth`, c1: `dt${id}-iptc1`, c2: `dt${id}-iptc2`, stray: `dt${id}-iptst`, out: `dt${id}-ipto` };
const VETH = { c1: `v${id}c1`, c2: `v${id}c2`, stray: `v${id}st` };
const HOST_IP = '192.0.2.1';
const OUT_IP = '192.0.2.2';
const C1 = '10.42.0.5';
const C2 = '10.42.0.6';

async function sh(ns: string, ...cmd: string[]): Promise<ExecResult> {
  const r = await execa('ip', ['netns', 'exec', ns, ...cmd], { reject: false, timeout: 30_000 });
  return { exitCode: r.exitCode ?? -1, stdout: r.stdout, stderr: r.stderr };
}
async function must(ns: string, ...cmd: string[]): Promise<string> {
  const r = await sh(ns, ...cmd);
  assert.equal(r.exitCode, 0, `${cmd.join(' ')} in ${ns}: ${r.stderr}`);
  return r.stdout;
}
const ipBatch = async (lines: string[], ns?: string) => {
  const r = await execa('ip', [...(ns ? ['-n', ns] : []), '-batch', '-'], { input: lines.join('\n') + '\n', reject: false });
  assert.equal(r.exitCode, 0, r.stderr);
};

/** Every call the firewall makes, run inside the host netns and recorded. */
const calls: string[] = [];
const inHost: FirewallExec = async (file, args, input) => {
  calls.push([file, ...args].join(' '));
  const r = await execa('ip', ['netns', 'exec', NS.host, file, ...args], { reject: false, timeout: 30_000, ...(input !== undefined ? { input } : {}) });
  return { exitCode: r.exitCode ?? -1, stdout: r.stdout, stderr: r.stderr };
};
const restores = () => calls.filter((c) => c.startsWith('iptables-restore') && !c.includes('--test')).length;

/** iptables-save of the host netns without the comment lines (dates) and counters. */
async function saved(): Promise<string> {
  const out = await must(NS.host, 'iptables-save');
  return out
    .split('\n')
    .filter((l) => !l.startsWith('#'))
    .join('\n');
}
/** The saved text without anything of ours: what the foreign rules look like. */
function foreignOnly(text: string): string {
  const ours = /CATTLE_/;
  return text
    .split('\n')
    .filter((l) => !ours.test(l))
    .join('\n');
}

function inputs(ports: NetworkInputs['localContainers'][number]['ports'] = [{ publicPort: 8080, privatePort: 80, protocol: 'tcp' }]): NetworkInputs {
  return {
    mode: 'vxlan',
    auth: 'psk',
    subnet: '10.42.0.0/16',
    vni: 42,
    mtuOverride: undefined,
    self: { hostId: '1h1', name: 'h1', agentIp: HOST_IP, tunnelIp: '10.42.255.1' },
    peers: [],
    localContainers: [
      { id: '1i1', name: 'web', ip: C1, externalId: 'd1', ports },
      { id: '1i2', name: 'other', ip: C2, externalId: 'd2', ports: [] },
    ],
    remoteContainers: [],
  };
}
const veths = new Map([
  ['1i1', VETH.c1],
  ['1i2', VETH.c2],
]);

// A TCP server that answers every connection with the address it came from; a client that prints the
// answer (exit 1 when it cannot connect within 3 s: a dropped SYN).
const SERVER = `import net from 'node:net';
const [host, port] = process.argv.slice(2);
net.createServer((s) => s.end(s.remoteAddress + '\\n')).listen(Number(port), host, () => console.log('ready'));`;
const CLIENT = `import net from 'node:net';
const [host, port, localAddress] = process.argv.slice(2);
const s = net.connect({ host, port: Number(port), ...(localAddress ? { localAddress } : {}) });
let got = '';
s.setTimeout(3000, () => { console.error('timeout'); process.exit(1); });
s.on('data', (d) => (got += d));
s.on('end', () => { console.log(got.trim()); process.exit(0); });
s.on('error', (e) => { console.error(e.message); process.exit(1); });`;

describe('host firewall (iptables) in a network namespace', { skip: isRoot ? false : 'needs root (network namespaces, iptables)' }, () => {
  let dir = '';
  const servers: ResultPromise[] = [];
  let fw: Firewall;
  let breakRender = false;

  async function serve(ns: string, host: string, port: number): Promise<void> {
    const p = execa('ip', ['netns', 'exec', ns, process.execPath, join(dir, 'server.mjs'), host, String(port)], { reject: false, buffer: false });
    servers.push(p);
    await new Promise<void>((resolve, reject) => {
      p.stdout?.on('data', (d: Buffer) => {
        if (d.toString().includes('ready')) resolve();
      });
      p.on('exit', (code) => reject(new Error(`server in ${ns} exited (${code})`)));
    });
  }
  const connect = (ns: string, host: string, port: number, localAddress?: string) =>
    sh(ns, process.execPath, join(dir, 'client.mjs'), host, String(port), ...(localAddress ? [localAddress] : []));

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'drover-ipt-'));
    writeFileSync(join(dir, 'server.mjs'), SERVER);
    writeFileSync(join(dir, 'client.mjs'), CLIENT);
    await ipBatch(Object.values(NS).map((n) => `netns add ${n}`));
    await ipBatch(
      [
        'link set lo up',
        'link add drover0 type bridge',
        'addr add 10.42.0.1/16 dev drover0',
        'link set drover0 up',
        ...(['c1', 'c2', 'stray'] as const).map((k) => `link add ${VETH[k]} type veth peer name eth0 netns ${NS[k]}`),
        ...(['c1', 'c2', 'stray'] as const).map((k) => `link set ${VETH[k]} master drover0 up`),
        `link add ext0 type veth peer name eth0 netns ${NS.out}`,
        `addr add ${HOST_IP}/24 dev ext0`,
        'link set ext0 up',
      ],
      NS.host,
    );
    for (const [k, ip] of [
      ['c1', C1],
      ['c2', C2],
      ['stray', '10.42.0.7'],
    ] as const) {
      await ipBatch(['link set lo up', `addr add ${ip}/16 dev eth0`, 'link set eth0 up', 'route add default via 10.42.0.1'], NS[k]);
    }
    await ipBatch(['link set lo up', `addr add ${OUT_IP}/24 dev eth0`, 'link set eth0 up'], NS.out);
    // The outside client knows no route into the subnet: it can only reach the published port.
    await serve(NS.c1, '0.0.0.0', 80);
    await serve(NS.c2, '0.0.0.0', 80);
    await serve(NS.out, OUT_IP, 9000);
    fw = createFirewall({
      log: silentLogger(),
      exec: inHost,
      render: (i) => {
        const text = renderFirewall(i);
        // A rule iptables refuses, in the last table: without the --test the first two would go in.
        return breakRender ? text.replace(':CATTLE_FORWARD - [0:0]\n', ':CATTLE_FORWARD - [0:0]\n-A CATTLE_FORWARD -m nosuchmatch -j ACCEPT\n') : text;
      },
    });
  });

  after(async () => {
    for (const p of servers) p.kill('SIGKILL');
    await Promise.allSettled(servers);
    for (const ns of Object.values(NS)) {
      const pids = await execa('ip', ['netns', 'pids', ns], { reject: false });
      for (const pid of pids.stdout.split('\n').filter(Boolean)) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          // already gone
        }
      }
      await execa('ip', ['netns', 'del', ns], { reject: false });
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('apply puts in exactly our rules, as iptables-save prints them, with the jumps first, and sets the sysctls', async () => {
    await fw.apply(inputs(), veths);
    const text = fw.lastRendered();
    assert.ok(text);
    const want = parseRules(text);
    const have = parseRules(await saved());
    for (const table of TABLES) {
      for (const chain of FIREWALL_CHAINS[table]) {
        assert.deepEqual(chainRules(have, table, chain), chainRules(want, table, chain), `${table} ${chain} as iptables-save shows it`);
      }
      // Nothing of ours anywhere else than our chains and the jumps.
      for (const [chain, rules] of have.rules.get(table) ?? []) {
        if (FIREWALL_CHAINS[table].includes(chain)) continue;
        const jumps = FIREWALL_JUMPS.filter((j) => j.table === table && j.chain === chain).map((j) => `-j ${j.target}`);
        assert.deepEqual(rules, jumps, `${table} ${chain} holds only our jump`);
      }
    }
    assert.equal(await must(NS.host, 'sysctl', '-n', 'net.ipv4.ip_forward'), '1');
    assert.equal(await must(NS.host, 'sysctl', '-n', 'net.bridge.bridge-nf-call-iptables'), '1');

    // Reads like the original's `iptables -t nat -S`.
    const nat = await must(NS.host, 'iptables', '-w', '-t', 'nat', '-S');
    for (const line of [
      '-N CATTLE_PREROUTING',
      '-N CATTLE_POSTROUTING',
      '-A PREROUTING -j CATTLE_PREROUTING',
      '-A OUTPUT -j CATTLE_OUTPUT',
      '-A POSTROUTING -j CATTLE_POSTROUTING',
      `-A CATTLE_PREROUTING -p tcp -m addrtype --dst-type LOCAL -m tcp --dport 8080 -m comment --comment web -j DNAT --to-destination ${C1}:80`,
      '-A CATTLE_POSTROUTING -s 10.42.0.0/16 -d 169.254.169.250/32 -j ACCEPT',
      '-A CATTLE_POSTROUTING -s 10.42.0.0/16 ! -d 10.42.0.0/16 -j MASQUERADE',
    ]) {
      assert.ok(nat.split('\n').includes(line), `iptables -t nat -S has: ${line}\n${nat}`);
    }
  });

  it('applying the same again changes nothing', async () => {
    const before = await saved();
    const n = restores();
    await fw.apply(inputs(), veths);
    assert.equal(restores(), n, 'no iptables-restore for an unchanged render with nothing drifted');
    assert.equal(await saved(), before);
    assert.equal(await fw.verify(), undefined);
  });

  it('a published port is reached from outside with the client address kept; hairpin and MASQUERADE work', async () => {
    const fromOutside = await connect(NS.out, HOST_IP, 8080);
    assert.equal(fromOutside.exitCode, 0, fromOutside.stderr);
    assert.equal(fromOutside.stdout, OUT_IP, 'DNATed to the container, the client address kept');
    const self = await connect(NS.c1, HOST_IP, 8080);
    assert.equal(self.exitCode, 0, `hairpin: the container reaches its own published port: ${self.stderr}`);
    const neighbour = await connect(NS.c2, HOST_IP, 8080);
    assert.equal(neighbour.exitCode, 0, neighbour.stderr);
    assert.equal(neighbour.stdout, C2, 'another local container reaches it with its own address');
    const out = await connect(NS.c1, OUT_IP, 9000);
    assert.equal(out.exitCode, 0, out.stderr);
    assert.equal(out.stdout, HOST_IP, 'leaving the subnet behind the host address');
    const direct = await connect(NS.c2, C1, 80);
    assert.equal(direct.stdout, C2, 'inside the subnet, no NAT');
  });

  it('a spoofed source and a port that is no container of this host are dropped in raw', async () => {
    await must(NS.c2, 'ip', 'addr', 'add', '10.42.0.99/16', 'dev', 'eth0');
    const spoofed = await connect(NS.c2, C1, 80, '10.42.0.99');
    assert.notEqual(spoofed.exitCode, 0, `a connection from another address than the container's: ${spoofed.stdout}`);
    const spoofedOut = await connect(NS.c2, OUT_IP, 9000, '10.42.0.99');
    assert.notEqual(spoofedOut.exitCode, 0, 'routed traffic too');
    const stray = await connect(NS.stray, C1, 80);
    assert.notEqual(stray.exitCode, 0, 'a port of the bridge that belongs to no container of the host');
    const counters = await must(NS.host, 'iptables-save', '-c', '-t', 'raw');
    const drop = counters.split('\n').find((l) => l.includes(`--physdev-in ${VETH.c2}`) && l.endsWith('-j DROP'));
    assert.match(drop ?? '', /^\[[1-9]\d*:\d+\]/, `the anti-spoofing rule of ${VETH.c2} counted the packets: ${drop}`);
    const ok = await connect(NS.c2, C1, 80);
    assert.equal(ok.stdout, C2, 'its own address still goes through');
  });

  it("Docker's chains and jumps are left alone; verify puts our jump back first and says so", async () => {
    // As Docker does when its networks change: its chain and jumps inserted at the top.
    await must(NS.host, 'iptables', '-w', '-N', 'DOCKER-USER');
    await must(NS.host, 'iptables', '-w', '-A', 'DOCKER-USER', '-j', 'RETURN');
    await must(NS.host, 'iptables', '-w', '-I', 'FORWARD', '1', '-j', 'DOCKER-USER');
    await must(NS.host, 'iptables', '-w', '-t', 'nat', '-N', 'DOCKER');
    await must(NS.host, 'iptables', '-w', '-t', 'nat', '-I', 'PREROUTING', '1', '-m', 'addrtype', '--dst-type', 'LOCAL', '-j', 'DOCKER');
    const msg = await fw.verify();
    assert.match(msg ?? '', /jump filter FORWARD → CATTLE_FORWARD was at position 2 \(moved back to first\)/);
    assert.match(msg ?? '', /jump nat PREROUTING → CATTLE_PREROUTING was at position 2/);
    const have = parseRules(await saved());
    assert.deepEqual(chainRules(have, 'filter', 'FORWARD'), ['-j CATTLE_FORWARD', '-j DOCKER-USER']);
    assert.deepEqual(chainRules(have, 'filter', 'DOCKER-USER'), ['-j RETURN']);
    assert.deepEqual(chainRules(have, 'nat', 'PREROUTING'), ['-j CATTLE_PREROUTING', '-m addrtype --dst-type LOCAL -j DOCKER']);
    assert.equal(await fw.verify(), undefined, 'nothing left to repair');
    // The next apply keeps it that way without touching the chains.
    const n = restores();
    await fw.apply(inputs(), veths);
    assert.equal(restores(), n);
  });

  it('a rule deleted by hand is put back by verify, which says what it repaired', async () => {
    const before = await saved();
    await must(NS.host, 'iptables', '-w', '-t', 'nat', '-D', 'CATTLE_POSTROUTING', '1');
    await must(NS.host, 'iptables', '-w', '-t', 'filter', '-D', 'FORWARD', '-j', 'CATTLE_FORWARD');
    const msg = await fw.verify();
    assert.match(msg ?? '', /nat CATTLE_POSTROUTING had 1 rule\(s\) missing and 0 unexpected/);
    assert.match(msg ?? '', /jump filter FORWARD → CATTLE_FORWARD was missing/);
    assert.equal(await saved(), before);
    assert.equal(await fw.verify(), undefined);
  });

  it('a render iptables refuses leaves the previous rules in force', async () => {
    const before = await saved();
    const good = fw.lastRendered();
    breakRender = true;
    try {
      // Also a new port, so a half-applied nat table would show.
      await assert.rejects(
        fw.apply(inputs([{ publicPort: 8080, privatePort: 80, protocol: 'tcp' }, { publicPort: 9090, privatePort: 80, protocol: 'tcp' }]), veths),
        /iptables refused the firewall rules \(nothing was changed; the previous ones stay\): .*nosuchmatch/,
      );
    } finally {
      breakRender = false;
    }
    assert.equal(await saved(), before, 'no table changed');
    assert.equal(fw.lastRendered(), good, 'the last good render is kept');
    assert.equal(await fw.verify(), undefined, 'verify holds on to the last good rules');
    const still = await connect(NS.out, HOST_IP, 8080);
    assert.equal(still.stdout, OUT_IP);
  });

  it('remove leaves only the foreign rules', async () => {
    const before = await saved();
    await fw.remove();
    const after = await saved();
    assert.doesNotMatch(after, /CATTLE_/);
    assert.equal(after, foreignOnly(before));
    assert.equal(fw.lastRendered(), undefined);
    assert.equal(await fw.verify(), undefined);
    await fw.remove(); // nothing left: a no-op
  });
});
