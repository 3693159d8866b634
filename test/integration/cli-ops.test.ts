// drover ps / scale / start / stop / restart / rm and drover host ls / label / add as a user runs them,
// against a real control plane (no agent: container states stay as the server sets them).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { ADMIN, cleanup, startTestServer, type TestServer } from '../helpers/server.js';
import { runCli, type CliRun } from '../helpers/cli.js';

// Until src/cli/main.ts registers them, the commands run from a program with just them.

interface Host {
  id: string;
  name: string;
  labels: Record<string, string>;
}
interface Svc {
  id: string;
  name: string;
  state: string;
  scale: number;
}
interface Ctr {
  id: string;
  name: string;
  state: string;
  desiredState: string;
  serviceId: string | null;
}

let t: TestServer;
let stack: string;
let h1: string;
let h2: string;
const svc: Record<string, Svc> = {};

const drover = (args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliRun> =>
  runCli(args, { DROVER_URL: t.url, DROVER_ACCESS_KEY: ADMIN.accessKey, DROVER_SECRET_KEY: ADMIN.secretKey, ...env });
const ok = async (args: string[]): Promise<CliRun> => {
  const r = await drover(args);
  assert.equal(r.status, 0, `${args.join(' ')}: ${r.stderr}`);
  return r;
};
const getSvc = async (name: string) => (await t.api<Svc>('GET', `/v1/services/${svc[name]?.id}`)).body;
const containersOf = async (name: string) => (await t.api<{ data: Ctr[] }>('GET', `/v1/containers?serviceId=${svc[name]?.id}`)).body.data;

before(async () => {
  t = await startTestServer();
  h1 = (await t.register('node-a', { zone: 'a' }, '192.0.2.11')).hostId;
  h2 = (await t.register('node-b', {}, '192.0.2.12')).hostId;
  stack = `shop-${randomBytes(3).toString('hex')}`;
  const st = await t.api<{ id: string }>('POST', '/v1/stacks', { name: stack, dockerCompose: 'web:\n  image: nginx\nworker:\n  image: busybox\n' });
  assert.equal(st.status, 201, JSON.stringify(st.body));
  for (const s of (await t.api<{ data: Svc[] }>('GET', `/v1/services?stackId=${st.body.id}`)).body.data) svc[s.name] = s;
});
after(async () => {
  await t.close();
  cleanup(t.dir);
});

test('every command has a description, explained options and examples', async () => {
  const top = await ok(['--help']);
  for (const c of ['ps', 'scale', 'start', 'stop', 'restart', 'rm', 'host']) assert.match(top.stdout, new RegExp(`^\\s+${c}\\b.*\\S{3}`, 'm'), c);
  const cmds = [['ps'], ['scale'], ['start'], ['stop'], ['restart'], ['rm'], ['host'], ['host', 'ls'], ['host', 'label'], ['host', 'add']];
  for (const c of cmds) {
    const r = await ok([...c, '--help']);
    assert.match(r.stdout, new RegExp(`Examples:\\n\\s+drover ${c.join(' ')}\\b`), c.join(' '));
    if (c.join(' ') !== 'host') assert.ok(r.stdout.includes('--url <url>'), `${c.join(' ')} takes the connection flags`);
    for (const line of r.stdout.split('\n').filter((l) => /^ {2}-/.test(l))) assert.match(line, /\S\s{2,}\S/, `explained: ${line}`);
  }
  assert.match((await ok(['restart', '--help'])).stdout, /--timeout <s>/);
});

test('host ls: an aligned table by default, the records with --format json', async () => {
  const r = await ok(['host', 'ls']);
  const lines = r.stdout.trimEnd().split('\n');
  assert.match(lines[0] ?? '', /^ID\s+NAME\s+STATE\s+AGENT IP\s+LABELS$/);
  assert.equal(lines.length, 3);
  const row = lines.find((l) => l.includes('node-a')) ?? '';
  assert.match(row, new RegExp(`^${h1}\\s+node-a\\s+\\S+\\s+192\\.0\\.2\\.11\\s+zone=a$`));
  const col = (l: string, word: string) => l.indexOf(word);
  for (const l of lines.slice(1)) assert.equal(col(l, '192.0.2.'), col(lines[0] ?? '', 'AGENT IP'), `aligned: ${l}`);
  assert.match(lines.find((l) => l.includes('node-b')) ?? '', /192\.0\.2\.12\s+-$/, 'no labels: "-"');

  const j = await ok(['host', 'ls', '--format', 'json']);
  const hosts = JSON.parse(j.stdout) as Host[];
  assert.deepEqual(hosts.map((h) => h.id).sort(), [h1, h2].sort());
  assert.deepEqual(hosts.find((h) => h.id === h1)?.labels, { zone: 'a' });
});

test('host label: sets, merges and removes (k-), by name or id; seen by the API', async () => {
  const get = async (id: string) => (await t.api<Host>('GET', `/v1/hosts/${id}`)).body.labels;
  const r = await ok(['host', 'label', 'node-b', 'disk=ssd', 'rack=r1']);
  assert.equal(r.stdout, `node-b (${h2}): disk=ssd,rack=r1\n`);
  assert.deepEqual(await get(h2), { disk: 'ssd', rack: 'r1' });
  await ok(['host', 'label', h2, 'rack=r2', 'zone=b']);
  assert.deepEqual(await get(h2), { disk: 'ssd', rack: 'r2', zone: 'b' }, 'merged into the existing labels');
  const rm = await ok(['host', 'label', 'node-b', 'disk-', 'nope-']);
  assert.deepEqual(await get(h2), { rack: 'r2', zone: 'b' });
  assert.match(rm.stderr, /note: host node-b has no label "nope"/);
  assert.deepEqual(await get(h1), { zone: 'a' }, 'the other host is untouched');
});

test('host add: prints the docker run command and the plain-process alternative', async () => {
  const r = await ok(['host', 'add']);
  const [docker, plain, ...rest] = r.stdout.trimEnd().split('\n');
  assert.deepEqual(rest, []);
  assert.match(docker ?? '', /docker run .*\/v1\/scripts\/\S+$/);
  assert.match(plain ?? '', /^drover agent http:\/\/\S+\/v1\/scripts\/\S+$/);
  assert.equal(docker?.split(' ').pop(), plain?.split(' ').pop(), 'the same registration URL');
});

test("ps: a stack's containers with state, host, IP and service; json too", async () => {
  const r = await ok(['ps', stack]);
  const lines = r.stdout.trimEnd().split('\n');
  assert.match(lines[0] ?? '', /^NAME\s+STATE\s+HEALTH\s+HOST\s+IP\s+SERVICE$/);
  const cs = (await t.api<{ data: (Ctr & { primaryIpAddress: string })[] }>('GET', `/v1/containers?stackId=${(await t.api<{ data: { id: string }[] }>('GET', `/v1/stacks?name=${stack}`)).body.data[0]?.id}`)).body.data;
  assert.equal(lines.length, 1 + cs.length);
  assert.ok(cs.length >= 2);
  for (const c of cs) {
    const line = lines.find((l) => l.startsWith(`${c.name} `)) ?? '';
    assert.match(line, new RegExp(`^${c.name}\\s+${c.state}\\s+\\S+\\s+node-[ab]\\s+${c.primaryIpAddress.replace(/\./g, '\\.')}\\s+${stack}/(web|worker)$`), line);
  }
  const j = JSON.parse((await ok(['ps', stack, '--format', 'json'])).stdout) as Ctr[];
  assert.deepEqual(j.map((c) => c.id).sort(), cs.map((c) => c.id).sort());
  const all = await ok(['ps']);
  for (const c of cs) assert.ok(all.stdout.includes(`${c.name} `), `ps without a stack lists ${c.name}`);
  const none = await drover(['ps', 'no-such-stack']);
  assert.equal(none.status, 1);
  assert.equal(none.stderr, 'error: no stack "no-such-stack" (drover stack ls lists them)\n');
});

test('scale: stack/service=N and --stack service=N, seen by the API', async () => {
  const r = await ok(['scale', `${stack}/web=3`]);
  assert.equal(r.stdout, `${stack}/web: scale 3 (was 1)\n`);
  assert.equal((await getSvc('web')).scale, 3);
  assert.equal((await containersOf('web')).length, 3);
  const back = await ok(['scale', '--stack', stack, 'web=1', 'worker=2']);
  assert.equal(back.stdout, `${stack}/web: scale 1 (was 3)\n${stack}/worker: scale 2 (was 1)\n`);
  assert.equal((await getSvc('web')).scale, 1);
  assert.equal((await getSvc('worker')).scale, 2);
});

test('scale: bad arguments name the argument, exit 1, and change nothing', async () => {
  const cases: [string[], string][] = [
    [['scale', `${stack}/web=x`], `error: ${stack}/web=x: scale must be an integer ≥ 0\n`],
    [['scale', '--stack', stack, 'web=x'], 'error: web=x: scale must be an integer ≥ 0\n'],
    [['scale', '--stack', stack, 'web=-1'], 'error: web=-1: scale must be an integer ≥ 0\n'],
    [['scale', 'web=2'], 'error: web=2: name the stack too, as <stack>/<service> or with --stack (for example: shop/web=2)\n'],
    [['scale', 'web'], 'error: web: give SERVICE=N (for example: shop/web=3)\n'],
    [['scale', `${stack}/web=2`, `${stack}/nope=1`], `error: ${stack}/nope=1: no service "nope" in stack "${stack}" (its services: web, worker; drover ps ${stack} lists its containers)\n`],
    [['scale', 'ghost/web=2'], 'error: ghost/web=2: no stack "ghost" (drover stack ls lists them)\n'],
  ];
  for (const [args, message] of cases) {
    const r = await drover(args);
    assert.equal(r.status, 1, `${args.join(' ')}: ${r.stderr}`);
    assert.equal(r.stderr, message);
    assert.equal(r.stdout, '');
  }
  assert.equal((await getSvc('web')).scale, 1, 'nothing scaled when one argument is wrong');
});

test('stop / start of a service deactivates and activates it; its containers follow', async () => {
  const stop = await ok(['stop', `${stack}/web`]);
  assert.match(stop.stdout, new RegExp(`^${stack}/web: stopped`));
  assert.equal((await getSvc('web')).state, 'inactive');
  assert.ok((await containersOf('web')).every((c) => c.desiredState === 'stopped'));
  const start = await ok(['start', '--stack', stack, 'web']);
  assert.match(start.stdout, new RegExp(`^${stack}/web: started`));
  assert.equal((await getSvc('web')).state, 'active');
  assert.ok((await containersOf('web')).every((c) => c.desiredState === 'running'));
});

test('stop / start / rm of a standalone container by name and by id', async () => {
  const c = (await t.api<Ctr>('POST', '/v1/containers', { name: 'solo', launchConfig: { image: 'busybox' } })).body;
  const get = async () => t.api<Ctr>('GET', `/v1/containers/${c.id}`);
  assert.equal((await ok(['stop', 'solo'])).stdout, 'solo: stopping\n');
  assert.equal((await get()).body.desiredState, 'stopped');
  assert.equal((await ok(['start', c.id])).stdout, 'solo: starting\n');
  assert.equal((await get()).body.desiredState, 'running');
  const rm = await ok(['rm', 'solo']);
  assert.equal(rm.stdout, `solo: removed (container ${c.id})\n`);
  assert.equal((await get()).status, 404);
});

test('rm of a service removes it and its containers', async () => {
  const n = (await containersOf('worker')).length;
  const r = await ok(['rm', `${stack}/worker`]);
  assert.equal(r.stdout, `${stack}/worker: removed (service ${svc.worker?.id} and ${n} containers)\n`);
  assert.equal((await t.api('GET', `/v1/services/${svc.worker?.id}`)).status, 404);
  assert.equal((await containersOf('worker')).length, 0);
});

test('restart: a container that never reports stopped fails clearly after --timeout, and is started again', async () => {
  const c = (await t.api<Ctr>('POST', '/v1/containers', { name: 'stuck', launchConfig: { image: 'busybox' } })).body;
  const r = await drover(['restart', 'stuck', '--timeout', '1']);
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /^stuck: waiting for 1 container to stop: stuck creating$/m, 'progress on stderr');
  assert.match(r.stderr, /^error: stuck: not restarted: after 1 s it is creating, not stopped; it was asked to start again\. Is the agent of its host up\? \(drover host ls\)$/m);
  assert.equal((await t.api<Ctr>('GET', `/v1/containers/${c.id}`)).body.desiredState, 'running');

  // A service restarts rolling, through the API (no agent here: it stays at its first batch).
  const s = await drover(['restart', `${stack}/web`, '--timeout', '1', '--batch-size', '1', '--interval', '0']);
  assert.equal(s.status, 1, s.stderr);
  assert.match(s.stderr, new RegExp(`^${stack}/web: stopping slot 1$`, 'm'), 'progress on stderr');
  assert.match(s.stderr, new RegExp(`^error: ${stack}/web: the restart is not done after 1 s \\(it goes on: stopping slot 1\\)\\. Are the agents of its hosts up\\?`, 'm'));
  const web = (await t.api<{ state: string; restart?: { phase: string } }>('GET', `/v1/services/${(await getSvc('web')).id}`)).body;
  assert.equal(web.state, 'active');
  assert.equal(web.restart?.phase, 'stop', 'the restart is under way on the server');
});

