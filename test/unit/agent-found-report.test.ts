// Adoption as a report: hand-started containers an agent found go in `found` of POST /v1/agent/report;
// the control plane adopts each one (idempotently per docker id) and answers per container — a refused
// one (a bad name, an address outside the subnet) is that container's answer, never a 4xx/5xx of the whole report.
// Bound: ~2 s (an in-process server on a free 127.0.0.1 port).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { cleanup, request, startTestServer, type TestServer } from '../helpers/server.js';

type Creds = { hostId: string; accessKey: string; secretKey: string };
interface Answer {
  type: string;
  found?: { externalId: string; id?: string; primaryIpAddress?: string | null; error?: string }[];
  message?: string;
}
interface Rec {
  id: string;
  hostId: string;
  adopted: boolean;
  externalId: string | null;
  primaryIpAddress: string | null;
  state: string;
}

describe('found containers in agent reports', () => {
  let t: TestServer;
  let h1: Creds;
  const report = (body: unknown) => request<Answer>(t.url, 'POST', '/v1/agent/report', body, h1);
  const found = (id: string, name: string, labels: Record<string, string> = {}) => ({
    externalId: id.repeat(64).slice(0, 64),
    name,
    image: 'busybox:1',
    labels: { 'io.rancher.container.network': 'true', ...labels },
    state: 'running',
  });

  before(async () => {
    t = await startTestServer();
    h1 = await t.register('h1');
  });
  after(async () => {
    await t.close();
    cleanup(t.dir);
  });

  it('adopts what was found and answers with the records; sending it again adopts nothing twice', async () => {
    const body = { found: [found('b', 'byhand', { 'io.rancher.container.requested_ip': '10.42.9.9' }), found('c', 'other')] };
    const r = await report(body);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const answers = r.body.found ?? [];
    assert.equal(answers.length, 2);
    assert.ok(answers.every((a) => a.id && !a.error), JSON.stringify(answers));
    assert.equal(answers[0]?.primaryIpAddress, '10.42.9.9');
    const rec = (await t.api<Rec>('GET', `/v1/containers/${answers[0]?.id}`)).body;
    assert.deepEqual([rec.adopted, rec.hostId, rec.externalId, rec.primaryIpAddress], [true, h1.hostId, 'b'.repeat(64), '10.42.9.9']);
    const again = await report(body);
    assert.deepEqual(
      (again.body.found ?? []).map((a) => a.id),
      answers.map((a) => a.id),
      'the same records',
    );
    const all = (await t.api<{ data: Rec[] }>('GET', '/v1/containers')).body.data;
    assert.equal(all.filter((c) => c.externalId === 'b'.repeat(64)).length, 1);
  });

  it('a refused container is answered with the reason; the rest of the report still counts', async () => {
    const r = await report({
      found: [found('d', 'bad name!'), found('e', 'fine'), found('f', 'outside', { 'io.rancher.container.requested_ip': '192.168.1.1' })],
    });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const [bad, fine, outside] = r.body.found ?? [];
    assert.match(bad?.error ?? '', /container name "bad name!"/);
    assert.equal(bad?.id, undefined);
    assert.ok(fine?.id, JSON.stringify(fine));
    assert.ok(outside?.error, `a requested address outside the subnet is refused: ${JSON.stringify(outside)}`);
    // The server answers the next request normally.
    assert.equal((await report({ containers: [] })).status, 200);
  });

  it('a malformed found entry is a 422 naming the field, never a 5xx', async () => {
    const r = await report({ found: [{ externalId: '', name: 'x', image: 'busybox' }] });
    assert.equal(r.status, 422, JSON.stringify(r.body));
    assert.match((r.body as { fieldName?: string }).fieldName ?? '', /^found\.0\.externalId$/);
    const r2 = await report({ found: [{ ...found('g', 'g'), ipAddress: 'not-an-ip' }] });
    assert.equal(r2.status, 422, JSON.stringify(r2.body));
    assert.equal((r2.body as { fieldName?: string }).fieldName, 'found.0.ipAddress');
    // More than one report's worth is refused whole (the agent sends at most 100 per report).
    const many = Array.from({ length: 101 }, (_, i) => found(i.toString(16).padStart(2, '0'), `h${i}`));
    const r3 = await report({ found: many });
    assert.equal(r3.status, 422, JSON.stringify(r3.body).slice(0, 300));
    assert.equal((r3.body as { fieldName?: string }).fieldName, 'found');
    assert.equal((await report({ containers: [] })).status, 200, 'alive and answering');
  });
});
