// PUT /v1/services/<id> with `lbConfig` against a real control plane: a balancer imported from a
// Rancher 1.6-style stack (rancher/lb-service-haproxy + rancher-compose `lb_config`) gets its rules
// replaced whole; invalid rules (unknown target or certificate, bad protocol, the reserved port 42),
// non-balancers, upgrades and unknown keys are refused by field and change nothing.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { cleanup, startTestServer, type TestServer } from '../helpers/server.js';

type Err = { status: number; code: string; fieldName?: string; message: string };
interface Rule {
  sourcePort: number;
  protocol: string;
  hostname?: string;
  path?: string;
  service?: string;
  serviceId?: string;
  targetPort?: number;
  priority?: number;
}
interface LbConfig {
  portRules: Rule[];
  certificateIds: string[];
  defaultCertificateId?: string;
}
interface Svc {
  id: string;
  name: string;
  kind: string;
  environmentId: string;
  lbConfig?: LbConfig;
}

const DOCKER_COMPOSE = `
web:
  image: nginx
api:
  image: nginx
ext:
  image: rancher/external-service
lb:
  image: rancher/lb-service-haproxy:v0.7.15
  ports:
    - 80:80
    - 8443:8443
`;
const RANCHER_COMPOSE = `
ext:
  hostname: db.example.test
lb:
  scale: 1
  lb_config:
    port_rules:
      - source_port: 80
        target_port: 80
        service: web
        hostname: www.example.test
        priority: 1
`;

let t: TestServer;
let stackName: string;
const svc: Record<string, Svc> = {};

before(async () => {
  t = await startTestServer();
  stackName = `shop-${randomBytes(3).toString('hex')}`;
  const st = await t.api<{ id: string } & Err>('POST', '/v1/stacks', { name: stackName, dockerCompose: DOCKER_COMPOSE, rancherCompose: RANCHER_COMPOSE });
  assert.equal(st.status, 201, JSON.stringify(st.body));
  const list = await t.api<{ data: Svc[] }>('GET', `/v1/services?stackId=${st.body.id}`);
  for (const s of list.body.data) svc[s.name] = s;
  assert.equal(svc.lb?.kind, 'loadBalancerService', 'rancher/lb-service-haproxy with lb_config is a balancer');
});
after(async () => {
  await t.close();
  cleanup(t.dir);
});

const lb = (): Svc => svc.lb as Svc;
const getLb = async (): Promise<LbConfig | undefined> => (await t.api<Svc>('GET', `/v1/services/${lb().id}`)).body.lbConfig;
const revision = async (): Promise<number> => (await t.api<{ revision: number }>('GET', `/v1/environments/${lb().environmentId}`)).body.revision;
const put = (body: unknown, id = lb().id) => t.api<Svc & Err>('PUT', `/v1/services/${id}`, body);

test('the imported balancer has its rancher-compose rule, resolved to the target id', async () => {
  const cfg = await getLb();
  assert.equal(cfg?.portRules.length, 1);
  assert.deepEqual(cfg?.portRules[0], { sourcePort: 80, protocol: 'http', hostname: 'www.example.test', service: 'web', serviceId: svc.web?.id, targetPort: 80, priority: 1 });
});

test('PUT lbConfig replaces the rules: stored, shown by GET, one new environment revision', async () => {
  const rev0 = await revision();
  const lbConfig = {
    portRules: [
      { sourcePort: 80, protocol: 'http', hostname: 'shop.example.test', service: 'web', targetPort: 80, priority: 5 },
      { sourcePort: 8443, protocol: 'tcp', service: `${stackName}/api`, targetPort: 9000 },
    ],
  };
  const r = await put({ lbConfig });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const expected: LbConfig = {
    portRules: [
      { sourcePort: 80, protocol: 'http', hostname: 'shop.example.test', service: 'web', serviceId: svc.web?.id as string, targetPort: 80, priority: 5 },
      { sourcePort: 8443, protocol: 'tcp', service: `${stackName}/api`, serviceId: svc.api?.id as string, targetPort: 9000 },
    ],
    certificateIds: [],
  };
  assert.deepEqual(r.body.lbConfig, expected, 'the answer is the stored config');
  assert.deepEqual(await getLb(), expected, 'GET shows it');
  assert.equal(await revision(), rev0 + 1, 'agents see one new revision of the environment');
});

