import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ComposeError } from '../../src/common/errors.js';
import { LaunchConfig } from '../../src/model/resources.js';
import { interpolateString, parseCompose, type ComposeInput, type ServiceSpec, type StackSpec } from '../../src/server/compose/index.js';

const FIXTURES = new URL('../fixtures/compose/', import.meta.url);

function fixture(dir: string, answers?: Record<string, string>): ComposeInput {
  const read = (name: string): string => readFileSync(new URL(`${dir}/${name}`, FIXTURES), 'utf8');
  return { dockerCompose: read('docker-compose.yml'), rancherCompose: read('rancher-compose.yml'), ...(answers ? { answers } : {}) };
}

function service(spec: StackSpec, name: string): ServiceSpec {
  const found = spec.services.find((s) => s.name === name);
  assert.ok(found, `service ${name} in the spec`);
  return found;
}

/** A launch config with the model's defaults, plus `fields`. */
function lc(fields: Partial<LaunchConfig> & { image: string }): LaunchConfig {
  return LaunchConfig.parse(fields);
}

/** Asserts that parsing fails with a ComposeError whose message contains `text` (and has `code`). */
function rejects(input: ComposeInput | string, text: string, code = 'InvalidCompose'): ComposeError {
  const full = typeof input === 'string' ? { dockerCompose: input } : input;
  try {
    parseCompose(full);
  } catch (err) {
    assert.ok(err instanceof ComposeError, `expected a ComposeError, got ${String(err)}`);
    assert.ok(err.message.includes(text), `message\n  ${err.message}\ndoes not contain\n  ${text}`);
    assert.equal(err.code, code, `code of: ${err.message}`);
    return err;
  }
  return assert.fail(`expected parsing to fail with "${text}"`);
}

describe('compose: the Cassandra seed stack', () => {
  const spec = parseCompose(fixture('cassandra'));

  it('has the three seeds as services and their data containers as sidekicks', () => {
    assert.deepEqual(
      spec.services.map((s) => [s.name, s.kind, s.scale, s.global, s.secondaryLaunchConfigs.map((l) => l.name)]),
      [
        ['cdb1', 'service', 1, false, ['cdb1-data']],
        ['cdb2', 'service', 1, false, ['cdb2-data']],
        ['cdb3', 'service', 1, false, ['cdb3-data']],
      ],
    );
    assert.equal(spec.catalog, undefined);
    assert.deepEqual(spec.answers, {});
  });

  it('parses cdb1 in full', () => {
    assert.deepEqual(service(spec, 'cdb1'), {
      name: 'cdb1',
      kind: 'service',
      scale: 1,
      global: false,
      launchConfig: lc({
        image: 'cassandra:2.1',
        labels: {
          'io.rancher.scheduler.affinity:host_label': 'hostname=cassandra1',
          'io.rancher.sidekicks': 'cdb1-data',
          'io.rancher.container.requested_ip': '10.42.0.48',
        },
        environment: { CASSANDRA_SEEDS: '10.42.0.49,10.42.0.50' },
        dataVolumesFromLaunchConfigs: ['cdb1-data'],
        requestedIpAddress: '10.42.0.48',
      }),
      secondaryLaunchConfigs: [
        lc({
          name: 'cdb1-data',
          image: 'busybox',
          volumes: ['/var/lib/cassandra'],
          command: ['/bin/true'],
          labels: { 'io.rancher.container.start_once': 'true' },
          startOnce: true,
        }),
      ],
      metadata: {},
      externalIpAddresses: [],
      links: [],
    });
  });

  it('gives cdb2 and cdb3 their own host label, seeds and data sidekick, and no requested IP', () => {
    for (const [name, seeds] of [
      ['cdb2', '10.42.0.48,10.42.0.50'],
      ['cdb3', '10.42.0.48,10.42.0.49'],
    ] as const) {
      const svc = service(spec, name);
      const n = name.slice(-1);
      assert.equal(svc.launchConfig?.labels['io.rancher.scheduler.affinity:host_label'], `hostname=cassandra${n}`);
      assert.equal(svc.launchConfig?.environment.CASSANDRA_SEEDS, seeds);
      assert.deepEqual(svc.launchConfig?.dataVolumesFromLaunchConfigs, [`${name}-data`]);
      assert.equal(svc.launchConfig?.requestedIpAddress, undefined);
      assert.equal(svc.secondaryLaunchConfigs[0]?.startOnce, true);
      assert.deepEqual(svc.secondaryLaunchConfigs[0]?.command, ['/bin/true']);
    }
  });
});

