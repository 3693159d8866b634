// The balancer's HAProxy render (pure): golden configs in test/golden/balancer/*.cfg (regenerate with
// UPDATE_GOLDEN=1 after a deliberate change and review the diff), one per rule kind and for the ordering
// rules, then the properties behind them (slots, skeleton, merge). Every golden output is checked by the
// real `haproxy -c` with its certificate files written beside it (test certificates from node-forge).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import {
  configSkeleton,
  mergeCustomConfig,
  renderHaproxy,
  type BalancerCertificate,
  type BalancerInput,
  type BalancerRender,
  type BalancerTarget,
} from '../../src/agent/capabilities/balancer/render.js';
import { testCertificate } from '../helpers/certs.js';

const GOLDEN_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'golden', 'balancer');
const HAPROXY = '/usr/sbin/haproxy';

function golden(name: string, text: string): void {
  const file = join(GOLDEN_DIR, `${name}.cfg`);
  if (process.env.UPDATE_GOLDEN === '1') {
    mkdirSync(GOLDEN_DIR, { recursive: true });
    writeFileSync(file, text);
  }
  assert.ok(existsSync(file), `${file} is missing (run with UPDATE_GOLDEN=1 to write it, then review it)`);
  assert.equal(text, readFileSync(file, 'utf8'), `${name}.cfg differs (UPDATE_GOLDEN=1 rewrites it after a deliberate change)`);
}

const SOCK = '/run/drover/balancer/web/admin.sock';
const t = (name: string, ip: string, extra: Partial<BalancerTarget> = {}): BalancerTarget => ({ name, ip, port: 80, local: false, ...extra });
const base = (over: Partial<BalancerInput>): BalancerInput => ({ name: 'web', rules: [], statsSocket: SOCK, ...over });

let certs: { def: BalancerCertificate; a: BalancerCertificate; b: BalancerCertificate };

