// Hostile input to the control plane's API, against a real server in its own process: bodies that are
// not JSON, have wrong types, huge strings and arrays, deep nesting, `__proto__` keys, unknown fields
// and absurd numbers, on every POST/PUT route; compose files with recursive aliases, alias bombs, deep
// nesting, huge sizes and absurd scales. Every answer must be a 4xx naming the field (never a 5xx, a
// stall or a crash), and after each case the process is alive and answers /v1/version; during a large
// import /v1/version keeps answering. Bound: ~40 s (each request has a 20 s deadline).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const ADMIN = 'Basic ' + Buffer.from('ROBUSTADMINKEY:robust-admin-secret-0123456789').toString('base64');
const DEADLINE_MS = 20_000;

let child: ChildProcess;
let url = '';
let dir = '';
let rssStartKb = 0;

interface Answer {
  status: number;
  body: { type?: string; code?: string; fieldName?: string; message?: string; file?: string; service?: string; [k: string]: unknown };
}

async function call(method: string, path: string, body?: unknown, auth: string | undefined = ADMIN, raw = false): Promise<Answer> {
  const res = await fetch(url + path, {
    method,
    headers: { ...(auth ? { authorization: auth } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: raw ? (body as string) : JSON.stringify(body) } : {}),
    signal: AbortSignal.timeout(DEADLINE_MS),
  });
  const text = await res.text();
  let parsed: Answer['body'] = {};
  try {
    parsed = text ? (JSON.parse(text) as Answer['body']) : {};
  } catch {
    parsed = { message: text };
  }
  return { status: res.status, body: parsed };
}

function rssKb(): number {
  const status = readStatus();
  return Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? 0);
}

function readStatus(): string {
  try {
    return readFileSync(`/proc/${child.pid}/status`, 'utf8');
  } catch {
    return '';
  }
}

/** The server process is alive and answers a valid request right away. */
async function assertAlive(what: string): Promise<void> {
  assert.equal(child.exitCode, null, `server process exited after ${what}`);
  const t0 = performance.now();
  const v = await call('GET', '/v1/version', undefined, undefined);
  assert.equal(v.status, 200, `/v1/version after ${what}`);
  assert.ok(performance.now() - t0 < 2000, `/v1/version answered within 2 s after ${what}`);
}

/** A 4xx (never 5xx), with fieldName matching `field` when given, then the server is alive. */
async function assertRejected(what: string, r: Answer, field?: RegExp | string, status?: number): Promise<void> {
  assert.ok(r.status >= 400 && r.status < 500, `${what}: want a 4xx, got ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`);
  if (status !== undefined) assert.equal(r.status, status, `${what}: ${JSON.stringify(r.body).slice(0, 300)}`);
  assert.equal(r.body.type, 'error', `${what}: an error resource`);
  assert.ok(typeof r.body.message === 'string' && r.body.message.length > 0, `${what}: a message`);
  if (field !== undefined) {
    const ok = typeof field === 'string' ? r.body.fieldName === field : field.test(r.body.fieldName ?? '');
    assert.ok(ok, `${what}: fieldName ${JSON.stringify(r.body.fieldName)} should be ${String(field)} (${r.body.message})`);
  }
  await assertAlive(what);
}

const deep = (levels: number): unknown => {
  let v: unknown = {};
  for (let i = 0; i < levels; i++) v = { a: v };
  return v;
};

/** JSON text of `levels` nested objects (JSON.stringify itself would overflow the stack). */
const deepText = (levels: number): string => `${'{"a":'.repeat(levels)}{}${'}'.repeat(levels)}`;