describe('compose: the Jenkins catalog stack', () => {
  it('substitutes question defaults and answers, and keeps the catalog', () => {
    const spec = parseCompose(fixture('jenkins', { admin_password: 's3cr$t', extra: 'x' }));
    assert.deepEqual(spec.answers, {
      admin_password: 's3cr$t',
      extra: 'x',
      jenkins_port: '8080',
      plugins: 'credentials\ngit\ngreenballs\n',
      docker_version: '1.12.3',
    });
    assert.equal(spec.services.length, 1);
    const jenkins = service(spec, 'jenkins-primary');
    assert.deepEqual(jenkins.launchConfig?.ports, [{ publicPort: 8080, privatePort: 8080, protocol: 'tcp' }]);
    assert.deepEqual(jenkins.launchConfig?.environment, {
      DOCKER_VERSION: '1.12.3',
      JENKINS_ADMIN_PASSWORD: 's3cr$t',
      JAVA_OPTS: '-Xmx512m -Djenkins.install.runSetupWizard=false',
      BUILD_COST: '$5 per build',
    });
    assert.deepEqual(jenkins.launchConfig?.entrypoint, ['/usr/share/jenkins/rancher/jenkins.sh']);
    assert.deepEqual(jenkins.launchConfig?.dataVolumesFromLaunchConfigs, ['jenkins-plugins', 'jenkins-datavolume']);
    assert.deepEqual(
      jenkins.secondaryLaunchConfigs.map((l) => [l.name, l.image, l.startOnce, l.volumes, l.entrypoint]),
      [
        ['jenkins-plugins', 'rancher/jenkins-plugins:v0.1.1', true, [], undefined],
        ['jenkins-datavolume', 'busybox', true, ['/var/jenkins_home'], ['chown', '-R', '1000:1000', '/var/jenkins_home']],
      ],
    );
    assert.deepEqual(jenkins.metadata, { plugins: 'credentials\ngit\ngreenballs\n\n' });
    assert.deepEqual(jenkins.healthCheck, {
      port: 8080,
      requestLine: 'GET /login HTTP/1.0',
      interval: 5000,
      responseTimeout: 3000,
      healthyThreshold: 2,
      unhealthyThreshold: 3,
      initializingTimeout: 60000,
      strategy: 'recreate',
    });
    assert.deepEqual(jenkins.upgradeStrategy, { startFirst: false, batchSize: 1, intervalMillis: 2000 });
    assert.deepEqual(spec.catalog, {
      name: 'Jenkins',
      version: '2.19.4',
      description: 'Extendable open source continuous integration server (uses ${nothing})\n',
      uuid: 'jenkins-4',
      questions: [
        { variable: 'jenkins_port', label: 'Jenkins port', description: 'Public port of the Jenkins web UI', type: 'int', required: true, default: '8080' },
        { variable: 'plugins', label: 'Plugins', description: 'Plugins to install, one a line', type: 'multiline', required: false, default: 'credentials\ngit\ngreenballs\n' },
        { variable: 'docker_version', label: 'Docker version', type: 'enum', required: true, default: '1.12.3', options: ['1.10.3', '1.11.2', '1.12.3'] },
        { variable: 'admin_password', label: 'Admin password', type: 'password', required: true },
      ],
    });
  });

  it('lets answers override defaults', () => {
    const spec = parseCompose(
      fixture('jenkins', { admin_password: 'pw', jenkins_port: '9090', docker_version: '1.10.3', plugins: 'git', heap: '2g' }),
    );
    const launch = service(spec, 'jenkins-primary').launchConfig;
    assert.deepEqual(launch?.ports, [{ publicPort: 9090, privatePort: 8080, protocol: 'tcp' }]);
    assert.equal(launch?.environment.DOCKER_VERSION, '1.10.3');
    assert.equal(launch?.environment.JAVA_OPTS, '-Xmx2g -Djenkins.install.runSetupWizard=false');
    assert.deepEqual(service(spec, 'jenkins-primary').metadata, { plugins: 'git\n' });
  });

  it('rejects a missing required answer, naming the question', () => {
    const err = rejects(fixture('jenkins'), 'catalog question "admin_password" (Admin password) is required');
    assert.equal(err.file, 'rancher-compose.yml');
    assert.equal(err.field, 'answers.admin_password');
    rejects(fixture('jenkins', { admin_password: 'pw', jenkins_port: '' }), 'catalog question "jenkins_port" (Jenkins port) is required');
  });

  it('rejects answers of the wrong type', () => {
    rejects(
      fixture('jenkins', { admin_password: 'pw', docker_version: '1.9.1' }),
      'rancher-compose.yml, field "answers.docker_version": answer "1.9.1" to catalog question "docker_version" must be one of the options (1.10.3, 1.11.2, 1.12.3)',
    );
    rejects(fixture('jenkins', { admin_password: 'pw', jenkins_port: 'eighty' }), 'answer "eighty" to catalog question "jenkins_port" must be an integer');
  });
});

