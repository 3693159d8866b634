// The metadata trees built from an environment state. Golden files hold the exact trees per version
// (test/fixtures/metadata/golden/*.json; regenerate with UPDATE_GOLDEN=1 after a deliberate change, and
// review the diff); the other tests spell out each rule of the spec independently of the goldens.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Answers, JsonMap, JsonValue } from '../../src/metadata/answers.js';
import { buildMetadataAnswers, METADATA_VERSIONS, serviceToken } from '../../src/metadata/tree.js';
import { fixtureState, HOST_A, HOST_B, IP_APP, IP_DB, IP_SIDEKICK, IP_STANDALONE } from '../fixtures/metadata/state.js';

const GOLDEN_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'metadata', 'golden');

/** The control plane's metadata token key, as an agent receives it (a secret: not derivable from the state). */
const TOKEN_KEY = 'a3f1c9e07b2d4856a3f1c9e07b2d4856a3f1c9e07b2d4856a3f1c9e07b2d4856';

function build(hostId = HOST_A): Answers {
  return buildMetadataAnswers(fixtureState(), { hostId, tokenKey: TOKEN_KEY });
}

function tree(a: Answers, version: string, client: string): JsonMap {
  const t = a[version]?.[client];
  assert.ok(t, `no tree for ${version} ${client}`);
  return t;
}

function get(v: JsonValue | undefined, ...path: (string | number)[]): JsonValue | undefined {
  let cur = v;
  for (const p of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = Array.isArray(cur) ? cur[p as number] : cur[p as string];
  }
  return cur;
}

function list(v: JsonValue | undefined): JsonValue[] {
  assert.ok(Array.isArray(v), `expected an array, got ${JSON.stringify(v)}`);
  return v;
}

function byName(items: JsonValue | undefined, name: string): JsonMap {
  const found = list(items).find((x) => get(x, 'name') === name);
  assert.ok(found && typeof found === 'object' && !Array.isArray(found), `no element named ${name}`);
  return found;
}

describe('metadata tree: golden trees per version', () => {
  for (const version of METADATA_VERSIONS) {
    it(`matches the golden tree of ${version}`, () => {
      const a = build();
      const actual = {
        default: tree(a, version, 'default'),
        // Client trees share everything but `self` with default (asserted below), so only `self` is stored.
        clients: Object.fromEntries(
          Object.keys(a[version] ?? {})
            .filter((k) => k !== 'default')
            .sort()
            .map((k) => [k, get(tree(a, version, k), 'self') ?? null]),
        ),
      };
      const file = join(GOLDEN_DIR, `tree-${version}.json`);
      const text = `${JSON.stringify(actual, null, 2)}\n`;
      if (process.env.UPDATE_GOLDEN === '1' || !existsSync(file)) {
        if (process.env.UPDATE_GOLDEN !== '1') assert.fail(`golden file ${file} is missing (run with UPDATE_GOLDEN=1)`);
        mkdirSync(GOLDEN_DIR, { recursive: true });
        writeFileSync(file, text);
      }
      assert.equal(text, readFileSync(file, 'utf8'));
    });
  }
});