/** Every case, by golden name: rendered once, compared, and checked by haproxy -c. */
const cases: Record<string, () => BalancerInput> = {
  // The original's known case: two host+path rules on one port, two services each.
  'http-host-path': () =>
    base({
      rules: [
        { sourcePort: 80, protocol: 'http', hostname: 'www.abc1.com', path: '/service1.html', targets: [t('svc0-1', '10.42.0.10'), t('svc1-1', '10.42.0.11')] },
        { sourcePort: 80, protocol: 'http', hostname: 'www.abc2.com', path: '/service2.html', targets: [t('svc2-1', '10.42.0.12'), t('svc3-1', '10.42.0.13')] },
        { sourcePort: 8080, protocol: 'http', targets: [t('svc0-1', '10.42.0.10', { port: 8080 })] },
      ],
    }),
  // Rules given scrambled: priorities first, then host+path, host, wildcard+path, wildcard, path, default;
  // longer hosts and paths first within a kind.
  ordering: () =>
    base({
      rules: [
        { sourcePort: 80, protocol: 'http', targets: [t('default-1', '10.42.1.1')] },
        { sourcePort: 80, protocol: 'http', path: '/api', targets: [t('api-1', '10.42.1.2')] },
        { sourcePort: 80, protocol: 'http', path: '/api/v2', targets: [t('apiv2-1', '10.42.1.3')] },
        { sourcePort: 80, protocol: 'http', hostname: '*.example.com', targets: [t('wild-1', '10.42.1.4')] },
        { sourcePort: 80, protocol: 'http', hostname: 'example.*', targets: [t('prefix-1', '10.42.1.5')] },
        { sourcePort: 80, protocol: 'http', hostname: '*.example.com', path: '/static', targets: [t('wildstatic-1', '10.42.1.6')] },
        { sourcePort: 80, protocol: 'http', hostname: 'www.example.com', targets: [t('www-1', '10.42.1.7')] },
        { sourcePort: 80, protocol: 'http', hostname: 'www.example.com', path: '/admin', targets: [t('admin-1', '10.42.1.8')] },
        { sourcePort: 80, protocol: 'http', hostname: '*.eu.example.com', targets: [t('eu-1', '10.42.1.9')] },
        { sourcePort: 80, protocol: 'http', path: '/canary', priority: 2, targets: [t('canary-1', '10.42.1.10')] },
        { sourcePort: 80, protocol: 'http', hostname: 'beta.example.com', priority: 1, targets: [t('beta-1', '10.42.1.11')] },
      ],
    }),
  // https with a default certificate and two more for SNI; X-Forwarded-Proto https.
  'https-sni': () =>
    base({
      certificates: [certs.b, certs.a],
      defaultCertificate: certs.def,
      rules: [
        { sourcePort: 443, protocol: 'https', hostname: 'a.example.com', targetPort: 8080, targets: [t('a-1', '10.42.2.1', { port: undefined })] },
        { sourcePort: 443, protocol: 'https', hostname: '*.b.example.com', targets: [t('b-1', '10.42.2.2')] },
        { sourcePort: 443, protocol: 'https', targets: [t('www-1', '10.42.2.3')] },
      ],
    }),
  // No default certificate: strict-sni.
  'https-strict-sni': () =>
    base({ certificates: [certs.a], rules: [{ sourcePort: 8443, protocol: 'https', targets: [t('a-1', '10.42.2.1')] }] }),
  // tcp: host/path ignored, every target of the port in one backend; proxy protocol accepted.
  tcp: () =>
    base({
      proxyProtocolPorts: [3306],
      rules: [
        { sourcePort: 3306, protocol: 'tcp', targetPort: 3306, targets: [t('db-1', '10.42.3.1', { port: undefined })] },
        { sourcePort: 3306, protocol: 'tcp', hostname: 'ignored.example.com', targetPort: 3306, targets: [t('db-2', '10.42.3.2', { port: undefined }), t('db-1', '10.42.3.1', { port: undefined })] },
      ],
    }),
  // tls: terminated, routed on the SNI name.
  tls: () =>
    base({
      certificates: [certs.a],
      defaultCertificate: certs.def,
      rules: [
        { sourcePort: 6443, protocol: 'tls', hostname: 'a.example.com', targets: [t('a-1', '10.42.4.1', { port: 6000 })] },
        { sourcePort: 6443, protocol: 'tls', targets: [t('other-1', '10.42.4.2', { port: 6000 })] },
      ],
    }),
  // sni: passthrough, routed on the ClientHello's SNI.
  sni: () =>
    base({
      rules: [
        { sourcePort: 443, protocol: 'sni', hostname: 'a.example.com', targets: [t('a-1', '10.42.5.1', { port: 443 })] },
        { sourcePort: 443, protocol: 'sni', hostname: '*.b.example.com', targets: [t('b-1', '10.42.5.2', { port: 443 })] },
        { sourcePort: 443, protocol: 'sni', targets: [t('c-1', '10.42.5.3', { port: 443 })] },
      ],
    }),
  // Cookie stickiness and the target service's health check.
  'stickiness-health': () =>
    base({
      stickiness: { name: 'p', cookie: 'SRV', mode: 'insert', indirect: true, nocache: true, domain: '.example.com' },
      rules: [
        {
          sourcePort: 80,
          protocol: 'http',
          targets: [t('web-1', '10.42.6.1'), t('web-2', '10.42.6.2'), t('web-3', '10.42.6.3', { healthy: false })],
          healthCheck: { port: 8081, interval: 2000, responseTimeout: 2000, healthyThreshold: 2, unhealthyThreshold: 3, requestLine: 'GET "/healthz" "HTTP/1.0"' },
        },
      ],
    }),
  // Custom config merged per section.
  'custom-config': () =>
    base({
      customConfig: [
        'global',
        '    maxconn 20000',
        '    tune.bufsize 32768',
        'defaults',
        '    timeout client 1h',
        '    option tcp-smart-accept',
        'frontend fe_80',
        '    http-request set-header X-Custom yes',
        'backend be_80',
        '    balance leastconn',
        'userlist admins',
        '    user admin insecure-password secret',
      ].join('\n'),
      rules: [{ sourcePort: 80, protocol: 'http', targets: [t('web-1', '10.42.7.1')] }],
    }),
  // Shared backend_name, prefer-local, and what cannot be served (udp, port 42, a protocol clash).
  'local-named-rejected': () =>
    base({
      targetPolicy: 'prefer-local',
      rules: [
        { sourcePort: 80, protocol: 'http', hostname: 'a.example.com', backendName: 'shared', targets: [t('a-1', '10.42.8.1', { local: true }), t('a-2', '10.42.8.2')] },
        { sourcePort: 81, protocol: 'http', backendName: 'shared', targets: [t('a-3', '10.42.8.3', { local: true })] },
        { sourcePort: 82, protocol: 'http', targets: [t('b-1', '10.42.8.4'), t('b-2', '10.42.8.5')] },
        { sourcePort: 53, protocol: 'udp', targets: [t('dns-1', '10.42.8.6', { port: 53 })] },
        { sourcePort: 42, protocol: 'tcp', targets: [t('x-1', '10.42.8.7')] },
        { sourcePort: 80, protocol: 'tcp', targets: [t('y-1', '10.42.8.8')] },
      ],
    }),
};

