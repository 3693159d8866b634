// The seed's Jenkins catalog template on the real-Docker lab, through the CLI, with stand-in images: a v1
// docker-compose with `${…}` answers, sidekicks (plugins and home volume, both start_once) mounted with
// volumes_from, a rancher-compose with `.catalog` questions (int, multiline, enum, password), metadata
// from an answer, a health check on the web port and an upgrade strategy; the answers in the Rancher
// CLI's answers.txt form (KEY=VALUE, a quoted multi-line value). The stand-in primary (busybox httpd) serves
// /login on 8080 and what it was given; it reads its plugins from rancher-metadata like the real
// template's entrypoint did. Skips (with the reason) when the lab cannot run here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { labUnavailable, runInContainer, waitFor, type LabHost } from '../lab/lab.js';
import { withDroverLab } from '../lab/drover.js';
import { runCli } from '../helpers/cli.js';

const skip = labUnavailable();

const dockerCompose = (image: string) => `# Jenkins catalog template (stand-in images: busybox)
jenkins-primary:
  image: "${image}"
  ports:
    - "\${jenkins_port}:8080"
  labels:
    io.rancher.sidekicks: jenkins-plugins,jenkins-datavolume
    io.rancher.container.hostname_override: container_name
  volumes_from:
    - jenkins-plugins
    - jenkins-datavolume
  entrypoint: ["sh", "-c"]
  command:
    - "mkdir -p /www && echo ok > /www/login && wget -qO /www/plugins http://rancher-metadata/latest/self/service/metadata/plugins; cp /usr/share/jenkins/ref/plugins.txt /www/ref; echo \\"$$DOCKER_VERSION|$$JENKINS_ADMIN_PASSWORD|$$JAVA_OPTS|$$BUILD_COST\\" > /www/env; ls -ld /var/jenkins_home | cut -c1-10 > /www/home; trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait"
  environment:
    DOCKER_VERSION: \${docker_version}
    JENKINS_ADMIN_PASSWORD: $admin_password
    JAVA_OPTS: "-Xmx\${heap:-512m} -Djenkins.install.runSetupWizard=false"
    BUILD_COST: "$$5 per build"
jenkins-plugins:
  image: "${image}"
  volumes:
    - /usr/share/jenkins/ref
  command: ["sh", "-c", "echo git > /usr/share/jenkins/ref/plugins.txt"]
  labels:
    io.rancher.container.start_once: true
jenkins-datavolume:
  image: "${image}"
  volumes:
    - /var/jenkins_home
  labels:
    io.rancher.container.start_once: 'true'
  entrypoint: ["chmod", "-R", "0750", "/var/jenkins_home"]
`;

const RANCHER_COMPOSE = `.catalog:
  name: "Jenkins"
  version: "2.19.4"
  description: |
    Extendable open source continuous integration server
  uuid: jenkins-4
  minimum_rancher_version: v1.0.0
  questions:
    - variable: jenkins_port
      label: "Jenkins port"
      type: int
      required: true
      default: 8080
    - variable: plugins
      label: "Plugins"
      type: multiline
      required: false
      default: |
        credentials
    - variable: docker_version
      label: "Docker version"
      type: enum
      required: true
      default: "1.12.3"
      options:
        - "1.11.2"
        - "1.12.3"
    - variable: admin_password
      label: "Admin password"
      type: password
      required: true
jenkins-primary:
  scale: 1
  metadata:
    plugins: |
      \${plugins}
  health_check:
    port: 8080
    request_line: GET /login HTTP/1.0
    interval: 2000
    response_timeout: 2000
    healthy_threshold: 2
    unhealthy_threshold: 3
    initializing_timeout: 60000
    strategy: recreate
  upgrade_strategy:
    start_first: false
    batch_size: 1
    interval_millis: 2000
`;

/** What the Rancher CLI wrote: KEY=VALUE, the multi-line answer in double quotes. */
const ANSWERS = `jenkins_port=18080
plugins="git
greenballs
ldap"
docker_version=1.11.2
admin_password='s3cret $not-expanded'
`;