describe('compose: v2 layout and the supported service keys', () => {
  const spec = parseCompose(fixture('v2'));

  it('maps every key of web onto the launch config', () => {
    const web = service(spec, 'web');
    assert.deepEqual(web.launchConfig, {
      ...lc({ image: 'nginx:1.25' }),
      command: ['nginx', '-g', 'daemon off;', '-c', '/etc/nginx/my conf.d/nginx.conf', 'esc aped'],
      restartPolicy: { name: 'on-failure', maximumRetryCount: 5 },
      dns: ['10.0.0.2'],
      ports: [
        { privatePort: 80, protocol: 'tcp' },
        { publicPort: 8080, privatePort: 80, protocol: 'tcp' },
        { hostIp: '127.0.0.1', publicPort: 8443, privatePort: 443, protocol: 'tcp' },
        { hostIp: '127.0.0.1', privatePort: 9000, protocol: 'tcp' },
        { publicPort: 5353, privatePort: 53, protocol: 'udp' },
      ],
      expose: [
        { privatePort: 9090, protocol: 'tcp' },
        { privatePort: 9091, protocol: 'udp' },
      ],
      environment: { MODE: 'production', EMPTY: '', EQUALS: 'a=b' },
      labels: { 'io.rancher.container.pull_image': 'always', tier: 'front' },
      pullPolicy: 'always',
      volumes: ['/srv/www:/usr/share/nginx/html:ro', 'logs:/var/log/nginx:rw,Z', '/tmp'],
      dnsSearch: ['example.com', 'internal'],
      hostname: 'web',
      domainName: 'example.com',
      networkMode: 'bridge',
      tty: true,
      stdinOpen: false,
      privileged: false,
      readOnly: true,
      user: '1000',
      workingDir: '/srv',
      capAdd: ['NET_ADMIN'],
      capDrop: ['MKNOD'],
      devices: ['/dev/fuse:/dev/fuse'],
      securityOpt: ['apparmor:unconfined'],
      extraHosts: ['metadata:169.254.169.250', 'gateway:10.42.0.1'],
      memory: 512 * 1024 ** 2,
      memoryReservation: 1024 ** 3,
      cpuShares: 512,
      logConfig: { driver: 'json-file', config: { 'max-size': '10m', 'max-file': '3' } },
      stopSignal: 'SIGQUIT',
      dependsOn: ['db'],
    });
    assert.deepEqual(web.links, [
      { service: 'db' },
      { service: 'cache', alias: 'redis' },
      { stack: 'shared', service: 'logs', alias: 'syslog' },
    ]);
    assert.equal(web.scale, 2);
    assert.deepEqual(web.metadata, { owner: 'team-a', limits: { rps: 100, burst: [1, 2] } });
    assert.deepEqual(web.healthCheck, {
      port: 80,
      requestLine: 'GET /healthz HTTP/1.0',
      interval: 2000,
      responseTimeout: 2000,
      healthyThreshold: 2,
      unhealthyThreshold: 3,
    });
    assert.deepEqual(web.upgradeStrategy, { startFirst: false });
  });

  it('reads v1 net, log_driver/log_opt, stringified environment values and the global label', () => {
    const db = service(spec, 'db');
    assert.equal(db.global, true);
    assert.equal(db.launchConfig?.networkMode, 'host');
    assert.deepEqual(db.launchConfig?.environment, { POSTGRES_PASSWORD: 'secret', PORT: '5432', DEBUG: 'false' });
    assert.deepEqual(db.launchConfig?.logConfig, { driver: 'syslog', config: { tag: 'db' } });
    assert.deepEqual(db.launchConfig?.restartPolicy, { name: 'unless-stopped' });
    const cache = service(spec, 'cache');
    assert.equal(cache.scale, 1);
    assert.deepEqual(cache.launchConfig?.entrypoint, ['redis-server', '--appendonly', 'yes']);
    assert.equal(cache.launchConfig?.memory, 104857600);
  });

  it('converts memory sizes', () => {
    const mem = (v: string | number): number | undefined =>
      parseCompose({ dockerCompose: `a:\n  image: x\n  mem_limit: ${v}\n` }).services[0]?.launchConfig?.memory;
    assert.equal(mem('1024b'), 1024);
    assert.equal(mem('100k'), 102400);
    assert.equal(mem('512m'), 536870912);
    assert.equal(mem('1g'), 1073741824);
    assert.equal(mem('2G'), 2 * 1073741824);
    assert.equal(mem(4096), 4096);
  });
});

