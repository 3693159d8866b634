// `drover service lb-config` as a user runs it, against a real control plane: print a balancer's rules
// in rancher-compose form, replace them from a rancher-compose file (round trip), and the errors.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { ADMIN, cleanup, startTestServer, type TestServer } from '../helpers/server.js';
import { runCli, type CliRun } from '../helpers/cli.js';


interface Rule {
  sourcePort: number;
  protocol: string;
  hostname?: string;
  service?: string;
  serviceId?: string;
  targetPort?: number;
  priority?: number;
}
interface Svc {
  id: string;
  name: string;
  scale: number;
  lbConfig?: { portRules: Rule[]; certificateIds: string[] };
}

let t: TestServer;
let stack: string;
const svc: Record<string, Svc> = {};

/** The real CLI with the test server's admin key. */
const drover = (args: string[]): Promise<CliRun> => runCli(args, { DROVER_URL: t.url, DROVER_ACCESS_KEY: ADMIN.accessKey, DROVER_SECRET_KEY: ADMIN.secretKey });

const file = (name: string, text: string): string => {
  const p = join(t.dir, `${name}-${randomBytes(3).toString('hex')}.yml`);
  writeFileSync(p, text);
  return p;
};
const getLb = async () => (await t.api<Svc>('GET', `/v1/services/${svc.lb?.id}`)).body.lbConfig;

before(async () => {
  t = await startTestServer();
  stack = `shop-${randomBytes(3).toString('hex')}`;
  const st = await t.api<{ id: string }>('POST', '/v1/stacks', {
    name: stack,
    dockerCompose: 'web:\n  image: nginx\napi:\n  image: nginx\nlb:\n  image: rancher/lb-service-haproxy:v0.7.15\n  ports: ["80:80"]\n',
    rancherCompose: 'lb:\n  lb_config:\n    port_rules:\n      - source_port: 80\n        target_port: ${WEB_PORT}\n        service: web\n        hostname: "on"\n',
    answers: { WEB_PORT: '8080' },
  });
  assert.equal(st.status, 201, JSON.stringify(st.body));
  for (const s of (await t.api<{ data: Svc[] }>('GET', `/v1/services?stackId=${st.body.id}`)).body.data) svc[s.name] = s;
});
after(async () => {
  await t.close();
  cleanup(t.dir);
});

test('service lb-config --help explains the argument, the flags and gives examples', async () => {
  const top = await drover(['service', '--help']);
  assert.equal(top.status, 0, top.stderr);
  assert.match(top.stdout, /^\s+lb-config\b/m);
  const r = await drover(['service', 'lb-config', '--help']);
  assert.equal(r.status, 0, r.stderr);
  for (const f of ['<stack/service>', '-f, --file <rancher-compose.yml>', '--url <url>', '--access-key <key>']) assert.ok(r.stdout.includes(f), f);
  for (const line of r.stdout.split('\n').filter((l) => /^\s+-/.test(l))) assert.match(line, /\S\s{2,}\S/, `explained: ${line}`);
  assert.match(r.stdout, /Examples:\n\s+drover service lb-config shop\/lb\b/);
  assert.match(r.stdout, /drover service lb-config shop\/lb --file lb\.yml/);
});

test('without --file the rules are printed as the rancher-compose entry (exporter output)', async () => {
  const r = await drover(['service', 'lb-config', `${stack}/lb`]);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(parseYaml(r.stdout), { lb: { lb_config: { port_rules: [{ source_port: 80, protocol: 'http', hostname: 'on', service: 'web', target_port: 8080 }] } } });
  assert.match(r.stdout, /hostname: "on"/, 'YAML 1.1 booleans stay quoted, as the exporter writes them');
});

