// `drover up` as a supervisor of two child processes (`drover server`, `drover agent`): the banner once
// both are ready, a child killed with -9 is restarted while the other keeps running, SIGTERM stops
// everything; a second `drover up` and a `drover server` on a taken port fail with one line, creating
// nothing; the children of a supervisor killed with -9 stop by themselves. Agent DNS and metadata on
// free loopback ports, no Docker (none on this machine, or not used: --docker-socket points nowhere a
// test cares about). Bound: about 30 s; every step has its own timeout.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { cleanup, eventually, request, tempDir } from '../helpers/server.js';
import { freePort } from '../helpers/ports.js';
import { startLoggingChild, type LogLine } from '../helpers/child.js';
import { processAlive } from '../../src/common/pid-lock.js';

const MAIN = new URL('../../src/cli/main.ts', import.meta.url).pathname;
const drover = (args: string[], env: NodeJS.ProcessEnv = {}) =>
  spawnSync(process.execPath, ['--import', 'tsx', MAIN, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 30_000 });

/** Every file under dir with its size and mtime (to show a failed start touched nothing). */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      const st = statSync(p);
      if (st.isDirectory()) walk(p);
      else out[p] = `${st.size}@${st.mtimeMs}`;
    }
  };
  walk(dir);
  return out;
}

const isSupervisor = (l: LogLine) => l.component === 'supervisor';

