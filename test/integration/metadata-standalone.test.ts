// Standalone mode: answers files (JSON and YAML), the reload endpoint, SIGHUP (on a child process running the
// real command), a bad file keeping the last good answers, graceful shutdown.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { silentLogger } from '../../src/common/log.js';
import { ValidationError } from '../../src/common/errors.js';
import { parseHeaderSpec, parseListenAddress, runStandalone, type StandaloneHandle } from '../../src/metadata/standalone.js';
import { curl } from '../fixtures/metadata/http.js';
import { startLoggingChild, type LoggingChild } from '../helpers/child.js';
import { eventually } from '../helpers/wait.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const ENTRY = join(ROOT, 'test', 'fixtures', 'metadata', 'cli-entry.ts');

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'drover-metadata-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

function answersJson(version: string, extra = ''): string {
  // Raw JSON on purpose: 42.0 and 1.50 must print as 42 and 1.5.
  return `{
  "2015-12-19": {
    "default": {"version": "${version}", "num": 42.0, "ratio": 1.50, "list": [{"name": "a"}, {"name": "b"}]${extra}},
    "127.0.0.2": {"who": "client-2"}
  },
  "2015-07-25": {"default": {"version": "old-${version}"}}
}`;
}

describe('standalone: addresses and flags', () => {
  it('parses listen addresses', () => {
    assert.deepEqual(parseListenAddress('127.0.0.1:80'), { host: '127.0.0.1', port: 80 });
    assert.deepEqual(parseListenAddress(':8080'), { host: undefined, port: 8080 });
    assert.deepEqual(parseListenAddress('[::1]:0'), { host: '::1', port: 0 });
    assert.deepEqual(parseListenAddress('169.254.169.250:80'), { host: '169.254.169.250', port: 80 });
    for (const bad of ['80', 'host', '1.2.3.4:99999', '1.2.3.4:x', '::1:80']) {
      assert.throws(() => parseListenAddress(bad), ValidationError, bad);
    }
  });

  it('parses NAME=VALUE headers', () => {
    assert.deepEqual(parseHeaderSpec('Metadata-Flavor=Rancher'), { name: 'Metadata-Flavor', value: 'Rancher' });
    assert.deepEqual(parseHeaderSpec('X-A=b=c'), { name: 'X-A', value: 'b=c' });
    assert.throws(() => parseHeaderSpec('novalue'), ValidationError);
    assert.throws(() => parseHeaderSpec('bad name=x'), ValidationError);
  });

  it('refuses a reload endpoint that is not on loopback, and a bad initial file', async () => {
    const file = join(dir, 'ok.json');
    writeFileSync(file, answersJson('1'));
    await assert.rejects(
      runStandalone({ answersFile: file, listen: '127.0.0.1:0', reloadListen: '0.0.0.0:0', log: silentLogger(), handleSignals: false }),
      /loopback/,
    );
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, '{"2015-12-19": {"default": 1}}');
    await assert.rejects(
      runStandalone({ answersFile: bad, listen: '127.0.0.1:0', reloadListen: null, log: silentLogger(), handleSignals: false }),
      /bad\.json: invalid answers .*"2015-12-19" → "default": must be a map/,
    );
  });
});

