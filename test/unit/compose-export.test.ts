import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parse } from 'yaml';
import { exportCompose, parseCompose, type ComposeInput, type StackSpec } from '../../src/server/compose/index.js';

const FIXTURES = new URL('../fixtures/compose/', import.meta.url);

function fixture(dir: string, answers?: Record<string, string>): ComposeInput {
  const read = (name: string): string => readFileSync(new URL(`${dir}/${name}`, FIXTURES), 'utf8');
  return { dockerCompose: read('docker-compose.yml'), rancherCompose: read('rancher-compose.yml'), ...(answers ? { answers } : {}) };
}

/** Export, then import the exported files with the stack's answers (as the server stores them). */
function roundTrip(spec: StackSpec): StackSpec {
  return parseCompose({ ...exportCompose(spec), answers: spec.answers });
}

const TRICKY_DOCKER = `
web:
  image: "example/web:\${TAG}"
  command: []
  entrypoint: ["sh", "-c", "echo $$HOME && exit 0"]
  environment:
    YES: "yes"
    ON: "on"
    TIME: "1:30"
    "NULL": "null"
    TILDE: "~"
    NUMBER: "0123"
    HEX: "0x1F"
    BIN: "0b101"
    EMPTY: ""
    MULTI: "line 1\\nline 2\\n"
    QUOTE: "it's \\"quoted\\""
    HASH: "#not a comment"
    COLON: "a: b"
    LEADING: " padded "
    UNICODE: "héllo ✓"
  labels:
    "<<": merge-lookalike
    "io.rancher.container.pull_image": always
  user: "0"
  cap_add: []
  tty: false
  working_dir: /
  dns: []
  network_mode: container:sidecar
  restart: "no"
  ports: ["127.0.0.1::53/udp", 8080]
sidecar:
  image: busybox
`;

const TRICKY_RANCHER = `
web:
  scale: 0
  metadata:
    price: "$$5"
    nested: {list: [1, "two", true, null], yes: "no"}
    answer: "\${TAG}"
`;

