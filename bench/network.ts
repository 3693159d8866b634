// Managed network data path benchmark (see bench/README.md, "Network"). Run as root:
//   node --import tsx bench/network.ts [--rounds 3] [--seconds 5] [--pings 200] [--only ipsec|vxlan] [--lab]
//
// Two-host netns topologies (an underlay switch netns with a bridge, two host netns with veth "NICs",
// one container netns per host), each variant in its own set of namespaces, all built at start:
//
//   1. IPsec. drover's data path, built by hand exactly as src/agent/capabilities/network/README.md designs
//      it: containers on a flat /16 (bridge drover0, gateway 10.42.0.1 on every host, proxy ARP), a kernel
//      VXLAN device drover.vx whose endpoints are the hosts' tunnel addresses (a /32 on lo: this kernel has
//      no dummy links), per remote container one /32 route via the peer's tunnel address onlink on
//      drover.vx, one permanent neighbour + one FDB entry per peer (VTEP MACs derived from the host
//      number), and one charon per host with ONE CHILD_SA per peer in tunnel mode whose traffic selectors
//      are the two tunnel addresses (kernel-libipsec TUN ipsec0, routes in table 220, UDP-encapsulated).
//      Reference: a hand-configured charon as /work/shared/netlab did it: per-host container subnets
//      (10.42.N.0/24 on a bridge) as traffic selectors, no VXLAN. Same charon build, plugins, proposals.
//   2. VXLAN mode. The same VXLAN device with the hosts' underlay addresses as endpoints (no charon), the
//      tunnel address on drover.vx. Reference: the underlay itself, host → host.
//
// Per variant and round: iperf3 TCP (one stream, --seconds, first second omitted) container → container
// across hosts (the reference of part 2: host → host on the underlay), then `busybox ping -c --pings -i 0.01`
// (RTT p50/p99 of that run). Variants alternate A B A B A B; medians over the rounds are printed with
// the ratio to the reference (throughput: ours / reference; RTT: reference / ours, so higher is better
// for both and 100 % = as good as the reference).
// --lab (part 3): a real drover lab (test/lab: a dockerd and an agent per host netns, the control plane in
// the root netns, 2 + rounds × modes hosts), in IPsec mode (the environment's default), then with the
// environment's overlay switched to VXLAN (PUT /v1/environments/<id>); --only ipsec|vxlan picks one mode.
// Per mode: (a) the same iperf3 + ping, container a (h1) → container b (h2) through the agents' overlay
// (idle busybox containers from a stack pinned by host label; iperf3 and ping are the host's programs run
// with nsenter in the containers' netns), reference h1 → h2 host netns on the underlay; (b) --rounds
// times, a fresh host's agent started, the time to each milestone (registered; every host's
// network.peers reachable in GET /v1/hosts; its container running; its first echo reply from a and from
// b, i.e. all pairs pass traffic), median printed; the host is removed again after each round. The lab
// goes in `finally` (stopDroverLab: its processes by PID, its namespaces by name).
// Namespaces are named dnb<random>-…; everything started here is stopped by PID, the namespaces
// deleted by name, in `finally`.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? process.argv[i + 1] : undefined;
  return v ?? def;
}
const ROUNDS = Number(arg('rounds', '3'));
const SECONDS = Number(arg('seconds', '5'));
const PINGS = Number(arg('pings', '200'));
const ONLY = arg('only', 'all');
const LAB = process.argv.includes('--lab');

const ID = randomBytes(3).toString('hex');
const PREFIX = `dnb${ID}`;
const DIR = join(tmpdir(), `drover-bench-network-${ID}`);
const CHARON = '/usr/lib/ipsec/charon';
const PSK = `bench-network-psk-${ID}-0123456789abcdef`;
const UNDERLAY_MTU = 1500;
/** kernel-libipsec's TUN device MTU (its default, charon.plugins.kernel-libipsec.mtu). */
const LIBIPSEC_MTU = 1400;
const VXLAN_OVERHEAD = 50;
const VNI = 42;

const namespaces: string[] = [];
const children: ChildProcess[] = [];

async function sh(cmd: string, args: string[], timeout = 0): Promise<string> {
  try {
    const { stdout } = await run(cmd, args, { maxBuffer: 16 * 1024 * 1024, timeout });
    return stdout;
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')}: ${(err.stderr ?? '').trim() || err.message}`);
  }
}
const ip = (...args: string[]) => sh('ip', args);
const nsx = (ns: string, ...args: string[]) => sh('ip', ['netns', 'exec', ns, ...args]);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs ip -batch inside a netns (one process for many commands). */
async function batch(ns: string, lines: string[]): Promise<void> {
  const f = join(DIR, `batch-${ns}-${Math.random().toString(36).slice(2)}`);
  writeFileSync(f, `${lines.join('\n')}\n`);
  await sh('ip', ['-n', ns, '-batch', f]);
}

async function addNetns(name: string): Promise<string> {
  await ip('netns', 'add', name);
  namespaces.push(name);
  await ip('-n', name, 'link', 'set', 'lo', 'up');
  return name;
}

