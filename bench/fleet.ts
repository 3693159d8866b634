// Fleet benchmark: a control plane and 20 agents, each its own process (`drover server`, `drover agent`
// from dist/), at 1,000, 5,000 and 10,000 containers. What it measures, each beside a reference taken in
// the same run:
//   memory    server and agent RSS at each size (reference: a bare Node process)
//   propagate one API change → every agent serving it: a DNS answer and a metadata read from a container
//             on each of the 20 hosts reflect it; p50/p99 over 20 agents × the changes (goal p99 < 1 s);
//             reference: the same 20 × 2 reads of an unchanged answer, one round trip each
//   apply     each agent process's CPU time (from /proc) to apply a change of 1 vs 100 containers at the
//             largest size, beside the same window with no change
//   burst     DNS latency from containers on every host during a burst of API changes, beside the same
//             load with no change
//
// The agents run without a container runtime (no Docker socket): the bench reports their containers as
// running through each agent's own credentials (POST /v1/agent/report), as a runtime would. The
// environment's subnet is 127.42.0.0/16, so that every container address is a loopback address this
// process can send from: DNS and metadata see each query come from the container it stands for, and
// answer with that container's view (DNS scope `linked`, metadata `self`). No root needed.
//
//   npm run build && node --import tsx bench/fleet.ts [--agents 20] [--sizes 1000,5000,10000] [--scale 50] [--changes 10]
import { spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../test/helpers/ports.js';

const argOf = (name: string, def: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? (process.argv[i + 1] ?? def) : def;
};
const AGENTS = Number(argOf('agents', '20'));
const SIZES = argOf('sizes', '1000,5000,10000').split(',').map(Number);
const SCALE = Number(argOf('scale', '50'));
const CHANGES = Number(argOf('changes', '10'));
const BURST = 40;
const ROOT = new URL('..', import.meta.url).pathname;
const ENTRY = join(ROOT, 'dist/cli/main.js');
const ADMIN = { accessKey: 'BENCHADMINKEY', secretKey: 'bench-admin-secret-0123456789' };
const basic = (a: string, s: string) => 'Basic ' + Buffer.from(`${a}:${s}`).toString('base64');
const ADMIN_AUTH = basic(ADMIN.accessKey, ADMIN.secretKey);
const SUBNET = '127.42.0.0/16';
/** CPU window per change: the status publisher's 250 ms and the delivery fit well inside it. */
const APPLY_WINDOW_MS = 1500;

// ---- small helpers ------------------------------------------------------------------------------

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const fmt = (ms: number) => `${ms.toFixed(ms < 10 ? 2 : 1)} ms`;
const mib = (kb: number) => `${(kb / 1024).toFixed(1)} MiB`;

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? NaN;
}

function rssKb(pid: number): number {
  const st = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/^VmRSS:\s+(\d+)/m.exec(st)?.[1] ?? 0);
}

/** User + system CPU time of a process (ms), from /proc/<pid>/stat (clock ticks of 10 ms). */
function cpuMs(pid: number): number {
  const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}

async function api<T = Record<string, unknown>>(url: string, method: string, path: string, body?: unknown, auth = ADMIN_AUTH): Promise<T> {
  const r = await fetch(url + path, {
    method,
    headers: { authorization: auth, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${text.slice(0, 300)}`);
  return (text ? JSON.parse(text) : {}) as T;
}

/** GET over HTTP/1.1 from a given source address (the container the request stands for). */
function getFrom(localAddress: string, port: number, path: string, timeoutMs = 65_000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, localAddress, agent: false, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path} from ${localAddress}: timed out`)));
    req.on('error', reject);
  });
}

// ---- a minimal DNS client (A queries from a container's address) --------------------------------

