// Balancer benchmark (see bench/README.md, "Balancer"). Run: node --import tsx bench/balancer.ts
//
// The same rules twice in the same run, on the same HAProxy binary: rendered by drover (renderHaproxy) and
// put in force by drover's applier (master-worker, reloads through the master CLI), against a haproxy.cfg
// written by hand with the same routing (what an operator would write: no server slots, no X-Forwarded
// headers, HAProxy's default keep-alive to the servers) run in daemon mode and reloaded with plain
// `haproxy -D -f cfg -p pid -sf <oldpid>`. The rules: app.test → app, api.test + /v1 → api, *.static.test
// → static, anything else → app; each backend round-robin over the same 3 servers, which are one more
// HAProxy (`http-request return`, one thread) so that the servers cost little next to the balancer.
// The balancer runs on core BENCH_SERVER_CPU (0), the client and the servers on BENCH_CLIENT_CPU (1).
//
// Measured, alternating drover / by hand BENCH_ROUNDS (3) times, median:
// - keep-alive: wrk -t1 -c32 for BENCH_DURATION (5) s, Host api.test, path /v1/x: requests/s and p99;
// - new connection per request: the same with `Connection: close` (wrk reconnects after each response);
// - fixed rate: test/helpers/load-client.ts at BENCH_RATE (500) req/s, a new connection each, p50/p99;
// then reload-induced failures: the load client (new connection per request) while the config is changed
// BENCH_RELOADS (50) times (a path rule added/removed: a reload), every 200 ms — drover's applier reload vs
// plain -sf; failed requests ÷ reloads. Twice: at BENCH_RELOAD_RATE (1000) req/s with the fast servers, and
// provoked — at BENCH_PROVOKE_RATE (400) req/s with servers that hold each connection BENCH_SLOW_MS (5) ms
// first (a tcp listener with `tcp-request inspect-delay` in front of each) and the balancer's frontend at
// `maxconn` BENCH_RELOAD_MAXCONN (10): connections wait in the accept queue, as on a busy balancer.
// BENCH_ONLY=reloads runs only the reload part. BENCH_HAND_SERVER_CLOSE=1 adds drover's `option http-server-close` to the hand-written config (to see
// what that default costs). Everything started is stopped by PID in `finally`.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../src/common/log.js';
import { renderHaproxy, type BalancerRule } from '../src/agent/capabilities/balancer/render.js';
import { createHaproxyApplier, type HaproxyApplier } from '../src/agent/capabilities/balancer/apply.js';
import { freePort } from '../test/helpers/ports.js';
import { describeLoad, startLoad, type LoadResult } from '../test/helpers/load-client.js';
import { processAlive } from '../src/common/pid-lock.js';

const HAPROXY = process.env.BENCH_HAPROXY ?? '/usr/sbin/haproxy';
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const DURATION = Number(process.env.BENCH_DURATION ?? 5);
const RATE = Number(process.env.BENCH_RATE ?? 500);
const RELOAD_RATE = Number(process.env.BENCH_RELOAD_RATE ?? 1000);
const RELOADS = Number(process.env.BENCH_RELOADS ?? 50);
/** The provoked reload run: servers hold each connection this long, the balancer's frontend has this maxconn. */
const SLOW_MS = Number(process.env.BENCH_SLOW_MS ?? 5);
const RELOAD_MAXCONN = Number(process.env.BENCH_RELOAD_MAXCONN ?? 10);
const PROVOKE_RATE = Number(process.env.BENCH_PROVOKE_RATE ?? 400);
/** BENCH_ONLY=reloads: only the reload part. */
const ONLY = process.env.BENCH_ONLY ?? 'all';
const SERVER_CPU = process.env.BENCH_SERVER_CPU ?? '0';
const CLIENT_CPU = process.env.BENCH_CLIENT_CPU ?? '1';
const ID = randomBytes(3).toString('hex');
const DIR = join(tmpdir(), `drover-bench-balancer-${ID}`);
const HOST = 'api.test';
const PATH = '/v1/x';
const BODY = /^b[123]$/;
/** BENCH_HAND_SERVER_CLOSE=1: the hand-written config also gets drover's `option http-server-close`. */
const HAND_SERVER_CLOSE = process.env.BENCH_HAND_SERVER_CLOSE === '1';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const children: ChildProcess[] = [];
const daemonPids = new Set<number>();

