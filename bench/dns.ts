// DNS server benchmark (see bench/README.md). Run: node --import tsx bench/dns.ts
//
// Our server (bench/dns-server.ts, a child process) and a reference dnsmasq serving the same records
// run pinned to one core (taskset); dnsperf runs pinned to the other. A second dnsmasq is the upstream
// both recurse to. Environment: 10k containers in 1000 services (bench/dns-fixture.ts), `environment`
// scope, queries from the client container's address (dnsperf -a 127.0.0.2).
// Three query sets: local names (service names with 10 A records each, and container names), recursed
// names (1000 names of the upstream, cached after a warm-up pass) and NXDOMAIN under rancher.internal.
// For each set: max throughput (dnsperf, closed loop; ROUNDS alternating runs per server, median —
// the machine's speed drifts, alternating keeps the two servers under the same conditions), then
// latency at a fixed rate of half the lower of the two throughputs, so that neither is saturated
// (dnsperf -Q, per-query latencies from -v), p50 and p99.
// Our server runs compiled (tsc into a temporary directory), not under tsx: tsx's loader thread
// runs its own garbage collections later, on the pinned core, and shows up as latency spikes.
// Options (env): BENCH_DURATION (s per throughput run, 5), BENCH_ROUNDS (3), BENCH_SERVER_CPU (0),
// BENCH_CLIENT_CPU (1).
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { benchEnv, CLIENT_IP, RECURSED_NAMES } from './dns-fixture.js';
import { compileServer } from './dns-server-build.js';
import { freePort } from '../test/helpers/ports.js';

const run = promisify(execFile);
const DURATION = Number(process.env.BENCH_DURATION ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SERVER_CPU = process.env.BENCH_SERVER_CPU ?? '0';
const CLIENT_CPU = process.env.BENCH_CLIENT_CPU ?? '1';
const TARGET_RATIO = 0.62;
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK']).stdout.toString().trim()) || 100;
const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));


interface Ready {
  port: number;
  udp: string;
  stateMs: number;
  renderMs: number;
  heapMb: number;
  rssMb: number;
}

interface Perf {
  qps: number;
  lost: number;
  codes: string;
  /** Queries answered per CPU-second of the server process (robust to a busy machine). */
  perCpu: number;
}

