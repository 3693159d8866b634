// Property test: the DNS data kept up to date change by change (updateDnsData) answers exactly as a full
// build of the same state, for every client, the fallback and short names through the search lists —
// over generated environments, every scope, and random change sequences. Bounded: ~2-4 s.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { lookup } from '../../src/dns/engine.js';
import * as view from '../../src/dns/view.js';
import { buildDnsData, dumpClientView, dumpRecords, updateDnsData, type BuildDnsOptions } from '../../src/dns/view.js';
import type { DnsData } from '../../src/dns/data.js';
import { EnvGen } from '../fixtures/gen-env.js';

const SHORT = ['a', 'web', 'db', 'side', 'mydb', 'peer', 'up', 'cache', 'rancher-metadata', 'nope'];

function served(d: DnsData): unknown {
  const out: Record<string, unknown> = {};
  const ips = [...d.clients.keys()].sort();
  for (const ip of [...ips, '198.51.100.1']) {
    const v = d.clients.get(ip) ?? d.fallback;
    const dump = dumpClientView(d, ip);
    const short: Record<string, unknown> = {};
    // Every name's first label, and a few fixed ones, through the client's search list.
    const firsts = new Set(SHORT);
    for (const n of Object.keys(dump.names)) {
      const parts = n.split('.');
      firsts.add(parts[0]!);
      if (parts.length > 3) firsts.add(`${parts[0]}.${parts[1]}`);
    }
    for (const n of [...firsts].sort()) {
      const r = lookup(v, n.toLowerCase(), d.zones);
      if (r) short[n] = dumpRecords(r);
    }
    out[ip] = { dump, short };
  }
  return { serial: d.serial, ttl: d.ttl, zones: d.zones.map((z) => z.name), clients: ips, views: out };
}

for (const scope of ['linked', 'stack', 'environment'] as const) {
  for (const hostDnsView of [false, true]) {
    test(`incremental DNS == full build (${scope} scope${hostDnsView ? ', host view' : ''}, 20 environments × 30 changes)`, { timeout: 60_000 }, () => {
      const before = { ...view.dnsRenderer.counts };
      for (let seed = 1; seed <= 20; seed++) {
        const g = new EnvGen(seed * 7919 + scope.length + (hostDnsView ? 1000 : 0), scope, hostDnsView);
        g.initial();
        const opts: BuildDnsOptions = seed % 3 === 0 ? {} : { hostId: g.pick(g.hosts) };
        let d = buildDnsData(g.state, opts);
        for (let i = 0; i < 30; i++) {
          const delta = g.apply(g.step(seed % 2 === 0));
          const next = updateDnsData(d, g.state, delta, opts);
          const full = buildDnsData(g.state, opts);
          assert.deepEqual(served(next), served(full), `seed ${seed}, step ${i}: ${JSON.stringify(delta.touched)}`);
          d = next;
        }
      }
      assert.equal(view.dnsRenderer.lastError, undefined, `an update fell back on an error: ${String(view.dnsRenderer.lastError)}`);
      // Most steps are applied change by change (stack and environment changes render in full).
      const inc = view.dnsRenderer.counts.incremental - before.incremental;
      const full = view.dnsRenderer.counts.full - before.full;
      assert.ok(inc > 4 * full, `incremental ${inc}, full ${full}`);
    });
  }
}

test('updateDnsData falls back to a full build for a full delta, a foreign state or stale data', () => {
  const g = new EnvGen(42, 'environment');
  g.initial();
  const d = buildDnsData(g.state);
  const delta = g.apply(g.step(false));
  const next = updateDnsData(d, g.state, delta);
  // The previous data is consumed: applying to it again renders in full (and is still right).
  const again = updateDnsData(d, g.state, delta);
  assert.deepEqual(served(again), served(next));
  const full = updateDnsData(next, g.state, { ...delta, full: true });
  assert.deepEqual(served(full), served(buildDnsData(g.state)));
});
