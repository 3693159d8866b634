// Metadata service benchmark (see bench/README.md). Run: node --import tsx bench/metadata.ts
//
// The server runs in a child process pinned to core 0 (taskset), the load on core 1:
//  1. max throughput of GET /latest/self/container (text, then JSON) with wrk, keep-alive;
//  2. latency at half that rate with an open-loop, fixed-rate node client (latency counted from each
//     request's scheduled time, so queueing is not hidden);
//  3. wake-up latency of N long-polling clients (raw sockets) after one change of the answers (counted from
//     the setAnswers call; the tree build time is reported separately).
// Options (env): BENCH_CONTAINERS (10000), BENCH_WAITERS (10000), BENCH_DURATION (seconds per run, 10),
// BENCH_SERVER_CPU (0), BENCH_CLIENT_CPU (1), BENCH_REPEAT (3: best of N runs per figure).
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer as createHttpServer, type ServerResponse } from 'node:http';
import { connect, createServer, type Socket } from 'node:net';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { silentLogger } from '../src/common/log.js';
import { MetadataServer } from '../src/metadata/server.js';
import { buildMetadataAnswers, updateMetadataAnswers } from '../src/metadata/tree.js';
import { applyChanges } from '../src/model/state.js';
import { largeState } from './metadata-state.js';

const SELF = fileURLToPath(import.meta.url);
const CONTAINERS = Number(process.env.BENCH_CONTAINERS ?? 10_000);
const WAITERS = Number(process.env.BENCH_WAITERS ?? 10_000);
const DURATION = Number(process.env.BENCH_DURATION ?? 10);
const SERVER_CPU = process.env.BENCH_SERVER_CPU ?? '0';
const CLIENT_CPU = process.env.BENCH_CLIENT_CPU ?? '1';
const PATH = '/latest/self/container';
/** Runs per throughput/latency figure; the best is reported (other tenants of the machine add noise). */
const REPEAT = Number(process.env.BENCH_REPEAT ?? 3);
/** `BENCH_FULL_REBUILD=1`: each change rebuilds the answers in full instead of updating them by the delta. */
const FULL_REBUILD = process.env.BENCH_FULL_REBUILD === '1';

const TARGET_RPS = 12_000;
const TARGET_HALF_RATE_P99_MS = 5;
const TARGET_WAKE_P99_MS = 100;

type Msg = { type: string } & Record<string, unknown>;

const now = (): number => performance.timeOrigin + performance.now();

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
}

// ---------------------------------------------------------------------------------------------- children

