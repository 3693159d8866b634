// JSON and YAML over HTTP byte for byte as the original served them, for several paths and versions, and
// the paths its router answered itself: /favicon.ico (Go's plain 404) and unclean paths (301 to the clean
// path, as gorilla/mux did). curl gives the exact bytes. Bounded: a few seconds.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { silentLogger } from '../../src/common/log.js';
import type { Answers, JsonMap } from '../../src/metadata/answers.js';
import { MetadataServer } from '../../src/metadata/server.js';
import { curl } from '../fixtures/metadata/http.js';

const CLIENT = '127.0.0.61';

function tree(version: string): JsonMap {
  const svc: JsonMap = {
    name: version === '2016-07-29' ? 'web' : 'Web',
    uuid: 's-1',
    kind: 'service',
    scale: 2,
    metadata: { 'b-key': 'yes', 'a-key': { '10': 'ten', '9': 'nine' } },
    containers: version === '2015-07-25' ? ['shop-web-1'] : [{ uuid: 'c-1', name: 'shop-web-1', ips: ['10.42.0.5'] }],
    lb_config: null,
    labels: {},
    token: null,
  };
  return {
    version: '7-abc',
    uuid: 'env-1',
    name: 'Default',
    services: [svc],
    self: { service: { ...svc, token: 'feedface' }, host: { name: 'h1', labels: { zone: 'z<1>' } } },
    haproxy: 'global\n  maxconn 4096\n',
  };
}

const answers: Answers = {
  '2015-07-25': { [CLIENT]: tree('2015-07-25') },
  '2016-07-29': { [CLIENT]: tree('2016-07-29') },
};

let server: MetadataServer;
let base: string;
before(async () => {
  server = new MetadataServer({ log: silentLogger(), answers });
  const addr = await server.listen('127.0.0.1', 0);
  base = `http://127.0.0.1:${addr.port}`;
});
after(async () => {
  await server.close();
});

async function get(path: string, accept: string): Promise<{ status: number; text: string; headers: Map<string, string> }> {
  return curl(base + path, { from: CLIENT, headers: { Accept: accept } });
}

/** Each path answers 200 with exactly these bytes and this Content-Type. */
async function expectBodies(accept: string, contentType: string, cases: readonly [string, string][]): Promise<void> {
  for (const [path, body] of cases) {
    const r = await get(path, accept);
    assert.equal(r.status, 200, path);
    assert.equal(r.text, body, path);
    assert.equal(r.headers.get('content-type'), contentType, path);
  }
}

describe('metadata JSON over HTTP (Go json.Marshal bytes)', () => {
  it('root, scalars, maps and lists in each version', async () => {
    const cases: [string, string][] = [
      ['/', '{"2015-07-25":"/2015-07-25","2016-07-29":"/2016-07-29","latest":"/latest"}'],
      ['/latest/version', '"7-abc"'],
      ['/latest/self/host', '{"labels":{"zone":"z\\u003c1\\u003e"},"name":"h1"}'],
      ['/latest/services/web/metadata', '{"a-key":{"10":"ten","9":"nine"},"b-key":"yes"}'],
      ['/2015-07-25/services/Web/containers', '["shop-web-1"]'],
      ['/2016-07-29/services/0/containers', '[{"ips":["10.42.0.5"],"name":"shop-web-1","uuid":"c-1"}]'],
      [
        '/latest/self/service',
        '{"containers":[{"ips":["10.42.0.5"],"name":"shop-web-1","uuid":"c-1"}],"kind":"service","labels":{},"lb_config":null,' +
          '"metadata":{"a-key":{"10":"ten","9":"nine"},"b-key":"yes"},"name":"web","scale":2,"token":"feedface","uuid":"s-1"}',
      ],
      ['/latest/haproxy', '"global\\n  maxconn 4096\\n"'],
    ];
    await expectBodies('application/json', 'application/json', cases);
  });
});

describe('metadata YAML over HTTP (yaml.v2 Marshal bytes)', () => {
  it('root, scalars, maps, lists and block scalars in each version', async () => {
    const cases: [string, string][] = [
      ['/', '2015-07-25: /2015-07-25\n2016-07-29: /2016-07-29\nlatest: /latest\n'],
      ['/latest/version', '7-abc\n'],
      ['/latest/services/web/metadata', 'a-key:\n  "9": nine\n  "10": ten\nb-key: "yes"\n'],
      ['/2015-07-25/services/Web/containers', '- shop-web-1\n'],
      ['/2016-07-29/services/0/containers', '- ips:\n  - 10.42.0.5\n  name: shop-web-1\n  uuid: c-1\n'],
      [
        '/latest/self/service',
        'containers:\n- ips:\n  - 10.42.0.5\n  name: shop-web-1\n  uuid: c-1\nkind: service\nlabels: {}\nlb_config: null\n' +
          'metadata:\n  a-key:\n    "9": nine\n    "10": ten\n  b-key: "yes"\nname: web\nscale: 2\ntoken: feedface\nuuid: s-1\n',
      ],
      ['/latest/haproxy', '|\n  global\n    maxconn 4096\n'],
      ['/latest/self/host', 'labels:\n  zone: z<1>\nname: h1\n'],
    ];
    await expectBodies('application/x-yaml', 'application/yaml; charset=utf-8', cases);
  });
});

describe('paths the original router answered itself', () => {
  it('/favicon.ico: Go http.NotFound, plain text whatever the Accept header', async () => {
    for (const accept of ['application/json', 'application/yaml', '*/*']) {
      const r = await get('/favicon.ico', accept);
      assert.equal(r.status, 404);
      assert.equal(r.text, '404 page not found\n');
      assert.equal(r.headers.get('content-type'), 'text/plain; charset=utf-8');
    }
  });

  it('unclean paths: 301 to the clean path (query kept); clean ones with a trailing slash are served', async () => {
    const cases: [string, string][] = [
      ['/latest//self/host/name', '/latest/self/host/name'],
      ['/latest/./self/host', '/latest/self/host'],
      ['/latest/services/../self/', '/latest/self/'],
      ['/../../etc/passwd', '/etc/passwd'],
      ['//', '/'],
      ['/latest/self%2F%2Fhost', '/latest/self/host'],
      ['/latest//version?wait=true&value=x', '/latest/version?wait=true&value=x'],
    ];
    for (const [path, location] of cases) {
      const r = await get(path, '*/*');
      assert.equal(r.status, 301, path);
      assert.equal(r.headers.get('location'), location, path);
      assert.equal(r.text, '', path);
    }
    const ok = await get('/latest/self/host/name/', '*/*');
    assert.equal(ok.status, 200);
    assert.equal(ok.text, 'h1');
  });
});
