// Health checks on real Docker engines (test/lab: 2 host netns, a dockerd each, the control plane in the
// root netns, one `drover agent` per host). A service with scale 3 and an HTTP health check (busybox
// httpd) becomes healthy and resolves to its 3 addresses through the agents' DNS; a container whose check
// starts failing leaves DNS within interval × unhealthy_threshold (+ slack for report, publish, watch and
// DNS swap) and, under `strategy: recreate`, is replaced on the same address; under `strategy: none` it is
// only marked (same docker container, out of DNS while unhealthy, back once healthy). Skips (with the
// reason) when the lab cannot run here. Bounded: 300 s; ~60-90 s on this VM.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { labUnavailable, runInContainer, startLab, waitFor, type Lab, type LabHost } from '../lab/lab.js';
import { startDrover, stopDroverLab, type ControlPlane, type LabAgent } from '../lab/drover.js';

const skip = labUnavailable();
const WAIT = 60_000;
const INTERVAL = 500;
const UNHEALTHY_THRESHOLD = 3;
/** Report (50 ms), the server's status coalescing window (250 ms), the watch, the DNS swap, nslookup polling, a loaded 2-core VM. */
const SLACK = 6_000;
const IDLE = ['sh', '-c', "trap 'exit 0' TERM; while :; do sleep 1; done"];
// busybox httpd serving /www (it daemonizes); /www/healthz is what the check asks for.
const WEB = ['sh', '-c', "mkdir -p /www && echo ok > /www/healthz && httpd -p 8080 -h /www && trap 'exit 0' TERM; while :; do sleep 1; done"];

interface Rec {
  id: string;
  name: string;
  hostId: string | null;
  serviceId: string | null;
  primaryIpAddress: string | null;
  state: string;
  healthState: string | null;
  generation: string;
  desiredState: string;
  externalId: string | null;
}

const dockerCompose = `
web:
  image: drover-test/busybox:1
  command: ${JSON.stringify(WEB)}
marked:
  image: drover-test/busybox:1
  command: ${JSON.stringify(WEB)}
  labels:
    io.rancher.scheduler.affinity:host_label: hostname=h1
client:
  image: drover-test/busybox:1
  command: ${JSON.stringify(IDLE)}
  links:
    - web
    - marked
  labels:
    io.rancher.scheduler.affinity:host_label: hostname=h1
`;

const check = (strategy: string) => `
  health_check:
    port: 8080
    request_line: GET /healthz HTTP/1.0
    interval: ${INTERVAL}
    response_timeout: 400
    healthy_threshold: 2
    unhealthy_threshold: ${UNHEALTHY_THRESHOLD}
    initializing_timeout: 20000
    strategy: ${strategy}`;

const rancherCompose = `
web:
  scale: 3${check('recreate')}
marked:
  scale: 2${check('none')}
`;

