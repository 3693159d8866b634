// The metadata server over HTTP: curl (as rancher-metadata's users' scripts do) for byte-exact text, fetch
// for JSON/YAML. Clients are told apart by source address: curl --interface 127.0.0.N (all of 127/8 is
// on lo), answers keyed by those addresses; 127.0.0.1 and unknown addresses get `default`.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Registry } from 'prom-client';
import { parse as parseYaml } from 'yaml';
import { silentLogger } from '../../src/common/log.js';
import type { Answers, JsonMap } from '../../src/metadata/answers.js';
import { MetadataServer } from '../../src/metadata/server.js';
import { buildMetadataAnswers } from '../../src/metadata/tree.js';
import { fixtureState, HOST_A, IP_APP, IP_SIDEKICK } from '../fixtures/metadata/state.js';
import { curl, withAliases } from '../fixtures/metadata/http.js';

const APP = '127.0.0.2';
const SIDEKICK = '127.0.0.3';
const UNKNOWN = '127.0.0.9';

const TYPES: JsonMap = {
  num: 42,
  string: 'asdf',
  bool: false,
  float: 42.5,
  bigfloat: 1073741824.7,
  null: null,
  map: { key1: 'value1', key3: { key4: 'value4' } },
  array: [1, 2.5, '3a', false, null, { k1: 'v1' }, [1, 2, 3], { name: 'named', x: 1 }],
};

function answersAt(revision: number): Answers {
  const st = fixtureState();
  st.revision = revision;
  const built = withAliases(buildMetadataAnswers(st, { hostId: HOST_A }), { [APP]: IP_APP, [SIDEKICK]: IP_SIDEKICK });
  // Extra data for the rendering tests, only in default: the server merges it into the client entries.
  const v2 = built['2015-12-19'] ?? {};
  return { ...built, '2015-12-19': { ...v2, default: { ...(v2.default ?? {}), types: TYPES } } };
}

const started: MetadataServer[] = [];
async function start(opts: Partial<ConstructorParameters<typeof MetadataServer>[0]> = {}): Promise<{ server: MetadataServer; base: string }> {
  const server = new MetadataServer({ log: silentLogger(), answers: answersAt(7), ...opts });
  const addr = await server.listen('127.0.0.1', 0);
  started.push(server);
  return { server, base: `http://127.0.0.1:${addr.port}` };
}

let server: MetadataServer;
let base: string;
const registry = new Registry();

before(async () => {
  ({ server, base } = await start({ registry }));
});
after(async () => {
  await Promise.all(started.map((s) => s.close()));
});

async function text(path: string, from?: string): Promise<string> {
  const r = await curl(base + path, from ? { from } : {});
  assert.equal(r.status, 200, `${path}: ${r.status} ${r.text}`);
  return r.text;
}

describe('metadata over HTTP: versions and identity', () => {
  it('lists the versions at /', async () => {
    assert.equal(await text('/'), '2015-07-25\n2015-12-19\n2016-07-29\nlatest\n');
    const res = await fetch(`${base}/`, { headers: { Accept: 'application/json' } });
    assert.deepEqual(await res.json(), {
      '2015-07-25': '/2015-07-25',
      '2015-12-19': '/2015-12-19',
      '2016-07-29': '/2016-07-29',
      latest: '/latest',
    });
  });

  it('answers by source address, falling back to default', async () => {
    assert.equal(await text('/latest/self/container/name', APP), 'webstack-app-1');
    assert.equal(await text('/latest/self/container/primary_ip', APP), IP_APP);
    assert.equal(await text('/latest/self/service/name', SIDEKICK), 'logger');
    assert.equal(await text('/latest/self', APP), 'container/\nhost/\nservice/\nstack/\n');
    for (const from of [UNKNOWN, '127.0.0.1']) {
      assert.equal(await text('/latest/self', from), 'host/\n');
      assert.equal(await text('/latest/self/host/name', from), 'host-a');
      const r = await curl(`${base}/latest/self/container`, { from });
      assert.equal(r.status, 404);
      assert.equal(r.text, 'Not found\n');
    }
  });

  it('gives client entries the top-level keys of default', async () => {
    assert.equal(await text('/2015-12-19/types/string', APP), 'asdf');
    assert.equal(await text('/2015-12-19', APP), 'containers/\nhosts/\nname\nself/\nservices/\nstacks/\ntypes/\nuuid\nversion\n');
    assert.equal(await text('/latest', APP), 'containers/\nenvironments/\nhosts/\nname\nself/\nservices/\nstacks/\nuuid\nversion\n');
  });

  it('answers 404 Invalid version for an unknown version', async () => {
    const r = await curl(`${base}/1999-01-01/self`);
    assert.equal(r.status, 404);
    assert.equal(r.text, 'Invalid version\n');
  });
});