function pin(pid: number, cpu: string): void {
  spawnSync('taskset', ['-a', '-cp', cpu, String(pid)], { stdio: 'ignore' });
}

// ---------------------------------------------------------------------------------------------------
// Configs

interface Ports {
  servers: number[];
  /** The same servers behind a tcp listener that holds each connection SLOW_MS first. */
  slow: number[];
  drover: number;
  droverHealth: number;
  hand: number;
}

function serversCfg(ports: number[], slow: number[]): string {
  const fe = ports.map((p, i) => `frontend b${i + 1}\n    bind 127.0.0.1:${p}\n    http-request return status 200 content-type text/plain string b${i + 1}\n`);
  // WAIT_END: true once the inspect delay has passed — every connection is held that long.
  fe.push(...slow.map((p, i) => `listen slow${i + 1}\n    mode tcp\n    bind 127.0.0.1:${p}\n    tcp-request inspect-delay ${SLOW_MS}ms\n    tcp-request content accept if WAIT_END\n    server b${i + 1} 127.0.0.1:${ports[i]}\n`));
  return `global\n    maxconn 4096\n    nbthread 1\ndefaults\n    mode http\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n${fe.join('')}`;
}

function droverRules(p: Ports, step?: number, servers = p.servers): BalancerRule[] {
  const targets = servers.map((port, i) => ({ name: `b${i + 1}`, ip: '127.0.0.1', port, local: true }));
  return [
    { sourcePort: p.drover, protocol: 'http', hostname: 'app.test', targets },
    { sourcePort: p.drover, protocol: 'http', hostname: 'api.test', path: '/v1', targets },
    { sourcePort: p.drover, protocol: 'http', hostname: '*.static.test', targets },
    ...(step !== undefined && step % 2 === 0 ? [{ sourcePort: p.drover, protocol: 'http' as const, path: `/step${step}`, targets }] : []),
    { sourcePort: p.drover, protocol: 'http', targets },
  ];
}

/** The same routing, written the way an operator would by hand. */
function handCfg(p: Ports, sock: string, step?: number, provoke = false): string {
  const servers = (provoke ? p.slow : p.servers).map((port, i) => `    server b${i + 1} 127.0.0.1:${port}`).join('\n');
  const extra = step !== undefined && step % 2 === 0;
  return `global
    maxconn 4096
    stats socket ${sock} mode 600 level admin
defaults
    mode http
    timeout connect 5s
    timeout client 50s
    timeout server 50s
${HAND_SERVER_CLOSE ? '    option http-server-close\n' : ''}frontend web
    bind 127.0.0.1:${p.hand}
${provoke ? `    maxconn ${RELOAD_MAXCONN}\n    backlog 4096\n` : ''}    acl is_app hdr(host) -i app.test
    acl is_api hdr(host) -i api.test
    acl is_static hdr_end(host) -i .static.test
    acl v1 path_beg /v1
${extra ? `    acl step path_beg /step${step}\n    use_backend step if step\n` : ''}    use_backend app if is_app
    use_backend api if is_api v1
    use_backend static if is_static
    default_backend app
backend app
    balance roundrobin
${servers}
backend api
    balance roundrobin
${servers}
backend static
    balance roundrobin
${servers}
${extra ? `backend step\n    balance roundrobin\n${servers}\n` : ''}`;
}

// ---------------------------------------------------------------------------------------------------
// The hand-managed HAProxy (daemon mode, -sf reloads)