async function serverChild(): Promise<void> {
  const st = largeState(CONTAINERS, '127.0.0.1');
  let t = performance.now();
  let answers = buildMetadataAnswers(st, { hostId: 'h0' });
  const buildMs = performance.now() - t;
  const spread = process.env.BENCH_SPREAD_MS;
  // Every waiter comes from 127.0.0.1: the per-client limits are raised to the bench's own load.
  const limit = WAITERS + 1_000;
  const server = new MetadataServer({
    log: silentLogger(),
    answers,
    maxWaiters: limit,
    maxWaitersPerClient: limit,
    maxConnectionsPerClient: limit,
    ...(spread ? { wakeSpreadMs: Number(spread) } : {}),
    ...(process.env.BENCH_WAKE_CHUNK ? { wakeChunk: Number(process.env.BENCH_WAKE_CHUNK) } : {}),
  });
  const addr = await server.listen('127.0.0.1', 0);
  const send = (m: Msg): void => void process.send?.(m);
  // Event-loop delay of the server during a measurement: stalls of the server itself, as opposed to noise
  // from the machine or the load generator.
  const eld = monitorEventLoopDelay({ resolution: 1 });
  send({ type: 'ready', port: addr.port, buildMs, version: String(answers.latest?.default?.version) });
  process.on('message', (m: Msg) => {
    if (m.type === 'change') {
      t = performance.now();
      let next;
      if (FULL_REBUILD) {
        st.revision++;
        next = buildMetadataAnswers(st, { hostId: 'h0' });
      } else {
        // What an agent does on a change (src/agent/capabilities/metadata): the delta of one container
        // (another host's: every tree carries the new version), applied to the previous answers (O(change)).
        const c = st.containers.get('c1');
        if (!c) throw new Error('bench state has no container c1');
        const delta = applyChanges(st, st.revision + 1, [{ op: 'upsert', kind: 'container', id: c.id, data: { ...c, startCount: c.startCount + 1 } }]);
        next = updateMetadataAnswers(answers, st, delta, { hostId: 'h0' });
      }
      answers = next;
      const rebuildMs = performance.now() - t;
      const at = now();
      server.setAnswers(next);
      const setMs = now() - at;
      if (process.env.BENCH_DEBUG) console.error(`[server] setAnswers at ${performance.now().toFixed(0)} ms (process time), rebuild ${rebuildMs.toFixed(0)} ms, set ${setMs.toFixed(0)} ms`);
      send({ type: 'changed', at, rebuildMs, setMs, version: String(next.latest?.default?.version) });
      // Diagnostic: when the server has answered every waiter it had.
      const poll = (): void => {
        if (server.waiting === 0) {
          if (process.env.BENCH_DEBUG) console.error(`[server] drained at ${performance.now().toFixed(0)} ms`);
          send({ type: 'drained', ms: now() - at });
        }
        else setTimeout(poll, 1);
      };
      poll();
    } else if (m.type === 'eld-start') {
      eld.reset();
      eld.enable();
    } else if (m.type === 'eld-stop') {
      eld.disable();
      send({ type: 'eld', p99: eld.percentile(99) / 1e6, max: eld.max / 1e6 });
    } else if (m.type === 'waiting') {
      send({ type: 'waiting', n: server.waiting });
    } else if (m.type === 'exit') {
      void server.close().then(() => process.exit(0));
    }
  });
}

/** Opens `n` connections, each parked on a long poll of /latest/version; reports when each answer arrives. */
async function waitersChild(): Promise<void> {
  const port = Number(process.env.BENCH_PORT);
  const value = String(process.env.BENCH_VALUE);
  const n = WAITERS;
  const send = (m: Msg): void => void process.send?.(m);
  const times = new Float64Array(n);
  let answered = 0;
  let bad = 0;
  const sockets: Socket[] = [];
  const req = `GET /latest/version?wait=true&value=${encodeURIComponent(value)}&maxWait=120 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`;
  for (let start = 0; start < n; start += 500) {
    const batch: Promise<void>[] = [];
    for (let i = start; i < Math.min(n, start + 500); i++) {
      batch.push(
        new Promise<void>((resolve, reject) => {
          const s = connect(port, '127.0.0.1', () => {
            s.write(req);
            resolve();
          });
          s.once('error', reject);
          s.once('data', (d: Buffer) => {
            times[i] = now();
            if (!d.subarray(0, 12).toString().startsWith('HTTP/1.1 200')) bad++;
            if (++answered === n) send({ type: 'answered', times: [...times], bad });
          });
          sockets.push(s);
        }),
      );
    }
    await Promise.all(batch);
  }
  send({ type: 'connected' });
  process.on('message', (m: Msg) => {
    if (m.type === 'exit') {
      for (const s of sockets) s.destroy();
      process.exit(0);
    }
  });
}