describe('metadata over HTTP: version differences', () => {
  it('service containers: names in 2015-07-25, objects later', async () => {
    assert.equal(await text('/2015-07-25/services/App/containers'), '0\n');
    assert.equal(await text('/2015-07-25/services/App/containers/0'), 'WebStack-App-1');
    assert.equal(await text('/2015-12-19/services/App/containers'), '0=WebStack-App-1\n');
    assert.equal(await text('/latest/services/app/containers'), '0=webstack-app-1\n');
    assert.equal(await text('/2016-07-29/services/app/containers/0/uuid'), 'uuid-c1');
  });

  it('stack services: names in 2015-07-25, objects later', async () => {
    assert.equal(await text('/2015-07-25/stacks/WebStack/services'), '0\n1\n2\n3\n');
    assert.equal(await text('/2015-07-25/stacks/WebStack/services/2'), 'DB');
    assert.equal(await text('/2015-12-19/stacks/WebStack/services'), '0=App\n1=Logger\n2=DB\n3=lb\n');
    assert.equal(await text('/latest/stacks/webstack/services'), '0=app\n1=logger\n2=db\n3=lb\n');
  });

  it('ports: the agent IP for 0.0.0.0 in the older versions, 0.0.0.0 in the newest', async () => {
    for (const v of ['2015-07-25', '2015-12-19']) {
      assert.equal(await text(`/${v}/self/container/ports`, APP), '0\n1\n');
      assert.equal(await text(`/${v}/self/container/ports/0`, APP), '192.168.0.11:8080:80/tcp');
    }
    assert.equal(await text('/latest/self/container/ports/0', APP), '0.0.0.0:8080:80/tcp');
    assert.equal(await text('/latest/self/container/ports/1', APP), '127.0.0.1:8443:443/tcp');
  });

  it('hostId only in the older versions, environments only in the newest', async () => {
    assert.equal(await text('/2015-07-25/self/host/hostId'), HOST_A);
    assert.equal(await text('/2015-12-19/hosts/host-b/hostId'), 'h2');
    assert.equal((await curl(`${base}/latest/self/host/hostId`)).status, 404);
    assert.equal(await text('/latest/environments'), '0=Default\n');
    assert.equal((await curl(`${base}/2015-12-19/environments`)).status, 404);
  });

  it('names as stored in the older versions, lower-cased in the newest', async () => {
    assert.equal(await text('/2015-12-19/self/container/stack_name', APP), 'WebStack');
    assert.equal(await text('/latest/self/container/stack_name', APP), 'webstack');
    assert.equal(await text('/2015-12-19/self/service/sidekicks', APP), '0\n');
    assert.equal(await text('/2015-12-19/self/service/sidekicks/0', APP), 'Logger');
    assert.equal(await text('/latest/self/service/sidekicks/0', APP), 'logger');
  });
});