const handDir = join(DIR, 'hand');
const handCfgPath = join(handDir, 'haproxy.cfg');
const handPidFile = join(handDir, 'haproxy.pid');

function handStart(text: string): void {
  writeFileSync(handCfgPath, text);
  const old = existsSync(handPidFile) ? readFileSync(handPidFile, 'utf8').trim().split('\n').filter(Boolean) : [];
  const r = spawnSync(HAPROXY, ['-D', '-f', handCfgPath, '-p', handPidFile, ...(old.length ? ['-sf', ...old] : [])], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`haproxy -D -f ${handCfgPath} failed: ${r.stderr}`);
  for (const l of readFileSync(handPidFile, 'utf8').split('\n')) {
    if (!l.trim()) continue;
    daemonPids.add(Number(l));
    pin(Number(l), SERVER_CPU);
  }
}

// ---------------------------------------------------------------------------------------------------
// Measurements

interface WrkResult {
  rps: number;
  p99Ms: number;
  errors: string;
}

function wrk(port: number, close: boolean): WrkResult {
  const args = ['-c', CLIENT_CPU, 'wrk', '-t1', '-c32', `-d${DURATION}s`, '--latency', '-H', `Host: ${HOST}`, ...(close ? ['-H', 'Connection: close'] : []), `http://127.0.0.1:${port}${PATH}`];
  const r = spawnSync('taskset', args, { encoding: 'utf8', timeout: (DURATION + 30) * 1000 });
  if (r.status !== 0) throw new Error(`wrk failed: ${r.stderr || r.stdout}`);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(r.stdout)?.[1]);
  const p99 = /\s99%\s+([\d.]+)(us|ms|s)\b/.exec(r.stdout);
  const unit = { us: 0.001, ms: 1, s: 1000 } as const;
  const p99Ms = p99 ? Number(p99[1]) * unit[p99[2] as keyof typeof unit] : NaN;
  const errors = [/Socket errors:[^\n]*/.exec(r.stdout)?.[0], /Non-2xx[^\n]*/.exec(r.stdout)?.[0]].filter(Boolean).join('; ');
  return { rps, p99Ms, errors };
}

async function withDroverReloads(applier: HaproxyApplier, p: Ports, healthPort: number, provoke: boolean): Promise<{ load: LoadResult; reloads: number }> {
  const render = (step?: number) =>
    renderHaproxy({
      name: 'bench',
      rules: droverRules(p, step, provoke ? p.slow : p.servers),
      ...(provoke ? { customConfig: `frontend fe_${p.drover}\n    maxconn ${RELOAD_MAXCONN}\n    backlog 4096\n` } : {}),
      statsSocket: applier.statsSocket,
      bindAddresses: ['127.0.0.1'],
      healthPort,
      previousSlots: applier.slots(),
    });
  await applier.apply(render());
  const r0 = applier.status().reloads;
  const load = startLoad({ port: p.drover, host: HOST, path: PATH, rate: provoke ? PROVOKE_RATE : RELOAD_RATE, expectBody: BODY });
  await sleep(300);
  for (let step = 0; step < RELOADS; step++) {
    const t0 = Date.now();
    await applier.apply(render(step));
    await sleep(Math.max(0, 200 - (Date.now() - t0)));
  }
  await sleep(300);
  return { load: await load.stop(), reloads: applier.status().reloads - r0 };
}

async function withHandReloads(p: Ports, sock: string, provoke: boolean): Promise<LoadResult> {
  handStart(handCfg(p, sock, undefined, provoke));
  await sleep(200);
  const load = startLoad({ port: p.hand, host: HOST, path: PATH, rate: provoke ? PROVOKE_RATE : RELOAD_RATE, expectBody: BODY });
  await sleep(300);
  for (let step = 0; step < RELOADS; step++) {
    const t0 = Date.now();
    handStart(handCfg(p, sock, step, provoke));
    await sleep(Math.max(0, 200 - (Date.now() - t0)));
  }
  await sleep(300);
  return load.stop();
}

