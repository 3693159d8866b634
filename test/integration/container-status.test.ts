// Observed container state apart from the spec, and the health strategies, on a real control plane:
// agent reports go to the status store (the API shows them at once) and move the environment's revision
// only when a container starts or stops serving or changes health, coalesced per window; `recreate`
// replaces an unhealthy container in its slot on the same address, `none` only marks it,
// `recreateOnQuorum` waits for its quorum; batched upgrades move on when a batch serves. Bound: ~20 s
// (a 600 ms window, a few dozen requests).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import type { RunningServer } from '../../src/server/server.js';
import { defaultEnvironment } from '../../src/server/domain/environments.js';
import { ADMIN, cleanup, eventually, request, startTestServer, tempDir } from '../helpers/server.js';

const WINDOW_MS = 600;

interface Ctr {
  id: string;
  uuid: string;
  name: string;
  hostId: string;
  serviceId: string;
  serviceIndex: number;
  primaryIpAddress: string;
  state: string;
  healthState: string | null;
  exitCode: number | null;
  startCount: number;
  transitioningMessage?: string;
  generation: string;
  desiredState: string;
  config: { image: string };
}
type Creds = { accessKey: string; secretKey: string };
type Reply = { status: number; body: { fieldName?: string; message: string } };

const DC = `
web:
  image: nginx
marked:
  image: nginx
healed:
  image: nginx
quorate:
  image: nginx
rolled:
  image: nginx
undone:
  image: nginx
first:
  image: nginx
pinned:
  image: nginx
  labels:
    io.rancher.container.requested_ip: 10.42.99.99
bounced:
  image: nginx
`;
const RC = `
web:
  scale: 1
marked:
  scale: 1
  health_check: {port: 80, strategy: none}
healed:
  scale: 2
  health_check: {port: 80, strategy: recreate}
quorate:
  scale: 3
  health_check:
    port: 80
    strategy: recreateOnQuorum
    recreate_on_quorum_strategy_config: {quorum: 2}
rolled:
  scale: 4
undone:
  scale: 3
first:
  scale: 2
  upgrade_strategy: {start_first: true, batch_size: 1, interval_millis: 0}
pinned:
  scale: 1
bounced:
  scale: 3
`;