describe('metadata tree: structure', () => {
  it('has every version, latest being 2016-07-29', () => {
    const a = build();
    assert.deepEqual(Object.keys(a).sort(), ['2015-07-25', '2015-12-19', '2016-07-29', 'latest']);
    assert.equal(a.latest, a['2016-07-29']);
  });

  it("has a default and one client entry per managed container IP of this host's containers (not removed, previous or host-network ones)", () => {
    const a = build();
    const b = build(HOST_B);
    for (const v of METADATA_VERSIONS) {
      // Trees only for this host's containers: the others ask their own agent (were built for every host).
      assert.deepEqual(Object.keys(a[v] ?? {}).sort(), [IP_APP, IP_SIDEKICK, 'default'].sort());
      assert.deepEqual(Object.keys(b[v] ?? {}).sort(), [IP_DB, IP_STANDALONE, 'default'].sort());
    }
  });

  it('gives every client the top-level keys of default, sharing their values', () => {
    const a = build(HOST_B);
    for (const v of METADATA_VERSIONS) {
      const def = tree(a, v, 'default');
      for (const ip of [IP_DB, IP_STANDALONE]) {
        const t = tree(a, v, ip);
        assert.deepEqual(Object.keys(t), Object.keys(def));
        for (const k of Object.keys(def)) if (k !== 'self') assert.equal(t[k], def[k], `${v} ${ip} ${k}`);
      }
    }
  });

  it('has the spec top-level keys, environments only in the newest version', () => {
    const a = build();
    const common = ['containers', 'hosts', 'name', 'self', 'services', 'stacks', 'uuid', 'version'];
    assert.deepEqual(Object.keys(tree(a, '2015-07-25', 'default')), common);
    assert.deepEqual(Object.keys(tree(a, '2015-12-19', 'default')), common);
    assert.deepEqual(Object.keys(tree(a, '2016-07-29', 'default')), [...common.slice(0, 1), 'environments', ...common.slice(1)]);
    const t = tree(a, 'latest', 'default');
    assert.equal(t.name, 'Default');
    assert.equal(t.uuid, 'env-uuid-1');
    assert.deepEqual(get(t, 'environments', 0, 'uuid'), 'env-uuid-1');
  });

  it('default self holds only this host; a client self has container, host, service and stack', () => {
    const a = build(HOST_B);
    const def = tree(a, 'latest', 'default');
    assert.deepEqual(Object.keys(get(def, 'self') as JsonMap), ['host']);
    assert.equal(get(def, 'self', 'host', 'name'), 'host-b');
    const self = get(tree(build(HOST_A), 'latest', IP_APP), 'self') as JsonMap;
    assert.deepEqual(Object.keys(self), ['container', 'host', 'service', 'stack']);
    assert.equal(get(self, 'container', 'primary_ip'), IP_APP);
    assert.equal(get(self, 'host', 'name'), 'host-a');
    assert.equal(get(self, 'service', 'name'), 'app');
    assert.equal(get(self, 'stack', 'name'), 'webstack');
    assert.equal(get(tree(a, 'latest', IP_DB), 'self', 'host', 'name'), 'host-b');
    const solo = get(tree(a, 'latest', IP_STANDALONE), 'self') as JsonMap;
    assert.equal(solo.service, null);
    assert.equal(solo.stack, null);
    assert.equal(get(solo, 'container', 'links', 'mydb'), 'uuid-c3');
  });

  it('is deterministic', () => {
    assert.deepEqual(build(), build());
    assert.equal(JSON.stringify(build()), JSON.stringify(build()));
  });

  it('writes generated objects with sorted keys (user maps excepted)', () => {
    const USER_MAPS = new Set(['labels', 'metadata', 'links']);
    const check = (v: JsonValue, at: string): void => {
      if (Array.isArray(v)) return v.forEach((x, i) => check(x, `${at}[${i}]`));
      if (v === null || typeof v !== 'object') return;
      const keys = Object.keys(v);
      assert.deepEqual(keys, [...keys].sort(), `keys of ${at}`);
      for (const k of keys) if (!USER_MAPS.has(k)) check(v[k] as JsonValue, `${at}.${k}`);
    };
    const a = build();
    for (const v of METADATA_VERSIONS) check(tree(a, v, IP_APP), v);
  });

  it('does not list removed or previous-generation containers', () => {
    const names = list(get(tree(build(), '2015-12-19', 'default'), 'containers')).map((c) => get(c, 'name'));
    assert.deepEqual(names, ['WebStack-App-1', 'WebStack-App-Logger-1', 'WebStack-DB-1', 'host-agent-helper', 'standalone']);
  });
});