describe('metadata over HTTP: walking', () => {
  it('finds array elements by name and by uuid', async () => {
    assert.equal(await text('/2015-12-19/services'), '0=App\n1=Logger\n2=DB\n3=lb\n');
    assert.equal(await text('/2015-12-19/services/2/uuid'), 'uuid-sv2');
    assert.equal(await text('/2015-12-19/services/DB/uuid'), 'uuid-sv2');
    assert.equal(await text('/latest/services/uuid-sv2/name'), 'db');
    assert.equal(await text('/latest/hosts/host-b/agent_ip'), '192.168.0.12');
  });

  it('unescapes segments (%2F in link keys, + as space)', async () => {
    assert.equal(await text('/latest/self/service/links', APP), 'webstack%2Fdb\n');
    assert.equal(await text('/latest/self/service/links/webstack%2Fdb', APP), 'database');
    assert.equal(await text('/2015-12-19/self/service/links/WebStack%2FDB', APP), 'database');
    assert.equal(await text('/latest/self/container/labels/io.rancher.sidekicks', APP), 'Logger');
    assert.equal(await text('/latest/self/service/health_check/request_line', APP), 'GET /healthz HTTP/1.0');
  });

  it('retries lower-cased', async () => {
    assert.equal(await text('/latest/SERVICES/App/NAME'), 'app');
    assert.equal(await text('/latest/Self/Host/Name'), 'host-a');
    assert.equal(await text('/2015-12-19/services/App/name'), 'App');
    // The request is lower-cased, not the data: "app" does not name "App".
    assert.equal((await curl(`${base}/2015-12-19/services/app`)).status, 404);
  });

  it('ignores trailing slashes', async () => {
    assert.equal(await text('/latest/self/host/name/', APP), 'host-a');
    assert.equal(await text('/latest/self/', APP), 'container/\nhost/\nservice/\nstack/\n');
  });

  it('answers 400 on a bad escape and 404 for what is not there', async () => {
    const bad = await curl(`${base}/latest/self/%zz`);
    assert.equal(bad.status, 400);
    assert.equal(bad.text, 'invalid URL escape "%zz"\n');
    const missing = await curl(`${base}/latest/self/nothing`);
    assert.equal(missing.status, 404);
    assert.equal(missing.text, 'Not found\n');
    assert.equal(missing.headers.get('content-type'), 'text/plain; charset=utf-8');
    const fav = await curl(`${base}/favicon.ico`);
    assert.equal(fav.status, 404);
  });
});

describe('metadata over HTTP: text rendering', () => {
  it('renders maps, arrays and scalars byte for byte', async () => {
    assert.equal(await text('/2015-12-19/types'), 'array/\nbigfloat\nbool\nfloat\nmap/\nnull\nnum\nstring\n');
    assert.equal(await text('/2015-12-19/types/array'), '0\n1\n2\n3\n4\n5/\n6/\n7=named\n');
    assert.equal(await text('/2015-12-19/types/array/1'), '2.5');
    assert.equal(await text('/2015-12-19/types/array/named/x'), '1');
    assert.equal(await text('/2015-12-19/types/map'), 'key1\nkey3/\n');
    assert.equal(await text('/2015-12-19/types/string'), 'asdf');
    assert.equal(await text('/2015-12-19/types/num'), '42');
    assert.equal(await text('/2015-12-19/types/float'), '42.5');
    assert.equal(await text('/2015-12-19/types/bigfloat'), '1073741824.7');
    assert.equal(await text('/2015-12-19/types/bool'), 'false');
    assert.equal(await text('/latest/services/app/metadata/answer'), '42');
    assert.equal(await text('/latest/services/app/metadata/ratio'), '1.5');
  });

  it('renders null as an empty 200', async () => {
    const r = await curl(`${base}/2015-12-19/types/null`);
    assert.equal(r.status, 200);
    assert.equal(r.body.length, 0);
    const h = await curl(`${base}/latest/self/container/health_state`, { from: SIDEKICK });
    assert.equal(h.status, 200);
    assert.equal(h.text, '');
  });
});