test('--file replaces the rules with the entry of a rancher-compose file; the printed form round-trips', async () => {
  const rc = file(
    'rancher-compose',
    [
      'version: "2"',
      'services:',
      '  web:',
      '    scale: 3',
      '  lb:',
      '    scale: 2',
      '    lb_config:',
      '      port_rules:',
      '        - {source_port: 80, target_port: "${WEB_PORT}", service: web, hostname: shop.example.test, priority: 2}',
      `        - {source_port: 8443, protocol: tcp, service: ${stack}/api, target_port: 9000}`,
      '',
    ].join('\n'),
  );
  const r = await drover(['service', 'lb-config', `${stack}/lb`, '--file', rc]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`^${stack}/lb: lb_config replaced \\(2 port rules\\)$`, 'm'));
  assert.match(r.stderr, /note: only lb_config is applied; scale in .* left as they are/);
  assert.deepEqual(await getLb(), {
    portRules: [
      { sourcePort: 80, protocol: 'http', hostname: 'shop.example.test', service: 'web', serviceId: svc.web?.id, targetPort: 8080, priority: 2 },
      { sourcePort: 8443, protocol: 'tcp', service: `${stack}/api`, serviceId: svc.api?.id, targetPort: 9000 },
    ],
    certificateIds: [],
  });
  assert.equal((await t.api<Svc>('GET', `/v1/services/${svc.lb?.id}`)).body.scale, 1, 'scale in the file is not applied');

  const printed = await drover(['service', 'lb-config', `${stack}/lb`]);
  assert.equal(printed.status, 0, printed.stderr);
  const stored = await getLb();
  const back = await drover(['service', 'lb-config', `${stack}/lb`, '-f', file('printed', printed.stdout)]);
  assert.equal(back.status, 0, back.stderr);
  assert.equal(back.stderr, '', 'the printed entry has only lb_config');
  assert.deepEqual(await getLb(), stored, 'printing then applying changes nothing');
});

test('errors: unknown stack or service, not a balancer, bad argument: a clear message and exit 1', async () => {
  const rc = file('rc', 'lb:\n  lb_config:\n    port_rules: [{source_port: 80, service: web}]\n');
  const cases: [string[], RegExp][] = [
    [['service', 'lb-config', `${stack}/nope`, '-f', rc], new RegExp(`stack "${stack}" has no service "nope" \\(its services: .*lb`)],
    [['service', 'lb-config', `${stack}/nope`], /has no service "nope"/],
    [['service', 'lb-config', 'no-such-stack/lb'], /no stack named "no-such-stack"/],
    [['service', 'lb-config', `${stack}/web`], new RegExp(`${stack}/web is a service, not a balancer`)],
    [['service', 'lb-config', 'lb'], /"lb" is not <stack>\/<service>/],
  ];
  for (const [args, message] of cases) {
    const r = await drover(args);
    assert.equal(r.status, 1, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message, args.join(' '));
    assert.equal(r.stdout, '');
  }
});

test('errors: what the API refuses is printed with its field, and the rules stay as they were', async () => {
  const before = await getLb();
  const unknownTarget = file('rc', 'lb:\n  lb_config:\n    port_rules:\n      - {source_port: 80, service: web}\n      - {source_port: 81, service: ghost}\n');
  const r = await drover(['service', 'lb-config', `${stack}/lb`, '--file', unknownTarget]);
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`^error: ${stack}/lb: lbConfig\\.portRules\\[1\\]\\.service: service "ghost" does not exist\\n$`));
  const cert = file('rc', 'lb:\n  lb_config:\n    port_rules: [{source_port: 443, protocol: https, service: web}]\n    certs: [missing-cert]\n');
  const c = await drover(['service', 'lb-config', `${stack}/lb`, '-f', cert]);
  assert.equal(c.status, 1, c.stderr);
  assert.match(c.stderr, /lbConfig\.certificateIds: certificate "missing-cert" does not exist/);
  assert.deepEqual(await getLb(), before);
});

test('errors in the file are named like stack import names them (file, service, field), and nothing is sent', async () => {
  const before = await getLb();
  const cases: [string, RegExp][] = [
    ['lb:\n  lb_config:\n    port_rules: [{source_port: 42, service: web}]\n', /service "lb", field "lb_config\.port_rules\[0\]\.source_port": port 42 is reserved for the balancer's health check/],
    ['lb:\n  lb_config:\n    port_rules: [{source_port: 80, protocol: gopher, service: web}]\n', /field "lb_config\.port_rules\[0\]\.protocol": "gopher" is not a protocol/],
    ['lb:\n  lb_config:\n    port_rules: [{source_port: 80, service: web, colour: red}]\n', /lb_config\.port_rules\[0\]\.colour/],
    ['lb:\n  lb_config:\n    port_rules: [{source_port: 80, service: "${WEB"}]\n', /field "lb_config\.port_rules\[0\]\.service": unterminated "\$\{"/],
    ['lb:\n  scale: 2\n', /service "lb", field "lb_config": is missing/],
    ['web:\n  scale: 2\n', /has no entry for service "lb" \(entries: web\)/],
  ];
  for (const [text, message] of cases) {
    const p = file('bad', text);
    const r = await drover(['service', 'lb-config', `${stack}/lb`, '-f', p]);
    assert.equal(r.status, 1, `${text}: ${r.stderr}`);
    assert.match(r.stderr, message, text);
    assert.ok(r.stderr.includes(p), `names the file: ${r.stderr}`);
  }
  assert.deepEqual(await getLb(), before);
});
