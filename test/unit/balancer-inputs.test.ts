// balancerInputs (pure): a balancer service's port rules resolved to target endpoints by the address owner
// rule, serving containers only, local flags and the target policy, certificates (and the self-signed
// default), the 1.0/1.1 label form converted to port rules, and rules that cannot be served left out with
// a warning.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LaunchConfig, LbConfig, type Certificate, type Service, type ServiceLink } from '../../src/model/resources.js';
import { balancerInputs, parseLegacyTargetSpec, type BalancerInstance } from '../../src/agent/capabilities/balancer/inputs.js';
import { renderHaproxy } from '../../src/agent/capabilities/balancer/render.js';
import { container, env, put, service } from '../helpers/state-fixtures.js';

function lb(id: string, lbConfig: Partial<LbConfig> | undefined, labels: Record<string, string> = {}, ports: LaunchConfig['ports'] = []): Service {
  return service(id, `lb-${id}`, {
    kind: 'loadBalancerService',
    launchConfig: LaunchConfig.parse({ image: 'rancher/lb-service-haproxy:v0.7.9', labels, ports }),
    ...(lbConfig ? { lbConfig: LbConfig.parse(lbConfig) } : {}),
  });
}

function link(id: string, from: string, to: string, name = ''): ServiceLink {
  return { id, environmentId: '1a1', serviceId: from, consumedServiceId: to, name, ports: [], created: '' };
}

function cert(id: string, name: string, key = 'KEY'): Certificate {
  return { id, environmentId: '1a1', name, description: '', cert: `CERT-${name}`, key, subjectAlternativeNames: [], created: '' };
}


const only = (xs: BalancerInstance[]): BalancerInstance => {
  assert.equal(xs.length, 1, `one instance expected, got ${xs.length}`);
  return xs[0] as BalancerInstance;
};

test('rules resolve to the serving containers that own their address, local flag, bind addresses', () => {
  const st = env();
  put(
    st,
    service('1s1', 'app', { healthCheck: { port: 8080, interval: 2000, responseTimeout: 1000, healthyThreshold: 2, unhealthyThreshold: 3, requestLine: 'GET /healthz HTTP/1.0' } }),
    lb('1s9', { portRules: [{ sourcePort: 80, protocol: 'http', hostname: 'a.test', serviceId: '1s1', targetPort: 8080 }] }),
    container('lb1', '1s9', '1h1', '10.42.0.9'),
    container('lb2', '1s9', '1h2', '10.42.0.10'), // another host's instance: not ours
    // (Listed first: the owner rule, not the order, decides.) 10.42.1.1 is also claimed by an older, stopped container: the running one owns it.
    container('a0', '1s1', '1h2', '10.42.1.1', { state: 'stopped', healthState: 'healthy', created: '2025-01-01T00:00:00Z' }),
    // A newer stopped container on a2's address: the running one still owns it, and the stopped one is left out.
    container('a5', '1s1', '1h2', '10.42.1.2', { state: 'stopped', created: '2027-01-01T00:00:00Z' }),
    container('a1', '1s1', '1h1', '10.42.1.1', { healthState: 'healthy' }),
    container('a2', '1s1', '1h2', '10.42.1.2', { healthState: 'healthy' }),
    container('a3', '1s1', '1h2', '10.42.1.3', { state: 'stopped', healthState: 'healthy' }), // stopped
    container('a4', '1s1', '1h2', '10.42.1.4', { healthState: 'unhealthy' }), // unhealthy
    container('a6', '1s1', '1h2', '10.42.1.6', { healthState: 'healthy', generation: 'previous' }), // rollback copy
  );
  const inst = only(balancerInputs(st, '1h1'));
  assert.equal(inst.containerId, 'lb1');
  assert.equal(inst.serviceId, '1s9');
  assert.equal(inst.ip, '10.42.0.9');
  assert.deepEqual(inst.input.bindAddresses, ['*', '10.42.0.9']);
  const rule = inst.input.rules[0];
  assert.ok(rule);
  assert.deepEqual(
    rule.targets.map((t) => [t.name, t.ip, t.port, t.local]),
    [
      ['a1', '10.42.1.1', 8080, true],
      ['a2', '10.42.1.2', 8080, false],
    ],
  );
  assert.deepEqual(rule.healthCheck, { port: 8080, interval: 2000, responseTimeout: 1000, healthyThreshold: 2, unhealthyThreshold: 3, requestLine: 'GET /healthz HTTP/1.0' });
  assert.equal(inst.input.targetPolicy, 'any');
  assert.deepEqual(inst.warnings, []);
  // Nothing for a host without balancer containers.
  assert.deepEqual(balancerInputs(st, '1h3'), []);
});

