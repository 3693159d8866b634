// Balancers end to end on the 3-host real-Docker lab (test/lab), from a Rancher 1.6-style compose pair
// (`image: rancher/lb-service-haproxy` + rancher-compose `lb_config`): no image is pulled, the agent of
// the balancer's host runs HAProxy; real HTTP requests from outside (the host's published port) and from
// containers (by the linked name) reach the right services' containers on several hosts, round-robin, by
// host and path rules; HTTPS with SNI picks the right uploaded certificate; scaling a target changes the
// backends through the runtime API without a reload (same master, same worker); the 1.0/1.1 label form
// (`rancher/load-balancer-service` + `io.rancher.loadbalancer.target.*`) works too; a custom config
// HAProxy refuses shows its message on the balancer's container while the previous config serves.
// Zero drop: 500 req/s from outside, a new connection each, while the rules change 50 times through the
// API (each one a reload) and the target service scales 2 ⇄ 4: 0 failed requests; the same load against
// a hand-run HAProxy reloaded 50 times with plain `-sf` is reported beside it. Skips (with the reason)
// when the lab cannot run here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { labUnavailable, runInContainer, startLab, waitFor, type Lab, type LabHost } from '../lab/lab.js';
import { startDrover, stopDroverLab, type ControlPlane, type LabAgent } from '../lab/drover.js';
import { parseShowProc, socketCommand } from '../../src/agent/capabilities/balancer/apply.js';
import { describeLoad, startLoad } from '../helpers/load-client.js';
import { testCertificate } from '../helpers/certs.js';

const skip = labUnavailable();
const WAIT = 120_000;
/** The zero-drop load: requests per second (each on a new connection) and rule changes through the API. */
const RATE = 500;
const CHANGES = 50;
/** The reference HAProxy's port on h1 (nothing of drover's listens there). */
const REF_PORT = 8090;
const IDLE = ['sh', '-c', "trap 'exit 0' TERM; while :; do sleep 1; done"];

/** busybox httpd answering "<service> <container hostname>" on / and on /app/. */
const web = (svc: string) => [
  'sh',
  '-c',
  `mkdir -p /w/app && echo "${svc} $$(hostname)" > /w/index.html && cp /w/index.html /w/app/index.html && trap 'exit 0' TERM; httpd -f -p 80 -h /w & wait`,
];

const j = JSON.stringify;
const DOCKER_COMPOSE = `
version: '2'
services:
  web1:
    image: drover-test/busybox:1
    command: ${j(web('web1'))}
    labels:
      io.rancher.scheduler.global: 'true'
  web2:
    image: drover-test/busybox:1
    command: ${j(web('web2'))}
    labels:
      io.rancher.scheduler.affinity:host_label: hostname=h2
  lb:
    image: rancher/lb-service-haproxy:v0.7.9
    ports:
      - 80:80
      - 443:443
    labels:
      io.rancher.scheduler.affinity:host_label: hostname=h1
  client:
    image: drover-test/busybox:1
    command: ${j(IDLE)}
    links:
      - lb:lb
    labels:
      io.rancher.scheduler.affinity:host_label: hostname=h3
`;
const RANCHER_COMPOSE = `
version: '2'
services:
  web2:
    scale: 2
  lb:
    scale: 1
    # What Rancher 1.6's UI wrote for every balancer: a TCP check of HAProxy's port 42.
    health_check:
      port: 42
      interval: 2000
      response_timeout: 2000
      healthy_threshold: 2
      unhealthy_threshold: 3
      initializing_timeout: 60000
      reinitializing_timeout: 60000
    lb_config:
      default_cert: site-a
      certs:
        - site-b
      port_rules:
        - source_port: 80
          target_port: 80
          service: web1
          hostname: one.example.com
        - source_port: 80
          target_port: 80
          service: web2
          path: /app
        - source_port: 443
          protocol: https
          target_port: 80
          service: web1
          hostname: a.example.com
        - source_port: 443
          protocol: https
          target_port: 80
          service: web2
          hostname: b.example.com
`;
// The 1.0/1.1 form: targets from links, rules from labels.
const LEGACY_COMPOSE = `
web3:
  image: drover-test/busybox:1
  command: ${j(web('web3'))}
  labels:
    io.rancher.scheduler.affinity:host_label: hostname=h3
old:
  image: rancher/load-balancer-service
  ports:
    - 8081:8081
  links:
    - web3:web3
  labels:
    io.rancher.loadbalancer.target.web3: 8081=80
    io.rancher.scheduler.affinity:host_label: hostname=h2
`;

