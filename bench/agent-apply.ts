// An agent's cost to apply one change to its DNS data and metadata answers: the incremental update
// (updateDnsData / updateMetadataAnswers) for a change of 1 container and of 100 containers, beside the full
// build of the same state, in the same run. The environment is bench/metadata-state.ts's (services of 50,
// 20 hosts, 10 stacks, service links); the agent is host h0's. Each change flips the health state of
// containers of health-checked services (serving ↔ not: what a health check produces), so every change
// reaches DNS answers and metadata trees.
//
// Run: node --expose-gc --import tsx bench/agent-apply.ts [--containers 10000] [--rounds 30] [--hosts 20]
// Figures: CPU time (process.cpuUsage) per update, p50 and max over the rounds (after 5 warm-up rounds);
// the full build is the mean of 5.
import { HealthCheck } from '../src/model/resources.js';
import { applyChanges, type Change, type EnvState } from '../src/model/state.js';
import { buildDnsData, dnsRenderer, updateDnsData } from '../src/dns/view.js';
import { buildMetadataAnswers, metadataRenderer, updateMetadataAnswers } from '../src/metadata/tree.js';
import { largeState } from './metadata-state.js';

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}

const N = arg('containers', 10_000);
const ROUNDS = arg('rounds', 30);
const HOSTS = arg('hosts', 20);

function cpuMs<T>(fn: () => T): [number, T] {
  const t = process.cpuUsage();
  const out = fn();
  const d = process.cpuUsage(t);
  return [(d.user + d.system) / 1000, out];
}

function stats(xs: number[]): string {
  const s = [...xs].sort((a, b) => a - b);
  return `p50 ${s[Math.floor(s.length / 2)]!.toFixed(2)} ms, max ${s[s.length - 1]!.toFixed(2)} ms`;
}

function setup(scope: 'linked' | 'environment'): EnvState {
  const st = largeState(N);
  st.environment = { ...st.environment, network: { ...st.environment.network, dnsScope: scope } };
  // Health checks on every service, every container healthy: serving.
  for (const s of st.services.values()) st.services.set(s.id, { ...s, healthCheck: HealthCheck.parse({ port: 80 }) });
  for (const c of st.containers.values()) {
    st.containers.set(c.id, { ...c, healthState: 'healthy', hostId: `h${Number(c.id.slice(1)) % HOSTS}` });
  }
  return st;
}

/** A change of `k` containers (spread over the environment, this host's among them): health flipped. */
function change(st: EnvState, k: number, round: number): Change[] {
  const out: Change[] = [];
  const step = Math.max(1, Math.floor(N / k));
  for (let i = 0; i < k; i++) {
    const id = `c${(i * step + round * 7) % N}`;
    const c = st.containers.get(id)!;
    out.push({ op: 'upsert', kind: 'container', id, data: { ...c, healthState: c.healthState === 'healthy' ? 'unhealthy' : 'healthy' } });
  }
  return out;
}

for (const scope of ['linked', 'environment'] as const) {
  const st = setup(scope);
  const hostId = 'h0';
  const dnsFull: number[] = [];
  const mdFull: number[] = [];
  let dns = buildDnsData(st, { hostId });
  let md = buildMetadataAnswers(st, { hostId });
  for (let i = 0; i < 5; i++) {
    dnsFull.push(cpuMs(() => buildDnsData(st, { hostId }))[0]);
    mdFull.push(cpuMs(() => buildMetadataAnswers(st, { hostId }))[0]);
  }
  dns = buildDnsData(st, { hostId });
  md = buildMetadataAnswers(st, { hostId });
  // The garbage of the full builds is not the updates' cost: collect it first when allowed (--expose-gc).
  (globalThis as { gc?: () => void }).gc?.();
  const mean = (xs: number[]): string => (xs.reduce((a, b) => a + b, 0) / xs.length).toFixed(1);
  const clients = dns.clients.size;
  console.log(`${N} containers, ${HOSTS} hosts, DNS scope ${scope}; agent of h0 (${clients} local clients)`);
  console.log(`  full build:   DNS ${mean(dnsFull)} ms, metadata ${mean(mdFull)} ms`);
  const c0 = { ...dnsRenderer.counts };
  const m0 = { ...metadataRenderer.counts };
  let rev = st.revision;
  for (const k of [1, 100]) {
    const tDns: number[] = [];
    const tMd: number[] = [];
    // 5 warm-up rounds (JIT), then ROUNDS measured.
    for (let r = -5; r < ROUNDS; r++) {
      const delta = applyChanges(st, ++rev, change(st, k, r + 5));
      const [a, d2] = cpuMs(() => updateDnsData(dns, st, delta, { hostId }));
      const [b, m2] = cpuMs(() => updateMetadataAnswers(md, st, delta, { hostId }));
      dns = d2;
      md = m2;
      if (r < 0) continue;
      tDns.push(a);
      tMd.push(b);
    }
    console.log(`  ${String(k).padStart(3)} container${k === 1 ? ' ' : 's'}: DNS ${stats(tDns)}; metadata ${stats(tMd)}`);
  }
  const fell = dnsRenderer.counts.full - c0.full + metadataRenderer.counts.full - m0.full;
  if (fell > 0) console.log(`  (${fell} updates fell back to a full build)`);
}
