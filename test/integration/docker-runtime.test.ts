// The Docker runtime against a real dockerd (one lab host, test/lab/lab.ts): a control plane, an agent
// with the runtime, and what the control plane schedules showing up in Docker — managed IPs, scale down,
// containers stopped by hand, start_once and volumes_from sidekicks, adoption of hand-started
// containers, a dockerd restart (events resync, no duplicates) and a missing image; the reconciler:
// containers converging in parallel within the bound, a pull that hangs (a registry that accepts and
// never answers) not delaying removals and restarts of other containers while the status says what is
// pulling, and drift (a container removed or replaced by hand) repaired.
// Skips (with the reason) when the lab cannot run here: not root, no dockerd, no busybox-static.
// Set DROVER_TEST_LOG=debug to see the agent's logs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type Dockerode from 'dockerode';
import { Agent } from '../../src/agent/agent.js';
import { runtimeController } from '../../src/agent/capabilities/runtime.js';
import { createDockerRuntime, type DockerRuntimeHandle } from '../../src/agent/runtime/docker-runtime.js';
import { parseEventLine, type DockerEvent } from '../../src/agent/runtime/docker-api.js';
import { lineSplitter } from '../../src/agent/runtime/lines.js';
import { freePort } from '../helpers/ports.js';
import { createLogger } from '../../src/common/log.js';
import { createRegistrationToken } from '../../src/server/auth/credentials.js';
import { defaultEnvironment } from '../../src/server/domain/environments.js';
import { cleanup, startTestServer, type TestServer } from '../helpers/server.js';
import { labUnavailable, runInContainer, startLab, waitFor, type Lab, type LabHost } from '../lab/lab.js';

interface Rec {
  id: string;
  uuid: string;
  name: string;
  serviceId: string | null;
  launchConfigName: string;
  adopted: boolean;
  externalId: string | null;
  primaryIpAddress: string | null;
  state: string;
  desiredState: string;
  exitCode: number | null;
  startCount: number;
  transitioningMessage?: string;
}

interface DockerView {
  Id: string;
  Name: string;
  Created: string;
  State: { Running: boolean; Status: string; StartedAt: string; ExitCode: number };
  Config: { Hostname: string; Labels: Record<string, string> };
  HostConfig: { Dns: string[] | null; DnsSearch: string[] | null; VolumesFrom: string[] | null; NetworkMode: string };
  NetworkSettings: { Networks: Record<string, { IPAddress: string; IPAMConfig?: { IPv4Address?: string } | null }> };
}

const skip = labUnavailable();
const WAIT = 60_000;

/** The runtime's drain before removing a container no longer scheduled (docker-runtime.ts drainMs). */
const DRAIN_MS = 1500;