/** Open-loop load at a fixed rate over keep-alive connections; latency from the scheduled send time. */
async function rateChild(): Promise<void> {
  const port = Number(process.env.BENCH_PORT);
  const rate = Number(process.env.BENCH_RATE);
  const conns = Number(process.env.BENCH_CONNS ?? 32);
  const accept = process.env.BENCH_ACCEPT ?? '*/*';
  const req = Buffer.from(`GET ${PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: ${accept}\r\n\r\n`);
  const latencies: number[] = [];
  let errors = 0;

  interface Conn {
    s: Socket;
    busy: boolean;
    scheduled: number;
    buf: Buffer;
  }
  const idle: Conn[] = [];
  const queue: number[] = [];
  let measureFrom = Infinity;
  let done = 0;
  const onResponse = (c: Conn): void => {
    done++;
    if (c.scheduled >= measureFrom) latencies.push(performance.now() - c.scheduled);
    c.busy = false;
    const next = queue.shift();
    if (next !== undefined) fire(c, next);
    else idle.push(c);
  };
  const fire = (c: Conn, scheduled: number): void => {
    c.busy = true;
    c.scheduled = scheduled;
    c.s.write(req);
  };
  await Promise.all(
    Array.from({ length: conns }, () => {
      return new Promise<void>((resolve, reject) => {
        const c: Conn = { s: connect(port, '127.0.0.1', () => resolve()), busy: false, scheduled: 0, buf: Buffer.alloc(0) };
        c.s.setNoDelay(true);
        c.s.once('error', reject);
        c.s.on('data', (d: Buffer) => {
          c.buf = c.buf.length ? Buffer.concat([c.buf, d]) : d;
          for (;;) {
            const end = c.buf.indexOf('\r\n\r\n');
            if (end < 0) return;
            const head = c.buf.subarray(0, end).toString('latin1');
            const len = Number(/content-length: *(\d+)/i.exec(head)?.[1] ?? 0);
            if (c.buf.length < end + 4 + len) return;
            if (!head.startsWith('HTTP/1.1 200')) errors++;
            c.buf = c.buf.subarray(end + 4 + len);
            onResponse(c);
          }
        });
        idle.push(c);
      });
    }),
  );
  // The first WARMUP_S seconds run at the same rate but are not counted (JIT of both sides, connection
  // buffers): a cold start would otherwise dominate the tail.
  const WARMUP_S = 2;
  const start = performance.now() + 50;
  measureFrom = start + WARMUP_S * 1000;
  const total = Math.floor(rate * (DURATION + WARMUP_S));
  let sent = 0;
  await new Promise<void>((resolve) => {
    const tick = (): void => {
      const t = performance.now();
      while (sent < total && start + (sent * 1000) / rate <= t) {
        const scheduled = start + (sent * 1000) / rate;
        sent++;
        const c = idle.pop();
        if (c) fire(c, scheduled);
        else queue.push(scheduled);
      }
      if (done >= total) return resolve();
      setImmediate(tick);
    };
    setImmediate(tick);
  });
  const elapsed = (performance.now() - measureFrom) / 1000;
  latencies.sort((a, b) => a - b);
  (process.send ? (m: Msg) => process.send?.(m) : (m: Msg) => console.log(JSON.stringify(m)))({
    type: 'done',
    achieved: latencies.length / elapsed,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    max: latencies[latencies.length - 1],
    errors,
  });
  process.exit(0);
}

// ---------------------------------------------------------------------------------------------- parent

const run = promisify(execFile);

async function hardNofile(): Promise<number> {
  const { stdout } = await run('bash', ['-c', 'ulimit -Hn']);
  const n = stdout.trim();
  return n === 'unlimited' ? 1_048_576 : Number(n);
}

function spawnChild(mode: string, cpu: string, nofile: number, env: Record<string, string> = {}): ChildProcess {
  // prlimit raises the open-file limit (soft = hard); taskset pins the process to one core.
  const nodeArgs = mode === 'server' ? (process.env.BENCH_SERVER_NODE_ARGS ?? '').split(' ').filter(Boolean) : [];
  return spawn(
    'prlimit',
    [`--nofile=${nofile}:${nofile}`, 'taskset', '-c', cpu, process.execPath, ...nodeArgs, '--import', 'tsx', SELF, mode],
    { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: { ...process.env, ...env } },
  );
}

function nextMessage(child: ChildProcess, type: string, timeoutMs = 180_000): Promise<Msg> {
  return new Promise((resolve, reject) => {
    const done = (): void => {
      clearTimeout(timer);
      child.off('message', on);
      child.off('exit', onExit);
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`timed out waiting for ${type}`));
    }, timeoutMs);
    const on = (m: Msg): void => {
      if (m.type !== type) return;
      done();
      resolve(m);
    };
    const onExit = (code: number | null): void => {
      done();
      reject(new Error(`child exited (${String(code)}) while waiting for ${type}`));
    };
    child.on('message', on);
    child.on('exit', onExit);
  });
}