describe('metadata tree: version differences', () => {
  it('lists container names in 2015-07-25 services and container objects later', () => {
    const a = build();
    assert.deepEqual(get(byName(get(tree(a, '2015-07-25', 'default'), 'services'), 'App'), 'containers'), ['WebStack-App-1']);
    const v2 = list(get(byName(get(tree(a, '2015-12-19', 'default'), 'services'), 'App'), 'containers'));
    assert.equal(get(v2, 0, 'uuid'), 'uuid-c1');
    const v3 = list(get(byName(get(tree(a, '2016-07-29', 'default'), 'services'), 'app'), 'containers'));
    assert.equal(get(v3, 0, 'name'), 'webstack-app-1');
  });

  it('lists service names in 2015-07-25 stacks and service objects later', () => {
    const a = build();
    assert.deepEqual(get(tree(a, '2015-07-25', 'default'), 'stacks', 0, 'services'), ['App', 'Logger', 'DB', 'lb']);
    assert.equal(get(tree(a, '2015-12-19', 'default'), 'stacks', 0, 'services', 2, 'name'), 'DB');
    assert.equal(get(tree(a, '2016-07-29', 'default'), 'stacks', 0, 'services', 2, 'name'), 'db');
  });

  it("replaces a missing or 0.0.0.0 host IP of ports by the host's agent IP in the older versions only", () => {
    const a = build();
    for (const v of ['2015-07-25', '2015-12-19']) {
      assert.deepEqual(get(tree(a, v, IP_APP), 'self', 'container', 'ports'), ['192.168.0.11:8080:80/tcp', '127.0.0.1:8443:443/tcp']);
    }
    assert.deepEqual(get(tree(a, 'latest', IP_APP), 'self', 'container', 'ports'), ['0.0.0.0:8080:80/tcp', '127.0.0.1:8443:443/tcp']);
  });

  it('lower-cases names, sidekicks and link keys in 2016-07-29 only', () => {
    const a = build();
    const old = tree(a, '2015-12-19', IP_APP);
    const neu = tree(a, '2016-07-29', IP_APP);
    assert.equal(get(old, 'self', 'container', 'name'), 'WebStack-App-1');
    assert.equal(get(neu, 'self', 'container', 'name'), 'webstack-app-1');
    assert.equal(get(old, 'self', 'container', 'stack_name'), 'WebStack');
    assert.equal(get(neu, 'self', 'container', 'stack_name'), 'webstack');
    assert.equal(get(old, 'self', 'service', 'primary_service_name'), 'App');
    assert.equal(get(neu, 'self', 'service', 'primary_service_name'), 'app');
    assert.deepEqual(get(old, 'self', 'service', 'sidekicks'), ['Logger']);
    assert.deepEqual(get(neu, 'self', 'service', 'sidekicks'), ['logger']);
    assert.deepEqual(get(old, 'self', 'service', 'links'), { 'WebStack/DB': 'database' });
    assert.deepEqual(get(neu, 'self', 'service', 'links'), { 'webstack/db': 'database' });
    assert.equal(get(old, 'self', 'stack', 'environment_name'), 'Default');
    assert.equal(get(neu, 'self', 'stack', 'environment_name'), 'Default');
    // Labels are data, never lower-cased.
    assert.equal(get(neu, 'self', 'container', 'labels', 'io.rancher.sidekicks'), 'Logger');
  });

  it('has hostId in host objects of the older versions only', () => {
    const a = build();
    assert.equal(get(tree(a, '2015-07-25', 'default'), 'self', 'host', 'hostId'), HOST_A);
    assert.equal(get(tree(a, '2015-12-19', 'default'), 'hosts', 1, 'hostId'), HOST_B);
    assert.equal(get(tree(a, '2016-07-29', 'default'), 'self', 'host', 'hostId'), undefined);
    assert.equal(get(tree(a, '2016-07-29', 'default'), 'hosts', 1, 'agent_ip'), '192.168.0.12');
  });
});