function encodeQuery(id: number, name: string): Buffer {
  const labels = name.split('.').filter(Boolean);
  // Question, then an EDNS OPT record offering 4096 bytes: a service of 50 answers in ~850 bytes.
  const q = Buffer.alloc(12 + labels.reduce((n, l) => n + l.length + 1, 1) + 4 + 11);
  q.writeUInt16BE(id, 0);
  q.writeUInt16BE(0x0100, 2); // RD
  q.writeUInt16BE(1, 4); // QDCOUNT
  q.writeUInt16BE(1, 10); // ARCOUNT
  let o = 12;
  for (const l of labels) {
    q[o++] = l.length;
    o += q.write(l, o, 'ascii');
  }
  q[o++] = 0;
  q.writeUInt16BE(1, o); // A
  q.writeUInt16BE(1, o + 2); // IN
  o += 4;
  q[o] = 0; // root owner name
  q.writeUInt16BE(41, o + 1); // OPT
  q.writeUInt16BE(4096, o + 3); // UDP payload size; TTL (ext. rcode, version, flags) and RDLEN stay 0
  return q;
}

function skipName(b: Buffer, o: number): number {
  for (;;) {
    const len = b[o] ?? 0;
    if (len === 0) return o + 1;
    if ((len & 0xc0) === 0xc0) return o + 2;
    o += len + 1;
  }
}

/** The A addresses of a response, sorted; null for a response that is not NOERROR. */
function decodeA(b: Buffer): { id: number; addrs: string[] | null } {
  const id = b.readUInt16BE(0);
  // Not NOERROR, or truncated (TC): not a full answer.
  if ((b.readUInt16BE(2) & 0x20f) !== 0) return { id, addrs: null };
  const qd = b.readUInt16BE(4);
  const an = b.readUInt16BE(6);
  let o = 12;
  for (let i = 0; i < qd; i++) o = skipName(b, o) + 4;
  const out: string[] = [];
  for (let i = 0; i < an; i++) {
    o = skipName(b, o);
    const type = b.readUInt16BE(o);
    const rdlen = b.readUInt16BE(o + 8);
    if (type === 1 && rdlen === 4) out.push(`${b[o + 10]}.${b[o + 11]}.${b[o + 12]}.${b[o + 13]}`);
    o += 10 + rdlen;
  }
  return { id, addrs: out.sort() };
}

/** A UDP socket bound to a container's address: sends queries to one agent's DNS, matches replies by id. */
class DnsProbe {
  private sock = dgram.createSocket('udp4');
  private next = 1;
  private pending = new Map<number, { t0: number; resolve: (r: { ms: number; addrs: string[] | null }) => void; timer: NodeJS.Timeout }>();

  private constructor(private readonly port: number) {
    this.sock.on('message', (m) => {
      const r = decodeA(m);
      const p = this.pending.get(r.id);
      if (!p) return;
      this.pending.delete(r.id);
      clearTimeout(p.timer);
      p.resolve({ ms: performance.now() - p.t0, addrs: r.addrs });
    });
  }

  static async open(address: string, port: number): Promise<DnsProbe> {
    const p = new DnsProbe(port);
    await new Promise<void>((resolve, reject) => {
      p.sock.once('error', reject);
      p.sock.bind(0, address, () => resolve());
    });
    return p;
  }

  /** One query; a lost one counts as 1 s (reported, never silently dropped). */
  query(name: string): Promise<{ ms: number; addrs: string[] | null }> {
    const id = this.next;
    this.next = (this.next % 65535) + 1;
    return new Promise((resolve) => {
      const t0 = performance.now();
      const timer = setTimeout(() => {
        this.pending.delete(id);
        resolve({ ms: 1000, addrs: null });
      }, 1000);
      this.pending.set(id, { t0, resolve, timer });
      this.sock.send(encodeQuery(id, name), this.port, '127.0.0.1');
    });
  }

  close(): void {
    for (const p of this.pending.values()) clearTimeout(p.timer);
    this.sock.close();
  }
}

// ---- the fleet ----------------------------------------------------------------------------------

interface AgentProc {
  i: number;
  child: ChildProcess;
  data: string;
  dnsPort: number;
  mdPort: number;
  hostId: string;
  auth: string;
}

const dirs: string[] = [];
const children: ChildProcess[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'drover-fleet-'));
  dirs.push(d);
  return d;
};