let stackId = '';
let serviceId = '';
let containerId = '';
let agentAuth = '';

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'drover-api-hostile-'));
  child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'api-server.child.ts'), dir], { stdio: ['ignore', 'pipe', 'inherit'] });
  const rl = createInterface({ input: child.stdout! });
  url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('server did not start in 30 s')), 30_000);
    rl.once('line', (line) => {
      clearTimeout(timer);
      resolve(line.trim());
    });
    child.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
  });
  // Fixtures the routes need: a host (agent credentials), a stack with a service, a container.
  const tok = await call('POST', '/v1/registrationtokens', {});
  const reg = await call('POST', '/v1/agent/register', { token: tok.body.token, hostname: 'hostile-host', agentIpAddress: '192.0.2.60' }, undefined);
  assert.equal(reg.status, 201, JSON.stringify(reg.body));
  agentAuth = 'Basic ' + Buffer.from(`${String(reg.body.accessKey)}:${String(reg.body.secretKey)}`).toString('base64');
  const st = await call('POST', '/v1/stacks', { name: 'hostile', dockerCompose: 'web:\n  image: nginx\n' });
  assert.equal(st.status, 201, JSON.stringify(st.body));
  stackId = String(st.body.id);
  const svcs = await call('GET', `/v1/services?stackId=${stackId}`);
  serviceId = String((svcs.body.data as { id: string }[])[0]?.id);
  const c = await call('POST', '/v1/containers', { name: 'hostile-c', launchConfig: { image: 'busybox' } });
  assert.equal(c.status, 201, JSON.stringify(c.body));
  containerId = String(c.body.id);
  rssStartKb = rssKb();
});

after(async () => {
  if (child.exitCode === null) {
    child.kill('SIGTERM');
    const exited = await Promise.race([
      new Promise<boolean>((r) => child.once('exit', () => r(true))),
      new Promise<boolean>((r) => setTimeout(() => r(false), 5000)),
    ]);
    if (!exited) child.kill('SIGKILL');
  }
  rmSync(dir, { recursive: true, force: true });
});

/** Every POST/PUT route with a field to attack and a valid-looking rest of the body. */
function routes() {
  return [
    { m: 'POST', p: '/v1/environments', base: { name: 'e-x' }, str: 'name', list: undefined, auth: ADMIN },
    { m: 'PUT', p: '/v1/environments/1a1', base: {}, str: 'description', list: undefined, auth: ADMIN },
    { m: 'PUT', p: '/v1/hosts/1h1', base: {}, str: 'name', list: undefined, auth: ADMIN },
    { m: 'POST', p: '/v1/registrationtokens', base: {}, str: 'environmentId', list: undefined, auth: ADMIN },
    { m: 'POST', p: '/v1/apikeys', base: {}, str: 'name', list: undefined, auth: ADMIN },
    { m: 'POST', p: '/v1/stacks', base: { name: 's-x' }, str: 'description', list: undefined, auth: ADMIN },
    { m: 'POST', p: `/v1/stacks/${stackId}?action=addservices`, base: { dockerCompose: 'x:\n  image: y\n' }, str: 'rancherCompose', list: undefined, auth: ADMIN, strOk: true },
    { m: 'POST', p: '/v1/services', base: { stackId, name: 'svc-x', launchConfig: { image: 'nginx' } }, str: 'name', list: 'serviceLinks', auth: ADMIN },
    { m: 'PUT', p: `/v1/services/${serviceId}`, base: {}, str: 'name', list: undefined, auth: ADMIN },
    { m: 'POST', p: `/v1/services/${serviceId}?action=upgrade`, base: { inServiceStrategy: {} }, str: undefined, list: undefined, auth: ADMIN },
    { m: 'POST', p: `/v1/services/${serviceId}?action=setservicelinks`, base: { serviceLinks: [] }, str: undefined, list: 'serviceLinks', auth: ADMIN },
    { m: 'POST', p: '/v1/containers', base: { name: 'c-x', launchConfig: { image: 'busybox' } }, str: 'name', list: undefined, auth: ADMIN },
    { m: 'POST', p: '/v1/containerlinks', base: { containerId, targetContainerId: containerId, name: 'lnk' }, str: 'name', list: undefined, auth: ADMIN },
    { m: 'POST', p: '/v1/certificates', base: { name: 'cert-x', cert: 'c', key: 'k' }, str: 'name', list: undefined, auth: ADMIN },
    { m: 'PUT', p: '/v1/certificates/1cert9', base: { cert: 'c', key: 'k' }, str: 'description', list: undefined, auth: ADMIN },
    { m: 'POST', p: '/v1/agent/register', base: { token: 'x:1:00', hostname: 'h-x', agentIpAddress: '192.0.2.61' }, str: 'hostname', list: undefined, auth: undefined },
    { m: 'POST', p: '/v1/agent/report', base: {}, str: undefined, list: 'containers', auth: agentAuth },
    { m: 'POST', p: '/v1/agent/adopt', base: { externalId: 'x', name: 'adopt-x', image: 'busybox', labels: {} }, str: 'name', list: undefined, auth: agentAuth },
  ];
}

