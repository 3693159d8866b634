// confd's `rancher` backend, request for request: connection test on `<base>/`, one JSON GET per key with
// only `Accept: application/json`, flattening of the JSON (maps → root/k, arrays → root/<index>, or
// root/<name> for an element with a `name`), and the watch on `<prefix>/version?wait=true&value=…&maxWait=10`
// (first with `init`, then with the real version, JSON-decoded as a string). The client runs from the source
// address of a container (127.0.0.2 standing for it), as confd in a sidekick would.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { silentLogger } from '../../src/common/log.js';
import { Container } from '../../src/model/resources.js';
import type { EnvState } from '../../src/model/state.js';
import { MetadataServer } from '../../src/metadata/server.js';
import { buildMetadataAnswers } from '../../src/metadata/tree.js';
import { withAliases } from '../fixtures/metadata/http.js';
import { fixtureState, HOST_A, IP_APP } from '../fixtures/metadata/state.js';

const SOURCE = '127.0.0.2';

interface Logged {
  path: string;
  accept: string | undefined;
}

/** The HTTP side of confd's rancher client. */
class ConfdRancherClient {
  readonly log: Logged[] = [];
  constructor(
    private readonly base: string,
    private readonly localAddress: string,
  ) {}

  /** makeMetaDataRequest: GET base+path with only `Accept: application/json`; the status is not looked at. */
  get(path: string): Promise<string> {
    const url = new URL(this.base + path);
    this.log.push({ path, accept: 'application/json' });
    return new Promise((resolve, reject) => {
      const req = request(
        { host: url.hostname, port: url.port, path: url.pathname + url.search, localAddress: this.localAddress, headers: { Accept: 'application/json' } },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
        },
      );
      req.on('error', reject);
      req.end();
    });
  }

  /** testConnection: up to 5 tries of `GET <base>/`, backing off; any HTTP response counts. */
  async testConnection(): Promise<void> {
    let last: unknown;
    for (let i = 1; i * i < 20; i++) {
      try {
        await this.get('/');
        return;
      } catch (err) {
        last = err;
        await new Promise((r) => setTimeout(r, i * i * 10));
      }
    }
    throw last;
  }

  /** GetValues: every key fetched as JSON and flattened. */
  async getValues(keys: string[]): Promise<Map<string, string>> {
    const vars = new Map<string, string>();
    for (const key of keys) treeWalk(key, JSON.parse(await this.get(key)) as unknown, vars);
    return vars;
  }

  /** waitVersion: the long poll, its body JSON-decoded as a string (fails if it is not one). */
  async waitVersion(prefix: string, version: string): Promise<string> {
    const body = await this.get(`${prefix}/version?wait=true&value=${version}&maxWait=10`);
    const v: unknown = JSON.parse(body);
    if (typeof v !== 'string') throw new Error(`version is not a JSON string: ${body}`);
    return v;
  }
}

/** confd's treeWalk. */
function treeWalk(root: string, val: unknown, vars: Map<string, string>): void {
  if (Array.isArray(val)) {
    val.forEach((item: unknown, i) => {
      let idx = String(i);
      if (typeof item === 'object' && item !== null && !Array.isArray(item) && 'name' in item && typeof item.name === 'string') idx = item.name;
      treeWalk(`${root}/${idx}`, item, vars);
    });
  } else if (val === null) {
    vars.set(root, 'null');
  } else if (typeof val === 'object') {
    for (const [k, v] of Object.entries(val)) treeWalk(`${root}/${k}`, v, vars);
  } else if (typeof val === 'boolean' || typeof val === 'string' || typeof val === 'number') {
    vars.set(root, String(val));
  }
}

/** A template in the spirit of confd's: the upstream of the service this container belongs to. */
function renderTemplate(vars: Map<string, string>): string {
  const svc = '/latest/self/service';
  const name = vars.get(`${svc}/name`) ?? '?';
  const servers = [...vars.keys()]
    .filter((k) => k.startsWith(`${svc}/containers/`) && k.endsWith('/primary_ip'))
    .sort()
    .map((k) => `  server ${k.split('/')[5]} ${vars.get(k)}:${vars.get(`${svc}/metadata/port`) ?? '80'};`);
  const link = vars.get(`${svc}/links/webstack/db`);
  return `upstream ${name} {\n${servers.join('\n')}\n}\n# db link: ${link}\n`;
}