interface Rec {
  id: string;
  name: string;
  hostId: string | null;
  primaryIpAddress: string | null;
  state: string;
  generation: string;
  externalId: string | null;
  serviceId?: string;
}

/** curl from the lab's root namespace (outside every host): the body, trimmed. */
function curl(args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile('curl', ['-s', '-S', '-m', '5', ...args], { encoding: 'utf8' }, (err, out, stderr) =>
      resolve({ code: err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0, out: out.trim(), err: stderr.trim() }),
    );
  });
}

/** The subject CN of the certificate a TLS server presents for `sni`. */
function servedCn(ip: string, port: number, sni: string): Promise<string> {
  return new Promise((resolve) => {
    execFile(
      'sh',
      ['-c', `openssl s_client -connect ${ip}:${port} -servername ${sni} </dev/null 2>/dev/null | openssl x509 -noout -subject`],
      { encoding: 'utf8', timeout: 10_000 },
      (_err, out) => resolve((/CN\s*=\s*([^,/\n]+)/.exec(out)?.[1] ?? '').trim()),
    );
  });
}

/** `n` requests in a row: the answers in order. */
async function series(n: number, args: string[]): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const r = await curl(args);
    out.push(r.code === 0 ? r.out : `ERR ${r.code} ${r.err}`);
  }
  return out;
}

