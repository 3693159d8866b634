// DNS latency for valid clients while a hostile one floods the TCP transport (see bench/README.md).
// Run: node --import tsx bench/dns-hostile.ts
//
// Our server (bench/dns-server.ts, compiled with tsc like bench/dns.ts does, batched UDP) runs pinned to
// core 0 over the bench environment (10k containers). This process (the measuring client) and the
// attacker (this file with `attack <port>`, a child process) are pinned to core 1. Two phases in the
// same run, same server: quiet, then under attack. Per phase:
// - UDP: open loop at BENCH_RATE q/s (2000) for BENCH_DURATION s (4), a service name with 10 A records,
//   from the client container's address; p50/p99 of the answered, and the lost (no answer in 1 s);
// - TCP, one connection: one query at a time (closed loop) for BENCH_DURATION s; p50/p99;
// - TCP, a new connection per query (connect + query + answer), every 20 ms; p50/p99 and failures.
// The attacker, at full speed: 4 connections writing CPU-bomb frames (a header claiming 0xFFFF records
// per section, a 64 KiB message of 5,000 chained compression pointers, 64 KiB of garbage) as fast as the
// server reads them (reading and discarding what comes back), and 8 pipeliners writing queries for a
// 10-record name and never reading (reconnecting when the server closes them).
// Server RSS and CPU are read from /proc. Options (env): BENCH_DURATION, BENCH_RATE, BENCH_SERVER_CPU (0), BENCH_CLIENT_CPU (1).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildQuery, encodeQuestion, TYPE } from '../src/dns/wire.js';
import { benchEnv, CLIENT_IP } from './dns-fixture.js';
import { compileServer } from './dns-server-build.js';
import { bombMessages, frame } from '../test/robustness/dns-tools.js';

const DURATION = Number(process.env.BENCH_DURATION ?? 4);
const RATE = Number(process.env.BENCH_RATE ?? 2000);
const SERVER_CPU = process.env.BENCH_SERVER_CPU ?? '0';
const CLIENT_CPU = process.env.BENCH_CLIENT_CPU ?? '1';
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK']).stdout.toString().trim()) || 100;
const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));


// ---------------------------------------------------------------------------------------------------
// The attacker (child process).

function bombFrames(): Buffer {
  const { header, chain, garbage } = bombMessages();
  return Buffer.concat([...Array.from({ length: 200 }, () => frame(header)), frame(chain), frame(garbage)]);
}

function attack(port: number, bigName: string): void {
  const bombs = bombFrames();
  const pipeline = Buffer.concat(Array.from({ length: 5000 }, (_, i) => frame(buildQuery(i, encodeQuestion(bigName, TYPE.A), 0))));
  const stats = { bombBytes: 0, bombFrames: 0, pipelineBytes: 0, reconnects: 0 };
  const framesPerChunk = 202;
  const bomber = (): void => {
    const s = net.connect({ port, host: '127.0.0.1' });
    s.on('error', () => undefined);
    s.on('data', () => undefined); // reads and discards the FORMERR/SERVFAIL replies
    const pump = (): void => {
      while (!s.destroyed && s.write(bombs)) {
        stats.bombBytes += bombs.length;
        stats.bombFrames += framesPerChunk;
      }
      if (!s.destroyed) {
        stats.bombBytes += bombs.length;
        stats.bombFrames += framesPerChunk;
      }
    };
    s.on('connect', pump);
    s.on('drain', pump);
    s.on('close', () => {
      stats.reconnects++;
      setTimeout(bomber, 10);
    });
  };
  const pipeliner = (): void => {
    const s = net.connect({ port, host: '127.0.0.1' });
    s.on('error', () => undefined);
    s.pause(); // never reads
    const pump = (): void => {
      while (!s.destroyed && s.write(pipeline)) stats.pipelineBytes += pipeline.length;
    };
    s.on('connect', pump);
    s.on('drain', pump);
    s.on('close', () => {
      stats.reconnects++;
      setTimeout(pipeliner, 10);
    });
  };
  for (let i = 0; i < 4; i++) bomber();
  for (let i = 0; i < 8; i++) pipeliner();
  setInterval(() => console.log(JSON.stringify(stats)), 1000);
}

// ---------------------------------------------------------------------------------------------------
// The measuring client.

interface Figures {
  p50: number;
  p99: number;
  n: number;
  lost: number;
}

function figures(lat: number[], lost: number): Figures {
  lat.sort((a, b) => a - b);
  const pct = (p: number): number => (lat.length ? lat[Math.min(lat.length - 1, Math.ceil((p / 100) * lat.length) - 1)]! : NaN);
  return { p50: pct(50), p99: pct(99), n: lat.length, lost };
}