test('lab: health checks on real dockerd — healthy, DNS, recreate on the same address, strategy none', { skip: skip ? `skipped: ${skip}` : false, timeout: 300_000 }, async () => {
  const t0 = Date.now();
  const phase: Record<string, number> = {};
  const mark = (name: string, since: number) => (phase[name] = Date.now() - since);
  let lab: Lab | undefined;
  let cp: ControlPlane | undefined;
  let agents: LabAgent[] = [];
  let failed = true;
  try {
    lab = await startLab({ hosts: 2 });
    ({ cp, agents } = await startDrover(lab));
    mark('lab + drover up', t0);
    const api = cp.api.bind(cp);
    const hostName = new Map<string, string>();
    for (const h of (await api<{ data: { id: string; hostname: string }[] }>('GET', '/v1/hosts')).body.data) hostName.set(h.id, h.hostname);
    const labHost = (r: Rec) => lab?.hosts.find((h) => h.name === hostName.get(r.hostId ?? '')) as LabHost;

    const st = await api<{ id: string }>('POST', '/v1/stacks', { name: 'health', dockerCompose, rancherCompose });
    assert.equal(st.status, 201, JSON.stringify(st.body));
    const svcId = async (name: string) =>
      (await api<{ data: { id: string }[] }>('GET', `/v1/services?stackId=${st.body.id}&name=${name}`)).body.data[0]?.id as string;
    const [webId, markedId, clientSvc] = [await svcId('web'), await svcId('marked'), await svcId('client')];
    const recs = async (serviceId: string) =>
      (await api<{ data: Rec[] }>('GET', `/v1/containers?serviceId=${serviceId}`)).body.data.filter((c) => c.generation === 'current' && c.desiredState !== 'removed');
    const healthy = async (serviceId: string, n: number) => {
      const r = await recs(serviceId);
      return r.length === n && r.every((c) => c.state === 'running' && c.healthState === 'healthy') ? r : undefined;
    };

    // 1. scale 3 with a health check: every container healthy, and DNS answers all 3.
    const tHealthy = Date.now();
    const web = await waitFor(() => healthy(webId, 3), WAIT, 'the 3 web containers healthy');
    const markedAll = await waitFor(() => healthy(markedId, 2), WAIT, 'the 2 marked containers healthy');
    mark('healthy', tHealthy);
    const [marked, markedOther] = markedAll as [Rec, Rec];
    const [client] = await waitFor(async () => {
      const r = await recs(clientSvc);
      return r.length === 1 && r[0]?.state === 'running' && r[0].externalId ? r : undefined;
    }, WAIT, 'the client running');
    assert.ok(client);
    const h1 = labHost(client);
    const resolve = async (name: string): Promise<string[]> => {
      const ns = await runInContainer(h1, client.externalId as string, ['nslookup', `${name}.health.rancher.internal`], { timeoutMs: 10_000 });
      return [...ns.stdout.matchAll(/Address(?: \d+)?:\s+(10\.42\.\d+\.\d+)/g)].map((m) => m[1] as string).sort();
    };
    const webIps = web.map((c) => c.primaryIpAddress as string).sort();
    await waitFor(async () => JSON.stringify(await resolve('web')) === JSON.stringify(webIps), WAIT, `web resolves to its 3 addresses ${webIps.join(', ')}`);
    assert.ok(new Set(web.map((c) => c.hostId)).size >= 2, 'spread over both hosts: each agent checks its own');

    // 2. One web container's check starts failing (its httpd answers 404): out of DNS within
    //    interval × unhealthy_threshold + slack, then recreated on the same address (strategy recreate).
    const victim = web[0] as Rec;
    const vHost = labHost(victim);
    const broke = await runInContainer(vHost, victim.externalId as string, ['rm', '/www/healthz']);
    assert.equal(broke.exitCode, 0, broke.stderr);
    const tBreak = Date.now();
    const others = webIps.filter((ip) => ip !== victim.primaryIpAddress);
    await waitFor(async () => !(await resolve('web')).includes(victim.primaryIpAddress as string), WAIT, 'the failing container out of DNS');
    const leftDns = Date.now() - tBreak;
    phase['failing → out of DNS'] = leftDns;
    assert.ok(leftDns <= INTERVAL * UNHEALTHY_THRESHOLD + SLACK, `out of DNS in ${leftDns} ms (≤ ${INTERVAL} × ${UNHEALTHY_THRESHOLD} + ${SLACK})`);
    const resolvedMeanwhile = await resolve('web');
    assert.ok(others.every((ip) => resolvedMeanwhile.includes(ip)), `the healthy ones stay in DNS: ${resolvedMeanwhile.join(', ')}`);
    const tRecreate = Date.now();
    const replaced = await waitFor(async () => {
      const r = await healthy(webId, 3);
      const same = r?.find((c) => c.primaryIpAddress === victim.primaryIpAddress);
      return same && (same.id !== victim.id || same.externalId !== victim.externalId) ? same : undefined;
    }, WAIT, 'the failing container recreated, healthy, on the same address');
    mark('recreated and healthy', tRecreate);
    assert.equal(replaced.primaryIpAddress, victim.primaryIpAddress);
    await waitFor(async () => JSON.stringify(await resolve('web')) === JSON.stringify(webIps), WAIT, 'web resolves to the 3 addresses again');

    // 3. strategy none: marked unhealthy, out of DNS, not replaced; healthy and back once it answers.
    //    (Two containers, so that the other one keeps the name served whatever DNS does with a service
    //    that has no serving container.)
    const mHost = labHost(marked);
    const markedIps = markedAll.map((c) => c.primaryIpAddress as string).sort();
    assert.deepEqual(await resolve('marked'), markedIps);
    await runInContainer(mHost, marked.externalId as string, ['rm', '/www/healthz']);
    const tMark = Date.now();
    await waitFor(async () => (await recs(markedId)).find((c) => c.id === marked.id && c.healthState === 'unhealthy'), WAIT, 'marked unhealthy');
    await waitFor(async () => JSON.stringify(await resolve('marked')) === JSON.stringify([markedOther.primaryIpAddress]), WAIT, 'the unhealthy marked container out of DNS, the other in');
    phase['none: failing → out of DNS'] = Date.now() - tMark;
    // Give a recreate time to happen (it must not): several intervals past unhealthy.
    await new Promise((r) => setTimeout(r, 4 * INTERVAL * UNHEALTHY_THRESHOLD));
    const still = (await recs(markedId)).find((c) => c.primaryIpAddress === marked.primaryIpAddress);
    assert.equal((await recs(markedId)).length, 2);
    assert.equal(still?.id, marked.id, 'strategy none: the same record');
    assert.equal(still?.externalId, marked.externalId, 'strategy none: the same docker container');
    assert.equal(still?.healthState, 'unhealthy');
    assert.equal((await mHost.docker.getContainer(marked.externalId as string).inspect()).State.Running, true);
    await runInContainer(mHost, marked.externalId as string, ['sh', '-c', 'echo ok > /www/healthz']);
    await waitFor(() => healthy(markedId, 2), WAIT, 'marked healthy again');
    await waitFor(async () => JSON.stringify(await resolve('marked')) === JSON.stringify(markedIps), WAIT, 'marked back in DNS');
    failed = false;
  } finally {
    const tDown = Date.now();
    await stopDroverLab(lab, { cp, agents }, failed);
    mark('down', tDown);
    mark('total', t0);
    console.log(`lab health phases (ms): ${JSON.stringify(phase)}`);
  }
});