test('3-host lab: balancers from a 1.6-style compose pair and the 1.0 label form, end to end', { skip: skip ? `skipped: ${skip}` : false, timeout: 900_000 }, async (t) => {
  let lab: Lab | undefined;
  let cp: ControlPlane | undefined;
  let agents: LabAgent[] = [];
  let failed = true;
  let passed = 0;
  try {
    lab = await startLab({ hosts: 3 });
    ({ cp, agents } = await startDrover(lab));
    const api = cp.api.bind(cp);
    const [h1, h2, h3] = lab.hosts as [LabHost, LabHost, LabHost];

    for (const [name, cn] of [['site-a', 'a.example.com'], ['site-b', 'b.example.com']] as const) {
      const { cert, key } = testCertificate(name, cn);
      const up = await api('POST', '/v1/certificates', { name, cert, key });
      assert.equal(up.status, 201, j(up.body));
    }
    const st = await api<{ id: string }>('POST', '/v1/stacks', { name: 'shop', dockerCompose: DOCKER_COMPOSE, rancherCompose: RANCHER_COMPOSE });
    assert.equal(st.status, 201, j(st.body));
    const current = async (stackId: string) =>
      (await api<{ data: Rec[] }>('GET', `/v1/containers?stackId=${stackId}`)).body.data.filter((c) => c.generation === 'current');
    const recs = await waitFor(
      async () => {
        const r = await current(st.body.id);
        // web1 on each of 3 hosts, web2 ×2, lb, client.
        return r.length === 7 && r.every((c) => c.state === 'running') ? r : undefined;
      },
      WAIT,
      'the 7 containers of the stack running (the balancer included, with no image pulled)',
    );
    const lb = recs.find((c) => c.name === 'shop-lb-1') as Rec;
    // The balancer's health (its HAProxy's port 42, checked like any container's) on its container.
    await waitFor(
      async () => ((await api<Rec & { healthState: string | null }>('GET', `/v1/containers/${lb.id}`)).body.healthState === 'healthy' ? true : undefined),
      60_000,
      'the balancer container healthy (health_check on port 42)',
    );
    const images = await h1.docker.listImages();
    assert.ok(!images.some((i) => (i.RepoTags ?? []).some((t) => t.startsWith('rancher/'))), 'no rancher/ image on the balancer host');
    // The agent runs with --data <host>/agent; its state lives in <data>/agent (src/cli/host-agent.ts).
    const lbDir = join(h1.dataDir, 'agent', 'agent', 'balancer', lb.id);

    await t.test('host and path rules across hosts, round-robin, by name, SNI, scale-up without a reload, a refused config, the label form', async () => {
      // From outside, on h1's published port 80: host rule → web1 on all 3 hosts, round-robin.
      const one = await waitFor(
        async () => {
          const r = await series(3, ['-H', 'Host: one.example.com', `http://${h1.ip}/`]);
          // Every web1 is a backend once the balancer's agent sees it serving (the other hosts' containers a
          // moment after their own agents report them).
          return r.every((x) => x.startsWith('web1 ')) && new Set(r).size === 3 ? r : undefined;
        },
        60_000,
        'Host: one.example.com answered by the three web1 containers (one per host) through the balancer on h1:80',
      );
      const again = await series(6, ['-H', 'Host: one.example.com', `http://${h1.ip}/`]);
      assert.deepEqual(again.slice(3), again.slice(0, 3), `round-robin: the next requests repeat the same order: ${j(again)}`);
      assert.deepEqual(new Set(again), new Set(one), 'over the same three containers');
      // Path rule → web2 (2 containers on h2).
      const app = await series(4, [`http://${h1.ip}/app/`]);
      assert.ok(app.every((x) => x.startsWith('web2 ')), `/app/ answered by web2: ${j(app)}`);
      assert.equal(new Set(app).size, 2, `both web2 containers: ${j(app)}`);
      // No rule matches: HAProxy's 503, not some backend.
      const none = await curl(['-o', '/dev/null', '-w', '%{http_code}', '-H', 'Host: nothing.example.com', `http://${h1.ip}/`]);
      assert.equal(none.out, '503', 'no rule matched');

      // From a container on h3 by the linked name (our DNS), over the managed network.
      const client = recs.find((c) => c.name === 'shop-client-1') as Rec;
      const fromClient = await waitFor(
        async () => {
          const r = await runInContainer(h3, client.externalId as string, ['timeout', '5', 'wget', '-qO-', 'http://lb/app/']);
          return r.exitCode === 0 ? r.stdout.trim() : undefined;
        },
        30_000,
        'client (h3) → lb by its linked name, path /app/',
      );
      assert.match(fromClient, /^web2 /);
      const resolved = await runInContainer(h3, client.externalId as string, ['nslookup', 'lb']);
      assert.ok(resolved.stdout.includes(lb.primaryIpAddress as string), `lb resolves to the balancer's managed address: ${resolved.stdout}`);

      // HTTPS: SNI picks the certificate (the default one for an unknown name), and the rule behind it.
      assert.equal(await servedCn(h1.ip, 443, 'b.example.com'), 'b.example.com');
      assert.equal(await servedCn(h1.ip, 443, 'a.example.com'), 'a.example.com');
      assert.equal(await servedCn(h1.ip, 443, 'other.example.com'), 'a.example.com', 'the default certificate');
      const https = await curl(['-k', '--resolve', `b.example.com:443:${h1.ip}`, 'https://b.example.com/']);
      assert.match(https.out, /^web2 /, `https b.example.com → web2: ${https.err}`);

      // Scale web2 up: a new backend within about a second of the container running, without a reload.
      const before = parseShowProc(await socketCommand(join(lbDir, 'master.sock'), 'show proc'));
      assert.ok(before, 'the master CLI answers');
      const web2 = (await api<{ data: { id: string; name: string }[] }>('GET', `/v1/services?stackId=${st.body.id}`)).body.data.find((s) => s.name === 'web2');
      assert.ok(web2);
      const scaled = await api('PUT', `/v1/services/${web2.id}`, { scale: 3 });
      assert.equal(scaled.status, 200, j(scaled.body));
      // Two pollers, 50 ms apart each: when the control plane first shows the third web2 running, and when
      // the balancer first answers from it.
      let runningAt = 0;
      let servedAt = 0;
      const deadline = Date.now() + WAIT;
      const known = new Set(app);
      await Promise.all([
        (async () => {
          while (!runningAt && Date.now() < deadline) {
            const r = (await current(st.body.id)).filter((c) => c.name.startsWith('shop-web2') && c.state === 'running');
            if (r.length === 3) runningAt = Date.now();
            else await new Promise((res) => setTimeout(res, 50));
          }
        })(),
        (async () => {
          while (!servedAt && Date.now() < deadline) {
            const r = await curl(['-m', '2', `http://${h1.ip}/app/`]);
            if (r.code === 0 && r.out.startsWith('web2 ') && !known.has(r.out)) servedAt = Date.now();
            else await new Promise((res) => setTimeout(res, 50));
          }
        })(),
      ]);
      assert.ok(runningAt && servedAt, `the third web2 running (${runningAt}) and served through the balancer (${servedAt})`);
      console.log(`# scale-up: the new web2 container served ${servedAt - runningAt} ms after the control plane showed it running (polled every 50 ms)`);
      const spread = await series(6, [`http://${h1.ip}/app/`]);
      assert.equal(new Set(spread).size, 3, `three web2 containers behind /app/ now: ${j(spread)}`);
      const after = parseShowProc(await socketCommand(join(lbDir, 'master.sock'), 'show proc'));
      assert.equal(after?.masterPid, before.masterPid, 'same HAProxy master');
      assert.equal(after?.reloads, before.reloads, 'no reload for a scaled target');
      assert.deepEqual(after?.workers, before.workers, 'the same worker serves');

      // A custom config HAProxy refuses: its message on the balancer's container, the previous config serving.
      const lbSvc = (await api<{ data: { id: string; name: string; lbConfig: Record<string, unknown> }[] }>('GET', `/v1/services?stackId=${st.body.id}`)).body.data.find((s) => s.name === 'lb');
      assert.ok(lbSvc);
      const bad = await api('PUT', `/v1/services/${lbSvc.id}`, { lbConfig: { ...lbSvc.lbConfig, config: 'defaults\n    timeout client notanumber\n' } });
      assert.equal(bad.status, 200, j(bad.body));
      const refused = await waitFor(
        async () => {
          const c = (await api<Rec & { transitioningMessage?: string }>('GET', `/v1/containers/${lb.id}`)).body;
          return c.transitioningMessage?.includes('timeout client') ? c : undefined;
        },
        30_000,
        "HAProxy's refusal on the balancer container",
      );
      assert.equal(refused.state, 'running', 'the previous config keeps serving');
      assert.match(refused.transitioningMessage ?? '', /refused the new configuration/);
      const still = await curl(['-H', 'Host: one.example.com', `http://${h1.ip}/`]);
      assert.match(still.out, /^web1 /, 'still served by the previous config');
      const fixed = await api('PUT', `/v1/services/${lbSvc.id}`, { lbConfig: lbSvc.lbConfig });
      assert.equal(fixed.status, 200, j(fixed.body));
      await waitFor(
        async () => {
          const c = (await api<Rec & { transitioningMessage?: string }>('GET', `/v1/containers/${lb.id}`)).body;
          return !c.transitioningMessage?.includes('refused') ? c : undefined;
        },
        30_000,
        'the refusal gone once the config is fixed',
      );

      // The 1.0/1.1 label form.
      const legacy = await api<{ id: string }>('POST', '/v1/stacks', { name: 'old', dockerCompose: LEGACY_COMPOSE });
      assert.equal(legacy.status, 201, j(legacy.body));
      const viaLabels = await waitFor(
        async () => {
          const r = await curl([`http://${h2.ip}:8081/`]);
          return r.code === 0 && r.out.startsWith('web3 ') ? r.out : undefined;
        },
        WAIT,
        'the label-form balancer on h2:8081 answering from web3',
      );
      assert.match(viaLabels, /^web3 /);
      passed++;
    });

    await t.test(`zero drop: ${RATE} req/s, a new connection each, across ${CHANGES} rule changes through the API and targets scaling; a plain -sf reload as the reference`, async (tt) => {
      const services = (await api<{ data: { id: string; name: string; lbConfig?: { portRules: Record<string, unknown>[] } & Record<string, unknown> }[] }>('GET', `/v1/services?stackId=${st.body.id}`)).body.data;
      const lbSvc = services.find((x) => x.name === 'lb');
      const web2 = services.find((x) => x.name === 'web2');
      assert.ok(lbSvc?.lbConfig && web2);
      const base = lbSvc.lbConfig;
      const masterSock = join(lbDir, 'master.sock');
      const proc = async () => parseShowProc(await socketCommand(masterSock, 'show proc'));
      const reloads = async () => (await proc())?.reloads ?? -1;
      const first = await proc();
      const t0 = performance.now();
      const events: string[] = [];
      const mark = (what: string) => events.push(`${((performance.now() - t0) / 1000).toFixed(2)}s ${what} (@${Date.now()})`);
      const load = startLoad({ address: h1.ip, port: 80, path: '/app/', rate: RATE, timeoutMs: 5000, expectBody: /^web2 / });
      for (let i = 0; i < CHANGES; i++) {
        const prev = await reloads();
        // A rule of its own each time (a new ACL and backend): the skeleton changes, HAProxy must reload.
        const rules = [...base.portRules, { sourcePort: 80, protocol: 'http', path: `/extra-${i}`, service: 'web1', targetPort: 80 }];
        const put: { status: number; body: unknown } = await api('PUT', `/v1/services/${lbSvc.id}`, { lbConfig: { ...base, portRules: rules } });
        assert.equal(put.status, 200, j(put.body));
        mark(`rule change ${i + 1} stored`);
        await waitFor(async () => ((await reloads()) > prev ? true : undefined), 30_000, `rule change ${i + 1}: HAProxy reloaded`);
        mark(`reload ${i + 1} seen`);
        // The load's targets scale up and down meanwhile (slots through the runtime API).
        if (i % 10 === 2 || i % 10 === 7) {
          const scale = i % 10 === 2 ? 4 : 2;
          const sc: { status: number; body: unknown } = await api('PUT', `/v1/services/${web2.id}`, { scale });
          assert.equal(sc.status, 200, j(sc.body));
          mark(`web2 scaled to ${scale}`);
        }
      }
      await new Promise((r) => setTimeout(r, 3000));
      const ours = await load.stop();
      const last = await proc();
      const done = (last?.reloads ?? 0) - (first?.reloads ?? 0);
      tt.diagnostic(`drover (master-worker, expose-fd listeners, runtime API): ${describeLoad(ours)}; ${done} reloads`);
      console.log(`# zero-drop drover: ${describeLoad(ours)}; ${done} reloads`);
      if (ours.failed || ours.slow) {
        // Where the failures and slow requests fall against what the test did (seconds since the load started).
        const buckets = new Map<number, string[]>();
        const note = (atMs: number, kind: string) => {
          const b = Math.floor(atMs / 500);
          buckets.set(b, [...(buckets.get(b) ?? []), kind]);
        };
        for (const f of ours.failures) note(f.atMs, f.kind);
        for (const at of ours.slowAtMs) note(at, 'slow');
        const hist = [...buckets.entries()].sort((a, b) => a[0] - b[0]).map(([b, ks]) => `${(b / 2).toFixed(1)}s: ${ks.length} (${[...new Set(ks)].join(',')})`);
        console.log(`# zero-drop timeline: ${hist.join(' | ')}\n# events: ${events.join(' | ')}`);
      }

      // Reference: a hand-configured HAProxy on h1 with the same route to web2, reloaded with plain -sf.
      const web2Ips = (await current(st.body.id)).filter((c) => c.name.startsWith('shop-web2') && c.state === 'running').map((c) => c.primaryIpAddress as string);
      const refDir = join(h1.dataDir, 'ref-haproxy');
      await mkdir(refDir, { recursive: true });
      const cfg = join(refDir, 'haproxy.cfg');
      const pidFile = join(refDir, 'haproxy.pid');
      await writeFile(
        cfg,
        [
          'global',
          '    maxconn 4096',
          'defaults',
          '    mode http',
          '    option redispatch',
          '    option http-server-close',
          '    retries 3',
          '    timeout connect 5000',
          '    timeout client 50000',
          '    timeout server 50000',
          `    source ${lb.primaryIpAddress as string}`,
          'frontend fe',
          `    bind ${h1.ip}:${REF_PORT}`,
          '    default_backend be',
          'backend be',
          '    balance roundrobin',
          ...web2Ips.map((ip, k) => `    server s${k + 1} ${ip}:80`),
          '',
        ].join('\n'),
      );
      const refPid = async () => Number((await readFile(pidFile, 'utf8').catch(() => '')).trim().split('\n').pop() || 0);
      const refReload = async () => {
        const old = await refPid();
        const r = await h1.exec(['haproxy', '-D', '-f', cfg, '-p', pidFile, ...(old ? ['-sf', String(old)] : [])]);
        assert.equal(r.exitCode, 0, `reference haproxy: ${r.stderr}`);
      };
      try {
        await refReload();
        await waitFor(async () => ((await curl([`http://${h1.ip}:${REF_PORT}/`])).out.startsWith('web2 ') ? true : undefined), 10_000, 'the reference HAProxy serving');
        const refLoad = startLoad({ address: h1.ip, port: REF_PORT, path: '/app/', rate: RATE, timeoutMs: 5000, expectBody: /^web2 / });
        for (let i = 0; i < CHANGES; i++) {
          await refReload();
          await new Promise((r) => setTimeout(r, 300));
        }
        await new Promise((r) => setTimeout(r, 2000));
        const ref = await refLoad.stop();
        tt.diagnostic(`reference (plain haproxy -D -sf, same run): ${describeLoad(ref)}; ${CHANGES} reloads, ${(ref.failed / CHANGES).toFixed(2)} failed per reload`);
        console.log(`# zero-drop reference plain -sf: ${describeLoad(ref)}; ${CHANGES} reloads`);
      } finally {
        const pid = await refPid();
        if (pid) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // already gone
          }
        }
      }

      // Every rule change waited for its own reload (above); these were reloads of one HAProxy, not restarts.
      assert.equal(last?.masterPid, first?.masterPid, 'the same HAProxy master throughout');
      assert.equal(ours.shed, 0, `the load client offered the whole rate: ${describeLoad(ours)}`);
      assert.ok(ours.achievedRate >= RATE * 0.98, `the load reached ${RATE} req/s: ${describeLoad(ours)}`);
      assert.equal(ours.failed, 0, `no failed request through drover's balancer: ${describeLoad(ours)} ${j(ours.failures.slice(0, 10))}`);
      passed++;
    });
    // (A failed subtest does not throw here: the lab's logs are shown, and kept with DROVER_LAB_KEEP=1.)
    failed = passed !== 2;
  } finally {
    await stopDroverLab(lab, { cp, agents }, failed);
  }
});
