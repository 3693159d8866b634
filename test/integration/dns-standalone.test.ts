// `drover dns` as a child process: JSON and YAML answers files, reload on SIGHUP and POST /v1/reload,
// a bad file keeping the last good answers, graceful stop, --help.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startLoggingChild, type LoggingChild } from '../helpers/child.js';
import { eventually } from '../helpers/wait.js';
import { dig, ips } from './dns-helpers.js';

const CLI = ['--import', 'tsx', 'test/fixtures/dns-cli.ts', 'dns'];

function start(args: string[]): LoggingChild {
  return startLoggingChild([...CLI, ...args]);
}

const answers = (ip: string): string => `
127.0.0.41:
  search: [app.rancher.internal, rancher.internal]
  a:
    db.app.rancher.internal.: { answer: [${ip}], ttl: 5 }
default:
  authoritative: [rancher.internal]
  a:
    shared.rancher.internal.: { answer: [10.9.9.9] }
`;

describe('drover dns (standalone)', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'drover-dns-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('JSON answers file: served per client', async () => {
    const file = join(dir, 'answers.json');
    writeFileSync(
      file,
      JSON.stringify({
        '127.0.0.41': { search: ['app.rancher.internal'], a: { 'db.app.rancher.internal.': { answer: ['10.0.0.7'], ttl: 42 } } },
        default: { authoritative: ['rancher.internal'] },
      }),
    );
    const c = start(['--answers', file, '--listen', '127.0.0.1:0', '--reload-listen', 'off', '--ttl', '3']);
    try {
      const port = Number((await c.waitLog((l) => l.msg === 'DNS server listening (UDP and TCP)')).port);
      const r = await dig('db', { port, from: '127.0.0.41' });
      assert.deepEqual(ips(r), ['10.0.0.7']);
      assert.equal(r.answer[0]?.ttl, 42);
      assert.equal((await dig('db.app.rancher.internal', { port, from: '127.0.0.42' })).status, 'NXDOMAIN');
    } finally {
      c.proc.kill('SIGTERM');
      assert.equal(await c.exited, 0);
    }
  });

  test('YAML answers, SIGHUP and POST /v1/reload; a bad file keeps the last good answers', async () => {
    const file = join(dir, 'answers.yaml');
    writeFileSync(file, answers('10.0.0.1'));
    const c = start(['--answers', file, '--listen', '127.0.0.1:0', '--reload-listen', '127.0.0.1:0', '--log-level', 'info']);
    try {
      const port = Number((await c.waitLog((l) => l.msg === 'DNS server listening (UDP and TCP)')).port);
      const httpPort = Number((await c.waitLog((l) => String(l.msg).startsWith('reload endpoint listening'))).port);
      const db = async (): Promise<string[]> => ips(await dig('db', { port, from: '127.0.0.41' }));
      assert.deepEqual(await db(), ['10.0.0.1']);
      assert.deepEqual(ips(await dig('shared', { port, from: '127.0.0.41' })), ['10.9.9.9']);

      // SIGHUP
      writeFileSync(file, answers('10.0.0.2'));
      c.proc.kill('SIGHUP');
      await eventually(async () => (await db())[0] === '10.0.0.2');

      // a bad file: logged, the last good answers stay
      writeFileSync(file, answers('10.0.0.999'));
      c.proc.kill('SIGHUP');
      const err = await c.waitLog((l) => l.msg === 'answers not reloaded; keeping the last good ones');
      assert.match(String(err.err), /IPv4/);
      assert.deepEqual(await db(), ['10.0.0.2']);

      // the HTTP endpoint: 422 with the reason, then 200
      const post = async (): Promise<{ status: number; body: { ok: boolean; error?: string } }> => {
        const res = await fetch(`http://127.0.0.1:${httpPort}/v1/reload`, { method: 'POST' });
        return { status: res.status, body: (await res.json()) as { ok: boolean; error?: string } };
      };
      const bad = await post();
      assert.equal(bad.status, 422);
      assert.equal(bad.body.ok, false);
      assert.match(bad.body.error ?? '', /IPv4/);
      assert.deepEqual(await db(), ['10.0.0.2']);
      writeFileSync(file, answers('10.0.0.3'));
      const good = await post();
      assert.equal(good.status, 200);
      assert.deepEqual(await db(), ['10.0.0.3']);
      assert.equal((await fetch(`http://127.0.0.1:${httpPort}/v1/reload`)).status, 405);
      const metrics = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
      assert.match(metrics, /drover_dns_queries_total/);
    } finally {
      c.proc.kill('SIGTERM');
      assert.equal(await c.exited, 0, 'graceful stop');
    }
  });

  test('a bad file at start is fatal with the reason', async () => {
    const file = join(dir, 'bad.json');
    writeFileSync(file, '{"default": {"a": {"x.": {"answer": ["nope"]}}}}');
    const c = start(['--answers', file, '--listen', '127.0.0.1:0', '--reload-listen', 'off']);
    assert.equal(await c.exited, 1);
    assert.ok(c.logs.some((l) => l.msg === 'drover dns could not start' && /IPv4/.test(String(l.err))), JSON.stringify(c.logs));
  });

  test('--help documents every flag', () => {
    const r = spawnSync(process.execPath, [...CLI, '--help'], { encoding: 'utf8' });
    assert.equal(r.status, 0);
    for (const flag of ['--answers', '--listen', '--ttl', '--recurser-timeout', '--reload-listen', '--cache-size', '--cache-max-ttl', '--reject-loopback-upstreams', '--log-level', 'SIGHUP']) {
      assert.ok(r.stdout.includes(flag), flag);
    }
  });
});