test('every POST/PUT route: not JSON, wrong types, huge strings and arrays, deep nesting, __proto__, unknown fields → 4xx naming the field', async () => {
  for (const r of routes()) {
    const at = `${r.m} ${r.p}`;
    await assertRejected(`${at} not JSON`, await call(r.m, r.p, '{"name": ', r.auth, true), undefined, 400);
    await assertRejected(`${at} a JSON array`, await call(r.m, r.p, [1, 2, 3], r.auth));
    await assertRejected(`${at} unknown field`, await call(r.m, r.p, { ...r.base, zzUnknown: 1 }, r.auth), 'zzUnknown', 422);
    const withDeep = `${JSON.stringify(r.base).slice(0, -1)}${Object.keys(r.base).length ? ',' : ''}"zzDeep": ${deepText(100_000)}}`;
    await assertRejected(`${at} deep nesting (100,000 levels)`, await call(r.m, r.p, withDeep, r.auth, true), 'zzDeep', 422);
    await assertRejected(`${at} __proto__ key`, await call(r.m, r.p, `{"__proto__": {"polluted": true}}`, r.auth, true), '__proto__', 422);
    if (r.str) {
      await assertRejected(`${at} wrong type`, await call(r.m, r.p, { ...r.base, [r.str]: { not: 'a string' } }, r.auth), r.str, 422);
      if (!r.strOk) await assertRejected(`${at} huge string`, await call(r.m, r.p, { ...r.base, [r.str]: 'x'.repeat(1_000_000) }, r.auth), r.str, 422);
    }
    if (r.list) {
      const items = Array.from({ length: 100_000 }, () => ({ serviceId: serviceId, id: containerId, state: 'running' }));
      await assertRejected(`${at} huge array`, await call(r.m, r.p, { ...r.base, [r.list]: items }, r.auth), new RegExp(`^${r.list}`), 422);
    }
  }
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
});

test('a body over 8 MiB is a 413 with a clear message', async () => {
  const r = await call('POST', '/v1/stacks', { name: 'huge', description: 'x'.repeat(9 * 1024 * 1024) });
  assert.equal(r.status, 413, JSON.stringify(r.body).slice(0, 300));
  assert.match(String(r.body.message), /larger than \d+ bytes/);
  await assertAlive('a 9 MiB body');
});