describe('metadata over HTTP: JSON and YAML', () => {
  it('serves the value at the path as JSON', async () => {
    const res = await fetch(`${base}/latest/self/service`, { headers: { Accept: 'application/json' } });
    // 127.0.0.1 (fetch's source) gets default, which has no self/service: the JSON error body.
    assert.equal(res.status, 404);
    assert.equal(res.headers.get('content-type'), 'application/json');
    assert.equal(await res.text(), '{"code":404,"message":"Not found","type":"error"}\n');

    const ok = await fetch(`${base}/latest/services/app`, { headers: { Accept: 'application/json' } });
    assert.equal(ok.status, 200);
    assert.equal(ok.headers.get('content-type'), 'application/json');
    assert.equal(ok.headers.get('access-control-allow-origin'), null);
    const svc = (await ok.json()) as JsonMap;
    assert.equal(svc.name, 'app');
    assert.equal(svc.token, null);
    assert.deepEqual(svc.links, { 'webstack/db': 'database' });
    assert.deepEqual(svc.metadata, { foo: 'bar', answer: 42, ratio: 1.5, nested: { list: [1, 2] } });

    const v = await fetch(`${base}/latest/version`, { headers: { Accept: 'application/json' } });
    const version: unknown = await v.json();
    assert.equal(typeof version, 'string');
    assert.match(String(version), /^7-/);
  });

  it('serves the whole tree of the caller as JSON', async () => {
    const r = await curl(`${base}/latest`, { from: APP, headers: { Accept: 'application/json' } });
    assert.equal(r.status, 200);
    const t = JSON.parse(r.text) as JsonMap;
    assert.deepEqual(t, server.getAnswers().latest?.[APP]);
    assert.equal((t.self as JsonMap & { service: JsonMap }).service.token, (server.getAnswers().latest?.[IP_APP]?.self as { service: JsonMap }).service.token);
  });

  it('serves YAML for Accept with yaml', async () => {
    for (const accept of ['application/yaml', 'application/x-yaml', 'text/yaml']) {
      const res = await fetch(`${base}/2015-12-19/types`, { headers: { Accept: accept } });
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /yaml/);
      assert.deepEqual(parseYaml(await res.text()), TYPES);
    }
    const err = await fetch(`${base}/latest/nope`, { headers: { Accept: 'application/yaml' } });
    assert.equal(err.status, 404);
    assert.deepEqual(parseYaml(await err.text()), { code: 404, message: 'Not found', type: 'error' });
  });

  it('answers errors in JSON for JSON clients', async () => {
    const r = await curl(`${base}/latest/self/%zz`, { headers: { Accept: 'application/json' } });
    assert.equal(r.status, 400);
    assert.deepEqual(JSON.parse(r.text), { code: 400, message: 'invalid URL escape "%zz"', type: 'error' });
    const v = await curl(`${base}/nope/x`, { headers: { Accept: 'application/json' } });
    assert.equal(v.text, '{"code":404,"message":"Invalid version","type":"error"}\n');
  });
});