describe('standalone: in process', () => {
  let handle: StandaloneHandle;
  let base: string;
  let reloadBase: string;
  let file: string;

  before(async () => {
    file = join(dir, 'answers.json');
    writeFileSync(file, answersJson('1'));
    handle = await runStandalone({
      answersFile: file,
      listen: '127.0.0.1:0',
      reloadListen: '127.0.0.1:0',
      log: silentLogger(),
      handleSignals: false,
    });
    base = `http://127.0.0.1:${handle.address.port}`;
    reloadBase = `http://127.0.0.1:${handle.reloadAddress?.port ?? 0}`;
  });
  after(() => handle.close());

  it('serves a JSON answers file, latest being the highest version', async () => {
    assert.equal((await curl(`${base}/`)).text, '2015-07-25\n2015-12-19\nlatest\n');
    assert.equal((await curl(`${base}/latest/version`)).text, '1');
    assert.equal((await curl(`${base}/2015-07-25/version`)).text, 'old-1');
    assert.equal((await curl(`${base}/latest/num`)).text, '42');
    assert.equal((await curl(`${base}/latest/ratio`)).text, '1.5');
    assert.equal((await curl(`${base}/latest/list`)).text, '0=a\n1=b\n');
    assert.equal((await curl(`${base}/latest`)).text, 'list/\nnum\nratio\nversion\n');
    // The client entry gets default's keys.
    assert.equal((await curl(`${base}/latest`, { from: '127.0.0.2' })).text, 'list/\nnum\nratio\nversion\nwho\n');
    assert.equal((await curl(`${base}/latest/who`, { from: '127.0.0.2' })).text, 'client-2');
    assert.equal((await curl(`${base}/2015-07-25/who`, { from: '127.0.0.2' })).status, 404);
  });

  it('reloads on POST /v1/reload, waking long polls', async () => {
    const poll = curl(`${base}/latest/version?wait=true&value=1&maxWait=20`);
    await eventually(() => handle.server.waiting === 1, 10_000, 'the long poll to wait');
    writeFileSync(file, answersJson('2', ', "added": true'));
    const r = await curl(`${reloadBase}/v1/reload`, { method: 'POST' });
    assert.equal(r.status, 200);
    assert.equal(r.text, 'OK');
    assert.equal((await poll).text, '2');
    assert.equal((await curl(`${base}/latest/added`)).text, 'true');
  });

  it('keeps the last good answers when the file is bad, and says why', async () => {
    writeFileSync(file, '{"2015-12-19": {"default": {"version": "3"}');
    const r = await curl(`${reloadBase}/v1/reload`, { method: 'POST' });
    assert.equal(r.status, 500);
    assert.match(r.text, /answers\.json: not valid JSON/);
    await assert.rejects(handle.reload(), /not valid JSON/);
    assert.equal((await curl(`${base}/latest/version`)).text, '2');
    rmSync(file);
    const gone = await curl(`${reloadBase}/v1/reload`, { method: 'POST' });
    assert.equal(gone.status, 500);
    assert.match(gone.text, /cannot read answers file .*ENOENT/);
    assert.equal((await curl(`${base}/latest/version`)).text, '2');
    writeFileSync(file, answersJson('4'));
    await handle.reload();
    assert.equal((await curl(`${base}/latest/version`)).text, '4');
  });

  it('serves only POST on /v1/reload, and metrics', async () => {
    assert.equal((await curl(`${reloadBase}/v1/reload`)).status, 405);
    assert.equal((await curl(`${reloadBase}/nope`, { method: 'POST' })).status, 404);
    const m = await curl(`${reloadBase}/metrics`);
    assert.equal(m.status, 200);
    assert.match(m.text, /drover_metadata_answers_updates_total [1-9]/);
  });
});

describe('standalone: YAML', () => {
  it('serves a YAML answers file', async () => {
    const file = join(dir, 'answers.yml');
    writeFileSync(
      file,
      [
        "'2016-07-29':",
        '  default: &d',
        "    version: '5'",
        '    num: 42.0',
        '    hosts: [{name: h1, agent_ip: 10.0.0.1}]',
        '  10.42.0.7:',
        '    self: {container: {name: c}}',
        "'2015-12-19':",
        '  default: *d',
        '',
      ].join('\n'),
    );
    const handle = await runStandalone({ answersFile: file, listen: '127.0.0.1:0', reloadListen: null, log: silentLogger(), handleSignals: false });
    try {
      const base = `http://127.0.0.1:${handle.address.port}`;
      assert.equal((await curl(`${base}/latest/version`)).text, '5');
      assert.equal((await curl(`${base}/latest/num`)).text, '42');
      assert.equal((await curl(`${base}/2015-12-19/hosts/h1/agent_ip`)).text, '10.0.0.1');
      assert.equal(handle.reloadAddress, undefined);
      assert.deepEqual(Object.keys(handle.server.getAnswers()['2016-07-29']?.['10.42.0.7'] ?? {}).sort(), ['hosts', 'num', 'self', 'version']);
    } finally {
      await handle.close();
    }
  });
});

describe('standalone: the drover metadata command in a child process', () => {
  let child: LoggingChild | undefined;

  after(() => {
    if (child?.proc.exitCode === null) child.proc.kill('SIGKILL');
  });

  it('reloads on SIGHUP, keeps the last good answers and stops on SIGTERM', async () => {
    const file = join(dir, 'child.json');
    writeFileSync(file, answersJson('10'));
    const c = startLoggingChild(['--import', 'tsx', ENTRY, 'metadata', '--answers', file, '--listen', '127.0.0.1:0', '--reload-listen', '127.0.0.1:0'], { cwd: ROOT });
    child = c;
    const { logged, exited } = c;

    await eventually(() => logged('metadata service listening') !== undefined, 30_000, 'the child to listen');
    const base = `http://127.0.0.1:${String(logged('metadata service listening')?.port)}`;
    assert.equal((await curl(`${base}/latest/version`)).text, '10');

    writeFileSync(file, answersJson('11'));
    c.proc.kill('SIGHUP');
    await eventually(async () => (await curl(`${base}/latest/version`)).text === '11', 10_000, 'the SIGHUP reload');

    writeFileSync(file, 'not: [valid');
    c.proc.kill('SIGHUP');
    await eventually(() => logged('metadata answers not reloaded; still serving the last good answers') !== undefined, 10_000, 'the failed reload to be logged');
    const failure = logged('metadata answers not reloaded; still serving the last good answers');
    assert.match(String(failure?.reason), /child\.json: not valid JSON|child\.json: not valid YAML/);
    assert.equal((await curl(`${base}/latest/version`)).text, '11');

    c.proc.kill('SIGTERM');
    assert.equal(await exited, 0);
    assert.ok(logged('metadata service stopped'));
  });
});