describe('metadata tree: services', () => {
  it('gives the token only under self/service, derived from the service uuid', () => {
    const a = build();
    for (const v of METADATA_VERSIONS) {
      const t = tree(a, v, IP_APP);
      const token = get(t, 'self', 'service', 'token');
      assert.equal(token, serviceToken(TOKEN_KEY, 'uuid-sv1'));
      assert.match(String(token), /^[0-9a-f]{64}$/);
      for (const s of list(get(t, 'services'))) assert.equal(get(s, 'token'), null);
      if (v !== '2015-07-25') for (const s of list(get(t, 'stacks', 0, 'services'))) assert.equal(get(s, 'token'), null);
    }
    // The sidekick's self/service is the sidekick entry, with the service's token.
    const side = tree(a, 'latest', IP_SIDEKICK);
    assert.equal(get(side, 'self', 'service', 'name'), 'logger');
    assert.equal(get(side, 'self', 'service', 'token'), serviceToken(TOKEN_KEY, 'uuid-sv1'));
    // Another key gives other tokens.
    const other = buildMetadataAnswers(fixtureState(), { hostId: HOST_A, tokenKey: 'secret' });
    assert.equal(get(tree(other, 'latest', IP_APP), 'self', 'service', 'token'), serviceToken('secret', 'uuid-sv1'));
    assert.notEqual(serviceToken('secret', 'uuid-sv1'), serviceToken(TOKEN_KEY, 'uuid-sv1'));
  });

  it('never keys tokens with what a container can read: null without a key, not HMAC(environment uuid)', () => {
    const st = fixtureState();
    const envUuid = st.environment.uuid;
    const keyless = buildMetadataAnswers(st, { hostId: HOST_A });
    for (const v of METADATA_VERSIONS) assert.equal(get(tree(keyless, v, IP_APP), 'self', 'service', 'token'), null);
    const token = get(tree(build(), 'latest', IP_APP), 'self', 'service', 'token');
    assert.notEqual(token, serviceToken(envUuid, 'uuid-sv1'));
    // The key appears nowhere in what the metadata service serves.
    assert.ok(!JSON.stringify(build()).includes(TOKEN_KEY));
  });

  it('carries user metadata, health check, ports, expose and lb config in spec form', () => {
    const t = tree(build(), '2015-12-19', 'default');
    const app = byName(get(t, 'services'), 'App');
    assert.deepEqual(app.metadata, { foo: 'bar', answer: 42, ratio: 1.5, nested: { list: [1, 2] } });
    assert.deepEqual(app.health_check, {
      healthy_threshold: 2,
      interval: 2000,
      port: 80,
      request_line: 'GET /healthz HTTP/1.0',
      response_timeout: 2000,
      unhealthy_threshold: 3,
    });
    assert.deepEqual(app.ports, ['8080:80/tcp', '127.0.0.1:8443:443/tcp']);
    assert.deepEqual(app.expose, ['9000/tcp']);
    assert.equal(app.kind, 'service');
    assert.equal(app.lb_config, null);
    const lb = byName(get(t, 'services'), 'lb');
    assert.deepEqual(get(lb, 'lb_config', 'port_rules'), [
      {
        backend_name: null,
        container: null,
        container_uuid: null,
        hostname: 'www.example.com',
        path: '/',
        priority: 1,
        protocol: 'http',
        selector: null,
        service: 'WebStack/App',
        source_port: 80,
        target_port: 80,
      },
    ]);
  });

  it('lists sidekicks as services of their own with primary_service_name', () => {
    const t = tree(build(), '2015-12-19', 'default');
    const side = byName(get(t, 'services'), 'Logger');
    assert.equal(side.primary_service_name, 'App');
    assert.equal(side.uuid, 'uuid-sv1');
    assert.deepEqual(side.sidekicks, []);
    assert.deepEqual(list(side.containers).map((c) => get(c, 'name')), ['WebStack-App-Logger-1']);
    assert.equal(get(byName(get(t, 'containers'), 'WebStack-App-Logger-1'), 'service_name'), 'Logger');
  });

  it('changes version with the revision', () => {
    const st = fixtureState();
    const v1 = get(tree(buildMetadataAnswers(st, { hostId: HOST_A }), 'latest', 'default'), 'version');
    st.revision++;
    const v2 = get(tree(buildMetadataAnswers(st, { hostId: HOST_A }), 'latest', 'default'), 'version');
    assert.equal(typeof v1, 'string');
    assert.match(String(v1), /^7-[0-9a-f]{16}$/);
    assert.notEqual(v1, v2);
    for (const v of METADATA_VERSIONS) assert.equal(get(tree(buildMetadataAnswers(st, { hostId: HOST_A }), v, IP_APP), 'version'), v2);
  });
});
