// The multi-host lab itself (test/lab/): 3 host netns with their own dockerd, containers with fixed IPs,
// the underlay, the control plane reachable from the hosts, an agent registering, a dockerd restart that
// keeps containers, and a teardown that leaves nothing behind. Needs root, dockerd and busybox-static;
// skipped otherwise. Prints phase timings (the budget: cold up + a test + down in about a minute).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import { enableProxyArp, labUnavailable, runInContainer, startLab, waitFor, BASE_DIR, type Lab, type LabHost } from '../lab/lab.js';
import { startAgent, startControlPlane, waitForHost, type ControlPlane } from '../lab/drover.js';
import { isAlive, run } from '../lab/proc.js';
import { readState, type HostState } from '../lab/state.js';
import { mountsUnder } from '../lab/teardown.js';

const unavailable = labUnavailable();
const NET = 'smoke';
const subnet = (h: LabHost) => `10.77.${h.index}`;
const webIp = (h: LabHost) => `${subnet(h)}.10`;
const clientIp = (h: LabHost) => `${subnet(h)}.11`;
const HTTP_GET = `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3`;

const secs = (ms: number | undefined) => (ms === undefined ? '-' : `${(ms / 1000).toFixed(2)} s`);

/** A user network with a fixed subnet (no masquerade, as the runtime's) and two containers with --ip. */
async function containersOn(h: LabHost, image: string): Promise<void> {
  await h.docker.createNetwork({
    Name: NET,
    Driver: 'bridge',
    IPAM: { Config: [{ Subnet: `${subnet(h)}.0/24`, Gateway: `${subnet(h)}.1` }] },
    Options: { 'com.docker.network.bridge.enable_ip_masquerade': 'false', 'com.docker.network.bridge.name': 'br-smoke' },
  });
  const start = async (name: string, ip: string, cmd: string[]) => {
    const c = await h.docker.createContainer({
      name,
      Image: image,
      Cmd: cmd,
      // Init: tini forwards SIGTERM, so stopping (dockerd restart) does not wait the 10 s stop timeout
      HostConfig: { NetworkMode: NET, Init: true, RestartPolicy: { Name: 'unless-stopped' } },
      NetworkingConfig: { EndpointsConfig: { [NET]: { IPAMConfig: { IPv4Address: ip } } } },
    });
    await c.start();
  };
  await Promise.all([start('web', webIp(h), ['httpd', '-f', '-p', '80', '-h', '/var/www']), start('client', clientIp(h), ['sleep', '3600'])]);
}

async function ipOf(h: LabHost, name: string): Promise<string | undefined> {
  const info = await h.docker.getContainer(name).inspect();
  return info.NetworkSettings.Networks[NET]?.IPAddress;
}

describe('lab smoke: 3 hosts with their own dockerd', { skip: unavailable ? `lab unavailable: ${unavailable}` : false, timeout: 240_000 }, () => {
  let lab: Lab | undefined;
  let cp: ControlPlane | undefined;
  let testStart = 0;
  const timings: Record<string, number> = {};

  before(async () => {
    lab = await startLab({ hosts: 3, log: (m) => console.log(`  [lab] ${m}`) });
    testStart = Date.now();
  });

  after(async () => {
    await lab?.down(); // idempotent: a no-op when the last test already took it down
    if (lab) {
      const t = { ...lab.timings, ...timings };
      console.log(
        `  [lab] timings: reap ${secs(t.reap)}, topology ${secs(t.topology)}, dockerd x3 ${secs(t.dockerd)}, image x3 ${secs(t.image)}` +
          ` => cold up ${secs(t.up)}; tests ${secs(t.tests)} (dockerd restart ${secs(t.restart)}); down ${secs(t.down)}; total ${secs((t.up ?? 0) + (t.tests ?? 0) + (t.down ?? 0))}`,
      );
    }
  });

  const L = (): Lab => {
    assert.ok(lab, 'lab is up');
    return lab;
  };
  const host = (i: number): LabHost => L().hosts[i - 1] as LabHost;

  test('every host runs its own dockerd inside its netns, with the test image', async () => {
    const st = readState(L().dir);
    assert.ok(st, 'lab.json is readable');
    for (const h of L().hosts) {
      const hs: HostState | undefined = st.hosts.find((x) => x.name === h.name);
      assert.ok(hs?.dockerd, `${h.name}: dockerd recorded`);
      assert.ok(isAlive(hs.dockerd), `${h.name}: dockerd alive`);
      const ns = await run(['ip', 'netns', 'identify', String(hs.dockerd.pid)]);
      assert.equal(ns.stdout.trim(), h.netns, `${h.name}: dockerd runs in ${h.netns}`);
      const info = (await h.docker.info()) as { DockerRootDir: string };
      assert.equal(info.DockerRootDir, hs.dataRoot);
      await h.docker.getImage(L().image).inspect();
      const addrs = (await h.exec(['ip', '-4', '-o', 'addr', 'show'])).stdout;
      assert.match(addrs, new RegExp(`eth0\\s+inet ${h.ip.replace(/\./g, '\\.')}/24`));
      assert.match(addrs, /lo\s+inet 169\.254\.169\.250\/32/);
      assert.equal((await h.exec(['sysctl', '-n', 'net.ipv4.ip_forward'])).stdout.trim(), '1');
      // forwarding was on before dockerd started, so dockerd left the FORWARD policy at ACCEPT
      assert.match((await h.exec(['iptables', '-S', 'FORWARD'])).stdout, /-P FORWARD ACCEPT/);
    }
  });

  test('containers with fixed IPs on a user network; docker inspect agrees', async () => {
    await Promise.all(L().hosts.map((h) => containersOn(h, L().image)));
    for (const h of L().hosts) {
      assert.equal(await ipOf(h, 'web'), webIp(h));
      assert.equal(await ipOf(h, 'client'), clientIp(h));
      const r = await runInContainer(h, 'client', ['ip', '-4', '-o', 'addr', 'show', 'eth0']);
      assert.equal(r.exitCode, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`inet ${clientIp(h).replace(/\./g, '\\.')}/24`));
    }
    // the proxy-ARP helper (for /16 masks on a host bridge): applies to an existing bridge only
    const h1 = host(1);
    assert.equal(await enableProxyArp(h1, 'br-smoke'), true);
    assert.equal(await enableProxyArp(h1, 'nosuchbr0'), false);
    const sysctl = await h1.exec(['sysctl', '-n', 'net.ipv4.conf.br-smoke.proxy_arp', 'net.ipv4.neigh.br-smoke.proxy_delay']);
    assert.equal(sysctl.stdout, '1\n0\n');
    // a --network host container: dockerd then leaves an nsfs mount (exec/netns/default) that down() must remove
    const hostNet = await host(2).docker.createContainer({ Image: L().image, Cmd: ['sleep', '3600'], HostConfig: { NetworkMode: 'host', Init: true } });
    await hostNet.start();
  });

  test('a container reaches another on the same host (nc; busybox wget too)', async () => {
    const h1 = host(1);
    const r = await runInContainer(h1, 'client', ['sh', '-c', `${HTTP_GET} ${webIp(h1)} 80`]);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, /^HTTP\/1\.[01] 200/);
    assert.match(r.stdout, /drover-test/);
    // The dockerlab report saw static busybox wget segfault (rc 139); Debian 12's busybox-static works here.
    const w = await runInContainer(h1, 'client', ['wget', '-q', '-O-', `http://${webIp(h1)}/`]);
    assert.equal(w.exitCode, 0, `busybox wget: exit ${w.exitCode} ${w.stderr}`);
    assert.equal(w.stdout, 'drover-test\n');
  });

  test('underlay: hosts reach each other, and the root netns reaches them', async () => {
    const [h1, h2, h3] = [host(1), host(2), host(3)];
    for (const [from, to] of [
      [h1, h2],
      [h3, h1],
    ] as const) {
      const p = await from.exec(['busybox', 'ping', '-c', '1', '-W', '2', to.ip]);
      assert.equal(p.exitCode, 0, `${from.name} -> ${to.name} ${to.ip}: ${p.stdout}${p.stderr}`);
    }
    const p = await run(['busybox', 'ping', '-c', '1', '-W', '2', h2.ip]);
    assert.equal(p.exitCode, 0, `root -> h2: ${p.stdout}${p.stderr}`);
    const back = await h2.exec(['busybox', 'ping', '-c', '1', '-W', '2', L().rootIp]);
    assert.equal(back.exitCode, 0, `h2 -> root ${L().rootIp}: ${back.stdout}${back.stderr}`);
  });

  test('the control plane (root netns) answers from inside h2', async () => {
    const t0 = Date.now();
    cp = await startControlPlane(L());
    timings.controlPlane = Date.now() - t0;
    const r = await host(2).exec(['curl', '-sf', '-m', '5', `${cp.url}/v1/version`]);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { type: string }).type, 'version');
    const hosts = await cp.api<{ data: unknown[] }>('GET', '/v1/hosts');
    assert.equal(hosts.status, 200);
  });

  test('an agent in h3 registers with its underlay address and labels', async () => {
    assert.ok(cp, 'control plane started');
    const h3 = host(3);
    const agent = startAgent(L(), h3, { serverUrl: cp.url, token: await cp.registrationToken(), labels: { hostname: h3.name } });
    try {
      const rec = await waitForHost(cp, h3.name, 60_000).catch((err: unknown) => {
        throw new Error(`${(err as Error).message}\n${existsSync(agent.logPath) ? readFileSync(agent.logPath, 'utf8').slice(-2000) : ''}`);
      });
      assert.equal(rec.agentIpAddress, h3.ip);
      assert.equal(rec.labels.hostname, 'h3');
    } finally {
      await agent.stop();
    }
  });

  test('restartDockerd keeps the containers (same IDs, running again, same IPs)', async () => {
    const h1 = host(1);
    const before = (await h1.docker.listContainers({ all: true })).map((c) => c.Id).sort();
    const t0 = Date.now();
    await L().restartDockerd(h1);
    timings.restart = Date.now() - t0;
    const afterIds = (await h1.docker.listContainers({ all: true })).map((c) => c.Id).sort();
    assert.deepEqual(afterIds, before);
    await waitFor(async () => (await h1.docker.getContainer('web').inspect()).State.Running, 20_000, 'web running again');
    assert.equal(await ipOf(h1, 'web'), webIp(h1));
    await waitFor(async () => (await h1.docker.getContainer('client').inspect()).State.Running, 20_000, 'client running again');
    const r = await runInContainer(h1, 'client', ['sh', '-c', `${HTTP_GET} ${webIp(h1)} 80`]);
    assert.match(r.stdout, /drover-test/);
  });

  test('down leaves no netns, mounts, processes, veth or files', async () => {
    const l = L();
    timings.tests = Date.now() - testStart;
    const st = readState(l.dir);
    assert.ok(st);
    const pids = [...st.hosts.flatMap((h) => (h.dockerd ? [h.dockerd] : [])), ...st.procs];
    assert.ok(pids.length >= 4, 'dockerds and control plane recorded');
    await l.down();
    const netns = (await run(['ip', 'netns', 'list'])).stdout;
    assert.ok(!netns.includes(`dl${l.id}-`), `netns left: ${netns}`);
    assert.deepEqual(mountsUnder(l.dir), []);
    assert.deepEqual(
      pids.filter((p) => isAlive(p)).map((p) => p.pid),
      [],
    );
    const links = (await run(['ip', '-o', 'link', 'show'])).stdout;
    assert.ok(!links.includes(`dl${l.id}-`), 'root veth removed');
    assert.equal(existsSync(l.dir), false, 'lab dir removed');
    assert.equal(existsSync(`${BASE_DIR}/registry/${l.id}`), false, 'unregistered');
    await l.down(); // idempotent
  });
});