describe('container status apart from the spec, and health strategies', () => {
  let srv: RunningServer;
  let dir: string;
  let envId: string;
  let agent: Creds;
  const api = <T = Record<string, unknown>>(method: string, path: string, body?: unknown) => request<T>(srv.url, method, path, body, ADMIN);
  const report = async (containers: unknown[]) => {
    const r = await request<{ containersChanged: number }>(srv.url, 'POST', '/v1/agent/report', { containers }, agent);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body;
  };
  const revision = async () => {
    const r = await api<{ revision: number }>('GET', `/v1/environments/${envId}`);
    assert.equal(r.status, 200);
    return r.body.revision;
  };
  const containersOf = async (service: string) =>
    (await api<{ data: Ctr[] }>('GET', `/v1/containers?environmentId=${envId}`)).body.data
      .filter((c) => c.name.startsWith(`shop-${service}-`))
      .sort((a, b) => a.serviceIndex - b.serviceIndex);
  /** Waits out the publisher's window (and a margin), then reads the revision. */
  const settled = async () => {
    await sleep(WINDOW_MS * 2);
    return revision();
  };
  /** The container as agents see it (the revisioned document). */
  const doc = (id: string) => srv.store.get('container', id);

  before(async () => {
    dir = tempDir('drover-status-');
    const t = await startTestServer({ dir, statusCoalesceMs: WINDOW_MS });
    srv = t.srv;
    envId = defaultEnvironment(srv.store).id;
    agent = await t.register('node1', {}, '192.0.2.40');
    const st = await api('POST', '/v1/stacks', { name: 'shop', dockerCompose: DC, rancherCompose: RC });
    assert.equal(st.status, 201, JSON.stringify(st.body));
  });
  after(async () => {
    await srv.close();
    cleanup(dir);
  });

  it('shows the environment revision in the API, the one agents sync to', async () => {
    const r = await api<{ revision: number }>('GET', `/v1/environments/${envId}`);
    assert.equal(r.body.revision, srv.store.revision(envId));
    const list = await api<{ data: { id: string; revision: number }[] }>('GET', '/v1/environments');
    assert.equal(list.body.data.find((e) => e.id === envId)?.revision, srv.store.revision(envId));
    const w = await request<{ revision: number }>(srv.url, 'GET', '/v1/agent/watch?timeout=0', undefined, agent);
    assert.equal(w.body.revision, r.body.revision);
    await api('PUT', `/v1/environments/${envId}`, { description: 'moved' });
    assert.equal(await revision(), r.body.revision + 1);
  });

  it('a container restarting 10 times leaves the revision unchanged, or changed once when it stops serving', async () => {
    const [web] = await containersOf('web');
    assert.ok(web);
    const r0 = await revision();
    await report([{ id: web.id, state: 'running', startCount: 1 }]);
    // The observed state is in the API at once; the document waits for the window.
    assert.equal((await api<Ctr>('GET', `/v1/containers/${web.id}`)).body.state, 'running');
    await eventually(async () => (await revision()) === r0 + 1, 5000, 'starting to serve is published');
    assert.equal(doc(web.id)?.state, 'running');
    const r1 = await settled();
    assert.equal(r1, r0 + 1, 'one revision for starting to serve');

    let n = 1;
    for (let i = 0; i < 10; i++) {
      await report([{ id: web.id, state: 'stopped', exitCode: 1, message: 'crashed' }]);
      await report([{ id: web.id, state: 'running', exitCode: null, startCount: ++n }]);
    }
    const shown = (await api<Ctr>('GET', `/v1/containers/${web.id}`)).body;
    assert.equal(shown.startCount, 11, 'the API shows the start count as reported');
    assert.equal(shown.state, 'running');
    assert.equal(await settled(), r1, 'ten restarts ending running: the revision did not move');

    for (let i = 0; i < 10; i++) {
      await report([{ id: web.id, state: 'running', startCount: ++n }]);
      await report([{ id: web.id, state: 'stopped', exitCode: 2, message: 'crashed again' }]);
    }
    await eventually(async () => (await revision()) === r1 + 1, 5000, 'stopping to serve is published');
    assert.equal(await settled(), r1 + 1, 'ten restarts ending stopped: one revision');
    const d = doc(web.id);
    assert.equal(d?.state, 'stopped');
    assert.equal(d?.exitCode, 2);
    const api1 = (await api<Ctr>('GET', `/v1/containers/${web.id}`)).body;
    assert.equal(api1.startCount, 21);
    assert.equal(api1.exitCode, 2);
    assert.equal(api1.transitioningMessage, 'crashed again');
    // Many reports in one request are one transaction: at most one revision.
    await report([
      { id: web.id, state: 'running' },
      { id: web.id, state: 'stopped' },
      { id: web.id, state: 'running' },
    ]);
    await eventually(async () => (await revision()) === r1 + 2, 5000, 'serving again');
    assert.equal(await settled(), r1 + 2);
  });

  it('strategy none: health transitions make exactly one revision each and the container is only marked', async () => {
    const [c] = await containersOf('marked');
    assert.ok(c);
    assert.equal(c.healthState, 'initializing');
    const r0 = await revision();
    await report([{ id: c.id, state: 'running', healthState: 'initializing' }]);
    assert.equal(await settled(), r0, 'running but initializing: not serving, nothing to publish');
    for (const [i, h] of (['healthy', 'unhealthy', 'healthy', 'unhealthy'] as const).entries()) {
      await report([{ id: c.id, state: 'running', healthState: h }]);
      await eventually(async () => (await revision()) === r0 + i + 1, 5000, `${h} published`);
      assert.equal(await settled(), r0 + i + 1, `${h}: exactly one revision`);
      assert.equal(doc(c.id)?.healthState, h);
      // Repeating the same report changes nothing.
      await report([{ id: c.id, state: 'running', healthState: h }]);
    }
    const [after] = await containersOf('marked');
    assert.equal(after?.id, c.id, 'strategy none keeps the container');
    assert.equal(after?.healthState, 'unhealthy');
  });

  it('strategy recreate: an unhealthy container is replaced in its slot, on the same address', async () => {
    const before = await containersOf('healed');
    assert.equal(before.length, 2);
    await report(before.map((c) => ({ id: c.id, state: 'running', healthState: 'healthy' })));
    const [victim, other] = before as [Ctr, Ctr];
    await report([{ id: victim.id, state: 'running', healthState: 'unhealthy' }]);
    const now = await containersOf('healed');
    assert.equal(now.length, 2);
    const fresh = now.find((c) => c.serviceIndex === victim.serviceIndex);
    assert.ok(fresh);
    assert.notEqual(fresh.id, victim.id, 'a new container record');
    assert.notEqual(fresh.uuid, victim.uuid, 'a new uuid (and so a new docker name)');
    assert.equal(fresh.name, victim.name, 'the same slot name');
    assert.equal(fresh.primaryIpAddress, victim.primaryIpAddress, 'the address belongs to the slot');
    assert.equal(fresh.hostId, victim.hostId);
    assert.equal(fresh.healthState, 'initializing');
    assert.equal(srv.store.get('container', victim.id), undefined, 'the unhealthy record is gone');
    assert.equal(now.find((c) => c.serviceIndex === other.serviceIndex)?.id, other.id, 'the healthy one is untouched');
  });

  it('strategy recreateOnQuorum: recreates only while at least quorum containers are healthy', async () => {
    const cs = (await containersOf('quorate')) as [Ctr, Ctr, Ctr];
    assert.equal(cs.length, 3);
    await report(cs.map((c) => ({ id: c.id, state: 'running', healthState: 'healthy' })));
    // One of three unhealthy: two healthy remain (quorum 2), so it is recreated.
    await report([{ id: cs[0].id, state: 'running', healthState: 'unhealthy' }]);
    let now = await containersOf('quorate');
    const first = now.find((c) => c.serviceIndex === cs[0].serviceIndex);
    assert.notEqual(first?.id, cs[0].id, 'recreated with quorum');
    assert.equal(first?.primaryIpAddress, cs[0].primaryIpAddress);
    // Another unhealthy while the first replacement initializes: one healthy left, under quorum.
    await report([{ id: cs[1].id, state: 'running', healthState: 'unhealthy' }]);
    now = await containersOf('quorate');
    const second = now.find((c) => c.serviceIndex === cs[1].serviceIndex);
    assert.equal(second?.id, cs[1].id, 'below quorum: only marked');
    assert.equal(second?.healthState, 'unhealthy');
    // The replacement becomes healthy: quorum again, and the waiting one is recreated.
    await report([{ id: first?.id, state: 'running', healthState: 'healthy' }]);
    now = await containersOf('quorate');
    const second2 = now.find((c) => c.serviceIndex === cs[1].serviceIndex);
    assert.notEqual(second2?.id, cs[1].id, 'recreated once the quorum is back');
    assert.equal(second2?.primaryIpAddress, cs[1].primaryIpAddress);
    assert.equal(now.find((c) => c.serviceIndex === cs[2].serviceIndex)?.id, cs[2].id);
  });

  const serviceOf = async (name: string) => {
    const svc = (await api<{ data: { id: string; stackId: string; state: string }[] }>('GET', `/v1/services?name=${name}`)).body.data[0];
    assert.ok(svc);
    return svc;
  };
  const addresses = (cs: Ctr[]) => cs.map((c) => `${c.serviceIndex}=${c.primaryIpAddress}`).sort();

  it('upgrades in batches: batchSize slots at a time, the next once the batch serves and intervalMillis passed', async () => {
    const svc = await serviceOf('rolled');
    const before = await containersOf('rolled');
    assert.equal(before.length, 4);
    await report(before.map((c) => ({ id: c.id, state: 'running' })));
    const up = await api<{ state: string; actions: Record<string, string> }>('POST', `/v1/services/${svc.id}?action=upgrade`, {
      inServiceStrategy: { launchConfig: { image: 'nginx:2' }, batchSize: 2, intervalMillis: 300 },
    });
    assert.equal(up.status, 200, JSON.stringify(up.body));
    assert.equal(up.body.state, 'upgrading');
    assert.deepEqual(Object.keys(up.body.actions), ['rollback']);
    const current = async () => (await containersOf('rolled')).filter((c) => c.generation === 'current');
    let cur = await current();
    assert.deepEqual(cur.map((c) => `${c.serviceIndex}:${c.config.image}`), ['1:nginx:2', '2:nginx:2', '3:nginx', '4:nginx']);
    assert.equal((await api('POST', `/v1/services/${svc.id}?action=finishupgrade`)).status, 409, 'batches remain');
    // The batch does not serve yet: the upgrade holds.
    await sleep(800);
    assert.equal((await serviceOf('rolled')).state, 'upgrading');
    const t0 = performance.now();
    await report(cur.filter((c) => c.config.image === 'nginx:2').map((c) => ({ id: c.id, state: 'running' })));
    await eventually(async () => (await serviceOf('rolled')).state === 'upgraded', 5000, 'second batch');
    const took = performance.now() - t0;
    assert.ok(took >= 300, `the next batch waited intervalMillis after the batch served (${took.toFixed(0)} ms)`);
    cur = await current();
    assert.deepEqual(cur.map((c) => `${c.serviceIndex}:${c.config.image}`), ['1:nginx:2', '2:nginx:2', '3:nginx:2', '4:nginx:2']);
    assert.deepEqual(addresses(cur), addresses(before), 'every slot kept its address');
    assert.equal((await api('POST', `/v1/services/${svc.id}?action=finishupgrade`)).status, 200);
    assert.equal((await containersOf('rolled')).length, 4, 'the previous generation is gone');
  });

  it('rolls back a batched upgrade midway: replaced slots go back, the others were never touched', async () => {
    const svc = await serviceOf('undone');
    const before = await containersOf('undone');
    const up = await api('POST', `/v1/services/${svc.id}?action=upgrade`, { inServiceStrategy: { launchConfig: { image: 'nginx:3' }, batchSize: 1 } });
    assert.equal(up.status, 200, JSON.stringify(up.body));
    const rb = await api<{ state: string }>('POST', `/v1/services/${svc.id}?action=rollback`);
    assert.equal(rb.status, 200, JSON.stringify(rb.body));
    assert.equal(rb.body.state, 'active');
    const after = await containersOf('undone');
    assert.deepEqual(after.map((c) => `${c.serviceIndex}:${c.config.image}:${c.generation}`), ['1:nginx:current', '2:nginx:current', '3:nginx:current']);
    assert.deepEqual(after.map((c) => c.id).slice(1), before.map((c) => c.id).slice(1), 'untouched slots keep their containers');
    assert.deepEqual(addresses(after), addresses(before));
  });

  it('start_first: each new container starts on an address of its own beside the old one, which stops once the new one serves; finish hands the addresses over', async () => {
    const svc = await serviceOf('first');
    const before = await containersOf('first');
    await report(before.map((c) => ({ id: c.id, state: 'running' })));
    const up = await api<{ state: string }>('POST', `/v1/services/${svc.id}?action=upgrade`, { inServiceStrategy: { launchConfig: { image: 'nginx:2' } } });
    assert.equal(up.status, 200, JSON.stringify(up.body));
    const gen = async () => {
      const all = await containersOf('first');
      return { cur: all.filter((c) => c.generation === 'current'), prev: all.filter((c) => c.generation === 'previous') };
    };
    let g = await gen();
    const new1 = g.cur.find((c) => c.serviceIndex === 1);
    assert.equal(new1?.config.image, 'nginx:2', 'batch 1: slot 1 has its new container');
    assert.notEqual(new1?.primaryIpAddress, before[0]?.primaryIpAddress, 'on an address of its own');
    assert.deepEqual(g.prev.map((c) => [c.serviceIndex, c.desiredState]), [[1, 'running']], 'the old one keeps running meanwhile');
    assert.equal(g.cur.find((c) => c.serviceIndex === 2)?.id, before[1]?.id, 'slot 2 not yet');
    await sleep(600);
    assert.equal((await gen()).prev[0]?.desiredState, 'running', 'held until the new container serves');
    await report([{ id: new1?.id, state: 'running' }]);
    await eventually(async () => (await gen()).prev.find((c) => c.serviceIndex === 1)?.desiredState === 'stopped', 5000, 'the old slot-1 container stopped once the new one serves');
    g = await eventually(async () => {
      const x = await gen();
      return x.cur.find((c) => c.serviceIndex === 2 && c.config.image === 'nginx:2') ? x : undefined;
    }, 5000, 'batch 2 started');
    const new2 = g.cur.find((c) => c.serviceIndex === 2);
    assert.equal(g.prev.find((c) => c.serviceIndex === 2)?.desiredState, 'running');
    await report([{ id: new2?.id, state: 'running' }]);
    await eventually(async () => (await gen()).prev.every((c) => c.desiredState === 'stopped') && (await serviceOf('first')).state === 'upgraded', 5000, 'all old stopped, upgraded');
    const fin = await api('POST', `/v1/services/${svc.id}?action=finishupgrade`);
    assert.equal(fin.status, 200, JSON.stringify(fin.body));
    const after = await containersOf('first');
    assert.deepEqual(after.map((c) => c.id), [new1?.id, new2?.id]);
    const owners = srv.store.db.prepare("SELECT ip, owner FROM ip_allocations WHERE owner LIKE ? ORDER BY owner").all(`svc:${svc.id}:%`) as { ip: string; owner: string }[];
    assert.deepEqual(owners.map((o) => o.ip), [new1?.primaryIpAddress, new2?.primaryIpAddress], 'the slots now own the new addresses; the old ones are free');
    for (const c of before) assert.equal(srv.store.db.prepare('SELECT 1 FROM ip_allocations WHERE ip = ?').get(c.primaryIpAddress), undefined);
    // The next (stop-first) upgrade keeps those addresses.
    const again = await api('POST', `/v1/services/${svc.id}?action=upgrade`, { inServiceStrategy: { launchConfig: { image: 'nginx:3' }, startFirst: false, batchSize: 2 } });
    assert.equal(again.status, 200, JSON.stringify(again.body));
    const cur3 = (await containersOf('first')).filter((c) => c.generation === 'current');
    assert.deepEqual(addresses(cur3), addresses(after));
  });

  it('restart: batchSize slots at a time are stopped, started once stopped, the next batch after the interval once they serve; the same containers', async () => {
    const svc = await serviceOf('bounced');
    const before = await containersOf('bounced');
    await report(before.map((c) => ({ id: c.id, state: 'running' })));
    const r = await api<{ restart?: { batch: number[]; phase: string }; actions: Record<string, string> }>('POST', `/v1/services/${svc.id}?action=restart`, { rollingRestartStrategy: { batchSize: 2, intervalMillis: 200 } });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(r.body.restart && [r.body.restart.batch, r.body.restart.phase], [[1, 2], 'stop']);
    assert.ok(!('upgrade' in r.body.actions) && !('restart' in r.body.actions), 'no upgrade or second restart meanwhile');
    const desired = async () => (await containersOf('bounced')).map((c) => `${c.serviceIndex}:${c.desiredState}`);
    assert.deepEqual(await desired(), ['1:stopped', '2:stopped', '3:running']);
    await report(before.slice(0, 2).map((c) => ({ id: c.id, state: 'stopped', exitCode: 0 })));
    await eventually(async () => (await desired()).join() === '1:running,2:running,3:running', 5000, 'batch 1 started again once stopped');
    await sleep(400);
    assert.deepEqual(await desired(), ['1:running', '2:running', '3:running'], 'slot 3 waits until batch 1 serves');
    const t0 = performance.now();
    await report(before.slice(0, 2).map((c) => ({ id: c.id, state: 'running' })));
    await eventually(async () => (await desired()).join() === '1:running,2:running,3:stopped', 5000, 'batch 2 stopped');
    assert.ok(performance.now() - t0 >= 200, 'after intervalMillis');
    await report([{ id: before[2]?.id, state: 'stopped', exitCode: 0 }]);
    await eventually(async () => (await desired()).join() === '1:running,2:running,3:running', 5000, 'batch 2 started');
    await report([{ id: before[2]?.id, state: 'running' }]);
    await eventually(async () => (await api<{ restart?: unknown }>('GET', `/v1/services/${svc.id}`)).body.restart === undefined, 5000, 'restart done');
    assert.deepEqual((await containersOf('bounced')).map((c) => c.id), before.map((c) => c.id), 'the same containers');
    const twice = await api('POST', `/v1/services/${svc.id}?action=restart`, { rollingRestartStrategy: { batchSize: 0 } });
    assert.equal(twice.status, 422);
  });

  it('start_first with a requested IP is refused by name; bad strategy values and a quorum strategy without its quorum name the field', async () => {
    const pinned = await serviceOf('pinned');
    const sf: Reply = await api<Reply['body']>('POST', `/v1/services/${pinned.id}?action=upgrade`, { inServiceStrategy: { launchConfig: { image: 'nginx:2' }, startFirst: true } });
    assert.equal(sf.status, 422, JSON.stringify(sf.body));
    assert.equal(sf.body.fieldName, 'startFirst');
    assert.match(sf.body.message, /asks for the address 10\.42\.99\.99, which the old and the new container cannot hold at once/);
    const svc = await serviceOf('web');
    for (const [field, value] of [
      ['batchSize', 0],
      ['intervalMillis', -1],
    ] as const) {
      const r: Reply = await api<Reply['body']>('POST', `/v1/services/${svc.id}?action=upgrade`, {
        inServiceStrategy: { [field]: value },
      });
      assert.equal(r.status, 422, JSON.stringify(r.body));
      assert.match(r.body.fieldName ?? '', new RegExp(field), JSON.stringify(r.body));
      const c: Reply = await api<Reply['body']>('POST', '/v1/services', {
        stackId: svc.stackId,
        name: `up-${field.toLowerCase()}`,
        launchConfig: { image: 'nginx' },
        upgradeStrategy: { [field]: value },
      });
      assert.equal(c.status, 422, JSON.stringify(c.body));
      assert.match(c.body.fieldName ?? '', new RegExp(field), JSON.stringify(c.body));
    }
    const q = await api<{ fieldName?: string }>('POST', '/v1/services', {
      stackId: svc.stackId,
      name: 'noquorum',
      launchConfig: { image: 'nginx' },
      healthCheck: { port: 80, strategy: 'recreateOnQuorum' },
    });
    assert.equal(q.status, 422, JSON.stringify(q.body));
    assert.equal(q.body.fieldName, 'healthCheck.quorum');
    // An upgrade without those settings still works.
    const ok = await api('POST', `/v1/services/${svc.id}?action=upgrade`, { inServiceStrategy: { startFirst: false } });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
  });
});