function bg(what: string, args: string[]): ChildProcess {
  const child = spawn(args[0] as string, args.slice(1), { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  let err = '';
  child.stderr?.on('data', (d: Buffer) => {
    if (err.length < 4000) err += d.toString();
  });
  child.on('exit', (code, sig) => {
    if (!stopping) process.stderr.write(`${what} exited (${code ?? sig}) ${err.trim()}\n`);
  });
  children.push(child);
  return child;
}
let stopping = false;

async function waitUntil(what: string, ms: number, fn: () => Promise<boolean>): Promise<void> {
  const end = Date.now() + ms;
  let last = '';
  for (;;) {
    try {
      if (await fn()) return;
    } catch (e) {
      last = (e as Error).message;
    }
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? `: ${last}` : ''}`);
    await sleep(100);
  }
}

// ---------- topology ----------

type Kind = 'drover-ipsec' | 'netlab-ipsec' | 'drover-vxlan' | 'routed';

interface Host {
  n: number;
  ns: string;
  ct: string;
  underlay: string;
  /** The container's address. */
  ctIp: string;
  /** drover: the host's tunnel address. */
  tunnel: string;
  mac: string;
  dir: string;
}

interface Topo {
  kind: Kind;
  hosts: [Host, Host];
  /** The containers' MTU. */
  mtu: number;
}

// Flat addresses (any address of the subnet wherever the container runs), as drover's IPAM hands out.
const DROVER_CT = ['10.42.3.17', '10.42.140.9'];
const DROVER_TUNNEL = ['10.42.0.11', '10.42.0.12'];

async function buildTopo(kind: Kind, tag: string): Promise<Topo> {
  const p = `${PREFIX}-${tag}`;
  const sw = await addNetns(`${p}-sw`);
  await batch(sw, ['link add br0 type bridge', 'link set br0 up']);
  // IPsec mode: the VXLAN packets go into kernel-libipsec's TUN (MTU 1400), so the overlay MTU is that
  // minus VXLAN's 50 bytes; VXLAN mode: the underlay's minus 50. The netlab reference: the TUN's MTU.
  const mtu =
    kind === 'drover-ipsec' ? LIBIPSEC_MTU - VXLAN_OVERHEAD : kind === 'drover-vxlan' ? UNDERLAY_MTU - VXLAN_OVERHEAD : kind === 'routed' ? UNDERLAY_MTU : LIBIPSEC_MTU;
  const hosts: Host[] = [];
  for (const n of [1, 2]) {
    const h: Host = {
      n,
      ns: await addNetns(`${p}-h${n}`),
      ct: await addNetns(`${p}-c${n}`),
      underlay: `192.0.2.1${n}`,
      ctIp: kind === 'netlab-ipsec' ? `10.42.${n}.2` : (DROVER_CT[n - 1] as string),
      tunnel: DROVER_TUNNEL[n - 1] as string,
      mac: `02:d7:00:00:00:0${n}`,
      dir: join(DIR, tag, `h${n}`),
    };
    mkdirSync(h.dir, { recursive: true });
    await ip('link', 'add', `u${n}`, 'netns', sw, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', h.ns);
    await batch(sw, [`link set u${n} master br0 up`]);
    await ip('link', 'add', `ct${n}`, 'netns', h.ns, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', h.ct);
    await nsx(h.ns, 'sysctl', '-qw', 'net.ipv4.ip_forward=1');
    const br = kind === 'netlab-ipsec' ? 'docker0' : 'drover0';
    const gw = kind === 'netlab-ipsec' ? `10.42.${n}.1/24` : '10.42.0.1/16';
    await batch(h.ns, [
      `addr add ${h.underlay}/24 dev eth0`,
      `link set eth0 mtu ${UNDERLAY_MTU} up`,
      `link add ${br} type bridge`,
      `addr add ${gw} dev ${br}`,
      `link set ${br} up`,
      `link set ct${n} mtu ${mtu} master ${br} up`,
    ]);
    if (kind !== 'netlab-ipsec') {
      // As the agent's managed Docker network: containers get the /16 and ARP for remote addresses.
      await nsx(h.ns, 'sysctl', '-qw', 'net.ipv4.conf.drover0.proxy_arp=1', 'net.ipv4.neigh.drover0.proxy_delay=0');
    }
    const mask = kind === 'netlab-ipsec' ? 24 : 16;
    const gwIp = gw.split('/')[0] as string;
    await batch(h.ct, [`addr add ${h.ctIp}/${mask} dev eth0`, `link set eth0 mtu ${mtu} up`, `route add default via ${gwIp}`]);
    hosts.push(h);
  }
  const topo: Topo = { kind, hosts: hosts as [Host, Host], mtu };
  if (kind === 'routed') {
    // no overlay: each host routes the peer's container /32 via the peer's underlay address
    for (const h of topo.hosts) {
      const peer = topo.hosts[0] === h ? topo.hosts[1] : topo.hosts[0];
      await batch(h.ns, [`route replace ${peer.ctIp}/32 via ${peer.underlay} dev eth0`]);
    }
  } else if (kind !== 'netlab-ipsec') await droverDataplane(topo);
  if (kind === 'drover-ipsec' || kind === 'netlab-ipsec') await startCharons(topo);
  return topo;
}

/** drover's dataplane (design: dataplane/render.ts): drover.vx, per peer one neighbour + one FDB entry, per remote container one /32. */
async function droverDataplane(t: Topo): Promise<void> {
  const ipsec = t.kind === 'drover-ipsec';
  for (const h of t.hosts) {
    const peer = t.hosts[0] === h ? t.hosts[1] : t.hosts[0];
    const lines: string[] = [];
    if (ipsec) lines.push(`addr add ${h.tunnel}/32 dev lo`);
    lines.push(
      `link add drover.vx address ${h.mac} type vxlan id ${VNI} local ${ipsec ? h.tunnel : h.underlay} ${ipsec ? '' : 'dev eth0 '}dstport 4789 nolearning noudpcsum`,
      `link set drover.vx mtu ${t.mtu} up`,
    );
    if (!ipsec) lines.push(`addr add ${h.tunnel}/32 dev drover.vx`);
    lines.push(`neigh replace ${peer.tunnel} lladdr ${peer.mac} dev drover.vx nud permanent`);
    if (!ipsec) lines.push(`route replace ${peer.tunnel}/32 via ${peer.tunnel} dev drover.vx onlink`);
    lines.push(`route replace ${peer.ctIp}/32 via ${peer.tunnel} dev drover.vx onlink`);
    await batch(h.ns, lines);
    await sh('bridge', ['-n', h.ns, 'fdb', 'append', peer.mac, 'dev', 'drover.vx', 'dst', ipsec ? peer.tunnel : peer.underlay, 'self', 'permanent']);
  }
}

const PLUGINS = 'random nonce openssl aes sha1 sha2 hmac gcm gmp kdf pem pkcs1 x509 pubkey';

/** One charon per host netns (netlab REPORT §5.2): own strongswan.conf, /run bind-mounted per instance. */
async function startCharons(t: Topo): Promise<void> {
  for (const h of t.hosts) {
    const peer = t.hosts[0] === h ? t.hosts[1] : t.hosts[0];
    const d = h.dir;
    for (const sub of ['run', 'x509', 'x509ca', 'x509ocsp', 'x509aa', 'x509ac', 'x509crl', 'pubkey', 'private', 'rsa', 'ecdsa', 'bliss', 'pkcs8', 'pkcs12']) {
      mkdirSync(join(d, sub), { recursive: true });
    }
    writeFileSync(
      join(d, 'strongswan.conf'),
      `charon {
  load = ${PLUGINS} kernel-libipsec! kernel-netlink socket-default! vici!
  install_routes = yes
  install_virtual_ip = no
  retransmit_timeout = 1
  retransmit_base = 1.4
  retransmit_tries = 3
  plugins {
    vici {
      socket = unix://${d}/run/charon.vici
    }
  }
  filelog {
    bench {
      path = ${d}/charon.log
      default = 1
    }
  }
}
swanctl {
  load = ${PLUGINS}
  socket = unix://${d}/run/charon.vici
}
`,
    );
    // drover: the tunnel addresses as traffic selectors; netlab: the hosts' container subnets.
    const [lts, rts] = t.kind === 'drover-ipsec' ? [`${h.tunnel}/32`, `${peer.tunnel}/32`] : [`10.42.${h.n}.0/24`, `10.42.${peer.n}.0/24`];
    writeFileSync(
      join(d, 'swanctl.conf'),
      `connections {
  h${h.n}-h${peer.n} {
    version = 2
    local_addrs = ${h.underlay}
    remote_addrs = ${peer.underlay}
    proposals = aes128-sha256-modp2048
    encap = yes
    local {
      auth = psk
      id = ${h.underlay}
    }
    remote {
      auth = psk
      id = ${peer.underlay}
    }
    children {
      h${h.n}-h${peer.n} {
        mode = tunnel
        local_ts = ${lts}
        remote_ts = ${rts}
        esp_proposals = aes128gcm16
        start_action = ${h.n === 1 ? 'start' : 'none'}
      }
    }
  }
}
secrets {
  ike-bench {
    secret = "${PSK}"
  }
}
`,
    );
    // `ip netns exec`, env and `sh -c exec` all exec: the child's PID is charon's.
    bg(`charon ${t.kind} h${h.n}`, ['ip', 'netns', 'exec', h.ns, 'env', `STRONGSWAN_CONF=${join(d, 'strongswan.conf')}`, 'sh', '-c', `mount --bind ${d}/run /run && exec ${CHARON}`]);
  }
  // responder first, then the initiator
  for (const h of [t.hosts[1], t.hosts[0]]) {
    await waitUntil(`charon's vici socket in ${h.ns}`, 10_000, () => Promise.resolve(existsSync(join(h.dir, 'run', 'charon.vici'))));
    await run('swanctl', ['--load-all', '--file', join(h.dir, 'swanctl.conf')], { env: { ...process.env, STRONGSWAN_CONF: join(h.dir, 'strongswan.conf') } });
  }
  await waitUntil(`the CHILD_SA in ${t.kind}`, 20_000, async () => (await swanctl(t.hosts[0], '--list-sas')).includes('INSTALLED'));
}

function swanctl(h: Host, ...args: string[]): Promise<string> {
  return run('swanctl', args, { env: { ...process.env, STRONGSWAN_CONF: join(h.dir, 'strongswan.conf') } }).then((r) => r.stdout);
}

// ---------- measurements ----------

interface Path {
  /** The argv prefix that runs a program in the server's network namespace (iperf3 -s, ss). */
  server: string[];
  /** The iperf3 server's address, the ping target. */
  serverIp: string;
  /** The argv prefix that runs a program in the client's network namespace (iperf3 -c, ping). */
  client: string[];
  /** Starts the long-running iperf3 -s (default: a child of this process, stopped in teardown). */
  spawn?: (argv: string[], what: string) => ChildProcess;
}

/** `ip netns exec <ns>`: a named netns (parts 1–2, the lab's host netns). */
const inNs = (ns: string): string[] => ['ip', 'netns', 'exec', ns];
const nsPath = (clientNs: string, serverNs: string, serverIp: string): Path => ({ client: inNs(clientNs), server: inNs(serverNs), serverIp });

interface Sample {
  mbps: number;
  retrans: number;
  p50: number;
  p99: number;
  lost: number;
}

const servers = new Map<string, ChildProcess>();

async function ensureIperfServer(path: Path): Promise<void> {
  const key = `${path.server.join(' ')} ${path.serverIp}`;
  if (servers.has(key)) return;
  const what = `iperf3 -s on ${path.serverIp} (${path.server.join(' ')})`;
  const argv = [...path.server, 'iperf3', '-s', '-B', path.serverIp, '-p', '5201'];
  servers.set(key, path.spawn ? path.spawn(argv, what) : bg(what, argv));
  const [cmd, ...pre] = path.server as [string, ...string[]];
  await waitUntil(`${what} listening`, 10_000, async () => (await sh(cmd, [...pre, 'ss', '-Hltn', 'sport = :5201'])).includes('5201'));
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i] as number;
}
function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

