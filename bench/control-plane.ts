// Control plane benchmark: start time and memory of `drover server`, import of a 1,000-service compose
// file, and delivery of one change to 20 watching agents. Each figure is printed beside a reference
// measured in the same run on the same machine:
//   start    vs. a bare Node HTTP server process reaching "listening"
//   import   vs. parsing the same compose text only (what any importer must at least do)
//   deliver  vs. 20 plain HTTP round trips to the same server (the network floor)
//
// Then linearity (in this process, so that the event loop of the server can be watched): scale N on one
// host for N = 250/500/1000, imports of 2,000 and 10,000 services, and the largest import allowed
// (20 services × scale 1000 = the 20,000-container environment limit), each with the event loop's
// longest block (perf_hooks monitorEventLoopDelay) and the slowest /v1/version answer during it.
//
//   node --import tsx bench/control-plane.ts [--services 1000] [--agents 20] [--only linear]
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent } from '../src/agent/agent.js';
import { silentLogger } from '../src/common/log.js';
import { parseCompose } from '../src/server/compose/index.js';
import { freePort } from '../test/helpers/ports.js';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { startServer } from '../src/server/server.js';
import { LIMITS } from '../src/model/limits.js';

const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const SERVICES = arg('services', 1000);
const AGENTS = arg('agents', 20);
const ROOT = new URL('..', import.meta.url).pathname;
const ADMIN = { accessKey: 'BENCHADMINKEY', secretKey: 'bench-admin-secret-0123456789' };
const auth = 'Basic ' + Buffer.from(`${ADMIN.accessKey}:${ADMIN.secretKey}`).toString('base64');


function memKb(pid: number): { rss: number; hwm: number } {
  const st = readFileSync(`/proc/${pid}/status`, 'utf8');
  const get = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(st)?.[1] ?? 0);
  return { rss: get('VmRSS'), hwm: get('VmHWM') };
}

async function waitHttp(url: string, deadlineMs = 30_000): Promise<void> {
  const end = Date.now() + deadlineMs;
  for (;;) {
    try {
      const r = await fetch(url);
      if (r.status < 500) return;
    } catch {
      // not yet
    }
    if (Date.now() > end) throw new Error(`${url} did not answer`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function timeProcessStart(args: string[], url: string, env: NodeJS.ProcessEnv = {}): Promise<{ ms: number; child: ChildProcess }> {
  const t0 = performance.now();
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, ...env } });
  await waitHttp(url);
  return { ms: performance.now() - t0, child };
}