test('errors: unknown host, container, service; bad label; no key; a refused action', async () => {
  const cases: [string[], number, string | RegExp][] = [
    [['host', 'label', 'ghost', 'a=b'], 1, 'error: no host "ghost" (drover host ls lists them)\n'],
    [['host', 'label', 'node-a', '=b'], 1, 'error: =b: give key=value to set a label or key- to remove one (for example: zone=a or zone-)\n'],
    [['stop', 'ghost'], 1, 'error: no container "ghost" (drover ps lists containers; a service is <stack>/<service>)\n'],
    [['start', `${stack}/ghost`], 1, `error: no service "ghost" in stack "${stack}" (its services: web; drover ps ${stack} lists its containers)\n`],
    [['rm', '--stack', stack, 'ghost'], 1, `error: no service "ghost" in stack "${stack}" and no container "ghost" (drover ps lists containers; a service is <stack>/<service>)\n`],
    [['rm', `${stack}-web-1`], 1, new RegExp(`^error: ${stack}-web-1: container ${stack}-web-1 belongs to a service: scale the service down instead`)],
    [['ps', '--format', 'yaml'], 1, 'error: --format is table or json, got "yaml"\n'],
  ];
  for (const [args, status, message] of cases) {
    const r = await drover(args);
    assert.equal(r.status, status, `${args.join(' ')}: ${r.stderr}`);
    if (typeof message === 'string') assert.equal(r.stderr, message);
    else assert.match(r.stderr, message);
  }
  const bad = await drover(['host', 'ls'], { DROVER_SECRET_KEY: 'wrong-secret-0123456789' });
  assert.equal(bad.status, 3, bad.stderr);
  assert.match(bad.stderr, /^error: /);
});