describe('compose: load balancer, external and DNS services', () => {
  it('parses an lb_config into the service', () => {
    const spec = parseCompose(fixture('lb'));
    const lb = service(spec, 'lb');
    assert.equal(lb.kind, 'loadBalancerService');
    assert.equal(lb.scale, 2);
    assert.equal(lb.launchConfig?.image, 'rancher/lb-service-haproxy:v0.7.9');
    assert.deepEqual(lb.links, [{ service: 'web' }, { service: 'api' }]);
    assert.deepEqual(lb.lbConfig, {
      portRules: [
        { sourcePort: 80, protocol: 'http', targetPort: 80, service: 'web', hostname: 'www.example.com', path: '/static', priority: 1 },
        { sourcePort: 443, protocol: 'https', targetPort: 8080, service: 'api' },
        { sourcePort: 443, protocol: 'https', targetPort: 8080, service: 'shared/api', backendName: 'shared-api' },
        { sourcePort: 5000, protocol: 'tcp', selector: 'app=worker' },
      ],
      certificateIds: ['wildcard-example'],
      defaultCertificateId: 'example-com',
      config: 'global\n  maxconn 4096\n',
      stickinessPolicy: { name: 'sticky', cookie: 'SRV', mode: 'insert', indirect: true, nocache: false },
    });
    assert.equal(lb.healthCheck?.port, 42);
    const legacy = service(spec, 'legacy-lb');
    assert.equal(legacy.kind, 'loadBalancerService');
    assert.equal(legacy.lbConfig, undefined);
    assert.equal(legacy.launchConfig?.labels['io.rancher.loadbalancer.target.web'], 'example.com:8000/path=80');
    assert.equal(service(spec, 'web').kind, 'service');
  });

  it('makes a service with an lb_config a balancer whatever its image', () => {
    const spec = parseCompose({
      dockerCompose: 'web: {image: nginx}\nmy-lb: {image: haproxy:2.6, links: [web]}\n',
      rancherCompose: 'my-lb:\n  lb_config:\n    port_rules: [{source_port: 80, target_port: 80, service: web}]\n',
    });
    assert.equal(service(spec, 'my-lb').kind, 'loadBalancerService');
  });

  it('parses external services (IPs and host name) and a DNS service', () => {
    const spec = parseCompose(fixture('external'));
    assert.deepEqual(service(spec, 'by-ip'), {
      name: 'by-ip',
      kind: 'externalService',
      scale: 1,
      global: false,
      secondaryLaunchConfigs: [],
      metadata: {},
      externalIpAddresses: ['10.1.2.3', '10.1.2.4'],
      healthCheck: { port: 5432, interval: 2000, responseTimeout: 2000, healthyThreshold: 2, unhealthyThreshold: 3 },
      links: [],
    });
    assert.deepEqual(service(spec, 'by-name'), {
      name: 'by-name',
      kind: 'externalService',
      scale: 1,
      global: false,
      secondaryLaunchConfigs: [],
      metadata: { note: 'managed elsewhere' },
      externalIpAddresses: [],
      hostname: 'db.example.com',
      links: [],
    });
    const dns = service(spec, 'dns');
    assert.equal(dns.kind, 'dnsService');
    assert.equal(dns.launchConfig, undefined);
    assert.deepEqual(dns.links, [{ service: 'by-ip' }, { service: 'app', alias: 'application' }, { stack: 'shared', service: 'db' }]);
    assert.deepEqual(service(spec, 'app').links, [{ service: 'dns', alias: 'backend' }]);
    assert.equal(service(spec, 'app').scale, 3);
  });
});

describe('compose: interpolation', () => {
  const vars = new Map([
    ['A', 'alpha'],
    ['EMPTY', ''],
  ]);

  it('follows libcompose semantics', () => {
    assert.equal(interpolateString('${A}-$A-$$A-$$$A', vars), 'alpha-alpha-$A-$alpha');
    assert.equal(interpolateString('${MISSING}|$MISSING|x', vars), '||x');
    assert.equal(interpolateString('${EMPTY:-d}|${MISSING:-d}|${A:-d}', vars), 'd|d|alpha');
    assert.equal(interpolateString('${EMPTY-d}|${MISSING-d}|${A-d}', vars), '|d|alpha');
    assert.equal(interpolateString('${MISSING:-$A}', vars), '$A');
    assert.equal(interpolateString('$A_B ${A}_B', vars), ' alpha_B');
    assert.equal(interpolateString('no dollars', vars), 'no dollars');
  });

  it('applies to values of both files, not to keys', () => {
    const spec = parseCompose({
      dockerCompose: 'web:\n  image: "nginx:${TAG:-latest}"\n  environment:\n    $KEY: ${VALUE}\n    PRICE: $$10\n',
      rancherCompose: 'web:\n  scale: ${SCALE}\n  metadata:\n    $key: "${VALUE}"\n',
      answers: { SCALE: '3', VALUE: 'v' },
    });
    const web = spec.services[0];
    assert.equal(web?.launchConfig?.image, 'nginx:latest');
    assert.deepEqual(web?.launchConfig?.environment, { $KEY: 'v', PRICE: '$10' });
    assert.equal(web?.scale, 3);
    assert.deepEqual(web?.metadata, { $key: 'v' });
  });

  it('rejects a malformed expression, naming the field', () => {
    rejects('web:\n  image: nginx\n  command: echo $1\n', 'docker-compose.yml, service "web", field "command": invalid "$" in "echo $1"');
    rejects('web:\n  image: nginx\n  environment: ["A=${B"]\n', 'field "environment[0]": unterminated "${" in "A=${B"');
    rejects('web:\n  image: nginx\n  labels: {a: "${B:?x}"}\n', 'field "labels.a": invalid interpolation "${B:?x}"');
    rejects({ dockerCompose: 'web: {image: x}', rancherCompose: 'web:\n  metadata: {a: [ok, "$"]}\n' }, 'rancher-compose.yml, service "web", field "metadata.a[1]": invalid "$"');
  });
});