/** utime + stime of a process, in seconds. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

interface Latency {
  p50: number;
  p99: number;
  n: number;
}

function need(cmd: string, pkg: string): void {
  if (spawnSync('sh', ['-c', `command -v ${cmd}`]).status !== 0) {
    console.error(`bench/dns.ts needs ${cmd}: apt-get install -y ${pkg}`);
    process.exit(2);
  }
}


function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

async function dnsperf(port: number, file: string, args: string[]): Promise<string> {
  const { stdout, stderr } = await run(
    'taskset',
    ['-c', CLIENT_CPU, 'dnsperf', '-s', '127.0.0.1', '-p', String(port), '-a', CLIENT_IP, '-d', file, ...args],
    { maxBuffer: 512 * 1024 * 1024 },
  );
  return stdout + stderr;
}

async function throughput(port: number, pid: number, file: string): Promise<Perf> {
  const cpu0 = cpuSeconds(pid);
  const out = await dnsperf(port, file, ['-l', String(DURATION), '-c', '8', '-q', '500']);
  const cpu = cpuSeconds(pid) - cpu0;
  const completed = Number(/Queries completed:\s+(\d+)/.exec(out)?.[1] ?? NaN);
  return {
    qps: Number(/Queries per second:\s+([\d.]+)/.exec(out)?.[1] ?? NaN),
    lost: Number(/Queries lost:\s+(\d+)/.exec(out)?.[1] ?? NaN),
    codes: (/Response codes:\s+(.*)/.exec(out)?.[1] ?? '').trim(),
    perCpu: completed / cpu,
  };
}

async function latency(port: number, file: string, rate: number): Promise<Latency> {
  const out = await dnsperf(port, file, ['-l', '5', '-c', '8', '-q', '2000', '-Q', String(rate), '-v']);
  const lat: number[] = [];
  for (const line of out.split('\n')) {
    if (!line.startsWith('> ')) continue;
    const v = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (Number.isFinite(v)) lat.push(v * 1000);
  }
  lat.sort((a, b) => a - b);
  return { p50: percentile(lat, 50), p99: percentile(lat, 99), n: lat.length };
}

function startDnsmasq(args: string[], cpu: string): ChildProcess {
  const p = spawn('taskset', ['-c', cpu, 'dnsmasq', '--keep-in-foreground', '--no-resolv', '--no-hosts', '--bind-interfaces', '--listen-address=127.0.0.1', '--user=root', ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  p.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  p.on('exit', (code) => {
    if (code) console.error(`dnsmasq ${args.join(' ')} exited (${code}): ${err.trim()}`);
  });
  return p;
}

async function waitAnswer(port: number, name: string): Promise<void> {
  const until = Date.now() + 30_000;
  for (;;) {
    const r = spawnSync('dig', ['@127.0.0.1', '-p', String(port), '-b', CLIENT_IP, '+short', '+time=1', '+tries=1', name]);
    if (r.status === 0 && r.stdout.toString().trim() !== '') return;
    if (Date.now() > until) throw new Error(`no answer for ${name} on port ${port}`);
    await new Promise((res) => setTimeout(res, 200));
  }
}

function digSet(port: number, name: string): string {
  const r = spawnSync('dig', ['@127.0.0.1', '-p', String(port), '-b', CLIENT_IP, '+short', name]);
  return r.stdout.toString().trim().split('\n').sort().join(',');
}

async function main(): Promise<void> {
  need('dnsperf', 'dnsperf');
  need('dnsmasq', 'dnsmasq');
  need('dig', 'bind9-dnsutils');
  need('taskset', 'util-linux');
  const dir = mkdtempSync(join(tmpdir(), 'drover-dns-bench-'));
  const children: ChildProcess[] = [];
  try {
    const { names } = benchEnv();
    // Reference records: the same names and addresses, as a hosts file.
    const hosts: string[] = ['169.254.169.250 rancher-metadata rancher-metadata.rancher.internal'];
    for (const s of names.services) for (const ip of s.ips) hosts.push(`${ip} ${s.fqdn}`);
    for (const c of names.containers) hosts.push(`${c.ip} ${c.fqdn}`);
    writeFileSync(join(dir, 'hosts.ref'), `${hosts.join('\n')}\n`);
    const upHosts = Array.from({ length: RECURSED_NAMES }, (_, i) => `192.0.${2 + (i >> 8)}.${i & 255} r${i}.example.test`);
    writeFileSync(join(dir, 'hosts.up'), `${upHosts.join('\n')}\n`);
    const local: string[] = [];
    for (let i = 0; i < names.services.length; i++) {
      local.push(`${names.services[i]!.fqdn} A`);
      local.push(`${names.containers[i * 10 + (i % 10)]!.fqdn} A`);
    }
    const files = {
      local: join(dir, 'q-local.txt'),
      recursed: join(dir, 'q-recursed.txt'),
      nxdomain: join(dir, 'q-nx.txt'),
    };
    writeFileSync(files.local, `${local.join('\n')}\n`);
    writeFileSync(files.recursed, `${Array.from({ length: RECURSED_NAMES }, (_, i) => `r${i}.example.test A`).join('\n')}\n`);
    writeFileSync(files.nxdomain, `${Array.from({ length: 2000 }, (_, i) => `nx${i}.s${i % 50}.rancher.internal A`).join('\n')}\n`);

    const upPort = await freePort();
    const refPort = await freePort();
    children.push(startDnsmasq([`--port=${upPort}`, `--addn-hosts=${join(dir, 'hosts.up')}`, '--local=/example.test/', '--local-ttl=3600', `--pid-file=${join(dir, 'up.pid')}`], CLIENT_CPU));
    children.push(
      startDnsmasq(
        [
          `--port=${refPort}`,
          `--addn-hosts=${join(dir, 'hosts.ref')}`,
          '--local=/rancher.internal/',
          '--local-ttl=1',
          '--cache-size=10000',
          `--server=127.0.0.1#${upPort}`,
          `--pid-file=${join(dir, 'ref.pid')}`,
        ],
        SERVER_CPU,
      ),
    );
    const entry = compileServer(dir);
    // Ours twice: with the batched UDP transport (what the agent uses) and with node's dgram socket (the
    // fallback when the addon is not built), measured in the same run.
    const startOurs = async (transport: 'batched' | 'dgram'): Promise<{ ready: Ready; pid: number }> => {
      const env = { ...process.env, DROVER_DNS_UDP: transport, DROVER_UDP_BATCH_ADDON: join(ROOT, 'native/udp-batch/build/Release/udp_batch.node') };
      const child = spawn('taskset', ['-c', SERVER_CPU, process.execPath, entry, '0', `127.0.0.1:${upPort}`], {
        stdio: ['ignore', 'pipe', 'inherit'],
        env,
      });
      children.push(child);
      const ready = await new Promise<Ready>((resolve, reject) => {
        let buf = '';
        child.stdout!.on('data', (d: Buffer) => {
          buf += d.toString();
          const line = buf.split('\n').find((l) => l.startsWith('{'));
          if (line) resolve(JSON.parse(line) as Ready);
        });
        child.on('exit', (code) => reject(new Error(`our server (${transport}) exited (${code})`)));
      });
      if (ready.udp !== transport) throw new Error(`our server runs UDP over ${ready.udp}, not ${transport}`);
      return { ready, pid: child.pid! };
    };
    const batched = await startOurs('batched');
    const dgram = await startOurs('dgram');
    const ready = batched.ready;
    const targets = [
      { name: 'dnsmasq', port: refPort, pid: children[1]!.pid! },
      { name: 'drover', port: ready.port, pid: batched.pid },
      { name: 'dgram', port: dgram.ready.port, pid: dgram.pid },
    ] as const;
    for (const t of targets) {
      await waitAnswer(t.port, 'r0.example.test');
      await waitAnswer(t.port, names.services[0]!.fqdn);
    }
    // Same answers from both (sanity), then warm-up: caches filled, JIT warm.
    const probe = names.services[7]!.fqdn;
    for (const t of targets.slice(1)) if (digSet(refPort, probe) !== digSet(t.port, probe)) throw new Error(`answers differ for ${probe} (${t.name})`);
    for (const t of targets) {
      await dnsperf(t.port, files.recursed, ['-n', '1']);
      await dnsperf(t.port, files.local, ['-l', '3', '-c', '8', '-q', '500']);
    }

    const cpuModel = /model name\s*:\s*(.*)/.exec(spawnSync('cat', ['/proc/cpuinfo']).stdout.toString())?.[1] ?? 'unknown CPU';
    console.log(`drover DNS bench: ${names.containers.length} containers, ${names.services.length} services, environment scope; node ${process.version}; ${cpuModel}`);
    console.log(`server on core ${SERVER_CPU}, dnsperf on core ${CLIENT_CPU}; ${ROUNDS}×${DURATION} s throughput runs per server and set (median); our render ${ready.renderMs} ms, heap ${ready.heapMb} MiB, RSS ${ready.rssMb} MiB`);
    const rows: string[] = [];
    const ratios: number[] = [];
    for (const set of ['local', 'recursed', 'nxdomain'] as const) {
      const runs: Record<string, Perf[]> = { dnsmasq: [], drover: [], dgram: [] };
      for (let round = 0; round < ROUNDS; round++) {
        for (const t of targets) runs[t.name]!.push(await throughput(t.port, t.pid, files[set]));
      }
      const perf: Record<string, Perf> = {};
      const perCpu: Record<string, number> = {};
      const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
      for (const t of targets) {
        const sorted = [...runs[t.name]!].sort((a, b) => a.qps - b.qps);
        perf[t.name] = sorted[Math.floor(sorted.length / 2)]!;
        perCpu[t.name] = median(runs[t.name]!.map((r) => r.perCpu));
      }
      const rate = Math.max(1000, Math.floor(Math.min(...targets.map((t) => perf[t.name]!.qps)) / 2));
      const lat: Record<string, Latency> = {};
      for (const t of targets) lat[t.name] = await latency(t.port, files[set], rate);
      const ratio = perf.drover!.qps / perf.dnsmasq!.qps;
      const cpuRatio = perCpu.drover! / perCpu.dnsmasq!;
      ratios.push(ratio);
      for (const t of targets) {
        const p = perf[t.name]!;
        const l = lat[t.name]!;
        const all = runs[t.name]!.map((r) => r.qps.toFixed(0)).join('/');
        rows.push(
          `${set.padEnd(9)} ${t.name.padEnd(8)} ${p.qps.toFixed(0).padStart(7)} q/s (runs ${all}), ${perCpu[t.name]!.toFixed(0)} q/CPU-s  ` +
            `@${rate} q/s: p50 ${l.p50.toFixed(3)} ms p99 ${l.p99.toFixed(3)} ms  [${p.codes}]`,
        );
      }
      rows.push(`${set.padEnd(9)} ratio    ${ratio.toFixed(2)}× dnsmasq q/s, ${cpuRatio.toFixed(2)}× dnsmasq q/CPU-s (target ≥ ${TARGET_RATIO})`);
      rows.push(
        `${set.padEnd(9)} (dgram)  ${(perf.dgram!.qps / perf.dnsmasq!.qps).toFixed(2)}× dnsmasq q/s, ${(perCpu.dgram! / perCpu.dnsmasq!).toFixed(2)}× q/CPU-s ` +
          `(node dgram transport, reference; batched is ${(perf.drover!.qps / perf.dgram!.qps).toFixed(2)}× it)`,
      );
    }
    console.log(rows.join('\n'));
    const worst = Math.min(...ratios);
    console.log(`${worst >= TARGET_RATIO ? 'OK' : 'BELOW TARGET'}: lowest q/s ratio ${worst.toFixed(2)}× dnsmasq; load average now ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
  } finally {
    for (const c of children) if (c.pid !== undefined && c.exitCode === null) c.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
