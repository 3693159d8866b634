// The agent image (Dockerfile, scripts/build-image.sh) on a 1-host lab: the image built in the root
// dockerd is loaded into h1's dockerd, and the agent runs as a container there with the command the
// control plane's registration token gives (GET /v1/registrationtokens → command), adapted to the lab:
// no sudo, -d and a name (to remove it), h1's Docker socket and a lab directory as the data volume, and,
// where this VM refuses --privileged, the capability set that replaces it. The Rancher UI's
// CATTLE_AGENT_IP and CATTLE_HOST_LABELS are passed as -e, like the original's command with them.
// Then: the host registers (with that address and those labels), a one-container stack runs, and
// rancher-metadata answers from inside that container (DNS name and HTTP).
// Skips (with the reason) when the lab cannot run here or drover/agent:latest is not in the root
// dockerd (npm run build:image); the image is never built here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { labUnavailable, runInContainer, startLab, waitFor, TEST_IMAGE, type Lab, type LabHost } from '../lab/lab.js';
import { startControlPlane, stopDroverLab, waitForHost, type ControlPlane } from '../lab/drover.js';

const run = promisify(execFile);
const IMAGE = process.env.DROVER_AGENT_IMAGE ?? 'drover/agent:latest';
/** The dockerd the image was built in (root netns): DOCKER_HOST of this process, else Docker's default. */
const ROOT_DOCKER_ENV = { ...process.env };
const WAIT = 90_000;
// --privileged fails on VMs whose capability bounding set lacks CAP_SYS_RESOURCE (runc "unable to apply
// caps"); this is the replacement the README documents. systempaths=unconfined: /proc/sys writable (the
// agent sets rp_filter, proxy_arp, proxy_delay; without it the network reconcile fails with EROFS).
const NO_PRIVILEGED = [
  ...['--cap-add', 'ALL', '--cap-drop', 'SYS_RESOURCE', '--device', '/dev/net/tun'],
  ...['--security-opt', 'seccomp=unconfined', '--security-opt', 'systempaths=unconfined'],
];
const IDLE = ['sh', '-c', "trap 'exit 0' TERM; while :; do sleep 1; done"];

function imageUnavailable(): string | undefined {
  try {
    execFileSync('docker', ['image', 'inspect', '--format', '{{.Id}}', IMAGE], { env: ROOT_DOCKER_ENV, stdio: ['ignore', 'pipe', 'pipe'], timeout: 15_000 });
    return undefined;
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: Buffer };
    if (e.code === 'ENOENT') return 'the docker CLI is not installed';
    const why = e.stderr?.toString().trim().split('\n')[0] ?? e.message;
    return `${IMAGE} is not in the root dockerd (${process.env.DOCKER_HOST ?? 'unix:///var/run/docker.sock'}): ${why}; build it with npm run build:image`;
  }
}

const skip = labUnavailable() ?? imageUnavailable();

/** The token's command as argv for the docker CLI, adapted to h1 of the lab (see the header). */
export function adaptCommand(command: string, o: { name: string; dockerSocket: string; dataDir: string; env: Record<string, string> }): string[] {
  const words = command.trim().split(/\s+/);
  if (words[0] === 'sudo') words.shift();
  assert.deepEqual(words.slice(0, 2), ['docker', 'run'], `the registration command runs docker: ${command}`);
  const out: string[] = ['run'];
  for (let i = 2; i < words.length; i++) {
    const w = words[i] as string;
    if (w === '--privileged') {
      out.push(...NO_PRIVILEGED);
    } else if (w === '--name') {
      out.push('--name', o.name);
      i++;
    } else if (w === '-v' && words[i + 1]?.endsWith(':/var/run/docker.sock')) {
      out.push('-v', `${o.dockerSocket}:/var/run/docker.sock`);
      i++;
    } else if (w === '-v' && words[i + 1]?.endsWith(':/var/lib/drover')) {
      out.push('-v', `${o.dataDir}:/var/lib/drover`);
      i++;
    } else if (w === IMAGE) {
      out.push(...Object.entries(o.env).flatMap(([k, v]) => ['-e', `${k}=${v}`]), ...words.slice(i));
      break;
    } else {
      out.push(w);
    }
  }
  assert.ok(out.includes(o.name), `the command names the image ${IMAGE}: ${command}`);
  return out;
}