test('docker runtime on a real dockerd', { skip: skip ? `skipped: ${skip}` : false, timeout: 600_000 }, async (t) => {
  const log = createLogger({ level: process.env.DROVER_TEST_LOG ?? 'silent' });
  let lab: Lab | undefined;
  let srv: TestServer | undefined;
  let agent: Agent | undefined;
  let rt: DockerRuntimeHandle | undefined;
  try {
    lab = await startLab({ hosts: 1 });
    const host = lab.hosts[0] as LabHost;
    const docker = host.docker;
    srv = await startTestServer();
    const s = srv;
    const image = lab.image;

    const api = s.api;
    const records = async (): Promise<Rec[]> => (await api<{ data: Rec[] }>('GET', '/v1/containers')).body.data;
    const record = async (id: string): Promise<Rec | undefined> => {
      const r = await api<Rec>('GET', `/v1/containers/${id}`);
      return r.status === 200 ? r.body : undefined;
    };
    const inspect = async (id: string): Promise<DockerView | undefined> => {
      try {
        return (await docker.getContainer(id).inspect()) as unknown as DockerView;
      } catch {
        return undefined;
      }
    };
    const dockerOurs = async (): Promise<Dockerode.ContainerInfo[]> =>
      docker.listContainers({ all: true, filters: { label: ['io.rancher.container.uuid'] } });
    const serviceRecords = async (stack: string, service: string): Promise<Rec[]> => {
      const svc = (await api<{ data: { id: string; stackId: string }[] }>('GET', `/v1/services?name=${service}`)).body.data;
      const stacks = (await api<{ data: { id: string; name: string }[] }>('GET', '/v1/stacks')).body.data;
      const st = stacks.find((x) => x.name === stack);
      const sv = svc.find((x) => x.stackId === st?.id);
      return sv ? (await records()).filter((c) => c.serviceId === sv.id) : [];
    };
    /** On a timeout, says what there was (records, docker, the runtime's status). */
    const explained = async <T>(wait: () => Promise<T>, now: () => Promise<unknown>): Promise<T> => {
      try {
        return await wait();
      } catch (err) {
        throw new Error(`${err instanceof Error ? err.message : String(err)}; now: ${JSON.stringify(await now().catch((e: unknown) => String(e)))}`);
      }
    };
    const running = (cs: Rec[]) => cs.length > 0 && cs.every((c) => c.state === 'running' && c.externalId);

    // A container drover must never touch: no labels.
    const bystander = await docker.createContainer({ name: 'bystander', Image: image, Cmd: ['sleep', '3600'], StopSignal: 'SIGKILL' });
    await bystander.start();

    rt = createDockerRuntime({
      socketPath: host.dockerSocket,
      log,
      netns: `/run/netns/${host.netns}`,
      stopTimeoutSec: 1,
      // Events (not the periodic safety net) must drive everything below.
      resyncIntervalMs: 10 * 60_000,
      eventDebounceMs: 50,
      concurrency: 4,
      pullTimeoutMs: 120_000,
      drainMs: DRAIN_MS,
    });
    const r = rt;
    agent = new Agent({
      dataDir: join(host.dataDir, 'agent'),
      serverUrl: s.url,
      registrationToken: createRegistrationToken(s.srv.store, defaultEnvironment(s.srv.store).id).token,
      hostname: host.name,
      agentIp: host.ip,
      log,
      // As drover agent wires it: the runtime's own status (pulls, failing containers) is the controller's health.
      capabilities: [runtimeController(rt)],
      containerStates: rt.states,
      watchTimeoutSec: 5,
    });
    await agent.start();
    const a = agent;
    await waitFor(() => a.hostId(), WAIT, 'agent registration');

    await t.test('creates and starts scheduled containers with their managed IP, DNS and names', async () => {
      const compose =
        `web:\n  image: ${image}\n  command: [sleep, '3600']\n  stop_signal: SIGKILL\n` +
        `  labels:\n    io.rancher.container.hostname_override: container_name\n`;
      const r = await api('POST', '/v1/stacks', { name: 'app', dockerCompose: compose, rancherCompose: 'web:\n  scale: 2\n' });
      assert.equal(r.status, 201, JSON.stringify(r.body));
      const cs = await waitFor(async () => {
        const x = await serviceRecords('app', 'web');
        return x.length === 2 && running(x) ? x : undefined;
      }, WAIT, 'two running web containers');
      for (const c of cs) {
        const d = await inspect(c.externalId as string);
        assert.ok(d, `docker has ${c.name}`);
        assert.equal(d.Name, `/r-${c.name}-${c.uuid.slice(0, 8)}`);
        assert.equal(d.NetworkSettings.Networks.drover?.IPAddress, c.primaryIpAddress, 'docker inspect agrees on the managed IP');
        assert.equal(d.Config.Labels['io.rancher.container.uuid'], c.uuid);
        assert.equal(d.Config.Hostname, c.name);
        assert.deepEqual(d.HostConfig.Dns, ['169.254.169.250']);
        assert.deepEqual(d.HostConfig.DnsSearch, ['app.rancher.internal', 'web.app.rancher.internal', 'rancher.internal']);
        assert.equal(c.startCount, 1);
      }
      const net = (await docker.getNetwork('drover').inspect()) as {
        IPAM: { Config: { Subnet: string; Gateway: string }[] };
        Options: Record<string, string>;
      };
      assert.deepEqual([net.IPAM.Config[0]?.Subnet, net.IPAM.Config[0]?.Gateway], ['10.42.0.0/16', '10.42.0.1']);
      assert.equal(net.Options['com.docker.network.bridge.name'], 'drover0');
      assert.equal(net.Options['com.docker.network.bridge.enable_ip_masquerade'], 'false');
      const sysctl = await host.exec(['sysctl', '-n', 'net.ipv4.conf.drover0.proxy_arp', 'net.ipv4.neigh.drover0.proxy_delay']);
      assert.deepEqual(sysctl.stdout.trim().split('\n'), ['1', '0']);
      // The two containers reach each other on their managed addresses.
      const [c1, c2] = cs as [Rec, Rec];
      const ping = await runInContainer(host, c1.externalId as string, ['ping', '-c', '1', '-W', '2', c2.primaryIpAddress as string]);
      assert.equal(ping.exitCode, 0, ping.stdout + ping.stderr);
      // The capability reported success for this host.
      await waitFor(async () => {
        const h = (await api<{ data: { applied: Record<string, { ok: boolean }> }[] }>('GET', '/v1/hosts')).body.data[0];
        return h?.applied['docker-runtime']?.ok === true;
      }, WAIT, 'docker-runtime applied ok');
    });

    await t.test('scaling down removes the surplus container, after it drained (drainMs)', async () => {
      const before = await serviceRecords('app', 'web');
      const svcId = before[0]?.serviceId as string;
      const asked = Date.now();
      const r = await api('PUT', `/v1/services/${svcId}`, { scale: 1 });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      const gone = before.filter((c) => !c.name.endsWith('-1'));
      assert.equal(gone.length, 1);
      await waitFor(async () => !(await inspect(gone[0]?.externalId as string)), WAIT, 'surplus container removed from docker');
      // A lower bound only (a loaded machine makes it later, never earlier).
      assert.ok(Date.now() - asked >= DRAIN_MS, `removed ${Date.now() - asked} ms after the scale-down: it ran on for the drain (${DRAIN_MS} ms) first`);
      const left = (await dockerOurs()).filter((c) => c.Labels['io.rancher.stack_service.name'] === 'app/web');
      assert.equal(left.length, 1);
      assert.equal(left[0]?.Labels['io.rancher.container.name'], 'app-web-1');
    });

    await t.test('a container stopped by hand is started again and the restart is reported', async () => {
      const [c] = await serviceRecords('app', 'web');
      assert.ok(c?.externalId);
      await docker.getContainer(c.externalId).stop({ t: 1 });
      const after = await waitFor(async () => {
        const x = await record(c.id);
        return x && x.state === 'running' && x.startCount === c.startCount + 1 ? x : undefined;
      }, WAIT, 'restarted and reported');
      assert.equal(after.externalId, c.externalId, 'the same container, started again (not recreated)');
      assert.match(after.transitioningMessage ?? '', /restarted by drover/);
      assert.equal((await inspect(c.externalId))?.State.Running, true);
    });

    await t.test('an upgrade stops the old container before the new one takes the slot address; a rollback undoes it', async () => {
      const [old] = await serviceRecords('app', 'web');
      assert.ok(old?.externalId && old.serviceId);
      const svc = (await api<{ launchConfig: Record<string, unknown> }>('GET', `/v1/services/${old.serviceId}`)).body;
      const asked = Date.now();
      const up = await api('POST', `/v1/services/${old.serviceId}?action=upgrade`, {
        inServiceStrategy: { launchConfig: { ...svc.launchConfig, command: ['sleep', '3601'] } },
      });
      assert.equal(up.status, 200, JSON.stringify(up.body));
      const fresh = await waitFor(async () => {
        const x = await serviceRecords('app', 'web');
        const n = x.find((c) => c.id !== old.id);
        const o = x.find((c) => c.id === old.id);
        return n && running([n]) && o?.state === 'stopped' ? n : undefined;
      }, WAIT, 'new generation running, old stopped');
      assert.ok(Date.now() - asked >= DRAIN_MS, `the old generation drained (${DRAIN_MS} ms) before it stopped: ${Date.now() - asked} ms`);
      assert.equal(fresh.primaryIpAddress, old.primaryIpAddress, 'the slot keeps its address');
      assert.equal((await inspect(fresh.externalId as string))?.NetworkSettings.Networks.drover?.IPAddress, old.primaryIpAddress);
      assert.equal((await inspect(old.externalId))?.State.Running, false);
      const rb = await api('POST', `/v1/services/${old.serviceId}?action=rollback`);
      assert.equal(rb.status, 200, JSON.stringify(rb.body));
      await waitFor(async () => !(await inspect(fresh.externalId as string)), WAIT, 'new generation removed');
      const back = await waitFor(async () => {
        const x = await record(old.id);
        return x?.state === 'running' ? x : undefined;
      }, WAIT, 'old generation running again');
      assert.equal(back.externalId, old.externalId, 'the kept container is started again');
      assert.equal((await inspect(old.externalId))?.NetworkSettings.Networks.drover?.IPAddress, old.primaryIpAddress);
    });

    let seedStartedAt = '';
    let seedId = '';
    await t.test('a start_once sidekick runs once and its volumes reach the primary (volumes_from)', async () => {
      const compose =
        `app:\n  image: ${image}\n  command: [sh, -c, 'cat /data/seed; exec sleep 3600']\n  stop_signal: SIGKILL\n` +
        `  volumes_from: [seed]\n  labels:\n    io.rancher.sidekicks: seed\n` +
        `seed:\n  image: ${image}\n  command: [sh, -c, 'echo ran >> /data/seed']\n  volumes: [/data]\n` +
        `  labels:\n    io.rancher.container.start_once: 'true'\n`;
      const r = await api('POST', '/v1/stacks', { name: 'vols', dockerCompose: compose });
      assert.equal(r.status, 201, JSON.stringify(r.body));
      const [primary, seed] = await explained(
        () =>
          waitFor(async () => {
            const x = await serviceRecords('vols', 'app');
            const p = x.find((c) => c.launchConfigName === '');
            const sk = x.find((c) => c.launchConfigName === 'seed');
            return p?.state === 'running' && sk?.state === 'stopped' && sk.exitCode === 0 ? ([p, sk] as const) : undefined;
          }, WAIT, 'primary running, seed done'),
        async () => ({
          records: (await serviceRecords('vols', 'app')).map((c) => [c.name, c.state, c.exitCode, c.externalId?.slice(0, 12), c.transitioningMessage]),
          docker: (await dockerOurs()).filter((c) => c.Labels['io.rancher.stack.name'] === 'vols').map((c) => [c.Names[0], c.State, c.Status]),
          runtime: rt?.status(),
        }),
      );
      const p = await inspect(primary.externalId as string);
      const sk = await inspect(seed.externalId as string);
      assert.ok(p && sk);
      assert.deepEqual(p.HostConfig.VolumesFrom, [sk.Name.replace(/^\//, '')]);
      assert.ok(Date.parse(sk.Created) <= Date.parse(p.Created), 'the sidekick was created before its primary');
      assert.equal(seed.startCount, 1);
      const out = await runInContainer(host, primary.externalId as string, ['cat', '/data/seed']);
      assert.equal(out.stdout, 'ran\n');
      // More passes (and a restart of the primary) do not run the seed again.
      await docker.getContainer(primary.externalId as string).stop({ t: 1 });
      await waitFor(async () => (await record(primary.id))?.startCount === 2, WAIT, 'primary restarted');
      await rt?.runtime.reconcile();
      await rt?.runtime.reconcile();
      const again = await inspect(seed.externalId as string);
      assert.equal(again?.State.Running, false);
      assert.equal(again?.State.StartedAt, sk.State.StartedAt, 'start_once: never started again');
      assert.equal((await runInContainer(host, primary.externalId as string, ['cat', '/data/seed'])).stdout, 'ran\n');
      assert.equal((await record(seed.id))?.startCount, 1);
      seedStartedAt = sk.State.StartedAt;
      seedId = sk.Id;
    });

    await t.test('adopts a hand-started container, gives it its IP, and drops the record when it is destroyed', async () => {
      const labels = { 'io.rancher.container.network': 'true', 'io.rancher.container.requested_ip': '10.42.200.200' };
      const hand = await docker.createContainer({ name: 'byhand', Image: image, Cmd: ['sleep', '3600'], StopSignal: 'SIGKILL', Labels: labels });
      await hand.start();
      const rec = await waitFor(async () => {
        const x = (await records()).find((c) => c.externalId === hand.id);
        return x?.state === 'running' ? x : undefined;
      }, WAIT, 'adopted record');
      assert.equal(rec.adopted, true);
      assert.equal(rec.primaryIpAddress, '10.42.200.200');
      await waitFor(async () => (await inspect(hand.id))?.NetworkSettings.Networks.drover?.IPAddress === '10.42.200.200', WAIT, 'joined to drover');
      // Idempotent: more passes do not adopt it twice.
      await rt?.runtime.reconcile();
      assert.equal((await records()).filter((c) => c.externalId === hand.id).length, 1);
      // Stopping it by hand is reported, not undone (the user runs it).
      await hand.stop({ t: 1 });
      await waitFor(async () => (await record(rec.id))?.state === 'stopped', WAIT, 'adopted container reported stopped');
      assert.equal((await inspect(hand.id))?.State.Running, false);
      await hand.remove({ force: true });
      await waitFor(async () => !(await record(rec.id)), WAIT, 'adopted record deleted');
      // Its address is free again: the next container asking for it gets it.
      const next = await docker.createContainer({ name: 'byhand2', Image: image, Cmd: ['sleep', '3600'], StopSignal: 'SIGKILL', Labels: labels });
      await next.start();
      const rec2 = await waitFor(async () => (await records()).find((c) => c.externalId === next.id), WAIT, 'second adoption');
      assert.equal(rec2.primaryIpAddress, '10.42.200.200');
      await waitFor(async () => (await inspect(next.id))?.NetworkSettings.Networks.drover?.IPAddress === '10.42.200.200', WAIT, 'second joined');
      await next.remove({ force: true });
      await waitFor(async () => !(await record(rec2.id)), WAIT, 'second adopted record deleted');
    });

    await t.test('containers converge in parallel, never more than the bound at once', async () => {
      // Docker's own event stream tells the overlap: serially, every create is followed by its start
      // before the next create; in parallel, several containers are between create and start at once.
      const stream = (await docker.getEvents({ filters: { type: ['container'], label: ['io.rancher.stack_service.name=par/web'] } })) as NodeJS.ReadableStream;
      const evs: DockerEvent[] = [];
      stream.on('data', lineSplitter((l) => {
        const ev = parseEventLine(l);
        if (ev && (ev.Action === 'create' || ev.Action === 'start')) evs.push(ev);
      }));
      try {
        const compose = `web:\n  image: ${image}\n  command: [sleep, '3600']\n  stop_signal: SIGKILL\n`;
        const res = await api<{ id: string }>('POST', '/v1/stacks', { name: 'par', dockerCompose: compose, rancherCompose: 'web:\n  scale: 8\n' });
        assert.equal(res.status, 201, JSON.stringify(res.body));
        await waitFor(async () => {
          const x = await serviceRecords('par', 'web');
          return x.length === 8 && running(x);
        }, WAIT, 'eight running par containers');
        await waitFor(() => evs.filter((e) => e.Action === 'start').length >= 8, 10_000, 'eight start events');
        let open = 0;
        let maxOpen = 0;
        for (const e of [...evs].sort((a, b) => (a.timeNano < b.timeNano ? -1 : a.timeNano > b.timeNano ? 1 : 0))) {
          open += e.Action === 'create' ? 1 : -1;
          maxOpen = Math.max(maxOpen, open);
        }
        assert.ok(maxOpen >= 2, `containers between create and start at once: ${maxOpen} (events ${evs.map((e) => e.Action).join(',')})`);
        const q = r.status().queue;
        assert.ok(q.peak >= 2 && q.peak <= 4, `operations in flight at once: ${q.peak} (bound 4)`);
        assert.equal(r.status().state, 'ok', r.status().message);
        assert.equal((await api('DELETE', `/v1/stacks/${res.body.id}`)).status < 300, true);
        await waitFor(async () => (await dockerOurs()).filter((c) => c.Labels['io.rancher.stack_service.name'] === 'par/web').length === 0, WAIT, 'par removed');
      } finally {
        (stream as NodeJS.ReadableStream & { destroy(): void }).destroy();
      }
    });

    await t.test('a pull that hangs does not delay removing or restarting other containers; the status says what is pulling', async () => {
      // A "registry" on 127.0.0.1 in dockerd's netns (insecure by default there) that accepts and never answers.
      const port = await freePort();
      const hang = host.spawn([process.execPath, '-e', `require('net').createServer(() => {}).listen(${port}, '127.0.0.1', () => console.log('listening'))`], {
        what: 'hanging registry',
      });
      try {
        let out = '';
        hang.stdout?.on('data', (c: Buffer) => (out += c.toString()));
        await waitFor(() => out.includes('listening'), 10_000, 'hanging registry listening');
        const victim = await api<{ id: string }>('POST', '/v1/containers', {
          name: 'victim',
          launchConfig: { image, command: ['sleep', '3600'], stopSignal: 'SIGKILL' },
        });
        assert.equal(victim.status, 201, JSON.stringify(victim.body));
        const v = await waitFor(async () => {
          const x = await record(victim.body.id);
          return x?.state === 'running' && x.externalId ? x : undefined;
        }, WAIT, 'victim running');
        const hangImage = `127.0.0.1:${port}/hang/app:1`;
        const h1 = await api<{ id: string }>('POST', '/v1/containers', { name: 'hang1', launchConfig: { image: hangImage } });
        const h2 = await api<{ id: string }>('POST', '/v1/containers', { name: 'hang2', launchConfig: { image: hangImage } });
        assert.equal(h1.status, 201, JSON.stringify(h1.body));
        await waitFor(async () => (await record(h1.body.id))?.state === 'creating', WAIT, 'hang1 waiting for its image');

        // While the pull hangs: a removal and a restart of other containers go through.
        assert.equal((await api('DELETE', `/v1/containers/${victim.body.id}`)).status, 204);
        // (dockerd itself gives up on this registry after ~25 s: the waits stay below that, and the
        // pull is checked to be still going on afterwards — the order, not the time, is the assertion.)
        await waitFor(async () => !(await inspect(v.externalId as string)), 15_000, 'victim removed from docker during the pull');
        const [web] = await serviceRecords('app', 'web');
        assert.ok(web?.externalId);
        await docker.getContainer(web.externalId).stop({ t: 1 });
        await waitFor(async () => {
          const x = await record(web.id);
          return x?.state === 'running' && x.startCount === web.startCount + 1;
        }, 15_000, 'web restarted during the pull');
        assert.equal((await record(h1.body.id))?.state, 'creating', 'the pull was still going on when both were done');

        // The pull is still going on, shared by both containers, and the status says so.
        const st = r.status();
        assert.equal(st.state, 'degraded', st.message);
        assert.equal(st.message, `pulling ${hangImage} for 2 containers`);
        assert.deepEqual(st.pulls.map((p) => [p.image, p.state, p.containers.length]), [[hangImage, 'pulling', 2]]);
        assert.equal((await record(h2.body.id))?.state, 'creating');
        assert.match((await record(h1.body.id))?.transitioningMessage ?? '', /pulling image 127\.0\.0\.1:\d+\/hang\/app:1/);
        const applied = async () =>
          (await api<{ data: { applied: Record<string, { ok: boolean; error?: string; message?: string; state?: string }> }[] }>('GET', '/v1/hosts')).body.data[0]
            ?.applied['docker-runtime'];
        await waitFor(async () => {
          const a = await applied();
          return a && !a.ok && a.state === 'degraded' && /pulling 127\.0\.0\.1:\d+\/hang\/app:1 for 2 containers/.test(`${a.error ?? ''} ${a.message ?? ''}`);
        }, WAIT, 'the host shows the runtime degraded: pulling');

        assert.equal((await api('DELETE', `/v1/containers/${h1.body.id}`)).status, 204);
        assert.equal((await api('DELETE', `/v1/containers/${h2.body.id}`)).status, 204);
        await waitFor(() => r.status().state === 'ok', WAIT, 'status ok once nothing waits for the pull');
      } finally {
        await lab?.stopProcess(hang);
      }
    });

    await t.test('drift: a container removed by hand is recreated, one replaced by hand is replaced back', async () => {
      const [web] = await serviceRecords('app', 'web');
      assert.ok(web?.externalId);
      const before = await inspect(web.externalId);
      assert.ok(before);
      await docker.getContainer(web.externalId).remove({ force: true });
      // An impostor with the record's labels but another launch config (a different config hash).
      const impostor = await docker.createContainer({
        name: 'impostor',
        Image: image,
        Cmd: ['sleep', '3601'],
        Labels: { ...before.Config.Labels, 'io.drover.config-hash': 'tampered' },
      });
      const back = await waitFor(async () => {
        const x = await record(web.id);
        const ours = (await dockerOurs()).filter((c) => c.Labels['io.rancher.container.uuid'] === web.uuid);
        return x?.state === 'running' && x.externalId !== web.externalId && ours.length === 1 && ours[0]?.Id === x.externalId ? x : undefined;
      }, WAIT, 'recreated, impostor gone');
      assert.equal(await inspect(impostor.id), undefined, 'the impostor was removed');
      const now = await inspect(back.externalId as string);
      assert.equal(now?.Config.Labels['io.drover.config-hash'], before.Config.Labels['io.drover.config-hash']);
      assert.equal(now?.NetworkSettings.Networks.drover?.IPAddress, web.primaryIpAddress, 'same managed address');
    });

    await t.test('a missing image is reported as a clear error, and removing the record clears it', async () => {
      const r = await api<{ id: string }>('POST', '/v1/containers', { name: 'ghost', launchConfig: { image: 'drover-test/missing:1' } });
      assert.equal(r.status, 201, JSON.stringify(r.body));
      const rec = await waitFor(async () => {
        const x = await record(r.body.id);
        return x?.state === 'error' ? x : undefined;
      }, WAIT, 'error state');
      assert.match(rec.transitioningMessage ?? '', /image drover-test\/missing:1 is not on this host and pulling it failed: \S/);
      const hostStatus = async () =>
        (await api<{ data: { applied: Record<string, { ok: boolean; error?: string; message?: string; state?: string }> }[] }>('GET', '/v1/hosts')).body.data[0]
          ?.applied['docker-runtime'];
      // First "pulling" (degraded), then the failure with the container and the image.
      await waitFor(async () => {
        const h = await hostStatus();
        return h?.ok === false && h.state === 'failed' && /ghost.*drover-test\/missing:1/.test(`${h.error ?? ''} ${h.message ?? ''}`);
      }, WAIT, 'capability status not ok, naming the container and the image');
      assert.equal(rt?.status().state, 'failed');
      const never = await api<{ id: string }>('POST', '/v1/containers', {
        name: 'ghost2',
        launchConfig: { image: 'drover-test/missing:2', pullPolicy: 'never' },
      });
      await waitFor(async () => /pull policy is "never"/.test((await record(never.body.id))?.transitioningMessage ?? ''), WAIT, 'never error');
      assert.equal((await api('DELETE', `/v1/containers/${r.body.id}`)).status, 204);
      assert.equal((await api('DELETE', `/v1/containers/${never.body.id}`)).status, 204);
      await waitFor(async () => (await hostStatus())?.ok === true, WAIT, 'capability ok again');
      assert.equal((await dockerOurs()).filter((c) => c.Labels['io.rancher.container.name']?.startsWith('ghost')).length, 0);
    });

    await t.test("a container that cannot start shows Docker's reason (a host port already taken)", async () => {
      const holder = await docker.createContainer({
        name: 'port-holder',
        Image: image,
        Cmd: ['sleep', '3600'],
        StopSignal: 'SIGKILL',
        ExposedPorts: { '80/tcp': {} },
        HostConfig: { PortBindings: { '80/tcp': [{ HostPort: '18081' }] } },
      });
      await holder.start();
      try {
        const r = await api<{ id: string }>('POST', '/v1/containers', { name: 'clash', launchConfig: { image, command: ['sleep', '3600'], ports: [{ publicPort: 18081, privatePort: 80, protocol: 'tcp' }] } });
        assert.equal(r.status, 201, JSON.stringify(r.body));
        const rec = await waitFor(async () => {
          const x = await record(r.body.id);
          return x?.state === 'error' && x.transitioningMessage ? x : undefined;
        }, WAIT, 'the clash reported in error');
        assert.match(rec.transitioningMessage ?? '', /start.*(port is already allocated|address already in use)/i);
        assert.equal((await api('DELETE', `/v1/containers/${r.body.id}`)).status, 204);
      } finally {
        await holder.remove({ force: true });
      }
    });

    await t.test('after a dockerd restart the containers come back without duplicates (events resync)', async () => {
      const before = await records();
      const scheduled = before.filter((c) => !c.adopted);
      const countsBefore = new Map(scheduled.map((c) => [c.id, c.startCount]));
      await lab?.restartDockerd(host);
      // Everything desired running runs again, in the same containers.
      const after = await waitFor(async () => {
        const x = (await records()).filter((c) => !c.adopted);
        const ok = x.every((c) =>
          c.launchConfigName === 'seed' ? c.state === 'stopped' : c.state === 'running' && c.startCount > (countsBefore.get(c.id) ?? 0),
        );
        return ok ? x : undefined;
      }, 90_000, 'containers running again after the dockerd restart');
      for (const c of after) assert.equal(c.externalId, scheduled.find((x) => x.id === c.id)?.externalId, `${c.name}: same container`);
      const ours = await dockerOurs();
      const perUuid = new Map<string, number>();
      for (const c of ours) {
        const u = c.Labels['io.rancher.container.uuid'] as string;
        perUuid.set(u, (perUuid.get(u) ?? 0) + 1);
      }
      assert.deepEqual([...perUuid.values()].filter((n) => n > 1), [], 'one docker container per record');
      assert.equal(ours.length, after.length);
      // The start_once seed was not run again.
      assert.equal((await inspect(seedId))?.State.StartedAt, seedStartedAt);
      // Events flow again after the reconnect: a hand stop is undone without any periodic pass.
      const web = after.find((c) => c.name === 'app-web-1');
      assert.ok(web?.externalId);
      const startCount = (await record(web.id))?.startCount ?? 0;
      await docker.getContainer(web.externalId).stop({ t: 1 });
      await waitFor(async () => {
        const x = await record(web.id);
        return x?.state === 'running' && x.startCount === startCount + 1;
      }, WAIT, 'restart after the reconnect');
      const d = await inspect(web.externalId);
      assert.equal(d?.NetworkSettings.Networks.drover?.IPAddress, web.primaryIpAddress, 'same managed IP after the restart');
    });

    await t.test('never touches containers without drover labels', async () => {
      const b = await inspect(bystander.id);
      assert.ok(b, 'the bystander still exists');
      assert.equal(b.NetworkSettings.Networks.drover, undefined, 'and is not on the managed network');
    });
  } finally {
    await agent?.stop().catch(() => undefined); // closes the runtime (capability applier)
    await rt?.close().catch(() => undefined);
    if (srv) {
      await srv.close().catch(() => undefined);
      cleanup(srv.dir);
    }
    await lab?.down();
  }
});