test('service fields: absurd scales, deep metadata, __proto__ in metadata, huge launch config lists → 422 naming the field', async () => {
  const base = { stackId, launchConfig: { image: 'nginx', networkMode: 'host' } };
  for (const [i, scale] of [1e9, 1e308, -1, 1.5, 100_000, 'NaN'].entries()) {
    await assertRejected(`scale ${String(scale)}`, await call('POST', '/v1/services', { ...base, name: `sc${i}`, scale }), 'scale', 422);
    await assertRejected(`PUT scale ${String(scale)}`, await call('PUT', `/v1/services/${serviceId}`, { scale }), 'scale', 422);
  }
  await assertRejected('metadata 65 levels', await call('POST', '/v1/services', { ...base, name: 'md1', metadata: deep(65) as Record<string, unknown> }), 'metadata', 422);
  await assertRejected('metadata 3,000 levels', await call('PUT', `/v1/services/${serviceId}`, `{"metadata": ${deepText(3000)}}`, ADMIN, true), /^metadata/, 422);
  await assertRejected('metadata 10,000 levels', await call('POST', '/v1/services', `{"stackId": "${stackId}", "name": "md2", "launchConfig": {"image": "x"}, "metadata": ${deepText(10_000)}}`, ADMIN, true), /^metadata/, 422);
  await assertRejected('metadata __proto__', await call('PUT', `/v1/services/${serviceId}`, '{"metadata": {"__proto__": {"x": 1}}}', ADMIN, true), 'metadata', 422);
  const rules = Array.from({ length: 100_000 }, () => ({ sourcePort: 80, protocol: 'http', service: 'x' }));
  await assertRejected('lbConfig with 100,000 port rules', await call('PUT', `/v1/services/${serviceId}`, { lbConfig: { portRules: rules } }), /^lbConfig\.portRules/, 422);
  await assertRejected('lbConfig port rule with a key of its own', await call('PUT', `/v1/services/${serviceId}`, { lbConfig: { portRules: [{ sourcePort: 80, protocol: 'http', service: 'x', zzKey: 1 }] } }), /^lbConfig\.portRules\.0/, 422);
  await assertRejected(
    'command of 100,000 arguments',
    await call('POST', '/v1/services', { stackId, name: 'cmd', launchConfig: { image: 'nginx', command: Array.from({ length: 100_000 }, () => 'a') } }),
    /^launchConfig\.command/,
    422,
  );
  // Metadata at the documented depth is accepted and the stack still exports.
  const ok = await call('PUT', `/v1/services/${serviceId}`, { metadata: deep(63) });
  assert.equal(ok.status, 200, JSON.stringify(ok.body).slice(0, 300));
  const exp = await call('POST', `/v1/stacks/${stackId}?action=exportconfig`, {});
  assert.equal(exp.status, 200, JSON.stringify(exp.body).slice(0, 300));
  // `constructor` is an ordinary key: stored as given, nothing polluted.
  const ctor = await call('PUT', `/v1/services/${serviceId}`, { metadata: { constructor: { prototype: 1 } } });
  assert.equal(ctor.status, 200);
  assert.deepEqual((ctor.body as { metadata?: unknown }).metadata, { constructor: { prototype: 1 } });
  await assertAlive('service field cases');
});

test('hostile compose files: recursive aliases, alias bombs, deep nesting, absurd scales → 422 naming file, service and field', async () => {
  const up = (name: string, dockerCompose: string, rancherCompose?: string) =>
    call('POST', '/v1/stacks', { name, dockerCompose, ...(rancherCompose !== undefined ? { rancherCompose } : {}) });
  const cases: [string, Answer, RegExp, string, string | undefined][] = [
    ['labels alias to its own service', await up('ra1', 'web: &w {image: x, labels: *w}\n'), /^labels/, 'docker-compose.yml', 'web'],
    ['command alias to itself', await up('ra2', 'web:\n  image: x\n  command: &c [a, *c]\n'), /^command/, 'docker-compose.yml', 'web'],
    ['v2 file, recursive alias', await up('ra3', 'version: "2"\nservices:\n  web: &w\n    image: x\n    labels: *w\n'), /^labels/, 'docker-compose.yml', 'web'],
    ['rancher-compose metadata alias to itself', await up('ra4', 'web:\n  image: x\n', 'web:\n  metadata: &m {a: {b: *m}}\n'), /^metadata/, 'rancher-compose.yml', 'web'],
    ['scale 1e9, network_mode host', await up('sc1', 'web:\n  image: x\n  network_mode: host\n', 'web:\n  scale: 1000000000\n'), /^scale$/, 'rancher-compose.yml', 'web'],
    ['scale 100000', await up('sc2', 'web:\n  image: x\n', 'web:\n  scale: 100000\n'), /^scale$/, 'rancher-compose.yml', 'web'],
    ['metadata 100 levels', await up('dm1', 'web:\n  image: x\n', `web:\n  metadata: ${'{a: '.repeat(100)}1${'}'.repeat(100)}\n`), /^metadata/, 'rancher-compose.yml', undefined],
    ['__proto__ label', await up('pk1', 'web:\n  image: x\n  labels:\n    __proto__: x\n'), /^labels/, 'docker-compose.yml', 'web'],
  ];
  for (const [what, r, field, file, service] of cases) {
    await assertRejected(what, r, field, 422);
    assert.equal(r.body.file, file, `${what}: file`);
    if (service) assert.equal(r.body.service, service, `${what}: service`);
  }
  // Alias bomb (9^7 expansions) and flow nesting far deeper than allowed: refused by file.
  let bomb = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n';
  for (const [k, prev] of [['b', 'a'], ['c', 'b'], ['d', 'c'], ['e', 'd'], ['f', 'e'], ['g', 'f']] as const) {
    bomb += `${k}: &${k} [${Array(9).fill(`*${prev}`).join(',')}]\n`;
  }
  const bombed = await up('bomb', `web:\n  image: x\n  x-bomb: 1\n`, `web:\n  metadata:\n    ${bomb.split('\n').join('\n    ')}\n`);
  await assertRejected('alias bomb', bombed, undefined, 422);
  assert.match(String(bombed.body.message), /rancher-compose\.yml.*alias/);
  const nested = await up('deep', `web:\n  image: x\n  labels: ${'['.repeat(200_000)}${']'.repeat(200_000)}\n`);
  await assertRejected('200,000 levels of flow nesting', nested, undefined, 422);
  assert.match(String(nested.body.message), /docker-compose\.yml.*nested deeper/);
  // Too many containers for one environment: refused before any is created.
  let many = '';
  for (let i = 0; i < 21; i++) many += `s${i}:\n  scale: 1000\n`;
  let manyDc = '';
  for (let i = 0; i < 21; i++) manyDc += `s${i}:\n  image: x\n  network_mode: host\n`;
  await assertRejected('21 × scale 1000', await up('many', manyDc, many), /^scale$/, 422);
});

