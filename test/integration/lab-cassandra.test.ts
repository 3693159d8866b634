// The Cassandra seed stack (Rancher 1.5's blog) on the 3-host real-Docker lab, driven by the CLI as a
// rancher-compose user would: hosts labelled with `drover host label`, `drover stack up` of the
// compose pair (cdb1..3 pinned by host label, cdb1 at the requested 10.42.0.48, busybox data sidekicks
// with volumes_from and a host bind mount, cdb2/cdb3 pointed at 10.42.0.48 by environment,
// start_on_create: true), with a small stand-in image (busybox httpd on 9042 serving its data dir).
// Then `stack up --upgrade` with a new image and a published port keeps 10.42.0.48 and the data;
// `--rollback` brings the old containers and sidekicks back; `--confirm-upgrade` removes the old ones;
// `stack export`, `stack rm` and `stack up` of the exported files as a new stack gives the same result.
// Skips (with the reason) when the lab cannot run here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { labUnavailable, runInContainer, waitFor, type LabHost } from '../lab/lab.js';
import { withDroverLab } from '../lab/drover.js';
import { runCli, type CliRun } from '../helpers/cli.js';

const skip = labUnavailable();
const j = (v: unknown) => JSON.stringify(v);

/** cdbN: busybox httpd on 9042 serving its data directory, after noting its start there. */
function dockerCompose(image: string, dataRoot: string, o: { cdb1Image?: string; publish?: boolean } = {}): string {
  const publish = o.publish === true;
  const node = (n: number, seeds: string, extra: string[]) =>
    [
      `cdb${n}:`,
      `  image: ${n === 1 ? (o.cdb1Image ?? image) : image}`,
      `  command: [sh, -c, "echo started $$(hostname) seeds=$$CASSANDRA_SEEDS >> /var/lib/cassandra/log; trap 'exit 0' TERM; httpd -f -p 9042 -h /var/lib/cassandra & wait"]`,
      '  labels:',
      `    io.rancher.scheduler.affinity:host_label: hostname=cassandra${n}`,
      `    io.rancher.sidekicks: cdb${n}-data`,
      ...extra,
      '  volumes_from:',
      `    - cdb${n}-data`,
      '  environment:',
      `    CASSANDRA_SEEDS: ${seeds}`,
      ...(publish && n === 1 ? ['  ports:', '    - "9042:9042"'] : []),
      `cdb${n}-data:`,
      `  image: ${image}`,
      '  volumes:',
      `    - ${dataRoot}/cdb${n}:/var/lib/cassandra`,
      '  command: /bin/true',
      '  labels:',
      "    io.rancher.container.start_once: 'true'",
    ].join('\n');
  return [node(1, '10.42.0.49,10.42.0.50', ['    io.rancher.container.requested_ip: 10.42.0.48']), node(2, '10.42.0.48', []), node(3, '10.42.0.48', [])].join('\n') + '\n';
}
const RANCHER_COMPOSE = ['cdb1', 'cdb2', 'cdb3'].map((s) => `${s}:\n  scale: 1\n  start_on_create: true\n`).join('');

interface Rec {
  id: string;
  name: string;
  state: string;
  hostId: string;
  externalId: string | null;
  primaryIpAddress: string | null;
  launchConfigName: string;
  generation: string;
  desiredState: string;
  config: { image: string };
}