async function udpLatency(port: number, name: string): Promise<Figures> {
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, CLIENT_IP, () => r()));
  const sent = new Map<number, number>();
  const lat: number[] = [];
  sock.on('message', (m) => {
    const id = m.readUInt16BE(0);
    const t = sent.get(id);
    if (t === undefined) return;
    sent.delete(id);
    lat.push(performance.now() - t);
  });
  let id = 0;
  let lost = 0;
  const perTick = RATE / 1000;
  let owed = 0;
  const t0 = performance.now();
  let last = t0;
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const now = performance.now();
      owed += (now - last) * perTick;
      last = now;
      for (; owed >= 1; owed--) {
        id = (id + 1) & 0xffff;
        if (sent.has(id)) lost++;
        sent.set(id, performance.now());
        sock.send(buildQuery(id, encodeQuestion(name, TYPE.A), 1232), port, '127.0.0.1');
      }
      for (const [k, t] of sent) {
        if (now - t < 1000) break;
        sent.delete(k);
        lost++;
      }
      if (now - t0 > DURATION * 1000) {
        clearInterval(timer);
        resolve();
      }
    }, 1);
  });
  await new Promise((r) => setTimeout(r, 1000));
  lost += sent.size;
  sock.close();
  return figures(lat, lost);
}

/** One query on socket s (length-prefixed), resolved with the answer's latency. */
function tcpAsk(s: net.Socket, msg: Buffer): Promise<number> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => finish(new Error('timeout')), 2000);
    const onData = (c: Buffer): void => {
      buf = Buffer.concat([buf, c]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) finish();
    };
    const onClose = (): void => finish(new Error('closed'));
    const finish = (err?: Error): void => {
      clearTimeout(timer);
      s.off('data', onData);
      s.off('close', onClose);
      if (err) reject(err);
      else resolve(performance.now() - t0);
    };
    s.on('data', onData);
    s.on('close', onClose);
    s.write(frame(msg));
  });
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', localAddress: CLIENT_IP });
    s.setNoDelay(true);
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

async function tcpLatency(port: number, name: string): Promise<Figures> {
  const lat: number[] = [];
  let lost = 0;
  const end = performance.now() + DURATION * 1000;
  let s = await connect(port);
  s.on('error', () => undefined);
  for (let id = 0; performance.now() < end; id++) {
    try {
      lat.push(await tcpAsk(s, buildQuery(id & 0xffff, encodeQuestion(name, TYPE.A), 0)));
    } catch {
      lost++;
      s.destroy();
      s = await connect(port);
      s.on('error', () => undefined);
    }
  }
  s.destroy();
  return figures(lat, lost);
}