async function measure(path: Path): Promise<Sample> {
  await ensureIperfServer(path);
  const [cmd, ...pre] = path.client as [string, ...string[]];
  const timeout = (SECONDS + 30) * 1000;
  const out = await sh(cmd, [...pre, 'iperf3', '-c', path.serverIp, '-p', '5201', '-t', String(SECONDS), '-O', '1', '-J'], timeout);
  const j = JSON.parse(out) as { end?: { sum_received?: { bits_per_second?: number }; sum_sent?: { retransmits?: number } }; error?: string };
  if (j.error || j.end?.sum_received?.bits_per_second === undefined) throw new Error(`iperf3 to ${path.serverIp}: ${j.error ?? 'no result'}`);
  const ping = await sh(cmd, [...pre, 'busybox', 'ping', '-c', String(PINGS), '-i', '0.01', '-W', '2', path.serverIp], timeout + PINGS * 50).catch((e: Error) => e.message);
  const rtts = [...ping.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1])).sort((a, b) => a - b);
  return {
    mbps: j.end.sum_received.bits_per_second / 1e6,
    retrans: j.end.sum_sent?.retransmits ?? 0,
    p50: quantile(rtts, 0.5),
    p99: quantile(rtts, 0.99),
    lost: PINGS - rtts.length,
  };
}

