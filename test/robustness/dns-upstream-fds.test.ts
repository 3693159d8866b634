// File descriptors run out while upstream queries are in flight (issue 9 item 8): the server runs as a
// child under `prlimit --nofile=96`, a client floods it with 400 distinct cache misses to a silent
// upstream. Every query gets an answer (SERVFAIL for those that found no socket, or timed out), the
// process stays alive, the failures are logged (rate-limited), a local name is answered right during
// the flood and, once the exchanges settle, recursion to a live upstream works again.
// Bound: about 6 s (1 s upstream timeout).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { startLoggingChild, type LoggingChild } from '../helpers/child.js';
import { eventually } from '../helpers/wait.js';
import { dig, ips, startUpstream, type FakeUpstream } from '../integration/dns-helpers.js';
import { buildQuery, encodeQuestion } from '../../src/dns/wire.js';

const CHILD = fileURLToPath(new URL('./dns-upstream-fds.child.ts', import.meta.url));
const FLOOD = 400;

function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

describe('DNS server out of file descriptors for upstream sockets', () => {
  let silent: dgram.Socket;
  let live: FakeUpstream;
  let child: LoggingChild;
  let port: number;

  before(async () => {
    silent = dgram.createSocket('udp4');
    await new Promise<void>((r) => silent.bind(0, '127.0.0.1', () => r()));
    live = await startUpstream();
    live.zone.set('www.example.test', [{ type: 'A', data: '192.0.2.80', ttl: 60 }]);
    // prlimit execs node with the limit; startLoggingChild runs process.execPath, so go through it.
    child = startLoggingChild(['-e', `require('child_process').spawn('prlimit', ['--nofile=96:96', process.execPath, '--import', 'tsx', ${JSON.stringify(CHILD)}, '${silent.address().port}', '${live.port}'], { stdio: 'inherit' }).on('exit', (c) => process.exit(c ?? 1)); process.on('SIGTERM', () => {})`]);
    const ready = await child.waitLog((l) => l.msg === 'child ready', 20_000);
    port = Number(ready.port);
  });

  after(async () => {
    try {
      process.kill(Number(child.logs.find((l) => l.msg === 'child ready')?.pid), 'SIGTERM');
    } catch {
      // already gone
    }
    await child.exited;
    await live.close();
    await new Promise<void>((r) => silent.close(() => r()));
  });

  test('every flooded query is answered (SERVFAIL), the server lives, local names answer, recursion recovers', async () => {
    const ready = child.logs.find((l) => l.msg === 'child ready')!;
    const pid = Number(ready.pid);
    const client = dgram.createSocket('udp4');
    await new Promise<void>((r) => client.bind(0, '127.0.0.61', () => r()));
    const rcodes = new Map<number, number>();
    client.on('message', (m) => rcodes.set(m.readUInt16BE(0), m[3]! & 0xf));
    try {
      for (let i = 0; i < FLOOD; i++) client.send(buildQuery(i, encodeQuestion(`n${i}.example.test`, 1), 1232), port, '127.0.0.1');
      // During the flood: a local name is answered at once.
      const local = await dig('local.rancher.internal', { port, from: '127.0.0.61' });
      assert.deepEqual(ips(local), ['10.0.0.7']);
      await eventually(() => rcodes.size === FLOOD, 5000, `replies to all ${FLOOD} queries (got ${rcodes.size})`);
      assert.ok([...rcodes.values()].every((rc) => rc === 2), `all SERVFAIL: ${[...rcodes.values()].join(',')}`);
    } finally {
      await new Promise<void>((r) => client.close(() => r()));
    }
    assert.ok(child.logs.some((l) => typeof l.err === 'string' && /EMFILE/.test(l.err)), 'EMFILE logged');
    assert.ok(child.logs.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('cannot open an upstream socket')).length <= 2, 'rate-limited');
    assert.equal(child.proc.exitCode, null, 'alive');
    // Sockets released: recursion works again.
    const www = await dig('www.example.test', { port, from: '127.0.0.62' });
    assert.deepEqual(ips(www), ['192.0.2.80']);
    assert.ok(rssKb(pid) < 300_000, `RSS ${rssKb(pid)} kB`);
  });
});