function start(args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
  const { DOCKER_HOST: _ignored, ...base } = process.env;
  const child = spawn(process.execPath, [ENTRY, ...args], { stdio: ['ignore', 'ignore', 'inherit'], env: { ...base, ...env } });
  children.push(child);
  return child;
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, deadlineMs = 120_000, everyMs = 20): Promise<T> {
  const end = Date.now() + deadlineMs;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch {
      // not yet
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}

interface Ctr {
  id: string;
  hostId: string;
  serviceId: string | null;
  primaryIpAddress: string | null;
  state: string;
}

async function main(): Promise<void> {
  try {
    readFileSync(ENTRY);
  } catch {
    throw new Error('run `npm run build` first: the fleet runs dist/cli/main.js');
  }
  console.log(`drover fleet bench: ${AGENTS} agent processes, sizes ${SIZES.join('/')} containers (services of ${SCALE}), node ${process.version}`);

  // Reference process: a bare Node process's RSS.
  const bare = spawn(process.execPath, ['-e', 'setInterval(()=>{},1000)'], { stdio: 'ignore' });
  children.push(bare);
  await sleep(300);
  const bareRss = rssKb(bare.pid as number);
  bare.kill();

  // Control plane.
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const server = start(['server', '--data', tmp(), '--listen', `127.0.0.1:${port}`, '--log-level', 'warn'], {
    DROVER_ADMIN_ACCESS_KEY: ADMIN.accessKey,
    DROVER_ADMIN_SECRET_KEY: ADMIN.secretKey,
  });
  await until('the server', async () => ((await fetch(`${url}/v1/version`)).ok ? true : undefined));
  const env = await api<{ id: string }>(url, 'POST', '/v1/environments', { name: 'fleet', network: { subnet: SUBNET, dnsScope: 'linked' } });
  const tok = await api<{ token: string }>(url, 'POST', '/v1/registrationtokens', { environmentId: env.id });

  // Agents: each its own process, DNS and metadata on their own loopback ports, no runtime, no network.
  const agents: AgentProc[] = [];
  for (let i = 0; i < AGENTS; i++) {
    const data = tmp();
    const dnsPort = await freePort();
    const mdPort = await freePort();
    const child = start([
      'agent', '--server', url, '--token', tok.token, '--data', data, '--hostname', `fleet-${i}`,
      '--agent-ip', `192.0.2.${10 + i}`, '--dns-listen', `127.0.0.1:${dnsPort}`, '--metadata-listen', `127.0.0.1:${mdPort}`,
      '--metrics-listen', '', '--network', 'off', '--log-level', 'warn',
    ]);
    agents.push({ i, child, data, dnsPort, mdPort, hostId: '', auth: '' });
  }
  for (const a of agents) {
    const id = await until(`agent ${a.i} registered`, () => Promise.resolve(JSON.parse(readFileSync(join(a.data, 'agent', 'agent.json'), 'utf8')) as { hostId: string; accessKey: string; secretKey: string }));
    a.hostId = id.hostId;
    a.auth = basic(id.accessKey, id.secretKey);
  }
  const byHost = new Map(agents.map((a) => [a.hostId, a]));
  console.log(`fleet:   server pid ${server.pid}, ${AGENTS} agents registered`);

  // The probe: a global service (one container on every host) whose link `target` the changes move; and
  // the bulk: services of SCALE containers, each linked to the previous one.
  const probeStack = await api<{ id: string }>(url, 'POST', '/v1/stacks', {
    environmentId: env.id,
    name: 'probe',
    dockerCompose: 'probe:\n  image: busybox\n  labels:\n    io.rancher.scheduler.global: "true"\n',
  });
  let total = 0;
  let bulkServices: { id: string; name: string; linkKey: string }[] = [];

  const containersOf = async (q: string) => (await api<{ data: Ctr[] }>(url, 'GET', `/v1/containers?${q}`)).data;
  const report = async (cs: Ctr[], state: string) => {
    const per = new Map<string, Ctr[]>();
    for (const c of cs) {
      const list = per.get(c.hostId);
      if (list) list.push(c);
      else per.set(c.hostId, [c]);
    }
    await Promise.all([...per].map(([h, list]) => api(url, 'POST', '/v1/agent/report', { containers: list.map((c) => ({ id: c.id, state })) }, byHost.get(h)!.auth)));
  };
  const revision = async () => (await api<{ revision: number }>(url, 'GET', `/v1/environments/${env.id}`)).revision;
  const probes = new Map<string, string>(); // hostId → the probe container's address
  const agentRevision = async (a: AgentProc) => {
    const r = await getFrom(probes.get(a.hostId) ?? '127.0.0.1', a.mdPort, '/latest/version');
    return Number(r.body.split('-')[0]);
  };
  /** Waits until the server's revision is stable and every agent serves it. */
  const settled = async (what: string) => {
    const t0 = performance.now();
    let rev = -1;
    for (;;) {
      const now = await revision();
      if (now === rev) break;
      rev = now;
      await until(`${what}: every agent at revision ${rev}`, async () => ((await Promise.all(agents.map(agentRevision))).every((r) => r >= rev) ? true : undefined), 300_000, 50);
      await sleep(400); // the status publisher's window: a report may still be on its way into a revision
    }
    return { rev, ms: performance.now() - t0 - 400 };
  };

  {
    const pcs = await containersOf(`stackId=${probeStack.id}`);
    await report(pcs, 'running');
    for (const c of pcs) probes.set(c.hostId, c.primaryIpAddress!);
    await settled('probe');
  }
  const clientOf = (a: AgentProc) => probes.get(a.hostId)!;

  const dnsProbes = await Promise.all(agents.map((a) => DnsProbe.open(clientOf(a), a.dnsPort)));
  const probeSvc = (await api<{ data: { id: string }[] }>(url, 'GET', `/v1/services?stackId=${probeStack.id}`)).data[0]!;
  let currentTarget = -1;
  const ipsOfService = new Map<string, string[]>();

  const results: string[] = [];
  for (const size of SIZES) {
    // Grow to `size` containers (the probe's 20 not counted): one import of the missing services.
    const add = Math.ceil((size - total) / SCALE);
    if (add > 0) {
      const first = bulkServices.length;
      let text = '';
      for (let k = first; k < first + add; k++) {
        text += `s${k}:\n  image: nginx:1.25\n  environment:\n    INDEX: "${k}"\n`;
        if (k > first) text += `  links:\n    - s${k - 1}:prev\n`;
      }
      let rancher = '';
      for (let k = first; k < first + add; k++) rancher += `s${k}:\n  scale: ${SCALE}\n`;
      const t0 = performance.now();
      const st = await api<{ id: string }>(url, 'POST', '/v1/stacks', { environmentId: env.id, name: `bulk${size}`, dockerCompose: text, rancherCompose: rancher });
      const importMs = performance.now() - t0;
      const cs = await containersOf(`stackId=${st.id}`);
      for (const c of cs) {
        if (!c.serviceId) continue;
        const ips = ipsOfService.get(c.serviceId);
        if (ips) ips.push(c.primaryIpAddress!);
        else ipsOfService.set(c.serviceId, [c.primaryIpAddress!]);
      }
      await report(cs, 'running');
      const s = await settled(`import of ${size}`);
      total += cs.length;
      const svcs = (await api<{ data: { id: string; name: string }[] }>(url, 'GET', `/v1/services?stackId=${st.id}`)).data;
      // metadata's self/service/links lists each link as `<stack>%2F<service>` (the original's key)
      bulkServices = [...bulkServices, ...svcs.map((x) => ({ ...x, linkKey: `bulk${size}%2F${x.name}` }))];
      const agentRss = agents.map((a) => rssKb(a.child.pid as number));
      console.log(
        `\n${total} containers (${bulkServices.length} services of ${SCALE} + ${AGENTS} probes, ${AGENTS} hosts); import ${fmt(importMs)}, every agent serving it ${fmt(s.ms)} later\n` +
          `  memory:    server RSS ${mib(rssKb(server.pid as number))}; agent RSS median ${mib(pct(agentRss, 50))}, max ${mib(Math.max(...agentRss))} (reference bare node process ${mib(bareRss)})`,
      );
      results.push(`${total}: server ${mib(rssKb(server.pid as number))}, agent median ${mib(pct(agentRss, 50))}`);
    }
    if (size === SIZES[0] && SIZES.length > 1) continue;

    // Reference: one round trip of each read, unchanged answers.
    const refDns: number[] = [];
    const refMd: number[] = [];
    for (let r = 0; r < 5; r++) {
      const d = await Promise.all(dnsProbes.map((p) => p.query('target.rancher.internal')));
      refDns.push(...d.map((x) => x.ms));
      const m = await Promise.all(agents.map(async (a) => {
        const t0 = performance.now();
        await getFrom(clientOf(a), a.mdPort, '/latest/self/service/links');
        return performance.now() - t0;
      }));
      refMd.push(...m);
    }

    // One API change: the probe's link `target` moves to another service; on every host the probe's DNS
    // answer for `target` and its metadata `self/service/links` must show it.
    const dnsLat: number[] = [];
    const mdLat: number[] = [];
    for (let k = 0; k < CHANGES; k++) {
      currentTarget = (currentTarget + 1 + Math.floor(bulkServices.length / CHANGES)) % bulkServices.length;
      const target = bulkServices[currentTarget]!;
      const want = [...(ipsOfService.get(target.id) ?? [])].sort().join(',');
      // Parked metadata long polls (what confd does), one per host, on the current value.
      const before = await Promise.all(agents.map((a) => getFrom(clientOf(a), a.mdPort, '/latest/self/service/links')));
      const t0 = performance.now();
      const md = agents.map((a, i) =>
        (async () => {
          let old = before[i]!.body;
          for (;;) {
            const r = await getFrom(clientOf(a), a.mdPort, `/latest/self/service/links?wait=true&maxWait=30&value=${encodeURIComponent(old)}`);
            if (r.body.split('\n').includes(target.linkKey)) return performance.now() - t0;
            old = r.body;
          }
        })(),
      );
      await sleep(20); // the polls parked before the change
      const t1 = performance.now();
      await api(url, 'POST', `/v1/services/${probeSvc.id}?action=setservicelinks`, { serviceLinks: [{ serviceId: target.id, name: 'target' }] });
      const dns = dnsProbes.map((p) =>
        (async () => {
          for (;;) {
            const r = await p.query('target.rancher.internal');
            if (r.addrs?.join(',') === want) return performance.now() - t1;
            if (performance.now() - t1 > 60_000) throw new Error(`DNS: target still answers ${r.addrs?.join(',') ?? 'no full answer'}, want ${want}`);
            await sleep(5);
          }
        })(),
      );
      dnsLat.push(...(await Promise.all(dns)));
      mdLat.push(...(await Promise.all(md)).map((ms) => ms - (t1 - t0)));
    }
    console.log(
      `  propagate: one API change (setservicelinks) → all ${AGENTS} agents serving it, over ${CHANGES} changes × ${AGENTS} agents:\n` +
        `             DNS answer p50 ${fmt(pct(dnsLat, 50))}, p99 ${fmt(pct(dnsLat, 99))}; metadata read (long poll) p50 ${fmt(pct(mdLat, 50))}, p99 ${fmt(pct(mdLat, 99))}  (goal p99 < 1 s)\n` +
        `             reference, unchanged answers, one round trip: DNS p50 ${fmt(pct(refDns, 50))}, p99 ${fmt(pct(refDns, 99))}; metadata p50 ${fmt(pct(refMd, 50))}, p99 ${fmt(pct(refMd, 99))}`,
    );
    results.push(`${total}: propagate DNS p99 ${fmt(pct(dnsLat, 99))}, metadata p99 ${fmt(pct(mdLat, 99))}`);

    if (size !== SIZES[SIZES.length - 1]) continue;

    // Agent CPU to apply a change of 1 vs 100 containers (reported stopped, then running again), from
    // /proc, summed over the agents, beside the same window with no change.
    const pids = agents.map((a) => a.child.pid as number);
    const window = async (fn: () => Promise<void>): Promise<number> => {
      const c0 = pids.map(cpuMs);
      await fn();
      return pids.map(cpuMs).reduce((s, c, i) => s + c - c0[i]!, 0) / pids.length;
    };
    const all = (await containersOf(`environmentId=${env.id}`)).filter((c) => c.serviceId !== probeSvc.id);
    const cpu: Record<string, number[]> = { idle: [], '1': [], '100': [] };
    for (let r = 0; r < 6; r++) {
      for (const n of [1, 100] as const) {
        const pick = Array.from({ length: n }, (_, j) => all[(r * 997 + j * Math.floor(all.length / n)) % all.length]!);
        // A fixed window with nothing else asked of the agents (the check that they applied it comes after).
        cpu[String(n)]!.push(await window(async () => {
          await report(pick, 'stopped');
          await sleep(APPLY_WINDOW_MS);
        }));
        await settled('stop');
        await report(pick, 'running');
        await settled('start');
      }
      cpu.idle!.push(await window(() => sleep(APPLY_WINDOW_MS)));
    }
    const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
    console.log(
      `  apply:     agent CPU per change (mean of ${AGENTS} agents × 6 rounds, a ${APPLY_WINDOW_MS} ms window each, /proc ticks of 10 ms): 1 container ${fmt(mean(cpu['1']!))}, ` +
        `100 containers ${fmt(mean(cpu['100']!))}; reference, the same window with no change: ${fmt(mean(cpu.idle!))}`,
    );

    // DNS during a burst of changes: every probe queries its agent every 10 ms; quiet first, then while
    // the probe's link moves BURST times back to back. The 20 agents share this machine's cores, so a
    // query can wait for its agent to get a core while the others apply the same change: the same burst
    // once more with one agent alone (the other agents paused with SIGSTOP, resumed after) separates
    // that from the agent's own serving loop.
    const load = async (ps: DnsProbe[], during: Promise<void>): Promise<number[]> => {
      const lat: number[] = [];
      let done = false;
      void during.finally(() => {
        done = true;
      });
      await Promise.all(ps.map(async (p) => {
        while (!done) {
          lat.push((await p.query('target.rancher.internal')).ms);
          await sleep(10);
        }
      }));
      return lat;
    };
    let moved = currentTarget;
    const burstOfChanges = async () => {
      for (let k = 0; k < BURST; k++) {
        moved = (moved + 1) % bulkServices.length;
        await api(url, 'POST', `/v1/services/${probeSvc.id}?action=setservicelinks`, { serviceLinks: [{ serviceId: bulkServices[moved]!.id, name: 'target' }] });
      }
    };
    const line = (xs: number[]) => `p50 ${fmt(pct(xs, 50))}, p99 ${fmt(pct(xs, 99))}, max ${fmt(Math.max(...xs))} over ${xs.length} queries`;
    const quiet = await load(dnsProbes, sleep(3000));
    const burst = await load(dnsProbes, (async () => {
      await burstOfChanges();
      await settled('burst');
    })());
    const one = agents[0]!;
    const others = agents.slice(1).map((a) => a.child.pid as number);
    // Its probe container asks from 10 sockets (the every-host load's rate at one agent, near enough).
    const aloneProbes = await Promise.all(Array.from({ length: 10 }, () => DnsProbe.open(clientOf(one), one.dnsPort)));
    const quietAlone = await load(aloneProbes, sleep(3000));
    for (const pid of others) process.kill(pid, 'SIGSTOP');
    let alone: number[];
    try {
      alone = await load(aloneProbes, (async () => {
        await burstOfChanges();
        const rev = await revision();
        await until('agent 0 after the burst', async () => ((await agentRevision(one)) >= rev ? true : undefined), 120_000, 50);
      })());
    } finally {
      for (const pid of others) process.kill(pid, 'SIGCONT');
    }
    for (const p of aloneProbes) p.close();
    await settled('burst alone');
    console.log(
      `  burst:     DNS from every host during ${BURST} back-to-back API changes: ${line(burst)}\n` +
        `             reference, the same load with no change: ${line(quiet)}\n` +
        `             one agent alone (the others paused), the same burst: ${line(alone)}; no change: ${line(quietAlone)}`,
    );
  }
  for (const p of dnsProbes) p.close();
}

function teardown(): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
}

// Interrupted: the children first (the finally below does the rest of the cleanup).
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    teardown();
    setTimeout(() => process.exit(130), 1500).unref();
  });
}

main()
  .catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  })
  .finally(async () => {
    teardown();
    await sleep(1500);
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });
