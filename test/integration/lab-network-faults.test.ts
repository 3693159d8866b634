// Faults of the managed network on the real-Docker lab (test/lab): one host's charon killed, a 4th host
// joining (the tunnels of the others untouched), a host removed, a host's certificate revoked
// (certificate authentication), and an agent restart that keeps the flows going. Recovery times are
// printed (they are measured in bench/network.ts, not asserted beyond "it comes back").
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { labUnavailable, runInContainer, startLab, waitFor, type Lab, type LabHost } from '../lab/lab.js';
import { startControlPlane, startAgent, stopDroverLab, waitForHost, type ControlPlane, type LabAgent } from '../lab/drover.js';

const skip = labUnavailable();
const WAIT = 90_000;
const IDLE = ['sh', '-c', "trap 'exit 0' TERM; while :; do sleep 1; done"];

interface HostRec {
  id: string;
  hostname: string;
  state: string;
  network?: { peers: { hostId: string; reachable: boolean; lastError?: string }[] };
}

/** The PIDs of the charon processes in a lab host's netns (by PID: `ip netns pids` and /proc/<pid>/comm). */
function charonPids(host: LabHost): number[] {
  const out: number[] = [];
  for (const p of execFileSync('ip', ['netns', 'pids', host.netns], { encoding: 'utf8' }).split('\n').filter(Boolean)) {
    try {
      if (readFileSync(`/proc/${p}/comm`, 'utf8').trim() === 'charon') out.push(Number(p));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

test('3+1-host lab: network faults (charon killed, host joins, host removed, certificate revoked, agent restart)', { skip: skip ? `skipped: ${skip}` : false, timeout: 900_000 }, async () => {
  let lab: Lab | undefined;
  let cp: ControlPlane | undefined;
  const agents: LabAgent[] = [];
  let failed = true;
  try {
    lab = await startLab({ hosts: 4 });
    cp = await startControlPlane(lab);
    const api = cp.api.bind(cp);
    const env = (await api<{ data: { id: string }[] }>('GET', '/v1/environments')).body.data[0]?.id as string;
    const token = await cp.registrationToken();
    const [h1, h2, h3, h4] = lab.hosts as [LabHost, LabHost, LabHost, LabHost];
    for (const h of [h1, h2, h3]) agents.push(startAgent(lab, h, { serverUrl: cp.url, token, labels: { hostname: h.name } }));
    for (const h of [h1, h2, h3]) await waitForHost(cp, h.name, WAIT);
    const hostsNow = async () => (await api<{ data: HostRec[] }>('GET', '/v1/hosts')).body.data.filter((h) => h.state !== 'removed');
    const meshUp = (n: number) =>
      waitFor(
        async () => {
          const list = await hostsNow();
          return list.length === n && list.every((h) => h.network?.peers.length === n - 1 && h.network.peers.every((p) => p.reachable)) ? list : undefined;
        },
        WAIT,
        `a full mesh of ${n} hosts`,
      );
    await meshUp(3);

    // Two idle containers: a on h1, b on h2.
    const st = await api<{ id: string }>('POST', '/v1/stacks', {
      name: 'faults',
      dockerCompose: `
a:
  image: drover-test/busybox:1
  command: ${JSON.stringify(IDLE)}
  labels:
    io.rancher.scheduler.affinity:host_label: hostname=h1
b:
  image: drover-test/busybox:1
  command: ${JSON.stringify(IDLE)}
  labels:
    io.rancher.scheduler.affinity:host_label: hostname=h2
`,
    });
    assert.equal(st.status, 201, JSON.stringify(st.body));
    const recs = await waitFor(
      async () => {
        const r = (await api<{ data: { name: string; state: string; primaryIpAddress: string; externalId: string }[] }>('GET', `/v1/containers?stackId=${st.body.id}`)).body.data;
        return r.length === 2 && r.every((c) => c.state === 'running') ? r : undefined;
      },
      WAIT,
      'a and b running',
    );
    const a = recs.find((c) => c.name === 'faults-a-1');
    const b = recs.find((c) => c.name === 'faults-b-1');
    assert.ok(a && b);
    const pingOnce = async () => (await runInContainer(h1, a.externalId, ['ping', '-c', '1', '-W', '1', b.primaryIpAddress])).exitCode === 0;
    await waitFor(async () => ((await pingOnce()) ? true : undefined), 30_000, 'a (h1) → b (h2)');

    /** Pings a → b every 100 ms in the container while `during` runs; returns sent/received. */
    const pingDuring = async (during: () => Promise<void>): Promise<{ sent: number; received: number }> => {
      const exec = await h1.docker.getContainer(a.externalId).exec({ Cmd: ['sh', '-c', `ping -i 0.1 -W 1 ${b.primaryIpAddress} > /tmp/ping.log 2>&1 & echo $! > /tmp/ping.pid; wait`], AttachStdout: false, AttachStderr: false });
      await exec.start({ Detach: true });
      await new Promise((r) => setTimeout(r, 500));
      await during();
      await runInContainer(h1, a.externalId, ['sh', '-c', 'kill -INT $(cat /tmp/ping.pid)']);
      await new Promise((r) => setTimeout(r, 300));
      const log = (await runInContainer(h1, a.externalId, ['cat', '/tmp/ping.log'])).stdout;
      const m = /(\d+) packets transmitted, (\d+) packets received/.exec(log);
      assert.ok(m, `ping summary in:\n${log.slice(-300)}`);
      return { sent: Number(m[1]), received: Number(m[2]) };
    };

    // 1. h2's charon killed: the agent restarts it and the tunnel is back.
    const pids = charonPids(h2);
    assert.equal(pids.length, 1, `one charon in h2 (found ${pids.join(',')})`);
    const tKill = Date.now();
    process.kill(pids[0] as number, 'SIGKILL');
    await new Promise((r) => setTimeout(r, 200));
    await waitFor(async () => ((await pingOnce()) ? true : undefined), 60_000, 'a → b again after h2’s charon was killed');
    console.log(`charon SIGKILLed on h2: a → b back after ${Date.now() - tKill} ms`);

    // 2. A 4th host joins: the mesh grows, the flow a → b loses nothing meanwhile.
    const join = await pingDuring(async () => {
      const t0 = Date.now();
      agents.push(startAgent(lab as Lab, h4, { serverUrl: (cp as ControlPlane).url, token, labels: { hostname: h4.name } }));
      await meshUp(4);
      console.log(`4th host: registered and every pair reachable after ${Date.now() - t0} ms`);
    });
    assert.ok(join.sent > 5 && join.received === join.sent, `a → b while h4 joined: ${join.received}/${join.sent}`);

    // 3. The agent of h1 restarts: the flows keep going (the data path and charon stay).
    const restart = await pingDuring(async () => {
      await (agents[0] as LabAgent).restart();
      await waitForHost(cp as ControlPlane, 'h1', WAIT);
      await new Promise((r) => setTimeout(r, 2000));
    });
    assert.ok(restart.sent > 5 && restart.sent - restart.received <= 1, `a → b while h1's agent restarted: ${restart.received}/${restart.sent}`);

    // 4. h4 removed: its agent stops, the host is deleted, the others drop it.
    await (agents[3] as LabAgent).stop();
    const h4rec = (await hostsNow()).find((h) => h.hostname === 'h4');
    assert.ok(h4rec);
    const h4tunnel = ((await api<{ tunnelIp?: string }>('GET', `/v1/hosts/${h4rec.id}`)).body.tunnelIp) as string;
    assert.ok(h4tunnel);
    const del = await api('DELETE', `/v1/hosts/${h4rec.id}`);
    assert.ok(del.status === 204 || del.status === 200, JSON.stringify(del.body));
    await meshUp(3);
    // Its tunnel (charon's route in table 220), neighbour and FDB entry are gone from the others.
    for (const h of [h1, h2, h3]) {
      await waitFor(
        async () => {
          const seen = [
            (await h.exec(['ip', 'route', 'show', 'table', '220'])).stdout,
            (await h.exec(['ip', 'neigh', 'show', 'dev', 'drover.vx'])).stdout,
            (await h.exec(['ip', 'route', 'show', 'dev', 'drover.vx'])).stdout,
          ].join('\n');
          return seen.includes(h4tunnel) ? undefined : true;
        },
        30_000,
        `${h.name} without the removed h4's tunnel, neighbour and routes`,
      );
    }

    // 5. Certificate authentication, then h3's certificate revoked: h1 and h2 stop reaching h3, keep each other.
    const put = await api('PUT', `/v1/environments/${env}`, { network: { ipsecAuth: 'cert' } });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    // The tunnels re-authenticate: give the probes a few rounds to see it before judging the mesh.
    await new Promise((r) => setTimeout(r, 5000));
    await meshUp(3);
    // The tunnels re-established with certificates carry a → b again before the revocation.
    await waitFor(async () => ((await pingOnce()) ? true : undefined), 30_000, 'a → b over certificate-authenticated tunnels');
    const h3rec = (await hostsNow()).find((h) => h.hostname === 'h3') as HostRec;
    const revoked = await pingDuring(async () => {
      const rev = await api('POST', `/v1/hosts/${h3rec.id}?action=revokecertificate`, {});
      assert.ok(rev.status === 200 || rev.status === 202, JSON.stringify(rev.body));
      await waitFor(
        async () => {
          const list = await hostsNow();
          const h1r = list.find((h) => h.hostname === 'h1');
          const h3r = list.find((h) => h.hostname === 'h3');
          const h1Drops = !(h1r?.network?.peers ?? []).some((p) => p.hostId === h3rec.id);
          // The revoked host's own probes: nobody answers it any more (its tunnels are refused).
          const h3Refused = (h3r?.network?.peers ?? []).every((p) => !p.reachable);
          return h1Drops && h3Refused ? true : undefined;
        },
        WAIT,
        'h1 dropping the revoked h3, and h3 reaching nobody',
      );
    });
    assert.ok(revoked.sent > 5 && revoked.sent - revoked.received <= 1, `a (h1) → b (h2) while h3 was revoked: ${revoked.received}/${revoked.sent}`);
    failed = false;
  } finally {
    await stopDroverLab(lab, { cp, agents }, failed);
  }
});
