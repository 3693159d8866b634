// End to end on a 3-host lab (test/lab): three network namespaces, a real dockerd in each, the control
// plane in the root namespace, one `drover agent` process per host namespace. A compose stack pinned by
// host labels lands where it should with the addresses the API shows; scale, a hand stop, a dockerd
// restart, an agent restart, adoption, upgrade/rollback with a host bind mount; and, from inside a
// container, metadata and DNS. Skips (with the reason) when the lab cannot run here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import type Docker from 'dockerode';
import { labUnavailable, runInContainer, startLab, waitFor, type Lab, type LabHost } from '../lab/lab.js';
import { startDrover, stopDroverLab, type ControlPlane, type LabAgent } from '../lab/drover.js';

const skip = labUnavailable();
const WAIT = 60_000;
// A long-running command that stops promptly on SIGTERM (busybox sleep as PID 1 would not).
const IDLE = ['sh', '-c', "trap 'exit 0' TERM; while :; do sleep 1; done"];

interface Rec {
  id: string;
  uuid: string;
  name: string;
  hostId: string | null;
  serviceId: string | null;
  primaryIpAddress: string | null;
  state: string;
  generation: string;
  startCount: number;
  adopted: boolean;
  externalId: string | null;
}

function compose(bindDir: string): string {
  const cmd = JSON.stringify(IDLE);
  const dataCmd = JSON.stringify(['sh', '-c', `echo "$$(hostname) v1" >> /data/log; trap 'exit 0' TERM; while :; do sleep 1; done`]);
  return `
web:
  image: drover-test/busybox:1
  command: ${cmd}
  labels:
    io.rancher.scheduler.affinity:host_label: hostname=h1
  links:
    - db:database
db:
  image: drover-test/busybox:1
  command: ${cmd}
  labels:
    io.rancher.scheduler.affinity:host_label: hostname=h1
    io.rancher.container.requested_ip: 10.42.7.7
data:
  image: drover-test/busybox:1
  command: ${dataCmd}
  volumes:
    - ${bindDir}:/data
  labels:
    io.rancher.scheduler.affinity:host_label: hostname=h2
spread:
  image: drover-test/busybox:1
  command: ${cmd}
  labels:
    io.rancher.scheduler.affinity:host_label: hostname=h3
`;
}

async function dockerByUuid(docker: Docker): Promise<Map<string, Docker.ContainerInfo[]>> {
  const list = await docker.listContainers({ all: true, filters: { label: ['io.rancher.container.uuid'] } });
  const m = new Map<string, Docker.ContainerInfo[]>();
  for (const c of list) {
    const u = c.Labels['io.rancher.container.uuid'] as string;
    m.set(u, [...(m.get(u) ?? []), c]);
  }
  return m;
}