async function api(url: string, method: string, path: string, body?: unknown): Promise<Record<string, unknown>> {
  const r = await fetch(url + path, {
    method,
    headers: { authorization: auth, ...(body ? { 'content-type': 'application/json' } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  const j = (await r.json()) as Record<string, unknown>;
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(j).slice(0, 300)}`);
  return j;
}

function composeText(n: number): string {
  let s = '';
  for (let i = 0; i < n; i++) {
    s += `svc${i}:\n  image: nginx:1.25\n  environment:\n    INDEX: "${i}"\n  labels:\n    tier: t${i % 10}\n`;
    if (i > 0) s += `  links:\n    - svc${i - 1}:prev\n`;
  }
  return s;
}

const fmt = (ms: number) => `${ms.toFixed(1)} ms`;
const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'drover-bench-'));
  dirs.push(d);
  return d;
};

async function main(): Promise<void> {
  const built = (() => {
    try {
      readFileSync(join(ROOT, 'dist/cli/main.js'));
      return true;
    } catch {
      return false;
    }
  })();
  const entry = built ? [join(ROOT, 'dist/cli/main.js')] : ['--import', 'tsx', join(ROOT, 'src/cli/main.ts')];
  console.log(`drover control-plane bench: ${SERVICES} services, ${AGENTS} agents, node ${process.version}, entry ${built ? 'dist (built)' : 'src via tsx (run npm run build for real figures)'}`);

  // Reference: a bare Node HTTP server process.
  const refPort = await freePort();
  const ref = await timeProcessStart(
    ['-e', `require('http').createServer((q,s)=>s.end('ok')).listen(${refPort},'127.0.0.1')`],
    `http://127.0.0.1:${refPort}/`,
  );
  const refMem = memKb(ref.child.pid as number);
  ref.child.kill();

  // drover server start.
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const srv = await timeProcessStart([...entry, 'server', '--data', tmp(), '--listen', `127.0.0.1:${port}`, '--log-level', 'warn'], `${url}/v1/version`, {
    DROVER_ADMIN_ACCESS_KEY: ADMIN.accessKey,
    DROVER_ADMIN_SECRET_KEY: ADMIN.secretKey,
  });
  const pid = srv.child.pid as number;
  const startMem = memKb(pid);
  console.log(`start:   ${fmt(srv.ms)} to answering (reference bare node http server: ${fmt(ref.ms)}, ×${(srv.ms / ref.ms).toFixed(2)}); RSS ${(startMem.rss / 1024).toFixed(1)} MiB (reference ${(refMem.rss / 1024).toFixed(1)} MiB)`);

  try {
    // Hosts: the 20 agents, registered for real.
    const tok = (await api(url, 'POST', '/v1/registrationtokens', {})) as { token: string };
    const agents: Agent[] = [];
    for (let i = 0; i < AGENTS; i++) {
      agents.push(
        new Agent({
          dataDir: tmp(),
          serverUrl: url,
          registrationToken: tok.token,
          hostname: `bench-${i}`,
          agentIp: `192.0.2.${10 + i}`,
          log: silentLogger(),
          watchTimeoutSec: 60,
        }),
      );
    }
    await Promise.all(agents.map((a) => a.start()));
    await new Promise((r) => setTimeout(r, 300));

    // Import: 1,000 services (one container each), vs. parsing only.
    const text = composeText(SERVICES);
    const p0 = performance.now();
    parseCompose({ dockerCompose: text });
    const parseMs = performance.now() - p0;
    const i0 = performance.now();
    const stack = (await api(url, 'POST', '/v1/stacks', { name: 'big', dockerCompose: text })) as { id: string };
    const importMs = performance.now() - i0;
    const afterImport = memKb(pid);
    console.log(`import:  ${fmt(importMs)} for ${SERVICES} services + ${SERVICES} containers + ${SERVICES - 1} links, one transaction (reference parse only: ${fmt(parseMs)}); RSS ${(afterImport.rss / 1024).toFixed(1)} MiB, peak ${(afterImport.hwm / 1024).toFixed(1)} MiB`);

    // Wait for all agents to hold the imported stack (first sync of a large change).
    const target = async (pred: (a: Agent) => boolean) => {
      const t0 = performance.now();
      while (!agents.every(pred)) await new Promise((r) => setImmediate(r));
      return performance.now() - t0;
    };
    const syncMs = await target((a) => (a.currentState()?.services.size ?? 0) >= SERVICES);
    console.log(`sync:    all ${AGENTS} agents hold the imported stack ${fmt(syncMs)} after the import returned`);

    // Deliver one change to 20 watching agents: 20 agent-credentialed long polls parked on the server
    // (exactly the agents' watch request), timed from the API call to the last response received.
    // The in-process Agent instances above share this process's one event loop, so their apply time
    // (validate, persist, render) is reported separately for one agent.
    const creds = agents.map((a) => JSON.parse(readFileSync(a.identityPath, 'utf8')) as { accessKey: string; secretKey: string });
    const svc = ((await api(url, 'GET', `/v1/services?stackId=${stack.id}&name=svc500`)) as { data: { id: string }[] }).data[0] as { id: string };
    const deliver: number[] = [];
    const apply: number[] = [];
    for (let k = 0; k < 5; k++) {
      const rev = Math.max(...agents.map((a) => a.currentState()?.revision ?? 0));
      const polls = creds.map((c) =>
        fetch(`${url}/v1/agent/watch?after=${rev}&timeout=60`, {
          headers: { authorization: 'Basic ' + Buffer.from(`${c.accessKey}:${c.secretKey}`).toString('base64') },
        }).then((r) => r.text()),
      );
      await new Promise((r) => setTimeout(r, 200));
      const applied = new Promise<number>((resolve) => {
        const off = agents[0]?.onState((st) => {
          if (st.services.get(svc.id)?.metadata.round === k) {
            off?.();
            resolve(performance.now());
          }
        });
      });
      const t0 = performance.now();
      await api(url, 'PUT', `/v1/services/${svc.id}`, { metadata: { round: k } });
      await Promise.all(polls);
      deliver.push(performance.now() - t0);
      apply.push((await applied) - t0);
      await target((a) => a.currentState()?.services.get(svc.id)?.metadata.round === k);
    }
    const r0 = performance.now();
    await Promise.all(Array.from({ length: AGENTS }, () => fetch(`${url}/v1/version`).then((r) => r.text())));
    const rtMs = performance.now() - r0;
    const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
    console.log(`deliver: one change to ${AGENTS} parked watches (API call → last watch response received): median ${fmt(med(deliver))}, max ${fmt(Math.max(...deliver))} over 5 changes (reference ${AGENTS} parallel plain round trips: ${fmt(rtMs)})`);
    console.log(`apply:   API call → one agent validated, persisted and holds the change: median ${fmt(med(apply))} (state of ${SERVICES} services + ${SERVICES} containers)`);
    const endMem = memKb(pid);
    console.log(`memory:  server RSS ${(endMem.rss / 1024).toFixed(1)} MiB, peak ${(endMem.hwm / 1024).toFixed(1)} MiB with ${SERVICES} services and ${AGENTS} agents watching`);
    await Promise.all(agents.map((a) => a.stop()));
  } finally {
    srv.child.kill('SIGTERM');
    await new Promise((r) => srv.child.once('exit', r));
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
}

/** Times one API call while watching the event loop and polling /v1/version every 5 ms. */
async function watched(
  url: string,
  call: () => Promise<unknown>,
): Promise<{ ms: number; loopMaxMs: number; versionMaxMs: number; versions: number; busyMs: number }> {
  const h = monitorEventLoopDelay({ resolution: 1 });
  let running = true;
  let versionMaxMs = 0;
  let versions = 0;
  const poll = (async () => {
    while (running) {
      const t0 = performance.now();
      await (await fetch(`${url}/v1/version`)).text();
      versionMaxMs = Math.max(versionMaxMs, performance.now() - t0);
      versions++;
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  h.enable();
  const elu0 = performance.eventLoopUtilization();
  const t0 = performance.now();
  await call();
  const ms = performance.now() - t0;
  const busyMs = performance.eventLoopUtilization(elu0).active;
  h.disable();
  running = false;
  await poll;
  return { ms, loopMaxMs: h.max / 1e6, versionMaxMs, versions, busyMs };
}

async function linearity(): Promise<void> {
  const srv = await startServer({
    dataDir: tmp(),
    host: '127.0.0.1',
    port: 0,
    log: silentLogger(),
    adminAccessKey: ADMIN.accessKey,
    adminSecretKey: ADMIN.secretKey,
  });
  const url = srv.url;
  try {
    const env = async (name: string, hosts: number) => {
      const e = (await api(url, 'POST', '/v1/environments', { name })) as { id: string };
      const tok = (await api(url, 'POST', '/v1/registrationtokens', { environmentId: e.id })) as { token: string };
      for (let i = 0; i < hosts; i++) {
        await api(url, 'POST', '/v1/agent/register', { token: tok.token, hostname: `${name}-h${i}`, agentIpAddress: `192.0.2.${10 + i}` });
      }
      return e.id;
    };
    const row = (what: string, r: Awaited<ReturnType<typeof watched>>, per: number, unit: string) =>
      `${what.padEnd(34)} ${fmt(r.ms).padStart(10)}  ${((r.ms * 1000) / per).toFixed(0).padStart(5)} µs/${unit}  main thread busy ${fmt(r.busyMs)}, event loop max delay ${fmt(r.loopMaxMs)}, /v1/version slowest ${fmt(r.versionMaxMs)} (${r.versions} answers)`;
    // Warm-up: starts the import worker and compiles the statements.
    const warm = await env('warm', 1);
    await api(url, 'POST', '/v1/stacks', { environmentId: warm, name: 'warm', dockerCompose: composeText(400) });

    console.log('linear:  scale N on one host (one service, one POST /v1/services … PUT scale)');
    const one = await env('one-host', 1);
    const stack = (await api(url, 'POST', '/v1/stacks', { environmentId: one, name: 'scale' })) as { id: string };
    const scaled: { n: number; ms: number }[] = [];
    for (const n of [250, 500, 1000]) {
      const r = await watched(url, () => api(url, 'POST', '/v1/services', { stackId: stack.id, name: `web${n}`, scale: n, launchConfig: { image: 'nginx' } }));
      scaled.push({ n, ms: r.ms });
      console.log(`  ${row(`scale ${n}`, r, n, 'container')}`);
    }
    const ratio = (xs: { n: number; ms: number }[]) =>
      xs.slice(1).map((x, i) => `×${(x.n / (xs[i] as { n: number }).n).toFixed(1)} size → ×${(x.ms / (xs[i] as { ms: number }).ms).toFixed(2)} time`).join(', ');
    console.log(`  ratios: ${ratio(scaled)} (linear: time ratio = size ratio)`);

    console.log('linear:  imports (services each linked to the previous, one container each, 20 hosts)');
    const imported: { n: number; ms: number }[] = [];
    for (const n of [2000, 10000]) {
      const e = await env(`import-${n}`, 20);
      const text = composeText(n);
      const r = await watched(url, () => api(url, 'POST', '/v1/stacks', { environmentId: e, name: `big${n}`, dockerCompose: text }));
      imported.push({ n, ms: r.ms });
      console.log(`  ${row(`import ${n} services`, r, n, 'service')}`);
    }
    console.log(`  ratios: ${ratio(imported)}`);
    // The largest import allowed: the environment's container limit in services of the largest scale.
    const e = await env('max', 20);
    const scale = LIMITS.maxScale;
    const services = Math.floor(LIMITS.maxContainersPerEnvironment / scale);
    let dc = '';
    let rc = '';
    for (let i = 0; i < services; i++) {
      dc += `web${i}:\n  image: nginx\n  labels:\n    io.rancher.scheduler.affinity:container_label_soft_ne: io.rancher.stack_service.name=$\${stack_name}/$\${service_name}\n`;
      rc += `web${i}:\n  scale: ${scale}\n`;
    }
    const max = await watched(url, () => api(url, 'POST', '/v1/stacks', { environmentId: e, name: 'max', dockerCompose: dc, rancherCompose: rc }));
    console.log(`  ${row(`max: ${services} services × scale ${scale}`, max, services * scale, 'container')}`);
  } finally {
    await srv.close();
  }
}

const only = process.argv.includes('--only') ? process.argv[process.argv.indexOf('--only') + 1] : undefined;
(only === 'linear' ? Promise.resolve() : main())
  .then(() => linearity())
  .then(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  })
  .catch((err) => {
    console.error(err);
    process.exit(1);
  });