interface WrkResult {
  rps: number;
  p50: number;
  p99: number;
}

function toMs(v: string, unit: string): number {
  const n = Number(v);
  return unit === 'us' ? n / 1000 : unit === 's' ? n * 1000 : unit === 'm' ? n * 60_000 : n;
}

async function wrk(port: number, accept: string | undefined, seconds: number): Promise<WrkResult> {
  const args = ['-c', CLIENT_CPU, 'wrk', '-t1', '-c50', `-d${seconds}s`, '--latency'];
  if (accept) args.push('-H', `Accept: ${accept}`);
  args.push(`http://127.0.0.1:${port}${PATH}`);
  const { stdout } = await run('taskset', args);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)?.[1]);
  const pct = (p: string): number => {
    const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s|m)\\s*$`, 'm').exec(stdout);
    return m ? toMs(m[1] as string, m[2] as string) : NaN;
  };
  if (/Non-2xx/.test(stdout)) throw new Error(`wrk saw errors:\n${stdout}`);
  return { rps, p50: pct('50'), p99: pct('99') };
}

async function fixedRate(port: number, nofile: number, rate: number, accept: string): Promise<Msg> {
  const child = spawnChild('rate', CLIENT_CPU, nofile, {
    BENCH_PORT: String(port),
    BENCH_RATE: String(rate),
    BENCH_ACCEPT: accept,
  });
  return nextMessage(child, 'done');
}

function cpuTimes(): { idle: number; total: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]?.trim().split(/\s+/).slice(1).map(Number) ?? [];
  return { idle: (f[3] ?? 0) + (f[4] ?? 0), total: f.reduce((a, b) => a + b, 0) };
}

/**
 * Waits (up to 3 minutes) until the machine is quiet — other processes' load skews every figure on a
 * 2-core machine; reports how idle it was.
 */
async function quiesce(): Promise<string> {
  let pct = 0;
  for (let i = 0; i < 90; i++) {
    const a = cpuTimes();
    await new Promise((r) => setTimeout(r, 2000));
    const b = cpuTimes();
    pct = (100 * (b.idle - a.idle)) / Math.max(1, b.total - a.total);
    if (pct >= 90) return `${pct.toFixed(0)}% idle`;
  }
  return `only ${pct.toFixed(0)}% idle: figures are skewed by other load`;
}

const f1 = (n: unknown): string => (typeof n === 'number' ? n.toFixed(2) : String(n));
const verdict = (ok: boolean): string => (ok ? 'OK' : 'MISSED');

async function main(): Promise<void> {
  const nofile = await hardNofile();
  if (nofile < WAITERS + 100) {
    console.error(`open-file limit ${nofile} is too low for ${WAITERS} waiters (raise the hard limit)`);
    process.exit(1);
  }
  console.log(
    `metadata bench: ${CONTAINERS} containers, server on CPU ${SERVER_CPU}, load on CPU ${CLIENT_CPU}, ` +
      `nofile ${nofile}, ${DURATION}s per run, best of ${REPEAT}, node ${process.version}`,
  );
  const server = spawnChild('server', SERVER_CPU, nofile);
  const ready = await nextMessage(server, 'ready');
  const port = Number(ready.port);
  console.log(`answers built in ${f1(ready.buildMs)} ms`);

  const results: string[] = [];
  const report = (line: string): void => {
    results.push(line);
    console.log(line);
  };
  const best = <T>(runs: T[], better: (a: T, b: T) => boolean): T =>
    runs.reduce((x, y) => (better(y, x) ? y : x), runs[0] as T);

  if (process.env.BENCH_ONLY_WAKE !== '1') {
    // Reference: a bare node http server (same core, same wrk) answering a canned body of the same size.
    const sample = await fetch(`http://127.0.0.1:${port}${PATH}`);
    const bare = spawnChild('bare', SERVER_CPU, nofile, { BENCH_BODY_SIZE: String((await sample.arrayBuffer()).byteLength) });
    const bareReady = await nextMessage(bare, 'ready');
    await wrk(Number(bareReady.port), undefined, 2);
    const refs: WrkResult[] = [];
    for (let i = 0; i < REPEAT; i++) {
      const quiet = await quiesce();
      refs.push(await wrk(Number(bareReady.port), undefined, DURATION));
      console.log(`  reference run ${i + 1}: ${refs[i]?.rps.toFixed(0)} req/s (${quiet})`);
    }
    const ref = best(refs, (x, y) => x.rps > y.rps);
    report(`(reference) bare node http server, canned body of the same size: ${ref.rps.toFixed(0)} req/s (p50 ${f1(ref.p50)} ms, p99 ${f1(ref.p99)} ms)`);

    for (const [label, accept] of [
      ['text', undefined],
      ['json', 'application/json'],
    ] as const) {
      await wrk(port, accept, 2); // warm-up
      const maxes: WrkResult[] = [];
      for (let i = 0; i < REPEAT; i++) {
        const quiet = await quiesce();
        maxes.push(await wrk(port, accept, DURATION));
        console.log(`  ${label} max run ${i + 1}: ${maxes[i]?.rps.toFixed(0)} req/s (${quiet})`);
      }
      const max = best(maxes, (x, y) => x.rps > y.rps);
      const rate = Math.floor(max.rps / 2);
      const halves: Msg[] = [];
      for (let i = 0; i < REPEAT; i++) {
        const quiet = await quiesce();
        server.send({ type: 'eld-start' });
        const h = await fixedRate(port, nofile, rate, accept ?? '*/*');
        server.send({ type: 'eld-stop' });
        const eld = await nextMessage(server, 'eld');
        h.eld = `server event-loop delay p99 ${f1(eld.p99)} ms, max ${f1(eld.max)} ms`;
        halves.push(h);
        console.log(`  ${label} half-rate run ${i + 1}: p99 ${f1(h.p99)} ms; ${String(h.eld)} (${quiet})`);
      }
      const half = best(halves, (x, y) => Number(x.p99) < Number(y.p99));
      const refHalves: Msg[] = [];
      for (let i = 0; i < REPEAT; i++) {
        const quiet = await quiesce();
        refHalves.push(await fixedRate(Number(bareReady.port), nofile, rate, '*/*'));
        console.log(`  reference at ${rate} req/s run ${i + 1}: p99 ${f1(refHalves[i]?.p99)} ms (${quiet})`);
      }
      const refHalf = best(refHalves, (x, y) => Number(x.p99) < Number(y.p99));
      report(
        `${PATH} ${label}: max ${max.rps.toFixed(0)} req/s (wrk -t1 -c50: p50 ${f1(max.p50)} ms, p99 ${f1(max.p99)} ms) ` +
          `[target >= ${TARGET_RPS}: ${verdict(max.rps >= TARGET_RPS)}]`,
      );
      report(
        `${PATH} ${label}: at ${rate} req/s (half): achieved ${f1(half.achieved)} req/s, p50 ${f1(half.p50)} ms, ` +
          `p99 ${f1(half.p99)} ms, max ${f1(half.max)} ms, errors ${String(half.errors)}; ${String(half.eld)} ` +
          `[target p99 < ${TARGET_HALF_RATE_P99_MS} ms: ${verdict(Number(half.p99) < TARGET_HALF_RATE_P99_MS)}] ` +
          `(reference bare server at the same rate: p50 ${f1(refHalf.p50)} ms, p99 ${f1(refHalf.p99)} ms)`,
      );
    }
    bare.kill();
  }

  // Wake-ups of the metadata server (one run: the change is applied once to the parked clients), after a
  // warm-up round of up to 1,000 waiters so that the wake path is compiled, as in a server that has been
  // answering requests (the throughput runs above do not go through it).
  const warm = await wakeRun(server, port, String(ready.version), nofile, Math.min(1000, WAITERS));
  console.log(`  wake-up run (${await quiesce()})`);
  const wake = await wakeRun(server, port, String(warm.changed.version), nofile);
  const lat = wake.latencies;
  report(
    `wake-up of ${WAITERS} long polls after one change: p50 ${f1(percentile(lat, 50))} ms, p99 ${f1(percentile(lat, 99))} ms, ` +
      `max ${f1(lat[lat.length - 1])} ms, non-200 ${wake.bad} (${FULL_REBUILD ? 'full rebuild' : 'update by a 1-container delta'} of the answers before it: ${f1(wake.changed.rebuildMs)} ms; ` +
      `setAnswers ${f1(wake.changed.setMs)} ms; server done writing after ${f1(wake.drainedMs)} ms) ` +
      `[target p99 < ${TARGET_WAKE_P99_MS} ms: ${verdict(percentile(lat, 99) < TARGET_WAKE_P99_MS)}]`,
  );
  server.send({ type: 'exit' });

  // Context: the same wake-up answered by bare node http (no metadata logic), and by a bare TCP server
  // writing a canned response to every socket (no HTTP stack): what one core of this machine can do.
  for (const [kind, label] of [
    ['http', `(reference) bare node http answering ${WAITERS} held requests at once`],
    ['tcp', `(floor) raw TCP write of a canned response to ${WAITERS} sockets`],
  ] as const) {
    const floor = spawnChild('floor', SERVER_CPU, nofile, { BENCH_FLOOR: kind });
    const floorReady = await nextMessage(floor, 'ready');
    await wakeRun(floor, Number(floorReady.port), 'x', nofile, Math.min(1000, WAITERS));
    console.log(`  ${kind} reference run (${await quiesce()})`);
    const fw = await wakeRun(floor, Number(floorReady.port), 'x', nofile);
    report(
      `${label}: p50 ${f1(percentile(fw.latencies, 50))} ms, p99 ${f1(percentile(fw.latencies, 99))} ms ` +
        `(write loop ${f1(fw.drainedMs)} ms)`,
    );
    floor.send({ type: 'exit' });
  }

  // The machine's floor without Node at all: the same wake-up from a C server (bench/floor/tcp-wake-floor.c),
  // when a C compiler is present.
  const cFloor = await cWakeFloor(nofile);
  if (cFloor) {
    report(
      `(floor) the same from a C server, no Node: p50 ${f1(cFloor.p50)} ms, p99 ${f1(cFloor.p99)} ms (write loop ${f1(cFloor.writeLoop)} ms)`,
    );
  }

  console.log('\nsummary');
  for (const r of results) console.log(`  ${r}`);
}