async function docker(host: LabHost, args: string[], timeout = 60_000): Promise<string> {
  const r = await run('docker', args, { env: { ...process.env, DOCKER_HOST: `unix://${host.dockerSocket}` }, timeout, maxBuffer: 16 << 20 });
  return r.stdout.trim();
}

test('agent image: the registration command runs the agent as a container on a lab host', { skip: skip ? `skipped: ${skip}` : false, timeout: 300_000 }, async () => {
  const t0 = Date.now();
  const phase: Record<string, number> = {};
  const mark = (name: string, since: number) => (phase[name] = Date.now() - since);
  let lab: Lab | undefined;
  let cp: ControlPlane | undefined;
  let h1: LabHost | undefined;
  let name = '';
  let failed = true;
  try {
    lab = await startLab({ hosts: 1 });
    h1 = lab.hosts[0] as LabHost;
    name = `drover-agent-${lab.id}`;
    mark('lab up', t0);

    // docker save (root dockerd) | docker load (h1's dockerd), as the README describes for hosts without a registry.
    const tLoad = Date.now();
    const load = await run('sh', ['-c', 'docker save "$IMAGE" | DOCKER_HOST="$TARGET" docker load -q'], {
      env: { ...ROOT_DOCKER_ENV, IMAGE, TARGET: `unix://${h1.dockerSocket}` },
      timeout: 180_000,
    });
    assert.match(load.stdout, /Loaded image/, `docker load: ${load.stdout}${load.stderr}`);
    mark('image load', tLoad);

    cp = await startControlPlane(lab);
    await cp.registrationToken();
    const toks = await cp.api<{ data: { token: string; command: string }[] }>('GET', '/v1/registrationtokens');
    const command = toks.body.data[0]?.command;
    assert.ok(command, `a registration token with a command: ${JSON.stringify(toks.body)}`);
    assert.match(command, /--privileged/, 'the command for normal machines keeps --privileged');
    assert.match(command, new RegExp(` ${IMAGE} ${cp.url}/v1/scripts/\\S+$`), 'image, then the registration URL');

    const dataDir = join(h1.dataDir, 'drover');
    mkdirSync(dataDir, { recursive: true });
    const args = adaptCommand(command, {
      name,
      dockerSocket: h1.dockerSocket,
      dataDir,
      env: { CATTLE_AGENT_IP: h1.ip, CATTLE_HOST_LABELS: 'hostname=h1&zone=lab' },
    });
    const tAgent = Date.now();
    await docker(h1, args);
    // --net=host shares h1's network namespace but not a UTS namespace: the agent registers the OS host name.
    const host = await waitForHost(cp, hostname(), WAIT);
    mark('agent container → host registered', tAgent);
    assert.equal(host.agentIpAddress, h1.ip, 'CATTLE_AGENT_IP became the agent IP');
    assert.equal(host.labels.hostname, 'h1', 'CATTLE_HOST_LABELS became labels');
    assert.equal(host.labels.zone, 'lab', 'CATTLE_HOST_LABELS: the second label');
    const top = await docker(h1, ['top', name, '-o', 'pid,args']);
    assert.match(top, /tini -s -- \/usr\/local\/bin\/drover-entrypoint/, `tini runs the entry point:\n${top}`);
    assert.match(top, /node \/opt\/drover\/dist\/cli\/main\.js agent/, `drover agent from dist:\n${top}`);

    const tStack = Date.now();
    const compose = `web:\n  image: ${TEST_IMAGE}\n  command: ${JSON.stringify(IDLE)}\n`;
    const st = await cp.api<{ id: string }>('POST', '/v1/stacks', { name: 'img', dockerCompose: compose });
    assert.equal(st.status, 201, JSON.stringify(st.body));
    const rec = await waitFor(
      async () => {
        const r = (await cp!.api<{ data: { uuid: string; state: string; primaryIpAddress: string | null }[] }>('GET', `/v1/containers?stackId=${st.body.id}`)).body.data;
        return r.length === 1 && r[0]?.state === 'running' ? r[0] : undefined;
      },
      WAIT,
      'the stack container running',
    );
    mark('stack running', tStack);
    const list = await h1.docker.listContainers({ filters: { label: [`io.rancher.container.uuid=${rec.uuid}`] } });
    assert.equal(list.length, 1, 'the container runs in h1 dockerd');
    const cid = list[0]?.Id as string;

    // rancher-metadata from inside: its name resolves (DNS at 169.254.169.250) and it answers over HTTP.
    const tMeta = Date.now();
    await waitFor(
      async () => {
        const ns = await runInContainer(h1!, cid, ['nslookup', 'rancher-metadata']);
        assert.match(ns.stdout, /169\.254\.169\.250/, `nslookup rancher-metadata:\n${ns.stdout}${ns.stderr}`);
        return true;
      },
      20_000,
      'rancher-metadata resolving from the container',
    );
    await waitFor(
      async () => {
        const ip = await runInContainer(h1!, cid, ['wget', '-qO-', 'http://rancher-metadata/latest/self/container/primary_ip']);
        assert.equal(ip.stdout, rec.primaryIpAddress, `metadata self/container/primary_ip: ${ip.stderr}`);
        const svc = await runInContainer(h1!, cid, ['wget', '-qO-', 'http://rancher-metadata/latest/self/service/name']);
        assert.equal(svc.stdout, 'web', `metadata self/service/name: ${svc.stderr}`);
        return true;
      },
      20_000,
      'rancher-metadata answering the container',
    );
    mark('metadata from the container', tMeta);

    // The managed network from inside the container: its iptables chains in h1's netns, and charon
    // (ipsec overlay, the default) supervised by drover in the container.
    await waitFor(async () => /:CATTLE_PREROUTING/.test((await h1!.exec(['iptables-save', '-t', 'nat'])).stdout), 20_000, 'CATTLE_PREROUTING in h1');
    await waitFor(async () => /\/usr\/lib\/ipsec\/charon/.test(await docker(h1!, ['top', name, '-o', 'pid,args'])), 20_000, 'charon in the agent container');
    // Anti-spoofing by the container's veth, which the agent finds through the container's PID (--pid=host).
    const spoof = new RegExp(`-A CATTLE_RAW_PREROUTING ! -s ${(rec.primaryIpAddress ?? '').replaceAll('.', '\\.')}/32 .*--physdev-in \\S+ .*-j DROP`);
    await waitFor(async () => spoof.test((await h1!.exec(['iptables-save', '-t', 'raw'])).stdout), 20_000, "anti-spoofing on the container's veth");
    const logs = await run('docker', ['logs', name], { env: { ...process.env, DOCKER_HOST: `unix://${h1.dockerSocket}` }, maxBuffer: 16 << 20 });
    assert.doesNotMatch(logs.stdout + logs.stderr, /EROFS|read-only file system/, 'the agent could write /proc/sys');
    console.log(`lab-image phases (ms): ${JSON.stringify(phase)}; total ${Date.now() - t0} ms`);
    failed = false;
  } finally {
    if (h1 && name) {
      if (failed) {
        const logs = await run('docker', ['logs', '--tail', '40', name], { env: { ...process.env, DOCKER_HOST: `unix://${h1.dockerSocket}` } }).catch((e: unknown) => e as { stdout?: string; stderr?: string });
        console.log(`--- ${name} logs (tail) ---\n${logs.stdout ?? ''}${logs.stderr ?? ''}`);
      }
      await docker(h1, ['stop', '-t', '10', name], 30_000).catch(() => undefined);
      await docker(h1, ['rm', '-f', '-v', name], 30_000).catch(() => undefined);
    }
    await stopDroverLab(lab, { cp, agents: [] }, failed);
  }
});
