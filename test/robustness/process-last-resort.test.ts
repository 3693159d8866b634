// The last resort of every drover process (src/common/last-resort.ts), in real CLI processes: an
// unhandled promise rejection is logged with the command and the stack, counted in
// drover_unexpected_errors_total{kind="unhandledRejection"} on the /metrics the process serves, and
// the process goes on answering; an uncaught exception is logged and the process exits 70.
// Control plane, agent (its own metrics endpoint) and standalone DNS. Bound: about 15 s.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cleanup, eventually, request, tempDir } from '../helpers/server.js';
import { freePort } from '../helpers/ports.js';
import { startLoggingChild, type LoggingChild, type LogLine } from '../helpers/child.js';
import { dig, ips } from '../integration/dns-helpers.js';

const CHILD = fileURLToPath(new URL('./process-last-resort.child.ts', import.meta.url));
const ADMIN = { accessKey: 'LASTRESORTADMIN', secretKey: 'last-resort-secret-0123456789' };

interface Proc extends LoggingChild {
  send(line: string): void;
}

function start(args: string[]): Proc {
  const c = startLoggingChild(['--import', 'tsx', CHILD, ...args], {
    stdin: true,
    env: { DROVER_ADMIN_ACCESS_KEY: ADMIN.accessKey, DROVER_ADMIN_SECRET_KEY: ADMIN.secretKey },
  });
  c.proc.stdout!.resume();
  return Object.assign(c, { send: (l: string) => void c.proc.stdin!.write(`${l}\n`) });
}

async function metric(url: string, kind: string, creds?: typeof ADMIN): Promise<number | undefined> {
  const res = await fetch(url, creds ? { headers: { authorization: 'Basic ' + Buffer.from(`${creds.accessKey}:${creds.secretKey}`).toString('base64') } } : {});
  const text = await res.text();
  const m = new RegExp(`^drover_unexpected_errors_total\\{kind="${kind}"\\} (\\d+)$`, 'm').exec(text);
  return m ? Number(m[1]) : undefined;
}

const rejections = (p: Proc) => p.logs.filter((l) => l.kind === 'unhandledRejection');

/** One injected rejection after a clean start: logged with the command, counted on url, the process goes on. */
async function rejectOnce(p: Proc, url: string, command: string): Promise<void> {
  await eventually(async () => (await metric(url, 'unhandledRejection')) === 0, 20_000, `the ${command} metrics`);
  p.send('reject');
  await eventually(async () => (await metric(url, 'unhandledRejection')) === 1, 5_000, 'the counted rejection');
  assert.equal(rejections(p)[0]?.command, command);
  assert.equal(p.proc.exitCode, null, 'still running');
}

/** An injected uncaught exception: the process exits 70 (within 5 s). */
async function throwExits70(p: Proc): Promise<void> {
  p.send('throw');
  const code = await Promise.race([p.exited, new Promise<string>((r) => setTimeout(() => r('still running'), 5_000))]);
  assert.equal(code, 70, 'an uncaught exception exits 70');
}

async function stop(p: Proc): Promise<void> {
  if (p.proc.exitCode === null && p.proc.signalCode === null) {
    p.proc.kill('SIGTERM');
    await Promise.race([p.exited, new Promise((r) => setTimeout(r, 5_000))]);
    if (p.proc.exitCode === null) p.proc.kill('SIGKILL');
  }
}

describe('last resort: unhandled rejections are survived and counted, uncaught exceptions end the process', () => {
  test('drover server', { timeout: 30_000 }, async () => {
    const dir = tempDir('drover-last-resort-');
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const p = start(['server', '--data', dir, '--listen', `127.0.0.1:${port}`, '--log-level', 'warn']);
    try {
      await eventually(async () => (await request(url, 'GET', '/v1/version', undefined)).status === 200, 20_000, 'the server');
      assert.equal(await metric(`${url}/metrics`, 'unhandledRejection', ADMIN), 0, 'the counter is there from the start');
      for (let i = 0; i < 3; i++) p.send('reject');
      await eventually(() => rejections(p).length === 3, 5_000, 'three logged rejections');
      const line = rejections(p)[0] as LogLine;
      assert.equal(line.command, 'server');
      assert.equal(line.level, 50, 'logged as an error');
      assert.match(String((line.err as LogLine).stack), /Error: injected rejection 1\n\s+at /, 'with its stack');
      // Alive and serving: a valid request is answered, bad input is a 4xx naming the field.
      assert.equal(p.proc.exitCode, null);
      assert.equal((await request(url, 'GET', '/v1/version', undefined)).status, 200);
      assert.equal((await request(url, 'GET', '/v1/environments', undefined, ADMIN)).status, 200);
      const bad = await request<{ fieldName?: string }>(url, 'POST', '/v1/environments', { name: 42 }, ADMIN);
      assert.ok(bad.status >= 400 && bad.status < 500, `bad input is a 4xx, not ${bad.status}`);
      assert.equal(bad.body.fieldName, 'name');
      assert.equal(await metric(`${url}/metrics`, 'unhandledRejection', ADMIN), 3);
      assert.equal(await metric(`${url}/metrics`, 'uncaughtException', ADMIN), 0);

      await throwExits70(p);
      const fatal = p.logs.find((l) => l.kind === 'uncaughtException');
      assert.ok(fatal, 'the exception was logged before the exit');
      assert.equal(fatal.level, 60);
      assert.equal(fatal.command, 'server');
      assert.match(String((fatal.err as LogLine).stack), /Error: injected exception 4\n\s+at /);
    } finally {
      await stop(p);
      cleanup(dir);
    }
  });

  test('drover agent (its own metrics endpoint)', { timeout: 30_000 }, async () => {
    const dir = tempDir('drover-last-resort-agent-');
    const metrics = await freePort();
    const dead = await freePort(); // no control plane: the agent keeps retrying, which is fine here
    const p = start([
      'agent', '--data', dir, '--server', `http://127.0.0.1:${dead}`, '--token', 'nothing-yet',
      '--metrics-listen', `127.0.0.1:${metrics}`, '--dns-listen', '', '--metadata-listen', '', '--log-level', 'warn',
    ]);
    const url = `http://127.0.0.1:${metrics}/metrics`;
    try {
      await rejectOnce(p, url, 'agent');
      const rss = Number(/^drover_agent_process_resident_memory_bytes (\d+)/m.exec(await (await fetch(url)).text())?.[1]);
      assert.ok(rss > 0 && rss < 400 * 1024 * 1024, `RSS ${rss} bytes stays under 400 MB`);
      await throwExits70(p);
    } finally {
      await stop(p);
      cleanup(dir);
    }
  });

  test('drover dns (standalone; its reload endpoint serves /metrics)', { timeout: 30_000 }, async () => {
    const dir = tempDir('drover-last-resort-dns-');
    const answers = join(dir, 'answers.json');
    writeFileSync(answers, JSON.stringify({ default: { a: { 'web.example.': { answer: ['10.1.2.3'] } } } }));
    const [port, reload] = [await freePort(), await freePort()];
    const p = start(['dns', '--answers', answers, '--listen', `127.0.0.1:${port}`, '--reload-listen', `127.0.0.1:${reload}`, '--udp-transport', 'dgram', '--log-level', 'warn']);
    const url = `http://127.0.0.1:${reload}/metrics`;
    try {
      await rejectOnce(p, url, 'dns');
      assert.deepEqual(ips(await dig('web.example', { port })), ['10.1.2.3'], 'a query is answered right after');
      await throwExits70(p);
    } finally {
      await stop(p);
      cleanup(dir);
    }
  });
});