const f1 = (n: number) => (Number.isFinite(n) ? n.toFixed(1) : 'n/a');
const f3 = (n: number) => (Number.isFinite(n) ? n.toFixed(3) : 'n/a');
const ratio = (a: number, b: number) => (Number.isFinite(a) && Number.isFinite(b) && b ? `${(a / b).toFixed(2)}×` : 'n/a');

async function main(): Promise<void> {
  for (const bin of [HAPROXY, '/usr/bin/wrk']) if (!existsSync(bin)) throw new Error(`${bin} is missing (apt-get install -y haproxy wrk)`);
  mkdirSync(handDir, { recursive: true });
  const p: Ports = { servers: [await freePort(), await freePort(), await freePort()], slow: [await freePort(), await freePort(), await freePort()], drover: await freePort(), droverHealth: await freePort(), hand: await freePort() };

  const applier = createHaproxyApplier({ log: silentLogger(), dir: join(DIR, 'drover'), haproxyBin: HAPROXY });
  try {
    const serversPath = join(DIR, 'servers.cfg');
    writeFileSync(serversPath, serversCfg(p.servers, p.slow));
    const servers = spawn('taskset', ['-c', CLIENT_CPU, HAPROXY, '-db', '-f', serversPath], { stdio: ['ignore', 'ignore', 'pipe'] });
    let serversErr = '';
    servers.stderr?.on('data', (d: Buffer) => (serversErr = (serversErr + d.toString()).slice(-2000)));
    children.push(servers);
    for (const port of [...p.servers, ...p.slow]) {
      for (let i = 0; ; i++) {
        const r = await startLoad({ port, rate: 100, durationMs: 10 }).done;
        if (r.ok) break;
        if (i > 50) throw new Error(`the servers' haproxy (${serversPath}) does not answer on port ${port}: ${describeLoad(r)}; its stderr: ${serversErr.trim()}`);
        await sleep(100);
      }
    }
    const render = (step?: number) => renderHaproxy({ name: 'bench', rules: droverRules(p, step), statsSocket: applier.statsSocket, bindAddresses: ['127.0.0.1'], healthPort: p.droverHealth, previousSlots: applier.slots() });
    await applier.apply(render());
    const master = applier.status().masterPid;
    if (master) pin(master, SERVER_CPU); // its workers (and those of later reloads) inherit the CPU
    // The worker started before the pin: pin every process of the master's tree.
    for (const pid of spawnSync('pgrep', ['-P', String(master)], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean)) pin(Number(pid), SERVER_CPU);
    const handSock = join(handDir, 'admin.sock');
    handStart(handCfg(p, handSock));
    // Both answer, with the same routing.
    for (const [name, port] of [['drover', p.drover], ['by hand', p.hand]] as const) {
      const r = await startLoad({ port, host: HOST, path: PATH, rate: 50, durationMs: 400, expectBody: BODY }).done;
      if (r.failed || !r.ok) throw new Error(`${name} balancer does not answer: ${describeLoad(r)} ${JSON.stringify(r.failures[0])}`);
    }

    console.log(`drover balancer bench: ${spawnSync(HAPROXY, ['-v'], { encoding: 'utf8' }).stdout.split('\n')[0]}; node ${process.version}`);
    console.log(`balancer on core ${SERVER_CPU}, client and 3 servers (one haproxy, http-request return) on core ${CLIENT_CPU}; ${ROUNDS}×${DURATION} s per case, alternating, median; Host ${HOST} path ${PATH}${HAND_SERVER_CLOSE ? '; by hand WITH option http-server-close' : ''}`);

    const runs: Record<string, { drover: number[]; hand: number[] }> = {};
    const push = (k: string, side: 'drover' | 'hand', v: number) => ((runs[k] ??= { drover: [], hand: [] })[side].push(v));
    const notes: string[] = [];
    for (let round = 0; round < (ONLY === 'reloads' ? 0 : ROUNDS); round++) {
      for (const close of [false, true]) {
        for (const side of ['drover', 'hand'] as const) {
          const w = wrk(side === 'drover' ? p.drover : p.hand, close);
          const mode = close ? 'new-conn' : 'keep-alive';
          push(`${mode} req/s`, side, w.rps);
          push(`${mode} p99 ms`, side, w.p99Ms);
          if (w.errors) notes.push(`${side} ${mode} round ${round + 1}: ${w.errors}`);
        }
      }
      for (const side of ['drover', 'hand'] as const) {
        const r = await startLoad({ port: side === 'drover' ? p.drover : p.hand, host: HOST, path: PATH, rate: RATE, durationMs: DURATION * 1000, expectBody: BODY }).done;
        push(`@${RATE}/s new-conn p50 ms`, side, r.p50Ms);
        push(`@${RATE}/s new-conn p99 ms`, side, r.p99Ms);
        if (r.failed || r.shed || r.achievedRate < RATE * 0.98) notes.push(`${side} fixed rate round ${round + 1}: ${describeLoad(r)}`);
      }
    }

    console.log('');
    if (ONLY !== 'reloads') console.log(`| case | drover | by hand | drover ÷ by hand |\n|---|---|---|---|`);
    for (const [k, v] of Object.entries(runs)) {
      const d = median(v.drover);
      const h = median(v.hand);
      const fmt = k.includes('req/s') ? (n: number) => n.toFixed(0) : k.includes('p50') ? f3 : f1;
      console.log(`| ${k} | ${fmt(d)} (${v.drover.map(fmt).join('/')}) | ${fmt(h)} (${v.hand.map(fmt).join('/')}) | ${ratio(d, h)} |`);
    }

    console.log('');
    console.log(`| ${RELOADS} reloads under load, new connection per request | requests | failed | failed per reload | ≥ 1 s (SYN retried) | p99 ms |`);
    console.log(`|---|---|---|---|---|---|`);
    const details: string[] = [];
    for (const provoke of [false, true]) {
      const ours = await withDroverReloads(applier, p, p.droverHealth, provoke);
      const hand = await withHandReloads(p, handSock, provoke);
      const what = provoke ? `${PROVOKE_RATE} req/s, servers held ${SLOW_MS} ms, frontend maxconn ${RELOAD_MAXCONN}` : `${RELOAD_RATE} req/s, fast servers, no limit`;
      console.log(`| drover applier (master CLI reload), ${what} | ${ours.load.sent} | ${ours.load.failed} | ${(ours.load.failed / Math.max(1, ours.reloads)).toFixed(2)} (${ours.reloads} reloads) | ${ours.load.slow} | ${f1(ours.load.p99Ms)} |`);
      console.log(`| by hand, haproxy -D -sf <oldpid>, ${what} | ${hand.sent} | ${hand.failed} | ${(hand.failed / RELOADS).toFixed(2)} | ${hand.slow} | ${f1(hand.p99Ms)} |`);
      details.push(`drover, ${what}: ${describeLoad(ours.load)}`, `by hand, ${what}: ${describeLoad(hand)}`);
    }
    console.log('');
    for (const d of details) console.log(d);
    for (const n of notes) console.log(`note: ${n}`);
    console.log(`load average now ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
  } finally {
    await applier.close();
    for (const pid of daemonPids) {
      const cmdline = (() => {
        try {
          return readFileSync(`/proc/${pid}/cmdline`, 'utf8');
        } catch {
          return '';
        }
      })();
      if (cmdline.includes(handCfgPath) && processAlive(pid)) process.kill(pid, 'SIGTERM');
    }
    for (const c of children) if (c.pid && c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
    for (let i = 0; i < 50 && [...daemonPids].some(processAlive); i++) await sleep(100);
    rmSync(DIR, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
