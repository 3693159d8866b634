// In-process cost of the query engine (no sockets): ns per query for the bench's three query sets.
// Run: node --import tsx bench/dns-micro.ts
import { DnsServer } from '../src/dns/server.js';
import { buildDnsData } from '../src/dns/view.js';
import { buildQuery, encodeQuestion } from '../src/dns/wire.js';
import { benchEnv, CLIENT_IP } from './dns-fixture.js';
import { startUpstream } from '../test/integration/dns-helpers.js';

const { state, names } = benchEnv();
const up = await startUpstream();
for (let i = 0; i < 100; i++) up.zone.set(`r${i}.example.test`, [{ type: 'A', data: `192.0.2.${i}`, ttl: 3600 }]);
const server = new DnsServer({ data: buildDnsData(state), hostResolvers: [`127.0.0.1:${up.port}`] });
const q = (n: string): Buffer => buildQuery(1, encodeQuestion(n, 1), 1232);
const sets = {
  local: names.services.slice(0, 100).map((s) => q(s.fqdn)),
  recursed: Array.from({ length: 100 }, (_, i) => q(`r${i}.example.test`)),
  nxdomain: Array.from({ length: 100 }, (_, i) => q(`nx${i}.s1.rancher.internal`)),
};
for (const m of sets.recursed) await server.handleQuery(m, CLIENT_IP);
for (const [name, msgs] of Object.entries(sets)) {
  const N = 300_000;
  for (let i = 0; i < 50_000; i++) void server.handleQuery(msgs[i % 100]!, CLIENT_IP);
  const t = performance.now();
  let bytes = 0;
  for (let i = 0; i < N; i++) {
    const r = server.handleQuery(msgs[i % 100]!, CLIENT_IP);
    if (r instanceof Promise) throw new Error('not answered synchronously');
    bytes += r?.length ?? 0;
  }
  console.log(`${name}: ${(((performance.now() - t) / N) * 1e6).toFixed(0)} ns/query (${(bytes / N).toFixed(0)} bytes/reply)`);
}
await server.close();
await up.close();