describe('compose: errors name the file, the service and the field', () => {
  it('reports YAML syntax errors with line and column', () => {
    rejects('web:\n  image: nginx\n  ports: [80\n', 'docker-compose.yml: invalid YAML at line 4, column 1');
    rejects({ dockerCompose: 'web: {image: x}', rancherCompose: 'web:\n  scale: 1\n  scale: 2\n' }, 'rancher-compose.yml: invalid YAML at line 3, column 3: Map keys must be unique');
    rejects({ dockerCompose: 'a: 1', dockerComposeFile: 'stack/dc.yml' }, 'stack/dc.yml, service "a": a service must be a map of settings, got 1');
  });

  it('checks the top level and the format version', () => {
    rejects('- web\n', 'docker-compose.yml: expected a map, got a list');
    rejects("version: '1'\nservices: {}\n", 'field "version": "1" is not a supported format version');
    rejects("version: '2'\nservices: {}\nvolumes:\n  data: {}\n", 'field "volumes": top-level "volumes" is not supported yet', 'UnsupportedComposeKey');
    rejects("version: '2'\nservices: {}\nnetworks:\n  front: {}\n", 'top-level "networks" is not supported yet', 'UnsupportedComposeKey');
    rejects("version: '2'\nservice: {}\n", 'unknown top-level key "service"', 'UnknownComposeKey');
    rejects('my_web:\n  image: nginx\n', 'service "my_web": invalid service name');
    rejects(`${'a'.repeat(64)}:\n  image: nginx\n`, 'invalid service name');
    assert.deepEqual(parseCompose({ dockerCompose: '' }).services, []);
  });

  it('rejects unsupported and unknown service keys', () => {
    rejects('web:\n  build: .\n', 'docker-compose.yml, service "web", field "build": "build" is not supported by drover yet', 'UnsupportedComposeKey');
    rejects('web:\n  image: x\n  healthcheck: {test: [CMD, true]}\n', '"healthcheck" is not supported by drover yet (use "health_check" in rancher-compose.yml)', 'UnsupportedComposeKey');
    for (const key of ['extends', 'env_file', 'container_name', 'pid', 'ipc', 'cgroup_parent', 'volume_driver', 'networks', 'mac_address', 'cpuset', 'cpu_quota', 'memswap_limit', 'ulimits', 'deploy', 'secrets', 'configs', 'init', 'sysctls', 'tmpfs', 'stop_grace_period']) {
      rejects(`web:\n  image: x\n  ${key}: whatever\n`, `field "${key}": "${key}" is not supported by drover yet`, 'UnsupportedComposeKey');
    }
    rejects('web:\n  imgae: nginx\n', 'field "imgae": unknown key "imgae"; did you mean "image"?', 'UnknownComposeKey');
    rejects('web:\n  image: x\n  enviroment: {}\n', 'did you mean "environment"?', 'UnknownComposeKey');
    rejects('web:\n  image: x\n  frobnicate: 1\n', 'unknown key "frobnicate" (accepted: image, command,', 'UnknownComposeKey');
  });

  it('rejects bad values of service keys', () => {
    rejects('web:\n  command: ls\n', 'service "web", field "image": is required');
    rejects(
      'web:\n  image: x\n  ports: ["80", "80:abc"]\n',
      'docker-compose.yml, service "web", field "ports[1]": "80:abc" is not a valid port spec (expected [[hostIp:]publicPort:]privatePort[/tcp|udp]); ports are numbers from 1 to 65535',
    );
    rejects('web:\n  image: x\n  ports: ["9000-9005:9000-9005"]\n', 'field "ports[0]": "9000-9005:9000-9005": port ranges are not supported yet');
    rejects('web:\n  image: x\n  ports: ["70000:80"]\n', '"70000:80" is not a valid port spec');
    rejects('web:\n  image: x\n  ports: ["80:80/sctp"]\n', '"80:80/sctp" is not a valid port spec (expected [[hostIp:]publicPort:]privatePort[/tcp|udp]); the protocol must be tcp or udp');
    rejects('web:\n  image: x\n  ports: ["localhost:80:80"]\n', '"localhost" is not an IPv4 address');
    rejects('web:\n  image: x\n  ports: [{target: 80}]\n', 'the long port syntax (a map) is not supported yet');
    rejects('web:\n  image: x\n  expose: ["80:80"]\n', 'field "expose[0]": "80:80" is not a valid exposed port');
    rejects('web:\n  image: x\n  volumes: ["/a:/b:rx"]\n', 'field "volumes[0]": "/a:/b:rx": "rx" is not a valid volume mode');
    rejects('web:\n  image: x\n  volumes: ["/a:/b:ro,rw"]\n', 'is not a valid volume mode');
    rejects('web:\n  image: x\n  volumes: ["data:relative"]\n', 'the container path "relative" must be absolute');
    rejects('web:\n  image: x\n  volumes: [""]\n', 'field "volumes[0]": expected a volume string');
    rejects('web:\n  image: x\n  restart: sometimes\n', 'field "restart": "sometimes" is not a restart policy (accepted: no, always, on-failure[:N], unless-stopped)');
    rejects('web:\n  image: x\n  network_mode: overlay\n', '"overlay" is not a network mode (accepted: managed, bridge, host, none, container:<name>)');
    rejects('web:\n  image: x\n  net: host\n  network_mode: host\n', '"net" and "network_mode" are the same setting');
    rejects('web:\n  image: x\n  mem_limit: lots\n', 'field "mem_limit": "lots" is not a valid size');
    rejects('web:\n  image: x\n  tty: yes\n', 'field "tty": expected true or false, got "yes"');
    rejects('web:\n  image: x\n  cpu_shares: 0\n', 'field "cpu_shares": expected an integer ≥ 1, got 0');
    rejects('web:\n  image: x\n  command: "echo \'unterminated"\n', "has an unterminated ' quote");
    rejects('web:\n  image: x\n  extra_hosts: [nocolon]\n', '"nocolon" is not a host entry (expected host:ip)');
    rejects('web:\n  image: x\n  log_opt: {a: b}\n', 'field "log_opt": needs "log_driver"');
    rejects('web:\n  image: x\n  log_driver: syslog\n  logging: {driver: json-file}\n', 'give either "logging" or "log_driver"/"log_opt", not both');
    rejects('web:\n  image: x\n  environment: [=x]\n', 'field "environment[0]": "=x" has no name');
    rejects('web:\n  image: x\n  environment:\n    NULL: x\n', 'field "environment": a key is empty or null (quote names like "NULL" or "~")');
    rejects('web:\n  image: x\n  labels: {a: {b: c}}\n', 'field "labels.a": expected a string, number or boolean, got a map');
    rejects('web:\n  image: x\n  labels: {io.rancher.container.requested_ip: 10.42.0.256}\n', 'field "labels.io.rancher.container.requested_ip": "10.42.0.256" is not an IPv4 address');
    rejects('web:\n  image: x\n  labels: {io.rancher.container.start_once: yes}\n', 'field "labels.io.rancher.container.start_once": expected true or false');
    rejects('web:\n  image: x\n  labels: {io.rancher.container.pull_image: sometimes}\n', '"sometimes" is not a pull policy');
  });

  it('checks links, external links and depends_on', () => {
    rejects('web:\n  image: x\n  links: [db]\n', 'docker-compose.yml, service "web", field "links[0]": links to service "db", which is not defined in docker-compose.yml');
    rejects('web:\n  image: x\n  links: ["db:"]\n', 'field "links[0]": "db:" is not a valid link (expected service[:alias])');
    rejects('web:\n  image: x\n  links: [other/db]\n', '"other/db" is not a valid link (expected service[:alias]; links to other stacks go in external_links)');
    rejects('web:\n  image: x\n  external_links: [db]\n', 'field "external_links[0]": "db" is not a valid link (expected stack/service[:alias])');
    rejects('web:\n  image: x\n  links: [web]\n', '"web" cannot link to its own service');
    rejects('web:\n  image: x\n  links: [db, "db:database"]\ndb:\n  image: y\n', 'field "links[1]": links to "db" again with a different alias');
    rejects('web:\n  image: x\n  depends_on: [db]\n', 'field "depends_on[0]": names service "db", which is not defined in docker-compose.yml');
  });

  it('checks sidekicks and volumes_from', () => {
    const sk = (extra = '', data = ''): string =>
      `web:\n  image: x\n  labels: {io.rancher.sidekicks: data}\n${extra}data:\n  image: busybox\n${data}`;
    rejects('web:\n  image: x\n  labels: {io.rancher.sidekicks: "data, missing"}\ndata: {image: y}\n', 'service "web", field "labels.io.rancher.sidekicks": names sidekick "missing", which is not defined in docker-compose.yml');
    rejects(`${sk()}api:\n  image: x\n  labels: {io.rancher.sidekicks: data}\n`, 'service "api", field "labels.io.rancher.sidekicks": names sidekick "data", which is already a sidekick of "web"');
    rejects(sk('', '  labels: {io.rancher.sidekicks: more}\nmore: {image: z}\n'), 'service "data", field "labels.io.rancher.sidekicks": "data" is a sidekick of "web" and cannot name sidekicks of its own');
    rejects({ dockerCompose: sk(), rancherCompose: 'web: {scale: 2}\ndata: {scale: 2}\n' }, 'rancher-compose.yml, service "data", field "scale": "data" is a sidekick of "web": a sidekick has the scale of its primary "web"');
    rejects({ dockerCompose: sk(), rancherCompose: 'data: {metadata: {a: 1}}\n' }, 'field "metadata": "data" is a sidekick of "web": a sidekick shares the settings of its primary');
    rejects('web:\n  image: x\n  volumes_from: [db]\ndb: {image: y}\n', 'service "web", field "volumes_from[0]": volumes_from may only name a sidekick of the same service ("web" has no sidekicks); "db" is not one');
    rejects(sk('  volumes_from: [other]\n', 'other: {image: y}\n'), 'volumes_from may only name a sidekick of the same service (sidekicks of "web": data); "other" is not one');
    rejects(sk('', '  volumes_from: [data]\n'), 'service "data", field "volumes_from[0]": volumes_from may only name a sidekick');
    rejects(sk('', '  links: [web]\n'), 'service "data", field "links[0]": sidekick "data" of "web" cannot link to its own service');
    rejects(`${sk()}api:\n  image: x\n  links: [data]\n`, 'service "api", field "links[0]": links to "data", which is a sidekick of "web"; link to the service "web" instead');
  });

  it('merges sidekick links into the service', () => {
    const spec = parseCompose({
      dockerCompose:
        'web:\n  image: x\n  links: [db]\n  labels: {io.rancher.sidekicks: log}\nlog:\n  image: y\n  links: [db, cache]\n  external_links: [infra/sink]\ndb: {image: z}\ncache: {image: z}\n',
    });
    assert.deepEqual(service(spec, 'web').links, [{ service: 'db' }, { service: 'cache' }, { stack: 'infra', service: 'sink' }]);
    assert.deepEqual(spec.services.map((s) => s.name), ['web', 'db', 'cache']);
  });

  it('checks rancher-compose entries', () => {
    const dc = 'web:\n  image: x\n';
    const err = rejects({ dockerCompose: dc, rancherCompose: 'api: {scale: 1}\n' }, 'rancher-compose.yml, service "api": service "api" is not defined in docker-compose.yml');
    assert.deepEqual([err.file, err.service, err.field, err.status], ['rancher-compose.yml', 'api', undefined, 422]);
    rejects({ dockerCompose: dc, rancherCompose: 'web: {scale: -1}\n' }, 'rancher-compose.yml, service "web", field "scale": expected an integer between 0 and 1000, got -1');
    rejects({ dockerCompose: dc, rancherCompose: 'web: {scael: 1}\n' }, 'field "scael": unknown key "scael"; did you mean "scale"?', 'UnknownComposeKey');
    rejects({ dockerCompose: dc, rancherCompose: 'web: {start_on_create: sometimes}\n' }, 'field "start_on_create": expected true or false');
    rejects({ dockerCompose: dc, rancherCompose: 'web: {drain_timeout_ms: -5}\n' }, 'field "drain_timeout_ms": expected an integer between 0 and 600000, got -5');
    rejects({ dockerCompose: dc, rancherCompose: 'web: {drain_timeout_ms: 600001}\n' }, 'field "drain_timeout_ms": expected an integer between 0 and 600000');
    rejects({ dockerCompose: dc, rancherCompose: 'web: {retain_ip: maybe}\n' }, 'field "retain_ip": expected true or false');
    rejects({ dockerCompose: dc, rancherCompose: 'web: {retain_ip: false}\n' }, 'field "retain_ip": "retain_ip: false" is not supported by drover', 'UnsupportedComposeKey');
    rejects({ dockerCompose: dc, rancherCompose: 'web: {health_check: {interval: 2000}}\n' }, 'field "health_check.port": is required');
    rejects({ dockerCompose: dc, rancherCompose: 'web: {health_check: {port: 80, timeout: 2}}\n' }, 'field "health_check.timeout": unknown key "timeout"', 'UnknownComposeKey');
    rejects({ dockerCompose: dc, rancherCompose: 'web: {health_check: {port: 80, strategy: restart}}\n' }, '"restart" is not a strategy (accepted: none, recreate, recreateOnQuorum)');
    rejects(
      { dockerCompose: dc, rancherCompose: 'web: {health_check: {port: 80, strategy: recreateOnQuorum}}\n' },
      'field "health_check.recreate_on_quorum_strategy_config": is required with strategy recreateOnQuorum',
    );
    rejects(
      { dockerCompose: dc, rancherCompose: 'web: {health_check: {port: 80, strategy: recreate, recreate_on_quorum_strategy_config: {quorum: 2}}}\n' },
      'field "health_check.recreate_on_quorum_strategy_config": applies only to strategy recreateOnQuorum',
    );
    rejects(
      { dockerCompose: dc, rancherCompose: 'web: {health_check: {port: 80, strategy: recreateOnQuorum, recreate_on_quorum_strategy_config: {quorum: 0}}}\n' },
      'field "health_check.recreate_on_quorum_strategy_config.quorum": expected an integer ≥ 1, got 0',
    );
    rejects({ dockerCompose: dc, rancherCompose: 'web: {upgrade_strategy: {batch_size: 0}}\n' }, 'field "upgrade_strategy.batch_size": expected an integer between 1 and 1000, got 0');
    rejects({ dockerCompose: dc, rancherCompose: 'web: {upgrade_strategy: {interval_millis: -1}}\n' }, 'field "upgrade_strategy.interval_millis": expected an integer');
    rejects({ dockerCompose: dc, rancherCompose: 'web: {upgrade_strategy: {start_first: maybe}}\n' }, 'field "upgrade_strategy.start_first": expected true or false');
    assert.deepEqual(service(parseCompose({ dockerCompose: dc, rancherCompose: 'web: {upgrade_strategy: {start_first: true}}\n' }), 'web').upgradeStrategy, { startFirst: true });
    rejects({ dockerCompose: dc, rancherCompose: 'web: {external_ips: [10.0.0.1]}\n' }, 'field "external_ips": "external_ips" applies to external services only');
    rejects({ dockerCompose: dc, rancherCompose: 'web: {metadata: [a]}\n' }, 'field "metadata": expected a map, got a list');
  });

  it('checks balancer configs', () => {
    const dc = 'web: {image: x}\nlb: {image: rancher/lb-service-haproxy}\n';
    const lb = (rules: string): ComposeInput => ({ dockerCompose: dc, rancherCompose: `lb:\n  lb_config:\n    port_rules: ${rules}\n` });
    rejects(lb('[{source_port: 80, service: api}]'), 'rancher-compose.yml, service "lb", field "lb_config.port_rules[0].service": targets service "api", which is not a service of docker-compose.yml');
    rejects(lb('[{source_port: 42, service: web}]'), 'field "lb_config.port_rules[0].source_port": port 42 is reserved');
    rejects(lb('[{source_port: 80, protocol: ftp, service: web}]'), '"ftp" is not a protocol (accepted: http, https, tcp, tls, sni, udp)');
    rejects(lb('[{source_port: 80}]'), 'field "lb_config.port_rules[0]": a port rule needs a target');
    rejects(lb('[{source_port: 80, service: web, weight: 2}]'), 'field "lb_config.port_rules[0].weight": unknown key "weight"', 'UnknownComposeKey');
    rejects(
      { dockerCompose: dc, rancherCompose: 'lb:\n  lb_config:\n    certs: [a]\n    certificate_ids: [b]\n' },
      '"certs" and "certificate_ids" are the same setting',
    );
    rejects({ dockerCompose: dc, rancherCompose: 'lb:\n  lb_config:\n    stickiness_policy: {mode: sticky}\n' }, '"sticky" is not a mode (accepted: rewrite, insert, prefix)');
  });

  it('checks external and DNS services', () => {
    const ext = 'db:\n  image: rancher/external-service\n';
    rejects({ dockerCompose: ext }, 'rancher-compose.yml, service "db": an external service needs "external_ips" (a list of IPv4 addresses) or "hostname"');
    rejects({ dockerCompose: ext, rancherCompose: 'db: {external_ips: [10.0.0.300]}\n' }, 'field "external_ips[0]": "10.0.0.300" is not an IPv4 address');
    rejects({ dockerCompose: ext, rancherCompose: 'db: {external_ips: [10.0.0.3], hostname: db.example.com}\n' }, 'either "external_ips" or "hostname", not both');
    rejects({ dockerCompose: ext, rancherCompose: 'db: {hostname: db.example.com, scale: 2}\n' }, 'field "scale": "scale" does not apply to an external service');
    rejects(`${ext}  ports: ["5432:5432"]\n`, 'service "db", field "ports": "ports" does not apply to an external service, which runs no containers (accepted: image)');
    rejects('dns:\n  image: rancher/dns-service\n  environment: {A: b}\n', '"environment" does not apply to a DNS service');
    rejects('dns:\n  image: rancher/dns-service\n  links: [nowhere]\n', 'links to service "nowhere", which is not defined');
  });

  it('checks the catalog block', () => {
    const cat = (questions: string): ComposeInput => ({ dockerCompose: '', rancherCompose: `.catalog:\n  questions:\n${questions}` });
    rejects(cat('    - {variable: a, type: number}\n'), 'rancher-compose.yml, field ".catalog.questions[0].type": "number" is not a question type (accepted: string, int, boolean, enum, password, service, multiline, certificate)');
    rejects(cat('    - {variable: a, type: enum}\n'), 'field ".catalog.questions[0].options": an enum question needs a non-empty list of options');
    rejects(cat('    - {variable: a, type: int, default: abc}\n'), 'field ".catalog.questions[0].default": default "abc" of question "a" must be an integer');
    rejects(cat('    - {variable: a, type: boolean, default: yes}\n'), 'default "yes" of question "a" must be true or false');
    rejects(cat('    - {label: A}\n'), 'field ".catalog.questions[0].variable": is required');
    rejects(cat('    - {variable: a}\n    - {variable: a}\n'), 'field ".catalog.questions[1].variable": question "a" is defined twice');
    rejects(cat('    - {variable: a, min_length: 3}\n'), '"min_length" is not supported by drover yet', 'UnsupportedComposeKey');
    rejects({ dockerCompose: '', rancherCompose: '.catalog:\n  nmae: x\n' }, 'field ".catalog.nmae": unknown key "nmae"; did you mean "name"?', 'UnknownComposeKey');
    rejects({ ...cat('    - {variable: flag, type: boolean}\n'), answers: { flag: 'yes' } }, 'answer "yes" to catalog question "flag" must be true or false');
    const spec = parseCompose({ ...cat('    - {variable: flag, type: boolean, default: true}\n'), answers: { flag: 'false' } });
    assert.deepEqual(spec.answers, { flag: 'false' });
  });

  it('reads the catalog of a v2 rancher-compose', () => {
    const spec = parseCompose({
      dockerCompose: "version: '2'\nservices:\n  web:\n    image: 'nginx:${tag}'\n",
      rancherCompose: "version: '2'\ncatalog:\n  name: web\n  questions:\n    - {variable: tag, default: '1.25'}\nservices:\n  web:\n    scale: 2\n",
    });
    assert.equal(spec.catalog?.name, 'web');
    assert.equal(spec.services[0]?.launchConfig?.image, 'nginx:1.25');
    assert.equal(spec.services[0]?.scale, 2);
  });
});
