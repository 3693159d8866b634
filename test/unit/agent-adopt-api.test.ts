// The control plane's side of the Docker runtime: POST /v1/agent/adopt (hand-started containers become
// records with a managed IP, idempotently), and `removed` reports (an adopted record goes away with its
// address; a scheduled one only changes state).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { cleanup, request, startTestServer, type TestServer } from '../helpers/server.js';

interface Rec {
  id: string;
  uuid: string;
  name: string;
  hostId: string;
  stackId: string | null;
  serviceId: string | null;
  adopted: boolean;
  externalId: string | null;
  primaryIpAddress: string | null;
  state: string;
  desiredState: string;
  startCount: number;
  transitioningMessage?: string;
  config: { image: string; labels: Record<string, string>; command?: string[] };
}

type Creds = { hostId: string; accessKey: string; secretKey: string };

describe('agent adoption and container reports', () => {
  let t: TestServer;
  let h1: Creds;
  let h2: Creds;
  const adopt = (creds: Creds, body: unknown) => request<Rec & { message?: string; code?: string }>(t.url, 'POST', '/v1/agent/adopt', body, creds);
  const report = (creds: Creds, containers: unknown[]) =>
    request<{ containersChanged: number }>(t.url, 'POST', '/v1/agent/report', { containers }, creds);

  before(async () => {
    t = await startTestServer();
    h1 = await t.register('h1');
    h2 = await t.register('h2');
    const st = await t.api('POST', '/v1/stacks', { name: 'shop', dockerCompose: 'web:\n  image: nginx\n' });
    assert.equal(st.status, 201);
  });
  after(async () => {
    await t.close();
    cleanup(t.dir);
  });

  it('creates an adopted record on the agent’s host, with the requested IP and the stack/service its labels name', async () => {
    const r = await adopt(h1, {
      externalId: 'a'.repeat(64),
      name: 'handmade',
      image: 'busybox:1',
      command: ['sleep', '1000'],
      labels: {
        'io.rancher.container.network': 'true',
        'io.rancher.container.requested_ip': '10.42.7.7',
        'io.rancher.stack.name': 'shop',
        'io.rancher.stack_service.name': 'shop/web',
      },
      state: 'running',
    });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    const c = r.body;
    assert.equal(c.adopted, true);
    assert.equal(c.hostId, h1.hostId);
    assert.equal(c.externalId, 'a'.repeat(64));
    assert.equal(c.primaryIpAddress, '10.42.7.7');
    assert.equal(c.config.labels['io.rancher.container.ip'], '10.42.7.7/16');
    assert.equal(c.config.labels['io.rancher.container.uuid'], c.uuid);
    assert.deepEqual(c.config.command, ['sleep', '1000']);
    assert.equal(c.state, 'running');
    const services = (await t.api<{ data: { id: string; stackId: string; name: string }[] }>('GET', '/v1/services?name=web')).body.data;
    assert.equal(c.serviceId, services[0]?.id);
    assert.equal(c.stackId, services[0]?.stackId);
    // It is a normal record of the environment (the API lists it; agents sync it).
    const got = await t.api<Rec>('GET', `/v1/containers/${c.id}`);
    assert.equal(got.status, 200);
    assert.equal(got.body.adopted, true);
  });

  it('is idempotent per docker id', async () => {
    const body = { externalId: 'b'.repeat(64), name: 'again', image: 'busybox:1', labels: {} };
    const first = await adopt(h1, body);
    const second = await adopt(h1, { ...body, name: 'renamed' });
    assert.equal(first.status, 201);
    assert.equal(second.status, 200);
    assert.equal(second.body.id, first.body.id);
    assert.equal(second.body.primaryIpAddress, first.body.primaryIpAddress);
    const all = (await t.api<{ data: Rec[] }>('GET', '/v1/containers')).body.data.filter((c) => c.externalId === 'b'.repeat(64));
    assert.equal(all.length, 1);
  });

  it('is standalone when the labels name no existing stack/service, and takes another address when the requested one is taken', async () => {
    const r = await adopt(h2, {
      externalId: 'c'.repeat(64),
      name: 'loner',
      image: 'busybox:1',
      labels: { 'io.rancher.stack.name': 'nope', 'io.rancher.stack_service.name': 'nope/none', 'io.rancher.container.requested_ip': '10.42.7.7' },
      state: 'stopped',
    });
    assert.equal(r.status, 201);
    assert.equal(r.body.stackId, null);
    assert.equal(r.body.serviceId, null);
    assert.equal(r.body.hostId, h2.hostId);
    assert.equal(r.body.desiredState, 'stopped');
    assert.ok(r.body.primaryIpAddress && r.body.primaryIpAddress !== '10.42.7.7', `got ${r.body.primaryIpAddress}`);
    assert.match(r.body.primaryIpAddress, /^10\.42\.\d+\.\d+$/);
  });

  it('keeps the address a container already has on the managed network when it is free', async () => {
    const r = await adopt(h1, { externalId: 'd'.repeat(64), name: 'onnet', image: 'busybox:1', labels: {}, ipAddress: '10.42.9.9' });
    assert.equal(r.status, 201);
    assert.equal(r.body.primaryIpAddress, '10.42.9.9');
  });

  it('validates the body and is for agents only', async () => {
    const bad = await adopt(h1, { name: 'x', image: 'busybox' });
    assert.equal(bad.status, 422);
    const badIp = await adopt(h1, { externalId: 'e'.repeat(64), name: 'x', image: 'busybox', labels: { 'io.rancher.container.requested_ip': 'nope' } });
    assert.equal(badIp.status, 422);
    const badName = await adopt(h1, { externalId: 'f'.repeat(64), name: '-bad name', image: 'busybox' });
    assert.equal(badName.status, 422);
    const admin = await t.api('POST', '/v1/agent/adopt', { externalId: 'g'.repeat(64), name: 'x', image: 'busybox' });
    assert.equal(admin.status, 403);
  });

  it('deletes an adopted record and frees its address on a `removed` report from its host only', async () => {
    const r = await adopt(h1, {
      externalId: '1'.repeat(64),
      name: 'shortlived',
      image: 'busybox:1',
      labels: { 'io.rancher.container.requested_ip': '10.42.8.8' },
    });
    assert.equal(r.status, 201);
    const id = r.body.id;
    // A report from another host is ignored.
    const other = await report(h2, [{ id, state: 'removed' }]);
    assert.equal(other.body.containersChanged, 0);
    assert.equal((await t.api('GET', `/v1/containers/${id}`)).status, 200);
    // State reports update it like any record.
    const running = await report(h1, [{ id, state: 'running', startCount: 2, externalId: '1'.repeat(64) }]);
    assert.equal(running.body.containersChanged, 1);
    assert.equal((await t.api<Rec>('GET', `/v1/containers/${id}`)).body.startCount, 2);
    // Removed: the record is gone and 10.42.8.8 can be had again.
    const removed = await report(h1, [{ id, state: 'removed', externalId: '1'.repeat(64) }]);
    assert.equal(removed.body.containersChanged, 1);
    assert.equal((await t.api('GET', `/v1/containers/${id}`)).status, 404);
    const again = await adopt(h2, { externalId: '2'.repeat(64), name: 'reuse', image: 'busybox:1', labels: { 'io.rancher.container.requested_ip': '10.42.8.8' } });
    assert.equal(again.body.primaryIpAddress, '10.42.8.8');
    // A second `removed` for the deleted record is a no-op.
    assert.equal((await report(h1, [{ id, state: 'removed' }])).body.containersChanged, 0);
  });

  it('keeps a scheduled container’s record on `removed`: it is just a state', async () => {
    const services = (await t.api<{ data: { id: string }[] }>('GET', '/v1/services?name=web')).body.data;
    const scheduled = (await t.api<{ data: Rec[] }>('GET', `/v1/containers?serviceId=${services[0]?.id}`)).body.data.find((c) => !c.adopted);
    assert.ok(scheduled, 'the web service has a scheduled container');
    const creds = scheduled.hostId === h1.hostId ? h1 : h2;
    const r = await report(creds, [{ id: scheduled.id, state: 'removed', message: 'gone by hand' }]);
    assert.equal(r.body.containersChanged, 1);
    const got = await t.api<Rec>('GET', `/v1/containers/${scheduled.id}`);
    assert.equal(got.status, 200);
    assert.equal(got.body.state, 'removed');
    assert.equal(got.body.transitioningMessage, 'gone by hand');
  });

  it('frees an adopted member’s address when its service, or its host, is removed', async () => {
    const st = await t.api<{ id: string }>('POST', '/v1/stacks', { name: 'tmp', dockerCompose: 'job:\n  image: busybox\n' });
    assert.equal(st.status, 201);
    const member = (ip: string, n: string) => ({
      externalId: n.repeat(64),
      name: `member-${n}`,
      image: 'busybox:1',
      labels: { 'io.rancher.container.requested_ip': ip, 'io.rancher.stack_service.name': 'tmp/job' },
    });
    const a = await adopt(h1, member('10.42.9.1', '5'));
    assert.ok(a.body.serviceId, `adopted into tmp/job: ${JSON.stringify(a.body)}`);
    assert.equal(a.body.primaryIpAddress, '10.42.9.1');
    const job = (await t.api<{ data: { id: string; name: string }[] }>('GET', `/v1/services?stackId=${st.body.id}`)).body.data.find((s) => s.name === 'job');
    assert.ok(job);
    assert.equal((await t.api('DELETE', `/v1/services/${job.id}`)).status, 204);
    // The address is free again: another container can ask for it.
    const reuse = await adopt(h2, { externalId: '6'.repeat(64), name: 'reuse-9-1', image: 'busybox:1', labels: { 'io.rancher.container.requested_ip': '10.42.9.1' } });
    assert.equal(reuse.body.primaryIpAddress, '10.42.9.1');

    // A host going away takes its adopted containers' records and addresses with it.
    const h3 = await t.register('h3');
    const onH3 = await adopt(h3, { externalId: '7'.repeat(64), name: 'on-h3', image: 'busybox:1', labels: { 'io.rancher.container.requested_ip': '10.42.9.2' } });
    assert.equal(onH3.body.primaryIpAddress, '10.42.9.2');
    assert.equal((await t.api('DELETE', `/v1/hosts/${h3.hostId}`)).status, 204);
    const after3 = await adopt(h1, { externalId: '8'.repeat(64), name: 'after-h3', image: 'busybox:1', labels: { 'io.rancher.container.requested_ip': '10.42.9.2' } });
    assert.equal(after3.body.primaryIpAddress, '10.42.9.2');
  });
});