describe('compose export', () => {
  const fixtures: [string, Record<string, string>?][] = [
    ['cassandra'],
    ['jenkins', { admin_password: 'pa$$w0rd ${x}', jenkins_port: '9090' }],
    ['v2'],
    ['lb'],
    ['external'],
  ];
  for (const [dir, answers] of fixtures) {
    it(`round-trips the ${dir} fixture`, () => {
      const spec = parseCompose(fixture(dir, answers));
      assert.deepStrictEqual(roundTrip(spec), spec);
    });
  }

  it('round-trips strings that YAML or interpolation could misread', () => {
    const spec = parseCompose({ dockerCompose: TRICKY_DOCKER, rancherCompose: TRICKY_RANCHER, answers: { TAG: '$1.0' } });
    assert.equal(spec.services[0]?.launchConfig?.image, 'example/web:$1.0');
    assert.deepEqual(spec.services[0]?.metadata, {
      price: '$5',
      nested: { list: [1, 'two', true, null], yes: 'no' },
      answer: '$1.0',
    });
    assert.deepStrictEqual(roundTrip(spec), spec);
  });

  it('round-trips the interpolation-free parse of its own output', () => {
    const spec = parseCompose(fixture('jenkins', { admin_password: 'x' }));
    const once = exportCompose(spec);
    assert.deepEqual(exportCompose(roundTrip(spec)), once);
  });

  it('writes v1 docker-compose, escapes $ and keeps .catalog verbatim', () => {
    const spec = parseCompose(fixture('jenkins', { admin_password: 's3cr$t' }));
    const files = exportCompose(spec);
    const docker = parse(files.dockerCompose) as Record<string, Record<string, unknown>>;
    assert.deepEqual(Object.keys(docker), ['jenkins-primary', 'jenkins-plugins', 'jenkins-datavolume']);
    assert.deepEqual(docker['jenkins-primary']?.environment, {
      DOCKER_VERSION: '1.12.3',
      JENKINS_ADMIN_PASSWORD: 's3cr$$t',
      JAVA_OPTS: '-Xmx512m -Djenkins.install.runSetupWizard=false',
      BUILD_COST: '$$5 per build',
    });
    assert.deepEqual(docker['jenkins-primary']?.ports, ['8080:8080']);
    assert.deepEqual(docker['jenkins-primary']?.volumes_from, ['jenkins-plugins', 'jenkins-datavolume']);
    const rancher = parse(files.rancherCompose) as Record<string, Record<string, unknown>>;
    assert.deepEqual(Object.keys(rancher), ['.catalog', 'jenkins-primary']);
    assert.match(String(rancher['.catalog']?.description), /uses \$\{nothing\}/);
    assert.deepEqual(rancher['jenkins-primary']?.health_check, {
      port: 8080,
      interval: 5000,
      response_timeout: 3000,
      healthy_threshold: 2,
      unhealthy_threshold: 3,
      initializing_timeout: 60000,
      request_line: 'GET /login HTTP/1.0',
      strategy: 'recreate',
    });
  });

  it('quotes strings that YAML 1.1 readers (docker-compose) would take for booleans or numbers', () => {
    const files = exportCompose(parseCompose({ dockerCompose: TRICKY_DOCKER, rancherCompose: TRICKY_RANCHER, answers: { TAG: '1' } }));
    assert.match(files.dockerCompose, /"YES": "yes"/);
    assert.match(files.dockerCompose, /"ON": "on"/);
    assert.match(files.dockerCompose, /"NULL": "null"/);
    assert.match(files.dockerCompose, /TIME: "1:30"/);
    assert.match(files.dockerCompose, /BIN: "0b101"/);
    assert.match(files.dockerCompose, /"<<": merge-lookalike/);
    assert.match(files.dockerCompose, /restart: "no"/);
    assert.match(files.rancherCompose, /"yes": "no"/);
  });

  it('writes the rancher-compose settings of each kind of service', () => {
    const rancher = parse(exportCompose(parseCompose(fixture('external'))).rancherCompose) as Record<string, unknown>;
    assert.deepEqual(rancher, {
      'by-ip': {
        health_check: { port: 5432, interval: 2000, response_timeout: 2000, healthy_threshold: 2, unhealthy_threshold: 3 },
        external_ips: ['10.1.2.3', '10.1.2.4'],
      },
      'by-name': { metadata: { note: 'managed elsewhere' }, hostname: 'db.example.com' },
      app: { scale: 3 },
    });
    const lb = parse(exportCompose(parseCompose(fixture('lb'))).rancherCompose) as Record<string, Record<string, unknown>>;
    assert.deepEqual(lb.lb?.lb_config, {
      port_rules: [
        { source_port: 80, protocol: 'http', hostname: 'www.example.com', path: '/static', service: 'web', target_port: 80, priority: 1 },
        { source_port: 443, protocol: 'https', service: 'api', target_port: 8080 },
        { source_port: 443, protocol: 'https', service: 'shared/api', target_port: 8080, backend_name: 'shared-api' },
        { source_port: 5000, protocol: 'tcp', selector: 'app=worker' },
      ],
      certs: ['wildcard-example'],
      default_cert: 'example-com',
      config: 'global\n  maxconn 4096\n',
      stickiness_policy: { name: 'sticky', cookie: 'SRV', indirect: true, nocache: false, mode: 'insert' },
    });
  });

  it('writes the labels behind label-derived fields of specs built by hand', () => {
    const spec = parseCompose({ dockerCompose: 'web:\n  image: x\n  labels: {io.rancher.sidekicks: data}\ndata: {image: y}\n' });
    const web = spec.services[0];
    assert.ok(web?.launchConfig);
    const built: StackSpec = {
      ...spec,
      services: [
        {
          ...web,
          global: true,
          launchConfig: { ...web.launchConfig, labels: {}, requestedIpAddress: '10.42.0.9', pullPolicy: 'always' },
          secondaryLaunchConfigs: web.secondaryLaunchConfigs.map((s) => ({ ...s, startOnce: true })),
        },
      ],
    };
    const back = parseCompose(exportCompose(built)).services[0];
    assert.deepEqual(back?.launchConfig?.labels, {
      'io.rancher.container.requested_ip': '10.42.0.9',
      'io.rancher.container.pull_image': 'always',
      'io.rancher.scheduler.global': 'true',
      'io.rancher.sidekicks': 'data',
    });
    assert.equal(back?.global, true);
    assert.equal(back?.launchConfig?.requestedIpAddress, '10.42.0.9');
    assert.equal(back?.secondaryLaunchConfigs[0]?.startOnce, true);
  });

  it('exports an empty stack as empty files', () => {
    const spec = parseCompose({ dockerCompose: '' });
    assert.deepEqual(exportCompose(spec), { dockerCompose: '', rancherCompose: '' });
    assert.deepStrictEqual(roundTrip(spec), spec);
  });
});
