// Container reports under load and abuse: an agent flapping 500 containers as fast as it can moves the
// environment revision at most once per publish window (never once per report), the server stays alive
// and answers, its RSS stays bounded; hostile or wrong reports get a 422 naming the field, and reports
// about another host's or unknown containers change nothing. Bound: ~15 s.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { defaultEnvironment } from '../../src/server/domain/environments.js';
import { ADMIN, cleanup, request, startTestServer, tempDir } from '../helpers/server.js';

const WINDOW_MS = 100;
const SCALE = 500;
const ROUNDS = 40;

test('flapping reports: bounded revisions, alive, bounded RSS; bad reports 422 naming the field', { timeout: 60_000 }, async () => {
  const dir = tempDir('drover-status-robust-');
  const t = await startTestServer({ dir, statusCoalesceMs: WINDOW_MS });
  const srv = t.srv;
  try {
    const envId = defaultEnvironment(srv.store).id;
    const register = (hostname: string) => t.register(hostname, {}, '192.0.2.41');
    const h1 = await register('flap1');
    const st = await request(srv.url, 'POST', '/v1/stacks', {
      name: 'flap',
      dockerCompose: 'web:\n  image: nginx\n',
      rancherCompose: `web:\n  scale: ${SCALE}\n`,
    }, ADMIN);
    assert.equal(st.status, 201, JSON.stringify(st.body));
    const ids = (await request<{ data: { id: string }[] }>(srv.url, 'GET', `/v1/containers?environmentId=${envId}&limit=1000`, undefined, ADMIN)).body.data.map(
      (c) => c.id,
    );
    assert.equal(ids.length, SCALE);

    const rss0 = process.memoryUsage().rss;
    const rev0 = srv.store.revision(envId);
    const t0 = performance.now();
    for (let i = 0; i < ROUNDS; i++) {
      const state = i % 2 === 0 ? 'running' : 'stopped';
      const r = await request(srv.url, 'POST', '/v1/agent/report', { containers: ids.map((id) => ({ id, state, startCount: i })) }, h1);
      assert.equal(r.status, 200);
    }
    const elapsed = performance.now() - t0;
    await new Promise((r) => setTimeout(r, WINDOW_MS * 3));
    const bumps = srv.store.revision(envId) - rev0;
    const windows = Math.ceil(elapsed / WINDOW_MS) + 2;
    console.log(`${ROUNDS} reports of ${SCALE} containers in ${elapsed.toFixed(0)} ms: ${bumps} revisions (at most ${windows} windows)`);
    assert.ok(bumps <= windows, `${bumps} revisions for ${ROUNDS} flapping reports exceed one per window (${windows})`);
    assert.ok(bumps < ROUNDS, 'never one revision per report');
    const rssGrowth = (process.memoryUsage().rss - rss0) / 2 ** 20;
    assert.ok(rssGrowth < 200, `RSS grew ${rssGrowth.toFixed(0)} MiB`);

    // Bad reports: 422 naming the field, never a 5xx.
    const id = ids[0] as string;
    const bad: [string, unknown, RegExp][] = [
      ['health state not one of the known', [{ id, state: 'running', healthState: 'bogus' }], /healthState/],
      ['huge state', [{ id, state: 'x'.repeat(70_000) }], /state/],
      ['empty id', [{ id: '', state: 'running' }], /id/],
      ['negative start count', [{ id, state: 'running', startCount: -1 }], /startCount/],
      ['huge message', [{ id, state: 'running', message: 'm'.repeat(70_000) }], /message/],
      ['unknown field', [{ id, state: 'running', zzUnknown: 1 }], /zzUnknown/],
    ];
    for (const [what, containers, field] of bad) {
      const r = await request<{ fieldName?: string }>(srv.url, 'POST', '/v1/agent/report', { containers }, h1);
      assert.equal(r.status, 422, `${what}: ${JSON.stringify(r.body).slice(0, 300)}`);
      assert.match(r.body.fieldName ?? '', field, `${what}: ${JSON.stringify(r.body).slice(0, 300)}`);
    }
    // Another host's containers and unknown ids: nothing changes.
    const h2 = await register('flap2');
    const before = srv.store.revision(envId);
    const other = await request<{ containersChanged: number }>(srv.url, 'POST', '/v1/agent/report', {
      containers: [{ id, state: 'error', message: 'not yours' }, { id: '1i999999', state: 'running' }],
    }, h2);
    assert.equal(other.status, 200);
    assert.equal(other.body.containersChanged, 0);
    await new Promise((r) => setTimeout(r, WINDOW_MS * 3));
    assert.equal(srv.store.revision(envId), before);

    // Alive, and a valid request is answered right after.
    const ok = await request<{ state: string }>(srv.url, 'GET', `/v1/containers/${id}`, undefined, ADMIN);
    assert.equal(ok.status, 200);
    assert.equal(ok.body.state, ROUNDS % 2 === 0 ? 'stopped' : 'running');
  } finally {
    await srv.close();
    cleanup(dir);
  }
});