async function freshTcpLatency(port: number, name: string): Promise<Figures> {
  const lat: number[] = [];
  let lost = 0;
  const end = performance.now() + DURATION * 1000;
  for (let id = 0; performance.now() < end; id++) {
    const t0 = performance.now();
    let s: net.Socket | undefined;
    try {
      s = await connect(port);
      s.on('error', () => undefined);
      await tcpAsk(s, buildQuery(id & 0xffff, encodeQuestion(name, TYPE.A), 0));
      lat.push(performance.now() - t0);
    } catch {
      lost++;
    } finally {
      s?.destroy();
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return figures(lat, lost);
}


function procStat(pid: number): { cpu: number; rssMb: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  return { cpu: (Number(f[11]) + Number(f[12])) / CLK_TCK, rssMb: Number(rss) / 1024 };
}

const fmt = (f: Figures): string => `p50 ${f.p50.toFixed(3)} ms  p99 ${f.p99.toFixed(3)} ms  (${f.n} answered, ${f.lost} lost)`;

async function main(): Promise<void> {
  spawnSync('taskset', ['-pc', CLIENT_CPU, String(process.pid)], { stdio: 'ignore' });
  const dir = mkdtempSync(join(tmpdir(), 'drover-dns-hostile-'));
  const children: ChildProcess[] = [];
  try {
    const { names } = benchEnv();
    const name = names.services[0]!.fqdn; // 10 A records
    const entry = compileServer(dir);
    const server = spawn('taskset', ['-c', SERVER_CPU, process.execPath, entry, '0', ''], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, DROVER_DNS_UDP: 'batched', DROVER_UDP_BATCH_ADDON: join(ROOT, 'native/udp-batch/build/Release/udp_batch.node') },
    });
    children.push(server);
    const ready = await new Promise<{ port: number; udp: string; rssMb: number }>((resolve, reject) => {
      let buf = '';
      server.stdout!.on('data', (d: Buffer) => {
        buf += d.toString();
        const line = buf.split('\n').find((l) => l.startsWith('{'));
        if (line) resolve(JSON.parse(line) as { port: number; udp: string; rssMb: number });
      });
      server.on('exit', (code) => reject(new Error(`server exited (${code})`)));
    });
    const port = ready.port;
    const pid = server.pid!;
    await udpLatency(port, name); // warm-up
    const phase = async (): Promise<{ udp: Figures; tcp: Figures; fresh: Figures; cpu: number; rssMb: number; secs: number }> => {
      const a = procStat(pid);
      const t0 = performance.now();
      const udp = await udpLatency(port, name);
      const tcp = await tcpLatency(port, name);
      const fresh = await freshTcpLatency(port, name);
      const b = procStat(pid);
      return { udp, tcp, fresh, cpu: b.cpu - a.cpu, rssMb: b.rssMb, secs: (performance.now() - t0) / 1000 };
    };
    const quiet = await phase();
    const attacker = spawn('taskset', ['-c', CLIENT_CPU, process.execPath, '--import', 'tsx', fileURLToPath(import.meta.url), 'attack', String(port), name], {
      stdio: ['ignore', 'pipe', 'inherit'],
      cwd: ROOT,
    });
    children.push(attacker);
    let lastStats = { bombBytes: 0, bombFrames: 0, pipelineBytes: 0, reconnects: 0 };
    attacker.stdout!.on('data', (d: Buffer) => {
      for (const l of d.toString().split('\n')) {
        if (!l.startsWith('{')) continue;
        lastStats = JSON.parse(l) as typeof lastStats;
      }
    });
    await new Promise((r) => setTimeout(r, 2000)); // the attack up to speed
    const s0 = lastStats;
    const tA = performance.now();
    const attacked = await phase();
    const attackSecs = (performance.now() - tA) / 1000;
    const s1 = lastStats;
    const peak = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    console.log(`drover DNS hostile-client bench: ${names.containers.length} containers; node ${process.version}; server (batched UDP) on core ${SERVER_CPU}, client and attacker on core ${CLIENT_CPU}`);
    console.log(`phase          quiet                                                 under attack`);
    console.log(`UDP @${RATE}/s  ${fmt(quiet.udp).padEnd(54)}${fmt(attacked.udp)}`);
    console.log(`TCP 1 conn     ${fmt(quiet.tcp).padEnd(54)}${fmt(attacked.tcp)}`);
    console.log(`TCP new conn   ${fmt(quiet.fresh).padEnd(54)}${fmt(attacked.fresh)}`);
    console.log(`ratios (attack ÷ quiet): UDP p50 ${(attacked.udp.p50 / quiet.udp.p50).toFixed(2)}× p99 ${(attacked.udp.p99 / quiet.udp.p99).toFixed(2)}×; ` +
      `TCP p50 ${(attacked.tcp.p50 / quiet.tcp.p50).toFixed(2)}× p99 ${(attacked.tcp.p99 / quiet.tcp.p99).toFixed(2)}×; ` +
      `new-conn p50 ${(attacked.fresh.p50 / quiet.fresh.p50).toFixed(2)}× p99 ${(attacked.fresh.p99 / quiet.fresh.p99).toFixed(2)}×`);
    console.log(
      `attacker during the measured phase: ${Math.round((s1.bombFrames - s0.bombFrames) / attackSecs)} bomb frames/s ` +
        `(${((s1.bombBytes - s0.bombBytes) / attackSecs / 1048576).toFixed(1)} MiB/s read by the server), ` +
        `${((s1.pipelineBytes - s0.pipelineBytes) / attackSecs / 1024).toFixed(0)} KiB/s of pipelined queries taken, ${s1.reconnects} reconnects in all`,
    );
    console.log(
      `server: CPU ${((quiet.cpu / quiet.secs) * 100).toFixed(0)}% quiet, ${((attacked.cpu / attacked.secs) * 100).toFixed(0)}% under attack; ` +
        `RSS ${ready.rssMb} MiB at start, ${quiet.rssMb.toFixed(0)} after quiet, ${attacked.rssMb.toFixed(0)} under attack, peak ${(Number(peak) / 1024).toFixed(0)} MiB`,
    );
  } finally {
    for (const c of children) c.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === 'attack') attack(Number(process.argv[3]), process.argv[4] ?? '');
else await main();