describe('metadata over HTTP: methods and hardening', () => {
  it('answers 405 to anything but GET and HEAD', async () => {
    for (const method of ['POST', 'PUT', 'DELETE', 'OPTIONS']) {
      const r = await curl(`${base}/latest/version`, { method });
      assert.equal(r.status, 405, method);
      assert.equal(r.headers.get('allow'), 'GET, HEAD');
      assert.equal(r.text, 'Method not allowed\n');
    }
  });

  it('answers HEAD like GET without a body', async () => {
    const get = await curl(`${base}/latest/self/container/name`, { from: APP });
    const head = await curl(`${base}/latest/self/container/name`, { from: APP, method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.body.length, 0);
    assert.equal(head.headers.get('etag'), get.headers.get('etag'));
    assert.equal(head.headers.get('content-length'), String(get.body.length));
  });

  it('refuses X-Forwarded-For unless configured to trust it', async () => {
    const r = await curl(`${base}/latest/self/container/name`, { headers: { 'X-Forwarded-For': IP_APP } });
    assert.equal(r.status, 400);
    assert.match(r.text, /X-Forwarded-For is not accepted/);

    const trusting = await start({ trustForwardedFor: true });
    const t = await curl(`${trusting.base}/latest/self/container/name`, { headers: { 'X-Forwarded-For': `1.2.3.4, ${APP}` } });
    assert.equal(t.status, 200);
    assert.equal(t.text, 'webstack-app-1');
    const plain = await curl(`${trusting.base}/latest/self/container/name`, { from: SIDEKICK });
    assert.equal(plain.text, 'webstack-app-logger-1');
  });

  it('requires the configured header', async () => {
    const strict = await start({ requireHeader: { name: 'Metadata-Flavor', value: 'Rancher' } });
    const no = await curl(`${strict.base}/latest/version`);
    assert.equal(no.status, 403);
    assert.match(no.text, /metadata-flavor/i);
    const wrong = await curl(`${strict.base}/latest/version`, { headers: { 'Metadata-Flavor': 'Google' } });
    assert.equal(wrong.status, 403);
    const yes = await curl(`${strict.base}/latest/name`, { headers: { 'Metadata-Flavor': 'Rancher' } });
    assert.equal(yes.status, 200);
    assert.equal(yes.text, 'Default');
  });

  it('counts requests by status in the given registry', async () => {
    const metrics = await registry.metrics();
    assert.match(metrics, /drover_metadata_requests_total\{code="200"\} [1-9]/);
    assert.match(metrics, /drover_metadata_requests_total\{code="404"\} [1-9]/);
    assert.match(metrics, /drover_metadata_requests_total\{code="405"\} [1-9]/);
  });
});

describe('metadata over HTTP: long polling', () => {
  async function version(): Promise<string> {
    return text('/latest/version');
  }

  it('returns at once when the value already differs', async () => {
    const t0 = Date.now();
    const r = await curl(`${base}/latest/version?wait=true&value=init&maxWait=10`);
    assert.equal(r.status, 200);
    assert.equal(r.text, await version());
    assert.ok(Date.now() - t0 < 9000, 'answered before maxWait (10 s)');
  });

  it('returns the current value at maxWait when nothing changes', async () => {
    const v = await version();
    const t0 = Date.now();
    const r = await curl(`${base}/latest/version?wait=true&value=${encodeURIComponent(v)}&maxWait=1`);
    const took = Date.now() - t0;
    assert.equal(r.status, 200);
    assert.equal(r.text, v);
    assert.ok(took >= 900, `returned after ${took} ms, before maxWait`);
  });

  it('returns 404 at maxWait for a key that does not exist', async () => {
    const t0 = Date.now();
    const r = await curl(`${base}/latest/nothing?wait=true&value=x&maxWait=1`);
    assert.equal(r.status, 404);
    assert.ok(Date.now() - t0 >= 900);
  });

  it('returns as soon as the value changes, and counts as waiting meanwhile', async () => {
    const v = await version();
    const pending = curl(`${base}/latest/version?wait=true&value=${encodeURIComponent(v)}&maxWait=30`, { from: APP });
    const pendingOther = curl(`${base}/latest/self/container/name?wait=true&value=webstack-app-1&maxWait=2`, { from: APP });
    await until(() => server.waiting === 2);
    assert.match(await registry.metrics(), /drover_metadata_waiting_requests 2/);
    const t0 = Date.now();
    server.setAnswers(answersAt(8));
    const r = await pending;
    assert.ok(Date.now() - t0 < 25_000, 'answered on the change, not at maxWait (30 s)');
    assert.equal(r.status, 200);
    assert.notEqual(r.text, v);
    assert.match(r.text, /^8-/);
    // A waiter whose own value did not change keeps waiting until its maxWait.
    const other = await pendingOther;
    assert.equal(other.text, 'webstack-app-1');
    assert.ok(Date.now() - t0 >= 1000);
  });
});

describe('metadata over HTTP: ETags', () => {
  it('sends a content-derived ETag with every response', async () => {
    const a = await curl(`${base}/latest/name`);
    const b = await curl(`${base}/latest/name`, { from: APP });
    const c = await curl(`${base}/latest/uuid`);
    const d = await curl(`${base}/latest/nope`);
    for (const r of [a, b, c, d]) assert.match(r.headers.get('etag') ?? '', /^"[\w-]+"$/);
    assert.equal(a.headers.get('etag'), b.headers.get('etag'));
    assert.notEqual(a.headers.get('etag'), c.headers.get('etag'));
    const j = await curl(`${base}/latest/name`, { headers: { Accept: 'application/json' } });
    assert.notEqual(j.headers.get('etag'), a.headers.get('etag'));
  });

  it('returns at once when last_etag differs, at the timeout when it does not', async () => {
    const cur = await curl(`${base}/latest/version`);
    const etag = cur.headers.get('etag') ?? '';
    const q0 = Date.now();
    const quick = await curl(`${base}/latest/version?wait_for_change=true&last_etag=%22other%22&timeout_sec=10`);
    assert.ok(Date.now() - q0 < 9000, 'answered before timeout_sec (10 s)');
    assert.equal(quick.text, cur.text);
    assert.equal(quick.headers.get('etag'), etag);
    const t0 = Date.now();
    const slow = await curl(`${base}/latest/version?wait_for_change=true&last_etag=${encodeURIComponent(etag)}&timeout_sec=1`);
    assert.ok(Date.now() - t0 >= 900);
    assert.equal(slow.headers.get('etag'), etag);
  });

  it('returns when the content changes', async () => {
    const json = { Accept: 'application/json' };
    const cur = await curl(`${base}/latest/self/container`, { from: APP, headers: json });
    const etag = (cur.headers.get('etag') ?? '').replaceAll('"', '');
    const pending = curl(`${base}/latest/self/container?wait_for_change=true&last_etag=${etag}&timeout_sec=30`, {
      from: APP,
      headers: json,
    });
    await until(() => server.waiting === 1);
    // A change elsewhere in the tree does not change this content: still waiting.
    server.setAnswers(answersAt(9));
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(server.waiting, 1);
    const changed = answersAt(9);
    const latest = changed.latest ?? {};
    const appTree = latest[APP] ?? {};
    const self = appTree.self as JsonMap;
    changed.latest = { ...latest, [APP]: { ...appTree, self: { ...self, container: { ...(self.container as JsonMap), state: 'stopping' } } } };
    server.setAnswers(changed);
    const r = await pending;
    assert.equal(r.status, 200);
    assert.notEqual(r.headers.get('etag'), cur.headers.get('etag'));
    assert.equal((JSON.parse(r.text) as JsonMap).state, 'stopping');
    server.setAnswers(answersAt(10));
  });

  it('does not wake text waiters whose listing did not change', async () => {
    // The text of a map lists its keys: a changed value inside leaves it (and its ETag) alone.
    const cur = await curl(`${base}/latest/self/container`, { from: APP });
    const etag = cur.headers.get('etag') ?? '';
    const pending = curl(`${base}/latest/self/container?wait_for_change=true&last_etag=${encodeURIComponent(etag)}&timeout_sec=1`, { from: APP });
    await until(() => server.waiting === 1);
    const changed = answersAt(11);
    const latest = changed.latest ?? {};
    const appTree = latest[APP] ?? {};
    const self = appTree.self as JsonMap;
    changed.latest = { ...latest, [APP]: { ...appTree, self: { ...self, container: { ...(self.container as JsonMap), state: 'stopped' } } } };
    server.setAnswers(changed);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(server.waiting, 1);
    const r = await pending;
    assert.equal(r.headers.get('etag'), etag);
  });
});

async function until(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > timeoutMs) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 10));
  }
}