test('an invalid lbConfig is refused naming the field, and the stored one stays as it was', async () => {
  const before = await getLb();
  const rev0 = await revision();
  const rule = (over: Record<string, unknown>) => ({ sourcePort: 80, protocol: 'http', service: 'web', ...over });
  const cases: { what: string; lbConfig: unknown; field: RegExp; message: RegExp }[] = [
    { what: 'unknown target service', lbConfig: { portRules: [rule({}), rule({ sourcePort: 81, service: 'nope' })] }, field: /^lbConfig\.portRules\[1\]\.service$/, message: /service "nope" does not exist/ },
    { what: 'target in an unknown stack', lbConfig: { portRules: [rule({ service: 'elsewhere/web' })] }, field: /^lbConfig\.portRules\[0\]\.service$/, message: /"elsewhere\/web" does not exist/ },
    { what: 'bad protocol', lbConfig: { portRules: [rule({ protocol: 'gopher' })] }, field: /^lbConfig\.portRules\.0\.protocol$/, message: /protocol/ },
    { what: 'unknown certificate', lbConfig: { portRules: [rule({})], certificateIds: ['no-such-cert'] }, field: /^lbConfig\.certificateIds$/, message: /certificate "no-such-cert" does not exist/ },
    { what: 'unknown default certificate', lbConfig: { portRules: [rule({})], defaultCertificateId: 'no-such-cert' }, field: /^lbConfig\.defaultCertificateId$/, message: /certificate "no-such-cert"/ },
    { what: 'external service by hostname (not implemented)', lbConfig: { portRules: [rule({ service: 'ext' })] }, field: /^lbConfig\.portRules\[0\]\.service$/, message: /external service given by hostname \(db\.example\.test\)/ },
    { what: 'udp (not implemented)', lbConfig: { portRules: [rule({ protocol: 'udp' })] }, field: /^lbConfig\.portRules\[0\]\.protocol$/, message: /udp is not supported/ },
    { what: 'selector (not implemented)', lbConfig: { portRules: [{ sourcePort: 80, protocol: 'http', selector: 'app=web' }] }, field: /^lbConfig\.portRules\[0\]\.selector$/, message: /selector rules are not supported/ },
    {
      what: 'source port 42',
      lbConfig: { portRules: [rule({}), rule({ sourcePort: 42 })] },
      field: /^lbConfig\.portRules\[1\]\.sourcePort$/,
      message: /^port 42 is reserved for the balancer's health check .*port rule 1 \(to web\)/,
    },
  ];
  for (const c of cases) {
    const r = await put({ lbConfig: c.lbConfig });
    assert.equal(r.status, 422, `${c.what}: ${JSON.stringify(r.body)}`);
    assert.match(r.body.fieldName ?? '', c.field, c.what);
    assert.match(r.body.message, c.message, c.what);
    assert.deepEqual(await getLb(), before, `${c.what}: the stored lbConfig is unchanged`);
  }
  assert.equal(await revision(), rev0, 'no revision for refused changes');
});

test('source port 42 is refused when a balancer is created through the API too', async () => {
  const stacks = await t.api<{ data: { id: string }[] }>('GET', `/v1/stacks?name=${stackName}`);
  const r = await t.api<Err>('POST', '/v1/services', {
    stackId: stacks.body.data[0]?.id,
    name: 'lb42',
    kind: 'loadBalancerService',
    launchConfig: { image: 'rancher/lb-service-haproxy' },
    lbConfig: { portRules: [{ sourcePort: 42, protocol: 'tcp', service: 'web' }] },
  });
  assert.equal(r.status, 422, JSON.stringify(r.body));
  assert.equal((r.body as { code?: string }).code, 'ReservedPort');
  assert.equal(r.body.fieldName, 'lbConfig.portRules[0].sourcePort');
  assert.equal((await t.api<{ data: unknown[] }>('GET', '/v1/services?name=lb42')).body.data.length, 0);
});

test('lbConfig on a service that is not a balancer: 422 NotABalancer, nothing written', async () => {
  const r = await put({ lbConfig: { portRules: [{ sourcePort: 80, protocol: 'http', service: 'api' }] } }, svc.web?.id);
  assert.equal(r.status, 422, JSON.stringify(r.body));
  assert.equal(r.body.code, 'NotABalancer');
  assert.equal(r.body.fieldName, 'lbConfig');
  assert.match(r.body.message, /"web" is a service: only a loadBalancerService has balancer rules/);
  assert.equal((await t.api<Svc>('GET', `/v1/services/${svc.web?.id}`)).body.lbConfig, undefined);
});

test('unknown keys in the body are refused by name', async () => {
  const before = await getLb();
  const r = await put({ lbConfig: { portRules: [{ sourcePort: 80, protocol: 'http', service: 'api' }] }, portRules: [] });
  assert.equal(r.status, 422, JSON.stringify(r.body));
  assert.equal(r.body.code, 'UnknownField');
  assert.equal(r.body.fieldName, 'portRules');
  assert.match(r.body.message, /portRules: unknown field/);
  assert.deepEqual(await getLb(), before, 'the valid lbConfig next to it is not applied either');
});

// Inside lbConfig too (the input schema is strict at every level: src/server/api/schemas.ts LbConfigInput).
test('unknown keys inside lbConfig and its port rules are refused by name', async () => {
  const before = await getLb();
  for (const [lbConfig, field] of [
    [{ portRules: [{ sourcePort: 80, protocol: 'http', service: 'web' }], stickyness: {} }, 'lbConfig.stickyness'],
    [{ portRules: [{ sourcePort: 80, protocol: 'http', service: 'web', target_port: 8080 }] }, 'lbConfig.portRules.0.target_port'],
  ] as const) {
    const r = await put({ lbConfig });
    assert.equal(r.status, 422, `${field}: ${JSON.stringify(r.body)}`);
    assert.equal(r.body.fieldName, field);
    assert.deepEqual(await getLb(), before);
  }
});

test('during an upgrade the rules cannot change: 409 UpgradeInProgress', async () => {
  const up = await t.api<Err>('POST', `/v1/services/${lb().id}?action=upgrade`, { inServiceStrategy: { launchConfig: { image: 'rancher/lb-service-haproxy:v0.9.1' } } });
  assert.equal(up.status, 200, JSON.stringify(up.body));
  const before = await getLb();
  const r = await put({ lbConfig: { portRules: [{ sourcePort: 80, protocol: 'http', service: 'api' }] } });
  assert.equal(r.status, 409, JSON.stringify(r.body));
  assert.equal(r.body.code, 'UpgradeInProgress');
  assert.deepEqual(await getLb(), before);
  const back = await t.api<Err>('POST', `/v1/services/${lb().id}?action=rollback`);
  assert.equal(back.status, 200, JSON.stringify(back.body));
});