interface Rec {
  id: string;
  name: string;
  state: string;
  hostId: string;
  externalId: string | null;
  launchConfigName: string;
  healthState: string | null;
  startCount: number;
  exitCode: number | null;
}

test('lab: the Jenkins catalog template through the CLI with an answers.txt', { skip: skip ? `skipped: ${skip}` : false, timeout: 600_000 }, async () => {
  await withDroverLab(1, {}, async ({ lab, cp, cliEnv: env }) => {
    const h1 = lab.hosts[0] as LabHost;
    const dir = join(lab.dir, 'jenkins');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'docker-compose.yml'), dockerCompose(lab.image));
    writeFileSync(join(dir, 'rancher-compose.yml'), RANCHER_COMPOSE);
    writeFileSync(join(dir, 'answers.txt'), ANSWERS);

    // Without the required password: refused, naming the question; nothing created.
    writeFileSync(join(dir, 'partial.txt'), 'jenkins_port=18080\n');
    const refused = await runCli(['stack', 'up', '-n', 'jenkins', '--answers', join(dir, 'partial.txt'), '-d'], env, { cwd: dir });
    assert.equal(refused.status, 1);
    assert.match(refused.stderr, /admin_password/);

    // From the template's directory, as rancher-compose users run it (the two files found by name).
    const up = await runCli(['stack', 'up', '-n', 'jenkins', '--answers', join(dir, 'answers.txt'), '--timeout', '240'], env, { cwd: dir, timeoutMs: 300_000 });
    assert.equal(up.status, 0, `${up.stderr}\n${up.stdout}`);
    assert.match(up.stdout, /stack jenkins \(1st\d+\) created: jenkins-primary×1/);
    const stackId = (await cp.api<{ data: { id: string }[] }>('GET', '/v1/stacks?name=jenkins')).body.data[0]?.id as string;
    const recs = async () => (await cp.api<{ data: Rec[] }>('GET', `/v1/containers?stackId=${stackId}`)).body.data;
    const primary = await waitFor(async () => {
      const p = (await recs()).find((c) => c.launchConfigName === '');
      return p?.healthState === 'healthy' ? p : undefined;
    }, 120_000, 'jenkins-primary healthy (GET /login on 8080)');

    // The published port from the answer, from outside the host.
    const login = await waitFor(async () => {
      const r = await fetch(`http://${h1.ip}:18080/login`).catch(() => undefined);
      return r?.ok ? r.text() : undefined;
    }, 30_000, 'GET /login on the answered port 18080');
    assert.equal(login.trim(), 'ok');
    const got = async (path: string) => (await fetch(`http://${h1.ip}:18080/${path}`)).text();
    assert.equal((await got('env')).trim(), "1.11.2|s3cret $not-expanded|-Xmx512m -Djenkins.install.runSetupWizard=false|$5 per build", 'answers, defaults and $$ in the environment');
    assert.equal((await got('plugins')).trim(), 'git\ngreenballs\nldap', 'the multi-line answer, through the service metadata');
    assert.equal((await got('ref')).trim(), 'git', "the plugins sidekick's volume, through volumes_from");
    assert.equal((await got('home')).trim(), 'drwxr-x---', "the datavolume sidekick ran its entrypoint on the shared volume");

    // The start_once sidekicks ran once, cleanly, and are not started again.
    const sidekicks = await waitFor(async () => {
      const sk = (await recs()).filter((c) => c.launchConfigName !== '');
      return sk.length === 2 && sk.every((c) => c.state === 'stopped') ? sk : undefined;
    }, 30_000, 'both start_once sidekicks reported stopped');
    assert.deepEqual(sidekicks.map((c) => [c.launchConfigName, c.state, c.exitCode, c.startCount]).sort(), [
      ['jenkins-datavolume', 'stopped', 0, 1],
      ['jenkins-plugins', 'stopped', 0, 1],
    ]);
    const host = (await runInContainer(h1, primary.externalId as string, ['hostname'])).stdout.trim();
    assert.equal(host, primary.name, 'hostname_override: container_name');
  });
});