test('a large import runs while /v1/version, health and watches keep answering', async () => {
  let dc = '';
  for (let i = 0; i < 3000; i++) dc += `svc${i}:\n  image: nginx:1.25\n  environment:\n    INDEX: "${i}"\n  labels:\n    tier: t${i % 10}\n`;
  let rc = '';
  for (let i = 0; i < 3000; i++) rc += `svc${i}:\n  metadata: {index: ${i}}\n`;
  let importing = true;
  let answered = 0;
  let slowest = 0;
  const poll = (async () => {
    while (importing) {
      const t0 = performance.now();
      const [v, h] = await Promise.all([call('GET', '/v1/version', undefined, undefined), fetch(`${url}/healthz`).then((r) => r.status)]);
      assert.equal(v.status, 200);
      assert.equal(h, 200);
      slowest = Math.max(slowest, performance.now() - t0);
      if (importing) answered++;
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  const watch = call('GET', '/v1/agent/watch?after=0&timeout=0', undefined, agentAuth);
  const t0 = performance.now();
  const r = await call('POST', '/v1/stacks', { name: 'large', dockerCompose: dc, rancherCompose: rc });
  const importMs = performance.now() - t0;
  importing = false;
  await poll;
  assert.equal(r.status, 201, JSON.stringify(r.body).slice(0, 300));
  assert.equal((await watch).status, 200);
  assert.ok(answered >= 3, `/v1/version answered ${answered} times during a ${Math.round(importMs)} ms import`);
  assert.ok(slowest < 1000, `slowest /v1/version + /healthz during the import: ${Math.round(slowest)} ms`);
  // A compose file with a syntax error deep inside a large text: a 422 with the line, not a stall.
  const broken = await call('POST', '/v1/stacks', { name: 'broken', dockerCompose: `${dc}svcX:\n  image: [unclosed\n` });
  await assertRejected('syntax error at the end of a large file', broken, undefined, 422);
  assert.match(String(broken.body.message), /line \d+/);
  await assertAlive('the large import');
  const rss = rssKb();
  assert.ok(rss < rssStartKb + 400 * 1024, `server RSS ${Math.round(rss / 1024)} MiB (started at ${Math.round(rssStartKb / 1024)} MiB)`);
});