async function wakeRun(
  server: ChildProcess,
  port: number,
  value: string,
  nofile: number,
  n = WAITERS,
): Promise<{ latencies: number[]; bad: number; changed: Msg; drainedMs: number }> {
  const waiters = spawnChild('waiters', CLIENT_CPU, nofile, { BENCH_PORT: String(port), BENCH_VALUE: value, BENCH_WAITERS: String(n) });
  await nextMessage(waiters, 'connected');
  for (;;) {
    server.send({ type: 'waiting' });
    const w = await nextMessage(server, 'waiting');
    if (Number(w.n) >= n) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  await new Promise((r) => setTimeout(r, 500));
  const answeredP = nextMessage(waiters, 'answered', 60_000);
  const drainedP = nextMessage(server, 'drained', 60_000);
  server.send({ type: 'change' });
  const changed = await nextMessage(server, 'changed');
  const answered = await answeredP;
  const drained = await drainedP;
  waiters.send({ type: 'exit' });
  const at = Number(changed.at);
  return {
    latencies: (answered.times as number[]).map((t) => t - at).sort((a, b) => a - b),
    bad: Number(answered.bad),
    changed,
    drainedMs: Number(drained.ms),
  };
}

/** Compiles and runs bench/floor/tcp-wake-floor.c (undefined when there is no C compiler). */
async function cWakeFloor(nofile: number): Promise<{ p50: number; p99: number; writeLoop: number } | undefined> {
  const cc = ['cc', 'gcc'].find((c) => spawnSync('sh', ['-c', `command -v ${c}`]).status === 0);
  if (!cc) {
    console.log('  (no C compiler: the C floor is skipped)');
    return undefined;
  }
  const dir = mkdtempSync(join(tmpdir(), 'drover-wake-floor-'));
  try {
    const bin = join(dir, 'tcp-wake-floor');
    const src = fileURLToPath(new URL('./floor/tcp-wake-floor.c', import.meta.url));
    const built = spawnSync(cc, ['-O2', '-o', bin, src], { encoding: 'utf8' });
    if (built.status !== 0) throw new Error(`${cc} failed: ${built.stderr}`);
    console.log(`  C floor run (${await quiesce()})`);
    const r = spawnSync('prlimit', [`--nofile=${nofile}:${nofile}`, bin, String(WAITERS), SERVER_CPU, CLIENT_CPU], { encoding: 'utf8', timeout: 120_000 });
    if (r.status !== 0) throw new Error(`C floor failed: ${r.stderr}`);
    return JSON.parse(r.stdout) as { p50: number; p99: number; writeLoop: number };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A bare node http server answering every request with a canned body (throughput reference). */
async function bareChild(): Promise<void> {
  const body = Buffer.alloc(Number(process.env.BENCH_BODY_SIZE ?? 300), 'a');
  const headers = ['ETag', '"abcdefghijklmnopqrstuv"', 'Content-Type', 'text/plain; charset=utf-8', 'Content-Length', String(body.length)];
  const server = createHttpServer((_req, res) => {
    res.writeHead(200, headers);
    res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  if (process.send) process.send({ type: 'ready', port });
  else console.log(`bare server on port ${port}`);
}

/**
 * Wake-up references. `BENCH_FLOOR=tcp`: a bare TCP server that, on `change`, writes a canned HTTP response
 * to every connection that sent a request (no HTTP stack at all). `BENCH_FLOOR=http`: a bare node http
 * server holding every request and answering them all on `change` (node's HTTP stack, nothing else).
 */
async function floorChild(): Promise<void> {
  const body = '"2-0000000000000000"';
  const headers = ['ETag', '"abcdefghijklmnopqrstuv"', 'Content-Type', 'text/plain; charset=utf-8', 'Content-Length', String(body.length)];
  const response = Buffer.from(
    `HTTP/1.1 200 OK\r\nETag: "abcdefghijklmnopqrstuv"\r\nContent-Type: text/plain; charset=utf-8\r\n` +
      `Content-Length: ${body.length}\r\nDate: ${new Date().toUTCString()}\r\nConnection: keep-alive\r\n\r\n${body}`,
  );
  const sockets: Socket[] = [];
  const held: ServerResponse[] = [];
  const http = process.env.BENCH_FLOOR === 'http';
  const server = http
    ? createHttpServer((_req, res) => void held.push(res))
    : createServer((s) => {
        s.once('data', () => sockets.push(s));
        s.on('error', () => undefined);
      });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const send = (m: Msg): void => void process.send?.(m);
  send({ type: 'ready', port: (server.address() as { port: number }).port });
  process.on('message', (m: Msg) => {
    if (m.type === 'waiting') send({ type: 'waiting', n: http ? held.length : sockets.length });
    else if (m.type === 'change') {
      const at = now();
      if (http) {
        for (const res of held) {
          res.writeHead(200, headers);
          res.end(body);
        }
      } else {
        for (const s of sockets) s.write(response);
      }
      held.length = 0;
      sockets.length = 0;
      const ms = now() - at;
      send({ type: 'changed', at });
      send({ type: 'drained', ms });
    } else if (m.type === 'exit') process.exit(0);
  });
}

const mode = process.argv[2];
const entry =
  mode === 'server'
    ? serverChild
    : mode === 'waiters'
      ? waitersChild
      : mode === 'rate'
        ? rateChild
        : mode === 'floor'
          ? floorChild
          : mode === 'bare'
            ? bareChild
            : main;
entry().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