interface Variant {
  label: string;
  path: Path;
  samples: Sample[];
}

const f1 = (x: number) => (x >= 1000 ? x.toFixed(0) : x.toPrecision(3));
const pct = (x: number) => `${(100 * x).toFixed(1)} %`;

/** goal: the ratio to meet (undefined: the ratio is information, e.g. userspace ESP against the bare underlay). */
async function compare(title: string, goal: number | undefined, ours: Variant, ref: Variant, extra: Variant[] = []): Promise<void> {
  for (let r = 0; r < ROUNDS; r++) {
    for (const v of [ours, ref, ...extra]) {
      const s = await measure(v.path);
      v.samples.push(s);
      process.stdout.write(
        `  round ${r + 1} ${v.label.padEnd(44)} ${f1(s.mbps).padStart(6)} Mbit/s (${s.retrans} retr)  ping p50 ${s.p50.toFixed(3)} ms p99 ${s.p99.toFixed(3)} ms${s.lost ? ` lost ${s.lost}` : ''}\n`,
      );
    }
  }
  const m = (v: Variant, k: 'mbps' | 'p50' | 'p99') => median(v.samples.map((s) => s[k]));
  const tput = m(ours, 'mbps') / m(ref, 'mbps');
  console.log(`${title} — medians of ${ROUNDS} rounds (${goal === undefined ? 'no goal: information' : `goal ≥ ${pct(goal)} of the reference`})`);
  console.log(`  ${''.padEnd(44)} ${'iperf3 TCP'.padStart(14)} ${'ping p50'.padStart(10)} ${'ping p99'.padStart(10)}`);
  for (const v of [ours, ref, ...extra]) {
    console.log(`  ${v.label.padEnd(44)} ${`${f1(m(v, 'mbps'))} Mbit/s`.padStart(14)} ${`${m(v, 'p50').toFixed(3)} ms`.padStart(10)} ${`${m(v, 'p99').toFixed(3)} ms`.padStart(10)}`);
  }
  const p50 = m(ref, 'p50') / m(ours, 'p50');
  const p99 = m(ref, 'p99') / m(ours, 'p99');
  const ok = (x: number) => (goal === undefined ? 'information' : x >= goal ? 'meets goal' : 'BELOW goal');
  console.log(`  ${'ratio (throughput ours/ref, RTT ref/ours)'.padEnd(44)} ${pct(tput).padStart(14)} ${pct(p50).padStart(10)} ${pct(p99).padStart(10)}`);
  console.log(`  throughput ${ok(tput)}; RTT p50 ${ok(p50)}; RTT p99 ${ok(p99)}`);
  for (const x of extra) {
    const r = (k: 'p50' | 'p99') => pct(m(x, k) / m(ours, k)).padStart(10);
    console.log(`  ${`ratio to "${x.label}"`.padEnd(44)} ${pct(m(ours, 'mbps') / m(x, 'mbps')).padStart(14)} ${r('p50')} ${r('p99')}  (information)`);
  }
}