test('3-host lab: the Cassandra seed stack through the CLI — up, upgrade with a published port, rollback, confirm, export and re-import', { skip: skip ? `skipped: ${skip}` : false, timeout: 900_000 }, async () => {
  await withDroverLab(3, {}, async ({ lab, cp, cliEnv: env }) => {
    const api = cp.api.bind(cp);
    const hosts = lab.hosts as [LabHost, LabHost, LabHost];
    const drover = async (args: string[], ok = true): Promise<CliRun> => {
      const r = await runCli(args, env, { timeoutMs: 300_000 });
      if (ok) assert.equal(r.status, 0, `drover ${args.join(' ')}: ${r.stderr}\n${r.stdout}`);
      return r;
    };
    // A second tag of the stand-in image on every host: the "new image" of the upgrade.
    for (const h of hosts) await h.docker.getImage(lab.image).tag({ repo: lab.image.split(':')[0] as string, tag: 'v2' });
    const image2 = `${lab.image.split(':')[0] as string}:v2`;
    const dataRoot = join(lab.dir, 'cassandra-data');
    mkdirSync(dataRoot, { recursive: true });
    const dir = join(lab.dir, 'cassandra');
    mkdirSync(dir, { recursive: true });
    const dc1 = join(dir, 'docker-compose.yml');
    const rc = join(dir, 'rancher-compose.yml');
    writeFileSync(dc1, dockerCompose(lab.image, dataRoot));
    writeFileSync(rc, RANCHER_COMPOSE);

    for (const [i, h] of hosts.entries()) {
      const r = await drover(['host', 'label', h.name, `hostname=cassandra${i + 1}`]);
      assert.match(r.stdout, new RegExp(`hostname=cassandra${i + 1}`));
    }
    const hostIds = Object.fromEntries(
      (await api<{ data: { id: string; labels: Record<string, string> }[] }>('GET', '/v1/hosts')).body.data.map((h) => [h.labels.hostname, h.id]),
    );

    const created = await drover(['stack', 'up', '-f', dc1, '-f', rc, '-n', 'cassandra', '--timeout', '240']);
    assert.match(created.stdout, /stack cassandra \(1st\d+\) created: cdb1×1, cdb2×1, cdb3×1/);
    assert.match(created.stderr, /cdb1 2\/2 running, cdb2 2\/2 running, cdb3 2\/2 running/, 'progress ends with every container up');
    const stackId = (await api<{ data: { id: string }[] }>('GET', '/v1/stacks?name=cassandra')).body.data[0]?.id as string;
    const current = async (id = stackId) => (await api<{ data: Rec[] }>('GET', `/v1/containers?stackId=${id}`)).body.data;
    const primary = async (n: number, gen = 'current', id = stackId) =>
      (await current(id)).find((c) => c.name.endsWith(`-cdb${n}-1`) && c.launchConfigName === '' && c.generation === gen);
    const cdb1 = await primary(1);
    assert.equal(cdb1?.primaryIpAddress, '10.42.0.48');
    for (const n of [1, 2, 3]) assert.equal((await primary(n))?.hostId, hostIds[`cassandra${n}`], `cdb${n} on cassandra${n}`);
    // The data sidekick's host bind mount has the primary's writes; cdb2 on another host reaches the seed.
    assert.match(readFileSync(join(dataRoot, 'cdb1', 'log'), 'utf8'), /^started .* seeds=10\.42\.0\.49,10\.42\.0\.50$/m);
    const cdb2 = await primary(2);
    const fromCdb2 = await runInContainer(hosts[1], cdb2?.externalId as string, ['sh', '-c', 'wget -qO- http://$CASSANDRA_SEEDS:9042/log']);
    assert.match(fromCdb2.stdout, /^started /m, `cdb2 reads the seed at $CASSANDRA_SEEDS=10.42.0.48: ${fromCdb2.stderr}`);

    // Upgrade: a new image and a published port on cdb1 only.
    const dc2 = join(dir, 'docker-compose.v2.yml');
    writeFileSync(dc2, dockerCompose(lab.image, dataRoot, { cdb1Image: image2, publish: true }));
    assert.match(readFileSync(dc2, 'utf8'), /cdb1:\n {2}image: \S+:v2\n/);
    const up = await drover(['stack', 'up', '-f', dc2, '-f', rc, '-n', 'cassandra', '--upgrade', '--timeout', '240']);
    assert.match(up.stdout, /cdb1: upgraded \(launch config: image, ports\)/);
    assert.match(up.stdout, /cdb2: unchanged/);
    assert.match(up.stdout, /confirm with: drover stack up -n cassandra --confirm-upgrade/);
    const new1 = await primary(1);
    assert.equal(new1?.config.image, image2);
    assert.equal(new1?.primaryIpAddress, '10.42.0.48', 'the upgrade keeps 10.42.0.48');
    assert.notEqual(new1?.id, cdb1?.id);
    const log = readFileSync(join(dataRoot, 'cdb1', 'log'), 'utf8');
    assert.equal(log.trim().split('\n').length, 2, `the data is kept and the new container added to it:\n${log}`);
    const viaPort = await waitFor(async () => {
      const r = await fetch(`http://${hosts[0].ip}:9042/log`).catch(() => undefined);
      return r?.ok ? r.text() : undefined;
    }, 60_000, 'the published port 9042 on cassandra1');
    assert.match(viaPort, /^started /m);

    // Rollback: the old containers and sidekicks again.
    const rb = await drover(['stack', 'up', '-n', 'cassandra', '--rollback', '--timeout', '240']);
    assert.equal(rb.stdout, 'cdb1: rolled back\n');
    const back = await primary(1);
    assert.equal(back?.id, cdb1?.id, 'the old cdb1 container');
    assert.equal(back?.config.image, lab.image);
    assert.equal(back?.primaryIpAddress, '10.42.0.48');
    await waitFor(async () => ((await primary(1))?.state === 'running' ? true : undefined), 60_000, 'the old cdb1 running');
    const sk = (await current()).filter((c) => c.name.includes('cdb1-data') && c.generation === 'current');
    assert.equal(sk.length, 1, `one current data sidekick of cdb1: ${j(sk.map((c) => [c.name, c.state, c.generation]))}`);
    assert.equal(sk[0]?.config.image, lab.image, "the sidekick's old config");

    // Upgrade again, confirm: the old containers go.
    await drover(['stack', 'up', '-f', dc2, '-f', rc, '-n', 'cassandra', '--upgrade', '--timeout', '240']);
    const fin = await drover(['stack', 'up', '-n', 'cassandra', '--confirm-upgrade', '--timeout', '240']);
    assert.equal(fin.stdout, 'cdb1: confirmed\n');
    const wanted = new Set((await current()).filter((c) => c.hostId === hostIds.cassandra1).map((c) => c.externalId));
    await waitFor(async () => {
      const ours = await hosts[0].docker.listContainers({ all: true, filters: { label: ['io.rancher.stack.name=cassandra'] } });
      return ours.length === wanted.size && ours.every((c) => wanted.has(c.Id)) ? true : undefined;
    }, 60_000, 'only the current containers left on cassandra1 (the old cdb1 and its sidekick removed)');
    assert.equal((await primary(1))?.config.image, image2);
    assert.ok(!(await current()).some((c) => c.generation === 'previous'), 'no old records left');

    // Export, remove, bring the exported files up as a new stack: the same placement and address.
    const out = join(dir, 'exported');
    await drover(['stack', 'export', 'cassandra', '-o', out]);
    assert.ok(existsSync(join(out, 'docker-compose.yml')) && existsSync(join(out, 'rancher-compose.yml')));
    await drover(['stack', 'rm', 'cassandra']);
    await waitFor(async () => ((await hosts[0].docker.listContainers({ all: true, filters: { label: ['io.rancher.stack.name=cassandra'] } })).length === 0 ? true : undefined), 60_000, 'the old stack gone from cassandra1');
    const again = await drover(['stack', 'up', '-f', join(out, 'docker-compose.yml'), '-f', join(out, 'rancher-compose.yml'), '-n', 'cassandra2', '--timeout', '240']);
    assert.match(again.stdout, /stack cassandra2 \(1st\d+\) created: cdb1×1, cdb2×1, cdb3×1/);
    const id2 = (await api<{ data: { id: string }[] }>('GET', '/v1/stacks?name=cassandra2')).body.data[0]?.id as string;
    const re1 = await primary(1, 'current', id2);
    assert.equal(re1?.primaryIpAddress, '10.42.0.48');
    assert.equal(re1?.config.image, image2);
    for (const n of [1, 2, 3]) assert.equal((await primary(n, 'current', id2))?.hostId, hostIds[`cassandra${n}`]);
    const lines = readFileSync(join(dataRoot, 'cdb1', 'log'), 'utf8').trim().split('\n');
    assert.ok(lines.length >= 4 && lines[0] === log.split('\n')[0], `the data survived it all (the bind mount):\n${lines.join('\n')}`);
  });
});
