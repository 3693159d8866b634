// `drover stack up` as a rancher-compose user runs it against a real control plane (no agent: -d, or a
// short --timeout): create, the same files again, a changed image (outdated, then --upgrade), --rollback,
// --confirm-upgrade, --format json, and errors that name the user's file.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ADMIN, cleanup, startTestServer, type TestServer } from '../helpers/server.js';
import { runCli, type CliRun } from '../helpers/cli.js';

let t: TestServer;
const name = `cdb-${randomBytes(3).toString('hex')}`;
const drover = (args: string[]): Promise<CliRun> => runCli(args, { DROVER_URL: t.url, DROVER_ACCESS_KEY: ADMIN.accessKey, DROVER_SECRET_KEY: ADMIN.secretKey });
const file = (base: string, text: string): string => {
  const p = join(t.dir, `${base}-${randomBytes(3).toString('hex')}.yml`);
  writeFileSync(p, text);
  return p;
};
const dc = (image: string) => `db:\n  image: ${image}\n  labels:\n    io.rancher.container.requested_ip: 10.42.0.48\nweb:\n  image: nginx\n  links: [db]\n`;
let rc = '';
const svc = async (n: string) => (await t.api<{ data: { id: string; state: string; launchConfig: { image: string } }[] }>('GET', `/v1/services?name=${n}`)).body.data[0];

before(async () => {
  t = await startTestServer();
  await t.register('node1', {}, '192.0.2.31');
  rc = file('rancher-compose', 'db:\n  scale: 1\n  start_on_create: true\nweb:\n  scale: 2\n');
});
after(async () => {
  await t.close();
  cleanup(t.dir);
});

test('create, unchanged, outdated, --upgrade, --rollback, --upgrade again, --confirm-upgrade', async () => {
  const v1 = file('docker-compose', dc('cassandra:2.1'));
  const created = await drover(['stack', 'up', '-f', v1, '-f', rc, '-n', name, '-d']);
  assert.equal(created.status, 0, created.stderr);
  assert.match(created.stdout, new RegExp(`^stack ${name} \\(1st\\d+\\) created: db×1, web×2\\n$`));

  const same = await drover(['stack', 'up', '-f', v1, '-f', rc, '-n', name, '-d']);
  assert.equal(same.status, 0, same.stderr);
  assert.match(same.stdout, /^ {2}db: unchanged\n {2}web: unchanged\n/m);

  const v2 = file('docker-compose', dc('cassandra:2.2'));
  const outdated = await drover(['stack', 'up', '-f', v2, '-f', rc, '-n', name, '-d']);
  assert.equal(outdated.status, 0, outdated.stderr);
  assert.match(outdated.stdout, /db: outdated \(launch config: image; run with --upgrade to apply\)/);
  assert.equal((await svc('db'))?.launchConfig.image, 'cassandra:2.1', 'nothing changed without --upgrade');

  const up = await drover(['stack', 'up', '-f', v2, '-f', rc, '-n', name, '--upgrade', '--batch-size', '1', '--interval', '100', '-d']);
  assert.equal(up.status, 0, up.stderr);
  assert.match(up.stdout, /db: upgraded \(launch config: image\)/);
  assert.match(up.stdout, /web: unchanged/);
  assert.match(up.stdout, new RegExp(`confirm with: drover stack up -n ${name} --confirm-upgrade`));
  assert.equal((await svc('db'))?.state, 'upgraded');

  const rb = await drover(['stack', 'up', '-n', name, '--rollback', '-d']);
  assert.equal(rb.status, 0, rb.stderr);
  assert.equal(rb.stdout, 'db: rolled back\n');
  assert.equal((await svc('db'))?.launchConfig.image, 'cassandra:2.1');

  const again = await drover(['stack', 'up', '-f', v2, '-f', rc, '-n', name, '-u', '-d', '--format', 'json']);
  assert.equal(again.status, 0, again.stderr);
  const j = JSON.parse(again.stdout) as { services: { name: string; change: string }[] };
  assert.deepEqual(j.services.map((s) => [s.name, s.change]), [['db', 'upgraded'], ['web', 'unchanged']]);

  const fin = await drover(['stack', 'up', '-n', name, '--confirm-upgrade', '-d']);
  assert.equal(fin.status, 0, fin.stderr);
  assert.equal(fin.stdout, 'db: confirmed\n');
  assert.equal((await svc('db'))?.state, 'active');
  assert.equal((await drover(['stack', 'up', '-n', name, '--confirm-upgrade', '-d'])).stdout, `stack ${name}: no upgrade under way\n`);
});

test('waiting without -d: progress on stderr, and a clear timeout when the containers never run (no agent here)', async () => {
  const r = await drover(['stack', 'up', '-f', file('docker-compose', 'solo:\n  image: nginx\n'), '-n', `solo-${randomBytes(2).toString('hex')}`, '--timeout', '1']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^solo 0\/1 running$/m);
  assert.match(r.stderr, /error: not all containers run after 1 s: solo 0\/1 running \(drover ps shows them; -d does not wait\)/);
});

test('errors: the user’s file path, service and field; conflicting and bad flags', async () => {
  const bad = file('docker-compose', 'db:\n  image: x\n  bogus: 1\n');
  const r = await drover(['stack', 'up', '-f', bad, '-n', name, '-d']);
  assert.equal(r.status, 1);
  assert.ok(r.stderr.startsWith(`error: ${bad}, service "db", field "bogus"`), r.stderr);
  const both = await drover(['stack', 'up', '-n', name, '--upgrade', '--rollback']);
  assert.equal(both.status, 1);
  assert.match(both.stderr, /--upgrade, --confirm-upgrade and --rollback go one at a time/);
  const size = await drover(['stack', 'up', '-n', name, '--upgrade', '--batch-size', '0']);
  assert.notEqual(size.status, 0);
  assert.match(size.stderr, /--batch-size must be an integer ≥ 1, got "0"/);
  const lonely = await drover(['stack', 'up', '-n', name, '--batch-size', '2']);
  assert.match(lonely.stderr, /--batch-size and --interval go with --upgrade/);
  const none = await drover(['stack', 'up', '-n', 'nosuch', '--rollback']);
  assert.match(none.stderr, /no stack named "nosuch" \(drover stack ls lists them\)/);
});
