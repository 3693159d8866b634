// Property tests over generated environments and random change sequences (seeded):
// - the metadata answers kept up to date change by change (updateMetadataAnswers) equal a full build of the
//   same state, every version and client;
// - DNS and metadata agree on the owner of every address: the same clients on every host, and the container
//   metadata serves as `self` is the one DNS names in its PTR (when it runs).
// Bounded: ~3-5 s.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tree from '../../src/metadata/tree.js';
import { buildMetadataAnswers, updateMetadataAnswers } from '../../src/metadata/tree.js';
import { buildDnsData, dumpClientView } from '../../src/dns/view.js';
import { reverseName } from '../../src/dns/wire.js';
import type { JsonMap } from '../../src/metadata/answers.js';
import { EnvGen } from '../fixtures/gen-env.js';

test('incremental metadata == full build (20 environments × 30 changes, every version and client)', { timeout: 60_000 }, () => {
  const before = { ...tree.metadataRenderer.counts };
  for (let seed = 1; seed <= 20; seed++) {
    const g = new EnvGen(seed * 104729);
    g.initial();
    const opts = { hostId: g.pick(g.hosts), tokenKey: seed % 2 === 0 ? 'k'.repeat(40) : undefined };
    let a = buildMetadataAnswers(g.state, opts);
    for (let i = 0; i < 30; i++) {
      const delta = g.apply(g.step(seed % 3 === 0));
      const next = updateMetadataAnswers(a, g.state, delta, opts);
      const full = buildMetadataAnswers(g.state, opts);
      assert.deepEqual(JSON.parse(JSON.stringify(next)), JSON.parse(JSON.stringify(full)), `seed ${seed}, step ${i}: ${JSON.stringify(delta.touched)}`);
      a = next;
    }
  }
  assert.equal(tree.metadataRenderer.lastError, undefined, `an update fell back on an error: ${String(tree.metadataRenderer.lastError)}`);
  const inc = tree.metadataRenderer.counts.incremental - before.incremental;
  const full = tree.metadataRenderer.counts.full - before.full;
  assert.ok(inc > 4 * full, `incremental ${inc}, full ${full}`);
});

test('DNS and metadata agree on the owner of every address (40 environments × 10 changes, every host)', { timeout: 60_000 }, () => {
  let checked = 0;
  for (let seed = 1; seed <= 40; seed++) {
    const g = new EnvGen(seed * 15485863, 'environment');
    g.initial(6, 40);
    for (let i = 0; i < 10; i++) {
      g.apply(g.step(true));
      for (const hostId of g.hosts) {
        const dns = buildDnsData(g.state, { hostId });
        const md = buildMetadataAnswers(g.state, { hostId });
        const mdClients = Object.keys(md.latest ?? {}).filter((k) => k !== 'default').sort();
        assert.deepEqual([...dns.clients.keys()].sort(), mdClients, `seed ${seed} step ${i} host ${hostId}: the same clients`);
        for (const ip of mdClients) {
          const self = (md.latest![ip] as JsonMap).self as JsonMap;
          const c = self.container as JsonMap;
          // DNS names the owner in its PTR while it runs; metadata's self is that container.
          const ptr = dumpClientView(dns, ip).names[reverseName(ip)!]?.ptr;
          if (c.state === 'running') {
            assert.equal(ptr, `${String(c.name).toLowerCase()}.rancher.internal`, `seed ${seed} step ${i}: owner of ${ip}`);
            checked++;
          }
        }
      }
    }
  }
  assert.ok(checked > 200, `owners compared: ${checked}`);
});

test('an update leaves the answers it started from as they were (the index moves on, they do not)', () => {
  for (let seed = 1; seed <= 8; seed++) {
    const g = new EnvGen(seed * 7919);
    g.initial();
    const opts = { hostId: g.pick(g.hosts) };
    let a = buildMetadataAnswers(g.state, opts);
    for (let i = 0; i < 20; i++) {
      const before = JSON.stringify(a);
      const next = updateMetadataAnswers(a, g.state, g.apply(g.step(true)), opts);
      assert.equal(JSON.stringify(a), before, `seed ${seed}, step ${i}: the previous answers changed`);
      a = next;
    }
  }
});

test("this host's clients follow their containers: moved here, moved away, address taken over", async () => {
  const { container, env, service, put } = await import('../helpers/state-fixtures.js');
  const { applyChanges } = await import('../../src/model/state.js');
  const st = env();
  put(st, service('1s1', 'web'), container('c1', '1s1', '1h1', '10.42.0.1'), container('c2', '1s1', '1h2', '10.42.0.2'));
  const opts = { hostId: '1h1' };
  const clients = (x: ReturnType<typeof buildMetadataAnswers>): string[] => Object.keys(x.latest ?? {}).filter((k) => k !== 'default').sort();
  let a = buildMetadataAnswers(st, opts);
  assert.deepEqual(clients(a), ['10.42.0.1']);
  const step = (id: string, data: unknown): void => {
    a = updateMetadataAnswers(a, st, applyChanges(st, st.revision + 1, [{ op: 'upsert', kind: 'container', id, data }]), opts);
    assert.deepEqual(JSON.parse(JSON.stringify(a)), JSON.parse(JSON.stringify(buildMetadataAnswers(st, opts))));
  };
  step('c2', { ...st.containers.get('c2')!, hostId: '1h1' });
  assert.deepEqual(clients(a), ['10.42.0.1', '10.42.0.2']);
  step('c1', { ...st.containers.get('c1')!, hostId: '1h2' });
  assert.deepEqual(clients(a), ['10.42.0.2']);
  // A newer running container of another host takes 10.42.0.2 over: no client here any more.
  step('c3', container('c3', '1s1', '1h2', '10.42.0.2', { created: '2030-01-01T00:00:00.000Z' }));
  assert.deepEqual(clients(a), []);
  step('c3', { ...st.containers.get('c3')!, desiredState: 'removed' });
  assert.deepEqual(clients(a), ['10.42.0.2']);
  assert.equal(tree.metadataRenderer.lastError, undefined);
});