test('3-host lab: compose stack on real Docker engines, end to end', { skip: skip ? `skipped: ${skip}` : false, timeout: 600_000 }, async () => {
  const t0 = Date.now();
  const phase: Record<string, number> = {};
  const mark = (name: string, since: number) => (phase[name] = Date.now() - since);
  let lab: Lab | undefined;
  let cp: ControlPlane | undefined;
  let agents: LabAgent[] = [];
  let failed = true;
  try {
    lab = await startLab({ hosts: 3 });
    mark('lab up', t0);
    const tDrover = Date.now();
    ({ cp, agents } = await startDrover(lab));
    mark('control plane + 3 agents', tDrover);
    const api = cp.api.bind(cp);
    const hostByName = new Map<string, LabHost>(lab.hosts.map((h) => [h.name, h]));
    const hostIds = new Map<string, string>();
    for (const h of (await api<{ data: { id: string; hostname: string }[] }>('GET', '/v1/hosts')).body.data) hostIds.set(h.id, h.hostname);
    const labHostOf = (r: Rec) => hostByName.get(hostIds.get(r.hostId ?? '') ?? '') as LabHost;

    const bindDir = join(lab.dir, 'h2-data');
    mkdirSync(bindDir, { recursive: true });
    chmodSync(bindDir, 0o777);
    const tStack = Date.now();
    const st = await api<{ id: string }>('POST', '/v1/stacks', { name: 'e2e', dockerCompose: compose(bindDir) });
    assert.equal(st.status, 201, JSON.stringify(st.body));
    const recs = async () => (await api<{ data: Rec[] }>('GET', `/v1/containers?stackId=${st.body.id}`)).body.data;
    const svcId = async (name: string) => (await api<{ data: { id: string }[] }>('GET', `/v1/services?stackId=${st.body.id}&name=${name}`)).body.data[0]?.id as string;
    const allRunning = async (n: number) => {
      const r = (await recs()).filter((c) => c.generation === 'current');
      return r.length === n && r.every((c) => c.state === 'running') ? r : undefined;
    };
    let running = await waitFor(() => allRunning(4), WAIT, 'all 4 containers running');
    mark('stack running', tStack);

    // Placement, addresses, and docker inspect agreeing with the API.
    const byName = (n: string) => running.find((c) => c.name === `e2e-${n}-1`) as Rec;
    assert.equal(hostIds.get(byName('web').hostId ?? ''), 'h1');
    assert.equal(hostIds.get(byName('db').hostId ?? ''), 'h1');
    assert.equal(hostIds.get(byName('data').hostId ?? ''), 'h2');
    assert.equal(hostIds.get(byName('spread').hostId ?? ''), 'h3');
    assert.equal(byName('db').primaryIpAddress, '10.42.7.7', 'the requested address');
    for (const r of running) {
      const h = labHostOf(r);
      const found = (await dockerByUuid(h.docker)).get(r.uuid) ?? [];
      assert.equal(found.length, 1, `${r.name}: exactly one docker container on ${h.name}`);
      const info = await h.docker.getContainer(found[0]?.Id as string).inspect();
      assert.equal(info.NetworkSettings.Networks.drover?.IPAddress, r.primaryIpAddress, `${r.name}: docker inspect shows the API's address`);
      assert.equal(r.externalId, info.Id);
      for (const other of lab.hosts.filter((x) => x !== h)) {
        assert.equal((await dockerByUuid(other.docker)).get(r.uuid), undefined, `${r.name} is not on ${other.name}`);
      }
    }

    // From inside web: metadata knows it by its source address; DNS answers its link, not the rest.
    const h1 = hostByName.get('h1') as LabHost;
    const webDocker = ((await dockerByUuid(h1.docker)).get(byName('web').uuid) ?? [])[0]?.Id as string;
    const ip = await runInContainer(h1, webDocker, ['wget', '-qO-', 'http://169.254.169.250/latest/self/container/primary_ip']);
    assert.equal(ip.stdout, byName('web').primaryIpAddress, `metadata self/container/primary_ip: ${ip.stderr}`);
    const svcName = await runInContainer(h1, webDocker, ['wget', '-qO-', 'http://rancher-metadata/latest/self/service/name']);
    assert.equal(svcName.stdout, 'web', `rancher-metadata resolves and answers: ${svcName.stderr}`);
    // db serves once the control plane has published its running state (coalesced per window), so DNS
    // may lag the API's record by that window: ask again until it answers, within a bound.
    for (const name of ['db.e2e.rancher.internal', 'database.rancher.internal', 'database']) {
      await waitFor(async () => {
        const ns = await runInContainer(h1, webDocker, ['nslookup', name]);
        assert.match(ns.stdout, /10\.42\.7\.7/, `nslookup ${name} from web:\n${ns.stdout}${ns.stderr}`);
        return true;
      }, 15_000, `${name} resolving to db's address`);
    }
    const hidden = await runInContainer(h1, webDocker, ['nslookup', 'spread.e2e.rancher.internal']);
    assert.doesNotMatch(hidden.stdout, /Address:?\s+10\.42\./, 'not linked → not resolvable (linked scope)');

    // Scale up and down (all pinned to h3).
    const spreadId = await svcId('spread');
    await api('PUT', `/v1/services/${spreadId}`, { scale: 3 });
    running = await waitFor(() => allRunning(6), WAIT, 'scale up to 3');
    const h3 = hostByName.get('h3') as LabHost;
    const spreadUuids = () => running.filter((c) => c.serviceId === spreadId).map((c) => c.uuid);
    await waitFor(async () => {
      const d = await dockerByUuid(h3.docker);
      return spreadUuids().every((u) => d.get(u)?.length === 1);
    }, WAIT, 'three spread containers in docker on h3');
    await api('PUT', `/v1/services/${spreadId}`, { scale: 1 });
    running = await waitFor(() => allRunning(4), WAIT, 'scale down to 1');
    await waitFor(async () => (await h3.docker.listContainers({ all: true, filters: { label: ['io.rancher.stack_service.name=e2e/spread'] } })).length === 1, WAIT, 'docker on h3 down to one spread container');

    // Stop by hand: reported, and started again (service containers are kept running).
    const db = byName('db');
    const dbDocker = ((await dockerByUuid(h1.docker)).get(db.uuid) ?? [])[0]?.Id as string;
    await h1.docker.getContainer(dbDocker).stop({ t: 5 });
    const restarted = await waitFor(async () => {
      const r = (await recs()).find((c) => c.id === db.id);
      return r && r.state === 'running' && r.startCount > db.startCount ? r : undefined;
    }, WAIT, 'db restarted after a hand stop');
    assert.equal((await h1.docker.getContainer(dbDocker).inspect()).State.Running, true, 'the same container runs again');
    assert.equal(restarted.primaryIpAddress, '10.42.7.7');

    // Restart dockerd on h1: no duplicates, states reconciled.
    const tRestart = Date.now();
    await lab.restartDockerd(h1);
    await waitFor(async () => {
      const d = await dockerByUuid(h1.docker);
      const mine = running.filter((r) => hostIds.get(r.hostId ?? '') === 'h1');
      return mine.every((r) => d.get(r.uuid)?.length === 1 && d.get(r.uuid)?.[0]?.State === 'running');
    }, WAIT, 'h1 containers running again, one each, after a dockerd restart');
    running = await waitFor(() => allRunning(4), WAIT, 'API states after the dockerd restart');
    mark('dockerd restart', tRestart);

    // Restart the agent on h2: same.
    const h2 = hostByName.get('h2') as LabHost;
    await (agents.find((a) => a.host.name === 'h2') as LabAgent).restart();
    await new Promise((r) => setTimeout(r, 1500));
    const after = await dockerByUuid(h2.docker);
    assert.equal(after.get(byName('data').uuid)?.length, 1, 'no duplicate after an agent restart');
    await waitFor(() => allRunning(4), WAIT, 'API states after the agent restart');

    // Adoption of a container started by hand with io.rancher.container.network=true, then its removal.
    const hand = await h3.docker.createContainer({
      name: 'by-hand',
      Image: 'drover-test/busybox:1',
      Cmd: IDLE,
      Labels: { 'io.rancher.container.network': 'true' },
    });
    await hand.start();
    const adopted = await waitFor(async () => {
      const all = (await api<{ data: Rec[] }>('GET', '/v1/containers?adopted=true')).body.data;
      return all.find((c) => c.externalId === hand.id && c.primaryIpAddress);
    }, WAIT, 'the hand-started container adopted');
    assert.equal(hostIds.get(adopted.hostId ?? ''), 'h3');
    await waitFor(async () => (await hand.inspect()).NetworkSettings.Networks.drover?.IPAddress === adopted.primaryIpAddress, WAIT, 'adopted container on the managed network with its address');
    await hand.remove({ force: true });
    await waitFor(async () => (await api('GET', `/v1/containers/${adopted.id}`)).status === 404, WAIT, 'adopted container cleaned up');

    // Upgrade then rollback: the address and the data in the host bind mount are kept.
    const dataRec = byName('data');
    const dataSvc = await svcId('data');
    await waitFor(() => readFileSync(join(bindDir, 'log'), 'utf8').includes('v1'), WAIT, 'v1 wrote to the bind mount');
    const svc = (await api<{ launchConfig: Record<string, unknown> }>('GET', `/v1/services/${dataSvc}`)).body;
    const v2 = { ...svc.launchConfig, command: ['sh', '-c', `echo "$(hostname) v2" >> /data/log; trap 'exit 0' TERM; while :; do sleep 1; done`] };
    const up = await api('POST', `/v1/services/${dataSvc}?action=upgrade`, { inServiceStrategy: { launchConfig: v2 } });
    assert.equal(up.status, 200, JSON.stringify(up.body));
    const upgraded = await waitFor(async () => {
      const r = (await recs()).filter((c) => c.serviceId === dataSvc);
      const cur = r.find((c) => c.generation === 'current');
      const prev = r.find((c) => c.generation === 'previous');
      return cur && prev && cur.state === 'running' && prev.state === 'stopped' ? cur : undefined;
    }, WAIT, 'upgraded: new container running, old one stopped and kept');
    assert.equal(upgraded.primaryIpAddress, dataRec.primaryIpAddress, 'the upgrade keeps the address');
    await waitFor(() => readFileSync(join(bindDir, 'log'), 'utf8').includes('v2'), WAIT, 'v2 wrote to the same bind mount');
    await api('POST', `/v1/services/${dataSvc}?action=rollback`);
    const back = await waitFor(async () => {
      const r = (await recs()).filter((c) => c.serviceId === dataSvc);
      return r.length === 1 && r[0]?.id === dataRec.id && r[0].state === 'running' ? r[0] : undefined;
    }, WAIT, 'rolled back to the old container');
    assert.equal(back.primaryIpAddress, dataRec.primaryIpAddress);
    const inspect = await h2.docker.getContainer(back.externalId as string).inspect();
    assert.equal(inspect.NetworkSettings.Networks.drover?.IPAddress, dataRec.primaryIpAddress);
    const lines = readFileSync(join(bindDir, 'log'), 'utf8');
    assert.match(lines, /v1[\s\S]*v2[\s\S]*v1/, `the bind mount kept every generation's data:\n${lines}`);
    await waitFor(async () => ((await dockerByUuid(h2.docker)).get(upgraded.uuid) ?? []).length === 0, WAIT, 'the rolled-back new container is removed from docker');
    failed = false;
  } finally {
    const tDown = Date.now();
    await stopDroverLab(lab, { cp, agents }, failed);
    mark('down', tDown);
    mark('total', t0);
    console.log(`lab e2e phases (ms): ${JSON.stringify(phase)}`);
  }
});