const rendered = new Map<string, BalancerRender>();
let work = '';

before(async () => {
  certs = { def: testCertificate('default', 'lb.test'), a: testCertificate('a', 'a.example.com'), b: testCertificate('b-wild', '*.b.example.com') };
  for (const [name, mk] of Object.entries(cases)) rendered.set(name, renderHaproxy(mk()));
  work = await mkdtemp(join(tmpdir(), 'dt-balancer-render-'));
});
after(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

function out(name: string): BalancerRender {
  const r = rendered.get(name);
  assert.ok(r, name);
  return r;
}

describe('renderHaproxy: golden output', () => {
  for (const name of Object.keys(cases)) it(name, () => golden(name, out(name).config));
});

describe('renderHaproxy: haproxy -c accepts every golden output', { skip: existsSync(HAPROXY) ? false : `${HAPROXY} is not installed` }, () => {
  for (const name of Object.keys(cases)) {
    it(name, async () => {
      const dir = join(work, name);
      await mkdir(dir, { recursive: true });
      const r = out(name);
      // The golden file itself (the same text, asserted above), with the render's files beside it.
      await writeFile(join(dir, 'haproxy.cfg'), readFileSync(join(GOLDEN_DIR, `${name}.cfg`), 'utf8'));
      for (const [rel, content] of Object.entries(r.files)) {
        await mkdir(dirname(join(dir, rel)), { recursive: true });
        await writeFile(join(dir, rel), content);
      }
      const res = await execa(HAPROXY, ['-c', '-f', join(dir, 'haproxy.cfg')], { reject: false });
      assert.equal(res.exitCode, 0, `${name}: haproxy -c refused it:\n${res.stdout}\n${res.stderr}`);
      assert.doesNotMatch(res.stderr, /\[(WARNING|ALERT)\]/, `${name}: haproxy -c warned:\n${res.stderr}`);
    });
  }
});

describe('renderHaproxy: rules', () => {
  const frontendLines = (config: string, fe: string): string[] => {
    const lines = config.split('\n');
    const at = lines.indexOf(`frontend ${fe}`);
    assert.ok(at >= 0, `frontend ${fe} in\n${config}`);
    const end = lines.findIndex((l, i) => i > at && l !== '' && !l.startsWith(' '));
    return lines.slice(at + 1, end < 0 ? undefined : end).map((l) => l.trim()).filter(Boolean);
  };

  it('orders routes: priority, host+path, host, wildcard+path, wildcard (longer first), path (longer first), default', () => {
    const uses = frontendLines(out('ordering').config, 'fe_80').filter((l) => l.startsWith('use_backend') || l.startsWith('default_backend'));
    assert.deepEqual(
      uses.map((l) => l.split(' ')[1]),
      [
        'be_80_beta.example.com',
        'be_80_canary',
        'be_80_www.example.com_admin',
        'be_80_www.example.com',
        'be_80_any.example.com_static',
        'be_80_any.eu.example.com',
        'be_80_any.example.com',
        'be_80_example.any',
        'be_80_api_v2',
        'be_80_api',
        'be_80',
      ],
    );
  });

  it('matches hosts exactly, with the port, by suffix for *.x and by prefix for x.*', () => {
    const fe = frontendLines(out('ordering').config, 'fe_80');
    assert.ok(fe.includes('acl host_1 hdr(host) -i beta.example.com beta.example.com:80'), fe.join('\n'));
    assert.ok(fe.some((l) => /^acl host_\d+ hdr_end\(host\) -i \.example\.com \.example\.com:80$/.test(l)), fe.join('\n'));
    assert.ok(fe.some((l) => /^acl host_\d+ hdr_beg\(host\) -i example\.$/.test(l)), fe.join('\n'));
    assert.ok(fe.some((l) => /^acl path_\d+ path_beg \/api\/v2$/.test(l)), fe.join('\n'));
  });

  it('https: default certificate first, the others by name, strict-sni only without a default', () => {
    assert.match(out('https-sni').config, /bind \*:443 ssl crt certs\/default\.pem crt certs\/a\.pem crt certs\/b-wild\.pem\n/);
    assert.deepEqual(Object.keys(out('https-sni').files), ['certs/default.pem', 'certs/a.pem', 'certs/b-wild.pem']);
    const pem = out('https-sni').files['certs/a.pem'] ?? '';
    assert.match(pem, /BEGIN CERTIFICATE[\s\S]*BEGIN PRIVATE KEY/, 'certificate then key in one PEM');
    assert.match(out('https-strict-sni').config, /bind \*:8443 ssl crt certs\/a\.pem strict-sni\n/);
    assert.match(out('https-sni').config, /X-Forwarded-Proto https if/);
  });

  it('tcp merges every target of the port into one backend, deduplicated', () => {
    const r = out('tcp');
    assert.deepEqual(r.backends.map((b) => b.name), ['be_3306']);
    assert.deepEqual(r.backends[0]?.slots.filter((s) => s.target).map((s) => s.target), ['10.42.3.1:3306', '10.42.3.2:3306']);
    assert.match(r.config, /bind \*:3306 accept-proxy/);
  });

  it('sni routes on req.ssl_sni without terminating; tls terminates and routes on ssl_fc_sni', () => {
    assert.match(out('sni').config, /acl host_1 req.ssl_sni -i a\.example\.com/);
    assert.match(out('sni').config, /req.ssl_sni -i -m end \.b\.example\.com/);
    assert.doesNotMatch(out('sni').config, / ssl crt /);
    assert.match(out('tls').config, /acl host_1 ssl_fc_sni -i a\.example\.com/);
    assert.match(out('tls').config, /bind \*:6443 ssl crt/);
  });

  it('stickiness cookie and health checks on every slot; unhealthy targets left out', () => {
    const c = out('stickiness-health').config;
    assert.match(c, /cookie SRV insert indirect nocache domain \.example\.com/);
    assert.match(c, /option httpchk GET \/healthz HTTP\/1\.0/);
    assert.match(c, /server s1 10\.42\.6\.1:80 check port 8081 inter 2000 rise 2 fall 3 cookie s1 # web-1/);
    assert.match(c, /server s3 127\.0\.0\.1:1 check port 8081 inter 2000 rise 2 fall 3 cookie s3 disabled/);
    assert.doesNotMatch(c, /10\.42\.6\.3/);
  });

  it('rejects udp, port 42 and a protocol clash by name, and serves the rest', () => {
    const r = out('local-named-rejected');
    assert.equal(r.warnings.length, 3, r.warnings.join('\n'));
    assert.match(r.warnings[0] ?? '', /rule 3 \(udp port 53\): udp is not supported/);
    assert.match(r.warnings[1] ?? '', /rule 4 \(tcp port 42\): port 42 is reserved/);
    assert.match(r.warnings[2] ?? '', /rule 5 \(tcp port 80\): port 80 already serves http/);
    // prefer-local: the shared backend has local targets, so only those; be_82 has none, so all.
    const shared = r.backends.find((b) => b.name === 'shared');
    assert.deepEqual(shared?.slots.filter((s) => s.target).map((s) => s.target), ['10.42.8.1:80', '10.42.8.3:80']);
    const b82 = r.backends.find((b) => b.name === 'be_82');
    assert.equal(b82?.slots.filter((s) => s.target).length, 2);
  });

  it('only-local keeps local targets only', () => {
    const r = renderHaproxy(base({ targetPolicy: 'only-local', rules: [{ sourcePort: 80, protocol: 'http', targets: [t('a', '10.0.0.1'), t('b', '10.0.0.2', { local: true })] }] }));
    assert.deepEqual(r.backends[0]?.slots.filter((s) => s.target).map((s) => s.target), ['10.0.0.2:80']);
  });

  it('https without any certificate is left out with a warning', () => {
    const r = renderHaproxy(base({ rules: [{ sourcePort: 443, protocol: 'https', targets: [] }] }));
    assert.match(r.warnings[0] ?? '', /needs a certificate/);
    assert.doesNotMatch(r.config, /frontend/);
  });

  it('refuses host names and paths that would inject config', () => {
    const r = renderHaproxy(
      base({
        rules: [
          { sourcePort: 80, protocol: 'http', hostname: 'a.com\n    bind *:1', targets: [] },
          { sourcePort: 80, protocol: 'http', path: '/x y', targets: [] },
          { sourcePort: 80, protocol: 'http', targets: [t('evil', '1.2.3.4\nlisten x')] },
        ],
      }),
    );
    assert.equal(r.warnings.length, 3, r.warnings.join('\n'));
    assert.doesNotMatch(r.config, /bind \*:1\n|listen x/);
  });

  it('connects to servers from the source address when one is given (a managed address), never from a bad one', () => {
    const rules = [{ sourcePort: 80, protocol: 'http' as const, targets: [t('web-1', '10.42.7.1')] }];
    const r = renderHaproxy(base({ rules, bindAddresses: ['10.42.3.3'], sourceAddress: '10.42.3.3' }));
    const defaults = r.config.split('\n');
    const at = defaults.indexOf('defaults');
    const end = defaults.findIndex((l, i) => i > at && l !== '' && !l.startsWith(' '));
    assert.ok(defaults.slice(at, end).includes('    source 10.42.3.3'), r.config);
    assert.doesNotMatch(renderHaproxy(base({ rules })).config, /^\s*source /m, 'no source line by default');
    const bad = renderHaproxy(base({ rules, sourceAddress: '10.42.3.3 ssl' }));
    assert.doesNotMatch(bad.config, /^\s*source /m);
    assert.ok(bad.warnings.some((w) => w.includes('source address')), bad.warnings.join('; '));
  });

  it('is deterministic', () => {
    for (const [name, mk] of Object.entries(cases)) assert.equal(renderHaproxy(mk()).config, out(name).config, name);
  });
});

describe('renderHaproxy: server slots', () => {
  const rule = (ips: string[]) => ({ sourcePort: 80, protocol: 'http' as const, targets: ips.map((ip, i) => t(`w-${i}`, ip)) });

  it('endpoint churn changes only server lines (same skeleton); targets keep their slots', () => {
    const r1 = renderHaproxy(base({ rules: [rule(['10.0.0.1', '10.0.0.2', '10.0.0.3'])] }));
    const r2 = renderHaproxy(base({ rules: [rule(['10.0.0.3', '10.0.0.4', '10.0.0.1'])], previousSlots: r1.slots }));
    assert.notEqual(r1.config, r2.config);
    assert.equal(configSkeleton(r1.config), configSkeleton(r2.config));
    assert.deepEqual(r2.slots.be_80?.slice(0, 3), ['10.0.0.1:80', '10.0.0.4:80', '10.0.0.3:80'], '10.0.0.4 takes the freed slot 2');
  });

  it('grows by powers of two past the minimum, and does not shrink while the previous table was larger', () => {
    const many = Array.from({ length: 9 }, (_, i) => `10.0.1.${i + 1}`);
    const r1 = renderHaproxy(base({ rules: [rule(many)] }));
    assert.equal(r1.slots.be_80?.length, 16);
    const r2 = renderHaproxy(base({ rules: [rule(['10.0.1.5'])], previousSlots: r1.slots }));
    assert.equal(r2.slots.be_80?.length, 16);
    assert.equal(r2.slots.be_80?.[4], '10.0.1.5:80');
    assert.equal(renderHaproxy(base({ rules: [rule(['10.0.1.5'])] })).slots.be_80?.length, 8);
  });

  it('a changed rule changes the skeleton', () => {
    const r1 = renderHaproxy(base({ rules: [rule(['10.0.0.1'])] }));
    const r2 = renderHaproxy(base({ rules: [{ ...rule(['10.0.0.1']), path: '/x' }] }));
    assert.notEqual(configSkeleton(r1.config), configSkeleton(r2.config));
  });
});

describe('mergeCustomConfig', () => {
  it('replaces by keyword (two words for option/timeout), adds repeatable lines, appends unknown sections', () => {
    const c = out('custom-config').config;
    assert.match(c, /global\n {4}maxconn 20000\n/);
    assert.doesNotMatch(c, /maxconn 4096/);
    assert.match(c, /tune\.bufsize 32768/);
    assert.match(c, /timeout client 1h\n/);
    assert.match(c, /timeout server 50000/);
    assert.match(c, /option tcp-smart-accept/);
    assert.match(c, /http-request set-header X-Custom yes/);
    assert.match(c, /balance leastconn/);
    assert.doesNotMatch(c, /balance roundrobin/);
    assert.match(c, /\nuserlist admins\n {4}user admin insecure-password secret\n$/);
  });

  it('`no option x` replaces `option x`; lines before any section go into global', () => {
    const w: string[] = [];
    const m = mergeCustomConfig(
      [
        { header: 'global', lines: ['maxconn 1'] },
        { header: 'defaults', lines: ['option redispatch', 'retries 3'] },
      ],
      'nbthread 2\ndefaults\n  no option redispatch\n  retries 5\n',
      w,
    );
    assert.deepEqual(m, [
      { header: 'global', lines: ['maxconn 1', 'nbthread 2'] },
      { header: 'defaults', lines: ['no option redispatch', 'retries 5'] },
    ]);
  });
});