test('drover up supervises the server and the agent: restarts a killed child, stops on SIGTERM; a second up fails with one line', { timeout: 60_000 }, async () => {
  const dir = tempDir('drover-up-');
  const data = join(dir, 'data');
  const [port, dnsPort, mdPort, metricsPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const url = `http://127.0.0.1:${port}`;
  const up = startLoggingChild([
    '--import', 'tsx', MAIN, 'up', '--data', data, '--listen', `127.0.0.1:${port}`,
    '--dns-listen', `127.0.0.1:${dnsPort}`, '--metadata-listen', `127.0.0.1:${mdPort}`, '--metrics-listen', `127.0.0.1:${metricsPort}`,
    '--labels', 'role=up-test',
  ]);
  let out = '';
  up.proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const pids = new Set<number>();
  try {
    await eventually(() => out.includes('drover is up'), 25_000, 'the banner').catch((err: Error) => {
      throw new Error(`${err.message}; stderr: ${JSON.stringify(up.logs).slice(-1500)}`);
    });
    assert.match(out, new RegExp(`control plane ${url}`));
    const started = (child: string, n: number) =>
      up.waitLog((l) => isSupervisor(l) && l.msg === `started the ${child}` && l.start === n, 15_000).then((l) => l.childPid as number);
    const serverPid = await started('server', 1);
    const agentPid = await started('agent', 1);
    pids.add(serverPid).add(agentPid);
    assert.notEqual(serverPid, up.proc.pid);
    assert.notEqual(agentPid, up.proc.pid);

    const creds = JSON.parse(readFileSync(join(data, 'cli.json'), 'utf8')) as { url: string; accessKey: string; secretKey: string };
    assert.equal(creds.url, url);
    assert.equal((await request(url, 'GET', '/v1/version', undefined)).status, 200);
    const hosts = await request<{ data: { labels: Record<string, string> }[] }>(url, 'GET', '/v1/hosts', undefined, creds);
    assert.deepEqual(hosts.body.data.map((h) => h.labels.role), ['up-test'], 'the agent registered with a token the server created');
    // Every log line says which process wrote it.
    assert.ok(up.logs.some((l) => l.child === 'server' && l.pid === serverPid), 'server lines are tagged');
    assert.ok(up.logs.some((l) => l.child === 'agent' && l.pid === agentPid), 'agent lines are tagged');

    // kill -9 the server: restarted, the API answers again, the agent process was left alone.
    process.kill(serverPid, 'SIGKILL');
    const serverPid2 = await started('server', 2);
    pids.add(serverPid2);
    await up.waitLog((l) => isSupervisor(l) && l.msg === 'the server is ready again', 15_000);
    const serverLock = JSON.parse(readFileSync(join(data, 'server', 'server.lock'), 'utf8')) as { pid: number };
    assert.equal(serverLock.pid, serverPid2, 'the lock of the killed server was taken over');
    assert.equal((await request(url, 'GET', '/v1/version', undefined)).status, 200);
    assert.equal((await request(url, 'GET', '/v1/hosts', undefined, creds)).status, 200, 'same data, same key');
    assert.ok(processAlive(agentPid), 'the agent kept running');
    assert.ok(!up.logs.some((l) => isSupervisor(l) && l.msg === 'started the agent' && l.start === 2), 'the agent was not restarted');

    // kill -9 the agent: restarted (with its stored identity), the server untouched.
    process.kill(agentPid, 'SIGKILL');
    const agentPid2 = await started('agent', 2);
    pids.add(agentPid2);
    await up.waitLog((l) => isSupervisor(l) && l.msg === 'the agent is ready again', 15_000);
    assert.ok(processAlive(serverPid2), 'the server kept running');
    const hostsAfter = await request<{ data: unknown[] }>(url, 'GET', '/v1/hosts', undefined, creds);
    assert.equal(hostsAfter.body.data.length, 1, 'the restarted agent is the same host');

    // A second `drover up` on the same port and data dir: one line, exit 1, nothing touched.
    const before = snapshot(data);
    const cliBefore = readFileSync(join(data, 'cli.json'), 'utf8');
    const second = drover(['up', '--data', data, '--listen', `127.0.0.1:${port}`, '--metrics-listen', '', '--dns-listen', '', '--metadata-listen', '']);
    assert.equal(second.status, 1);
    assert.equal(second.stderr, `drover: cannot listen on 127.0.0.1:${port}: address already in use (is another drover running? use --listen)\n`);
    assert.doesNotMatch(second.stderr, /\n\s+at /, 'no stack trace');
    // …and on another port: the data directory is in use.
    const third = drover(['up', '--data', data, '--listen', `127.0.0.1:${await freePort()}`, '--metrics-listen', '', '--dns-listen', '', '--metadata-listen', '']);
    assert.equal(third.status, 1);
    assert.match(third.stderr, new RegExp(`^drover: data directory ${data} is in use by drover up \\(pid ${up.proc.pid}, since [^)]+\\); stop it first, or use --data \\(lock: ${join(data, 'up.lock')}\\)\\n$`));
    assert.equal(readFileSync(join(data, 'cli.json'), 'utf8'), cliBefore, 'cli.json untouched');
    const after = snapshot(data);
    assert.deepEqual(Object.keys(after).sort(), Object.keys(before).sort(), 'no file created or removed');
    for (const f of [join(data, 'cli.json'), join(data, 'up.lock'), join(data, 'server', 'server.lock'), join(data, 'agent', 'agent.json')]) {
      assert.equal(after[f], before[f], `${f} untouched`);
    }

    // SIGTERM to the supervisor: both children stop, exit 0.
    const t0 = Date.now();
    up.proc.kill('SIGTERM');
    const code = await Promise.race([up.exited, new Promise<string>((r) => setTimeout(() => r('timeout'), 15_000))]);
    assert.equal(code, 0, 'graceful shutdown exits 0');
    assert.ok(Date.now() - t0 < 15_000);
    for (const pid of [serverPid2, agentPid2]) assert.ok(!processAlive(pid), `child ${pid} is gone`);
    assert.ok(!existsSync(join(data, 'up.lock')), 'the lock is released');
  } finally {
    if (up.proc.exitCode === null) up.proc.kill('SIGKILL');
    for (const pid of pids) if (processAlive(pid)) process.kill(pid, 'SIGKILL');
    cleanup(dir);
  }
});

test('drover server on a taken port: one line, exit 1, no admin key printed or stored', { timeout: 40_000 }, async () => {
  const dir = tempDir('drover-server-bind-');
  const taken = net.createServer();
  await new Promise<void>((r) => taken.listen(0, '127.0.0.1', () => r()));
  const port = (taken.address() as net.AddressInfo).port;
  try {
    const r = drover(['server', '--data', dir, '--listen', `127.0.0.1:${port}`]);
    assert.equal(r.status, 1);
    assert.equal(r.stderr, `drover: cannot listen on 127.0.0.1:${port}: address already in use (is another drover running? use --listen)\n`);
    assert.equal(r.stdout, '', 'no admin key printed');
    assert.deepEqual(readdirSync(dir), [], 'the data directory is untouched: no database, no key');
    // At debug level the stack is shown.
    const dbg = drover(['server', '--data', dir, '--listen', `127.0.0.1:${port}`, '--log-level', 'debug']);
    assert.equal(dbg.status, 1);
    assert.match(dbg.stderr, /\n\s+at /);

    // A start that can listen prints a key: the first key was never created.
    const free = await freePort();
    const ok = startLoggingChild(['--import', 'tsx', MAIN, 'server', '--data', dir, '--listen', `127.0.0.1:${free}`, '--log-level', 'warn']);
    let out = '';
    ok.proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    try {
      await eventually(() => /DROVER_ACCESS_KEY=\S+ DROVER_SECRET_KEY=\S+/.test(out), 20_000, 'the first admin key');
      // While it runs, a second server on the same data directory is refused (lock with the PID).
      const again = drover(['server', '--data', dir, '--listen', `127.0.0.1:${await freePort()}`]);
      assert.equal(again.status, 1);
      assert.match(again.stderr, new RegExp(`^drover: data directory ${join(dir, 'server')} is in use by drover server \\(pid ${ok.proc.pid},`));
      assert.equal(again.stdout, '');
    } finally {
      ok.proc.kill('SIGTERM');
      assert.equal(await ok.exited, 0);
    }
  } finally {
    await new Promise<void>((r) => taken.close(() => r()));
    cleanup(dir);
  }
});

test('drover up gives up with one line after a child exits 5 times within a minute', { timeout: 40_000 }, async () => {
  const dir = tempDir('drover-up-crash-');
  const port = await freePort();
  const up = startLoggingChild([
    '--import', 'tsx', MAIN, 'up', '--data', join(dir, 'data'), '--listen', `127.0.0.1:${port}`,
    '--dns-listen', '', '--metadata-listen', '', '--metrics-listen', '',
  ]);
  try {
    // Every agent that starts after the first has become ready is killed at once (backoff 0.25, 0.5, 1, 2 s).
    await up.waitLog((l) => isSupervisor(l) && l.msg === 'the agent is ready', 25_000);
    for (let n = 1; n <= 5; n++) {
      const started = await up.waitLog((l) => isSupervisor(l) && l.msg === 'started the agent' && l.start === n, 15_000);
      const pid = started.childPid as number;
      if (processAlive(pid)) process.kill(pid, 'SIGKILL');
    }
    const code = await Promise.race([up.exited, new Promise<string>((r) => setTimeout(() => r('timeout'), 20_000))]);
    assert.equal(code, 1);
    const err = up.logs.filter((l) => typeof l.level !== 'number').map((l) => String(l.msg)).join('\n');
    assert.match(err, /^drover: the agent exited 5 times within 60 s \(last: killed by SIGKILL\); giving up/m);
    const server = up.logs.find((l) => isSupervisor(l) && l.msg === 'started the server');
    assert.ok(server && !processAlive(server.childPid as number), 'the server was stopped too');
  } finally {
    if (up.proc.exitCode === null) up.proc.kill('SIGKILL');
    for (const l of up.logs) if (isSupervisor(l) && typeof l.childPid === 'number' && processAlive(l.childPid)) process.kill(l.childPid, 'SIGKILL');
    cleanup(dir);
  }
});

test('the children of a drover up killed with -9 stop by themselves (the IPC channel closes)', { timeout: 40_000 }, async () => {
  const dir = tempDir('drover-up-orphans-');
  const up = startLoggingChild([
    '--import', 'tsx', MAIN, 'up', '--data', join(dir, 'data'), '--listen', `127.0.0.1:${await freePort()}`,
    '--dns-listen', '', '--metadata-listen', '', '--metrics-listen', '',
  ]);
  const children: number[] = [];
  try {
    await up.waitLog((l) => isSupervisor(l) && l.msg === 'the agent is ready', 25_000);
    for (const child of ['server', 'agent']) {
      children.push((await up.waitLog((l) => isSupervisor(l) && l.msg === `started the ${child}`)).childPid as number);
    }
    up.proc.kill('SIGKILL');
    await up.exited;
    await eventually(() => children.every((pid) => !processAlive(pid)), 15_000, `the orphaned children ${children.join(', ')} to stop`);
  } finally {
    for (const pid of children) if (processAlive(pid)) process.kill(pid, 'SIGKILL');
    cleanup(dir);
  }
});