test('only-local label and the renderer keep the local targets only', () => {
  const st = env();
  put(
    st,
    service('1s1', 'app'),
    lb('1s9', { portRules: [{ sourcePort: 80, protocol: 'http', serviceId: '1s1' }] }, { 'io.rancher.lb_service.target': 'only-local' }),
    container('lb1', '1s9', '1h1', '10.42.0.9'),
    container('a1', '1s1', '1h1', '10.42.1.1'),
    container('a2', '1s1', '1h2', '10.42.1.2'),
  );
  const inst = only(balancerInputs(st, '1h1'));
  assert.equal(inst.input.targetPolicy, 'only-local');
  const r = renderHaproxy({ ...inst.input, statsSocket: '/tmp/x.sock' });
  assert.match(r.config, /server s1 10\.42\.1\.1:80 # a1/);
  assert.doesNotMatch(r.config, /10\.42\.1\.2/);
});

test('a gone balancer service, a stopped or removed balancer container: no instance', () => {
  const st = env();
  put(st, service('1s1', 'app'), lb('1s9', { portRules: [{ sourcePort: 80, protocol: 'http', serviceId: '1s1' }] }), container('lb1', '1s9', '1h1', '10.42.0.9', { desiredState: 'stopped' }));
  assert.deepEqual(balancerInputs(st, '1h1'), []);
  put(st, container('lb1', '1s9', '1h1', '10.42.0.9', { desiredState: 'removed' }));
  assert.deepEqual(balancerInputs(st, '1h1'), []);
  put(st, container('lb1', '1s9', '1h1', '10.42.0.9'));
  assert.equal(balancerInputs(st, '1h1').length, 1);
  put(st, { ...lb('1s9', undefined), state: 'removed' });
  assert.deepEqual(balancerInputs(st, '1h1'), []);
});

test('a rule whose service is gone, or an external service by hostname: a warning naming the rule, the rest served', () => {
  const st = env();
  put(
    st,
    service('1s1', 'app'),
    service('1s2', 'ext', { kind: 'externalService', externalIpAddresses: ['192.0.2.10', '192.0.2.11'] }),
    service('1s3', 'byname', { kind: 'externalService', hostname: 'example.org' }),
    lb('1s9', {
      portRules: [
        { sourcePort: 80, protocol: 'http', hostname: 'gone.test', serviceId: '1s404' },
        { sourcePort: 80, protocol: 'http', hostname: 'ext.test', serviceId: '1s2', targetPort: 8443 },
        { sourcePort: 80, protocol: 'http', hostname: 'byname.test', serviceId: '1s3' },
        { sourcePort: 80, protocol: 'http', serviceId: '1s1' },
      ],
    }),
    container('lb1', '1s9', '1h1', '10.42.0.9'),
    container('a1', '1s1', '1h2', '10.42.1.1'),
  );
  const inst = only(balancerInputs(st, '1h1'));
  assert.equal(inst.warnings.length, 2, inst.warnings.join('\n'));
  assert.match(inst.warnings[0] ?? '', /port rule 0 \(http 80gone\.test\).*gone/);
  assert.match(inst.warnings[1] ?? '', /port rule 2 .*example\.org/);
  assert.deepEqual(
    inst.input.rules.map((r) => [r.hostname, r.targets.map((t) => `${t.ip}:${t.port ?? ''}`)]),
    [
      ['ext.test', ['192.0.2.10:8443', '192.0.2.11:8443']],
      ['byname.test', []],
      [undefined, ['10.42.1.1:']],
    ],
  );
  // Renderable as is.
  const r = renderHaproxy({ ...inst.input, statsSocket: '/tmp/x.sock' });
  assert.match(r.config, /server s1 192\.0\.2\.10:8443/);
});

test('alias services expand to their linked services; a cycle does not loop', () => {
  const st = env();
  put(
    st,
    service('1s1', 'app'),
    service('1s2', 'ext', { kind: 'externalService', externalIpAddresses: ['192.0.2.10'] }),
    service('1s5', 'alias', { kind: 'dnsService' }),
    lb('1s9', { portRules: [{ sourcePort: 80, protocol: 'http', serviceId: '1s5', targetPort: 8080 }] }),
    container('lb1', '1s9', '1h1', '10.42.0.9'),
    container('a1', '1s1', '1h1', '10.42.1.1'),
  );
  for (const l of [link('1sl1', '1s5', '1s1'), link('1sl2', '1s5', '1s2'), link('1sl3', '1s5', '1s5')]) st.serviceLinks.set(l.id, l);
  const inst = only(balancerInputs(st, '1h1'));
  assert.deepEqual(inst.input.rules[0]?.targets.map((t) => `${t.ip}:${t.port ?? ''}`), ['10.42.1.1:8080', '192.0.2.10:8080']);
});

test('certificates by id and default; a missing one is a warning; https without any gets the self-signed default once', () => {
  const st = env();
  st.certificates.set('1c1', cert('1c1', 'www'));
  st.certificates.set('1c2', cert('1c2', 'api'));
  put(
    st,
    service('1s1', 'app'),
    lb('1s9', { portRules: [{ sourcePort: 443, protocol: 'https', serviceId: '1s1', targetPort: 80 }], certificateIds: ['1c1', '1c2', '1c3'], defaultCertificateId: '1c1', config: 'global\n  maxconn 100', stickinessPolicy: { cookie: 'SRV', mode: 'insert' } }),
    lb('1s8', { portRules: [{ sourcePort: 8443, protocol: 'https', serviceId: '1s1' }] }),
    container('lb1', '1s9', '1h1', '10.42.0.9'),
    container('lb2', '1s8', '1h1', '10.42.0.8'),
  );
  const made: string[] = [];
  const selfSigned = (id: string, name: string) => {
    made.push(`${id}:${name}`);
    return { name: 'drover-default', cert: 'SELF', key: 'SELFKEY' };
  };
  const all = balancerInputs(st, '1h1', { selfSigned });
  const i8 = all.find((i) => i.serviceId === '1s8');
  const i9 = all.find((i) => i.serviceId === '1s9');
  assert.ok(i8 && i9);
  assert.equal(i9.input.defaultCertificate?.name, 'www');
  assert.deepEqual(i9.input.certificates?.map((c) => [c.name, c.cert, c.key]), [['api', 'CERT-api', 'KEY']]);
  assert.match(i9.warnings.join('\n'), /certificate 1c3 is gone/);
  assert.equal(i9.input.customConfig, 'global\n  maxconn 100');
  assert.deepEqual(i9.input.stickiness, { cookie: 'SRV', mode: 'insert' });
  assert.equal(i8.input.defaultCertificate?.cert, 'SELF');
  assert.deepEqual(made, ['1s8:lb-1s8']);
});

test('label spec parsing', () => {
  assert.deepEqual(parseLegacyTargetSpec('example.com:80/path=81'), { hostname: 'example.com', sourcePort: 80, path: '/path', targetPort: 81 });
  assert.deepEqual(parseLegacyTargetSpec('example.com=81'), { hostname: 'example.com', targetPort: 81 });
  assert.deepEqual(parseLegacyTargetSpec('80/path'), { sourcePort: 80, path: '/path' });
  assert.deepEqual(parseLegacyTargetSpec('/path=81'), { path: '/path', targetPort: 81 });
  assert.deepEqual(parseLegacyTargetSpec('81'), { targetPort: 81 });
  assert.deepEqual(parseLegacyTargetSpec('example.com:443=8443'), { hostname: 'example.com', sourcePort: 443, targetPort: 8443 });
  assert.equal(parseLegacyTargetSpec('a.com:x=1'), undefined);
  assert.equal(parseLegacyTargetSpec('a.com=99999'), undefined);
});

test('the 1.0/1.1 label form becomes port rules (links are the targets, ports the source ports)', () => {
  const st = env();
  put(
    st,
    service('1s1', 'web'),
    service('1s2', 'api'),
    service('1s3', 'plain'),
    lb(
      '1s9',
      undefined,
      {
        'io.rancher.loadbalancer.target.web': 'example.com:80/path=8080, example.com:443=8443',
        'io.rancher.loadbalancer.target.api-alias': '81',
        'io.rancher.loadbalancer.ssl.ports': '443',
        'io.rancher.loadbalancer.proxy-protocol.ports': '80',
      },
      [
        { publicPort: 80, privatePort: 80, protocol: 'tcp' },
        { publicPort: 443, privatePort: 443, protocol: 'tcp' },
      ],
    ),
    container('lb1', '1s9', '1h1', '10.42.0.9'),
    container('w1', '1s1', '1h1', '10.42.1.1'),
    container('p1', '1s2', '1h1', '10.42.2.1'),
    container('q1', '1s3', '1h1', '10.42.3.1'),
  );
  for (const l of [link('1sl1', '1s9', '1s1'), link('1sl2', '1s9', '1s2', 'api-alias'), link('1sl3', '1s9', '1s3')]) st.serviceLinks.set(l.id, l);
  const inst = only(balancerInputs(st, '1h1', { selfSigned: () => ({ name: 'd', cert: 'C', key: 'K' }) }));
  assert.deepEqual(
    inst.input.rules.map((r) => [r.sourcePort, r.protocol, r.hostname ?? '', r.path ?? '', r.targetPort, r.targets.map((t) => t.name).join()]),
    [
      [80, 'http', 'example.com', '/path', 8080, 'w1'],
      [443, 'https', 'example.com', '', 8443, 'w1'],
      [80, 'http', '', '', 81, 'p1'],
      [443, 'https', '', '', 81, 'p1'],
      [80, 'http', '', '', 80, 'q1'],
      [443, 'https', '', '', 443, 'q1'],
    ],
  );
  assert.deepEqual(inst.input.proxyProtocolPorts, [80]);
  assert.equal(inst.input.defaultCertificate?.cert, 'C');
  // When lbConfig has rules, labels are not converted.
  put(st, lb('1s9', { portRules: [{ sourcePort: 90, protocol: 'tcp', serviceId: '1s3' }] }, { 'io.rancher.loadbalancer.target.web': '81' }, [{ publicPort: 80, privatePort: 80, protocol: 'tcp' }]));
  assert.deepEqual(only(balancerInputs(st, '1h1')).input.rules.map((r) => r.sourcePort), [90]);
});

test('a rule given by service name (no resolved id) is found in the stack', () => {
  const st = env();
  put(st, service('1s1', 'app'), lb('1s9', { portRules: [{ sourcePort: 80, protocol: 'http', service: 'web/app' }, { sourcePort: 81, protocol: 'http', service: 'app' }] }), container('lb1', '1s9', '1h1', '10.42.0.9'), container('a1', '1s1', '1h1', '10.42.1.1'));
  const inst = only(balancerInputs(st, '1h1'));
  assert.deepEqual(inst.input.rules.map((r) => r.targets.length), [1, 1]);
});