let server: MetadataServer;
let base: string;
let state: EnvState;

function publish(): void {
  server.setAnswers(withAliases(buildMetadataAnswers(state, { hostId: HOST_A }), { [SOURCE]: IP_APP }));
}

before(async () => {
  state = fixtureState();
  server = new MetadataServer({ log: silentLogger() });
  publish();
  base = `http://127.0.0.1:${(await server.listen('127.0.0.1', 0)).port}`;
});
after(() => server.close());

describe('confd (rancher backend) against the metadata service', () => {
  it('renders a template, watches the version and re-renders after a change', async () => {
    const confd = new ConfdRancherClient(base, SOURCE);
    await confd.testConnection();
    assert.deepEqual(confd.log[0], { path: '/', accept: 'application/json' });

    const prefix = '/latest';
    const keys = [`${prefix}/self/service`, `${prefix}/self/container/name`, `${prefix}/hosts`];
    const vars = await confd.getValues(keys);
    assert.equal(vars.get('/latest/self/container/name'), 'webstack-app-1');
    assert.equal(vars.get('/latest/self/service/containers/webstack-app-1/primary_ip'), IP_APP);
    assert.equal(vars.get('/latest/self/service/metadata/answer'), '42');
    assert.equal(vars.get('/latest/self/service/health_check/request_line'), 'GET /healthz HTTP/1.0');
    assert.equal(vars.get('/latest/self/service/lb_config'), 'null');
    assert.equal(vars.get('/latest/self/service/sidekicks/0'), 'logger');
    assert.equal(vars.get('/latest/hosts/host-b/agent_ip'), '192.168.0.12');
    const first = renderTemplate(vars);
    assert.equal(first, 'upstream app {\n  server webstack-app-1 10.42.0.2:80;\n}\n# db link: database\n');

    // The watch: `init` returns at once with the real version; with the real version it blocks.
    const v0 = await confd.waitVersion(prefix, 'init');
    assert.match(v0, /^7-/);
    const watch = confd.waitVersion(prefix, v0);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(server.waiting, 1);

    // Scale the service up: a second container appears.
    state.revision++;
    state.containers.set(
      'c8',
      Container.parse({
        id: 'c8', uuid: 'uuid-c8', environmentId: 'e1', hostId: HOST_A, stackId: 'st1', serviceId: 'sv1', name: 'WebStack-App-3',
        serviceIndex: 3, deploymentUnitUuid: null, primaryIpAddress: '10.42.0.8', state: 'running', desiredState: 'running',
        config: { image: 'nginx:1.25' }, created: '2024-01-02T00:00:00.000Z',
      }),
    );
    publish();
    const v1 = await watch;
    assert.notEqual(v1, v0);
    assert.match(v1, /^8-/);

    const second = renderTemplate(await confd.getValues(keys));
    assert.notEqual(second, first);
    assert.equal(
      second,
      'upstream app {\n  server webstack-app-1 10.42.0.2:80;\n  server webstack-app-3 10.42.0.8:80;\n}\n# db link: database\n',
    );

    // Exactly confd's request sequence, each with `Accept: application/json` only.
    assert.deepEqual(
      confd.log.map((l) => l.path),
      [
        '/',
        ...keys,
        '/latest/version?wait=true&value=init&maxWait=10',
        `/latest/version?wait=true&value=${v0}&maxWait=10`,
        ...keys,
      ],
    );
  });

  it('flattens error bodies like any JSON (confd ignores the status)', async () => {
    const confd = new ConfdRancherClient(base, '127.0.0.9');
    const vars = await confd.getValues(['/latest/self/service']);
    assert.deepEqual(Object.fromEntries(vars), {
      '/latest/self/service/code': '404',
      '/latest/self/service/message': 'Not found',
      '/latest/self/service/type': 'error',
    });
  });
});