async function ipsecCheck(t: Topo): Promise<string> {
  const sas = await swanctl(t.hosts[0], '--list-sas');
  const children = (sas.match(/INSTALLED/g) ?? []).length;
  const mode = /INSTALLED, ([\w-]+)/.exec(sas)?.[1] ?? '?';
  const ts = [...sas.matchAll(/^\s+(local|remote)\s+([\d./]+)$/gm)].map((x) => `${x[1]} ${x[2]}`).join(', ');
  const bytes = /in\s+\w+,\s+(\d+) bytes/.exec(sas)?.[1] ?? '?';
  return `${children} CHILD_SA ${mode} (${ts}), ${bytes} bytes in`;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('run as root (network namespaces, charon)');
  for (const bin of [CHARON, '/usr/bin/iperf3', '/usr/sbin/swanctl']) if (!existsSync(bin)) throw new Error(`${bin} is missing: scripts/setup.sh installs it`);
  mkdirSync(DIR, { recursive: true });
  const load = (await sh('cat', ['/proc/loadavg'])).split(' ').slice(0, 3).join(' ');
  console.log(`drover network bench ${new Date().toISOString()}: ${ROUNDS} rounds, iperf3 ${SECONDS} s (1 s omitted), ${PINGS} pings at 10 ms; load average ${load}; netns ${PREFIX}-*`);
  console.log('parts 1–2: drover\'s data path built by hand in netns as src/agent/capabilities/network/README.md designs it (part 3, --lab: the agents\' own)');
  const t0 = Date.now();

  if (ONLY === 'all' || ONLY === 'ipsec') {
    const drv = await buildTopo('drover-ipsec', 'di');
    const ref = await buildTopo('netlab-ipsec', 'ni');
    console.log(`\n1. IPsec (kernel-libipsec, ESP-in-UDP aes128gcm16): container → container across hosts; built in ${Date.now() - t0} ms`);
    console.log(`  drover: VXLAN (MTU ${drv.mtu}) between tunnel addresses /32 on lo, one CHILD_SA per peer host; netlab: subnets as traffic selectors, container MTU ${ref.mtu}`);
    await compare(
      '1. IPsec',
      0.95,
      { label: 'drover VXLAN-in-IPsec (tunnel addresses)', path: nsPath(drv.hosts[0].ct, drv.hosts[1].ct, drv.hosts[1].ctIp), samples: [] },
      { label: 'reference: hand charon, subnet TS', path: nsPath(ref.hosts[0].ct, ref.hosts[1].ct, ref.hosts[1].ctIp), samples: [] },
    );
    console.log(`  check: drover ${await ipsecCheck(drv)}; reference ${await ipsecCheck(ref)}`);
  }
  if (ONLY === 'all' || ONLY === 'vxlan') {
    const t1 = Date.now();
    const vx = await buildTopo('drover-vxlan', 'dv');
    const rt = await buildTopo('routed', 'rt');
    console.log(`\n2. VXLAN mode (no encryption): container → container across hosts vs the underlay host → host; built in ${Date.now() - t1} ms`);
    console.log(`  drover: VXLAN (MTU ${vx.mtu}) between underlay addresses, routed per /32; underlay: veth + bridge, MTU ${UNDERLAY_MTU}`);
    await compare(
      '2. VXLAN',
      0.9,
      { label: 'drover VXLAN (underlay endpoints)', path: nsPath(vx.hosts[0].ct, vx.hosts[1].ct, vx.hosts[1].ctIp), samples: [] },
      { label: 'reference: underlay host → host', path: nsPath(vx.hosts[0].ns, vx.hosts[1].ns, vx.hosts[1].underlay), samples: [] },
      [{ label: 'container → container routed, no overlay', path: nsPath(rt.hosts[0].ct, rt.hosts[1].ct, rt.hosts[1].ctIp), samples: [] }],
    );
  }
  if (LAB) await labPart();
  else console.log('\n3. real drover lab: not run (pass --lab)');
  console.log(`total ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}

interface LabHostRec {
  id: string;
  hostname: string;
  state: string;
  network?: { mode?: string; backend?: string; mtu?: number; peers: { hostId: string; reachable: boolean; lastError?: string }[] };
}

interface LabContainerRec {
  name: string;
  state: string;
  primaryIpAddress?: string;
  externalId?: string;
}

type Overlay = 'ipsec' | 'vxlan';
const LAB_WAIT = 120_000;
const IDLE = ['sh', '-c', "trap 'exit 0' TERM; while :; do sleep 1; done"];
const secs = (ms: number | undefined) => (ms === undefined ? '—' : `${(ms / 1000).toFixed(2)} s`);

/** One idle busybox container pinned to a lab host by label (global: zero units until that host registers). */
function idleService(name: string, hostname: string, global = false): string {
  return `
${name}:
  image: drover-test/busybox:1
  command: ${JSON.stringify(IDLE)}
  labels:
    io.rancher.scheduler.affinity:host_label: hostname=${hostname}${global ? "\n    io.rancher.scheduler.global: 'true'" : ''}
`;
}

/**
 * Part 3: a real drover lab (test/lab: one dockerd + one agent per host netns, the control plane in the
 * root netns), first in IPsec mode (the environment's default), then with the overlay switched to VXLAN
 * through the API. Per mode: (a) iperf3 and ping container (h1) → container (h2) through the lab's
 * tunnels (run with nsenter in the containers' netns: the lab image is busybox only) against host → host
 * on the underlay; (b) --rounds times, a fresh host's agent started and the time to each milestone until
 * every pair passes traffic, the host removed again afterwards. The lab has 2 + rounds × modes hosts, so
 * each join is a host that never ran an agent.
 */
async function labPart(): Promise<void> {
  const { labUnavailable, startLab, waitFor } = await import('../test/lab/lab.js');
  const { startControlPlane, startAgent, stopDroverLab, waitForHost } = await import('../test/lab/drover.js');
  type Lab = Awaited<ReturnType<typeof startLab>>;
  type LabHost = Lab['hosts'][number];
  type ControlPlane = Awaited<ReturnType<typeof startControlPlane>>;
  type LabAgent = ReturnType<typeof startAgent>;
  const why = labUnavailable();
  if (why) {
    console.log(`\n3. real drover lab: not available: ${why}`);
    return;
  }
  const modes: Overlay[] = ONLY === 'ipsec' ? ['ipsec'] : ONLY === 'vxlan' ? ['vxlan'] : ['ipsec', 'vxlan'];
  let lab: Lab | undefined;
  let cp: ControlPlane | undefined;
  const agents: LabAgent[] = [];
  let failed = true;
  const t0 = Date.now();
  /** The lab's iperf3 servers go with the lab (lab.down stops them): forgotten in `servers` at the end. */
  const labPaths: Path[] = [];
  try {
    lab = await startLab({ hosts: 2 + ROUNDS * modes.length });
    const theLab = lab;
    cp = await startControlPlane(lab);
    const api = cp.api.bind(cp);
    const envId = (await api<{ data: { id: string }[] }>('GET', '/v1/environments')).body.data[0]?.id;
    if (!envId) throw new Error('the control plane has no environment');
    const setOverlay = async (overlay: Overlay) => {
      const put = await api('PUT', `/v1/environments/${envId}`, { network: { overlay } });
      if (put.status !== 200) throw new Error(`setting the overlay to ${overlay}: HTTP ${put.status} ${JSON.stringify(put.body)}`);
    };
    if (modes[0] === 'vxlan') await setOverlay('vxlan');
    const token = await cp.registrationToken();
    const [h1, h2] = lab.hosts as [LabHost, LabHost];
    const spareHosts = lab.hosts.slice(2);
    for (const h of [h1, h2]) agents.push(startAgent(lab, h, { serverUrl: cp.url, token, labels: { hostname: h.name } }));
    for (const h of [h1, h2]) await waitForHost(cp, h.name, LAB_WAIT);

    const hostsNow = async () => (await api<{ data: LabHostRec[] }>('GET', '/v1/hosts')).body.data.filter((h) => h.state !== 'removed');
    /** Every active host in `mode` with all n−1 peers reachable (GET /v1/hosts network.peers). */
    const meshOf = (list: LabHostRec[], n: number, mode: Overlay) =>
      list.length === n && list.every((h) => h.network?.mode === mode && h.network.peers.length === n - 1 && h.network.peers.every((p) => p.reachable));
    const meshUp = (n: number, mode: Overlay) =>
      waitFor(async () => (meshOf(await hostsNow(), n, mode) ? true : undefined), LAB_WAIT, `${n} hosts in ${mode} mode, every pair reachable (GET /v1/hosts)`);
    const running = (stackId: string, n: number) =>
      waitFor(
        async () => {
          const r = (await api<{ data: LabContainerRec[] }>('GET', `/v1/containers?stackId=${stackId}`)).body.data;
          return r.length === n && r.every((c) => c.state === 'running' && c.externalId && c.primaryIpAddress) ? r : undefined;
        },
        LAB_WAIT,
        `the ${n} container(s) of stack ${stackId} running`,
      );
    const postStack = async (name: string, compose: string): Promise<string> => {
      const st = await api<{ id: string }>('POST', '/v1/stacks', { name, dockerCompose: compose });
      if (st.status !== 201) throw new Error(`POST /v1/stacks ${name}: HTTP ${st.status} ${JSON.stringify(st.body)}`);
      return st.body.id;
    };
    const pidOf = async (host: LabHost, id: string) => ((await host.docker.getContainer(id).inspect()) as { State: { Pid: number } }).State.Pid;
    const inCt = (pid: number) => ['nsenter', '-t', String(pid), '-n'];
    /** Time (from `since`) of the first echo reply from `ip` in the netns of `pid`: ping every 100 ms, restarted if it exits. */
    const firstReply = async (pid: number, ip: string, since: number): Promise<number> => {
      const end = Date.now() + LAB_WAIT;
      while (Date.now() < end) {
        const child = theLab.spawnRoot([...inCt(pid), 'busybox', 'ping', '-i', '0.1', '-W', '1', ip], { what: `ping ${ip}` });
        let timer: NodeJS.Timeout | undefined;
        const at = await new Promise<number | undefined>((resolve) => {
          child.stdout?.on('data', (d: Buffer) => {
            if (d.toString().includes('bytes from')) resolve(Date.now() - since);
          });
          child.stderr?.resume();
          child.on('exit', () => resolve(undefined));
          timer = setTimeout(() => resolve(undefined), Math.max(0, end - Date.now()));
        });
        clearTimeout(timer); // else it holds the process for up to LAB_WAIT after the bench is done
        await theLab.stopProcess(child, 1000);
        if (at !== undefined) return at;
        await sleep(100);
      }
      throw new Error(`no echo reply from ${ip} within ${LAB_WAIT} ms`);
    };
    const pingOk = async (pid: number, ip: string) => (await sh('nsenter', [...inCt(pid).slice(1), 'busybox', 'ping', '-c', '1', '-W', '1', ip]).then(() => true, () => false)) || undefined;

    console.log(`\n3. real drover lab (test/lab, ${lab.hosts.length} hosts: h1, h2 + one fresh host per join round), up in ${Date.now() - t0} ms`);
    await meshUp(2, modes[0] as Overlay);
    // a on h1, b on h2: idle busybox containers from a stack, placed by host label.
    const benchStack = await postStack('bench', idleService('a', 'h1') + idleService('b', 'h2'));
    const recs = await running(benchStack, 2);
    const a = recs.find((c) => c.name === 'bench-a-1');
    const b = recs.find((c) => c.name === 'bench-b-1');
    if (!a?.externalId || !a.primaryIpAddress || !b?.externalId || !b.primaryIpAddress) throw new Error(`bench-a-1 / bench-b-1 not found in ${JSON.stringify(recs)}`);
    const aPid = await pidOf(h1, a.externalId);
    const bPid = await pidOf(h2, b.externalId);
    const old = [
      { host: h1, ip: a.primaryIpAddress },
      { host: h2, ip: b.primaryIpAddress },
    ];
    const labSpawn = (argv: string[], what: string) => theLab.spawnRoot(argv, { what, logFile: join(theLab.dir, `iperf3-${servers.size}.log`) });
    let joinIndex = 0;

    for (const [mi, mode] of modes.entries()) {
      if (mi > 0) {
        const ts = Date.now();
        await setOverlay(mode);
        await meshUp(2, mode);
        const tMesh = Date.now() - ts;
        await waitFor(() => pingOk(aPid, b.primaryIpAddress as string), LAB_WAIT, `a (h1) → b (h2) after switching to ${mode}`);
        console.log(`\n  overlay switched to ${mode} (PUT /v1/environments/${envId}): both hosts in ${mode} mode with the peer reachable after ${secs(tMesh)}, a → b pings after ${secs(Date.now() - ts)}`);
      } else {
        await waitFor(() => pingOk(aPid, b.primaryIpAddress as string), LAB_WAIT, 'a (h1) → b (h2)');
      }
      const info = (await hostsNow()).map((h) => `${h.hostname} ${h.network?.mode ?? '?'}/${h.network?.backend ?? '?'} MTU ${h.network?.mtu ?? '?'}`).join(', ');
      const ctMtu = /mtu (\d+)/.exec(await sh('nsenter', [...inCt(aPid).slice(1), 'ip', '-o', 'link', 'show', 'eth0']))?.[1] ?? '?';
      console.log(`\n3a. lab, ${mode}: container a (h1, ${a.primaryIpAddress}) → b (h2, ${b.primaryIpAddress}) vs h1 → h2 on the underlay (${h2.ip}); hosts: ${info}; a's eth0 MTU ${ctMtu}`);
      const ours: Path = { client: inCt(aPid), server: inCt(bPid), serverIp: b.primaryIpAddress, spawn: labSpawn };
      const underlay: Path = { ...nsPath(h1.netns, h2.netns, h2.ip), spawn: labSpawn };
      labPaths.push(ours, underlay);
      await compare(
        `3a. lab ${mode}`,
        // userspace ESP (kernel-libipsec) against the bare underlay has no goal; VXLAN's is part 2's
        mode === 'vxlan' ? 0.9 : undefined,
        { label: `drover lab ${mode}: container → container`, path: ours, samples: [] },
        { label: 'reference: underlay host → host', path: underlay, samples: [] },
      );

      // (b) a host joins: milestones from its agent's start.
      console.log(`\n3b. lab, ${mode}: a fresh host joins h1 + h2 (times from its agent's start)`);
      const rows: Record<string, number>[] = [];
      for (let r = 0; r < ROUNDS; r++) {
        const hk = spareHosts[joinIndex++] as LabHost;
        // A global service pinned to the new host: zero units now, placed by the control plane as it registers.
        const joinStack = await postStack(`join-${hk.name}`, idleService('p', hk.name, true));
        const ms: Record<string, number> = {};
        const since = Date.now();
        const agent = startAgent(lab, hk, { serverUrl: cp.url, token, labels: { hostname: hk.name } });
        agents.push(agent);
        const deadline = since + LAB_WAIT;
        const hostsSide = (async () => {
          for (;;) {
            const list = await hostsNow();
            if (ms.registered === undefined && list.some((h) => h.hostname === hk.name)) ms.registered = Date.now() - since;
            if (meshOf(list, 3, mode)) {
              ms.peers = Date.now() - since;
              return;
            }
            if (Date.now() > deadline) throw new Error(`${hk.name}: not every pair reachable after ${LAB_WAIT} ms: ${JSON.stringify(list.map((h) => [h.hostname, h.network?.peers]))}`);
            await sleep(100);
          }
        })();
        const trafficSide = (async () => {
          const [p] = await running(joinStack, 1);
          ms.container = Date.now() - since;
          const pid = await pidOf(hk, (p as LabContainerRec).externalId as string);
          await Promise.all(old.map(async (o) => (ms[`ping ${o.host.name}`] = await firstReply(pid, o.ip, since))));
        })();
        await Promise.all([hostsSide, trafficSide]);
        ms.all = Math.max(...Object.values(ms));
        rows.push(ms);
        console.log(
          `  round ${r + 1} ${hk.name}: registered ${secs(ms.registered)}, every host's peers reachable ${secs(ms.peers)}, its container running ${secs(ms.container)}, ping → h1 ${secs(ms['ping h1'])}, → h2 ${secs(ms['ping h2'])}; all pairs pass traffic ${secs(ms.all)}`,
        );
        // Remove it again, so that every round joins a 2-host cluster: agent stopped, host deleted,
        // its charon (which outlives the agent by design) stopped by PID.
        const tr = Date.now();
        await agent.stop();
        const rec = (await hostsNow()).find((h) => h.hostname === hk.name);
        if (rec) await api('DELETE', `/v1/hosts/${rec.id}`);
        await api('DELETE', `/v1/stacks/${joinStack}`);
        for (const pid of (await ip('netns', 'pids', hk.netns).catch(() => '')).split('\n').filter(Boolean)) {
          try {
            if (readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'charon') process.kill(Number(pid), 'SIGKILL');
          } catch {
            /* gone meanwhile */
          }
        }
        await meshUp(2, mode);
        console.log(`    ${hk.name} removed, h1 + h2 a 2-host mesh again after ${secs(Date.now() - tr)}`);
      }
      const med = (k: string) => median(rows.map((x) => x[k] as number));
      console.log(
        `3b. lab ${mode} — medians of ${ROUNDS} joins: registered ${secs(med('registered'))}, peers reachable ${secs(med('peers'))}, container running ${secs(med('container'))}, ping → h1 ${secs(med('ping h1'))}, → h2 ${secs(med('ping h2'))}; all pairs pass traffic ${secs(med('all'))}`,
      );
    }
    failed = false;
  } finally {
    // The lab's processes (agents, control plane, iperf3 servers, pings) by PID, its namespaces by name.
    for (const p of labPaths) servers.delete(`${p.server.join(' ')} ${p.serverIp}`);
    await stopDroverLab(lab, { cp, agents }, failed);
  }
}

async function teardown(): Promise<void> {
  stopping = true;
  for (const c of children) if (c.pid !== undefined && c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
  await sleep(300);
  for (const c of children) if (c.pid !== undefined && c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const ns of namespaces.reverse()) {
    // anything still running in our namespaces (by netns name, never by process name)
    const pids = (await ip('netns', 'pids', ns).catch(() => '')).split('\n').filter(Boolean).map(Number);
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    await ip('netns', 'del', ns).catch((e: Error) => process.stderr.write(`teardown: ${e.message}\n`));
  }
  rmSync(DIR, { recursive: true, force: true });
}

try {
  await main();
} catch (e) {
  process.exitCode = 1;
  console.error(`bench failed: ${(e as Error).message}`);
} finally {
  await teardown();
}
