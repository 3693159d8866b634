// The Docker runtime's plumbing without a daemon: the event watcher's resync (since + dedupe) against a
// scripted fake daemon, the pass coalescer, the report book, Docker socket resolution and the line splitter of
// its streaming endpoints.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import type Dockerode from 'dockerode';
import { DockerEventWatcher } from '../../src/agent/runtime/events.js';
import { parseEventLine, type DockerEvent } from '../../src/agent/runtime/docker-api.js';
import { Coalescer } from '../../src/agent/runtime/coalesce.js';
import { lineSplitter } from '../../src/agent/runtime/lines.js';
import { ReportBook } from '../../src/agent/runtime/report-book.js';
import { DEFAULT_DOCKER_SOCKET, resolveDockerSocket } from '../../src/agent/runtime/socket.js';
import { silentLogger } from '../../src/common/log.js';
import { eventually } from '../helpers/server.js';

/** A daemon whose event streams the test writes; each getEvents call gets the next script step. */
class FakeEvents {
  readonly calls: { since?: number }[] = [];
  readonly streams: PassThrough[] = [];
  failNext = 0;

  getEvents(opts: { since?: number }): Promise<NodeJS.ReadableStream> {
    this.calls.push({ ...(opts.since !== undefined ? { since: opts.since } : {}) });
    if (this.failNext > 0) {
      this.failNext--;
      return Promise.reject(new Error('connect ENOENT /var/run/docker.sock'));
    }
    const s = new PassThrough();
    this.streams.push(s);
    return Promise.resolve(s);
  }
}

const line = (id: string, action: string, timeNano: bigint) =>
  // Written by hand so the 19-digit timeNano is exact in the text (as the daemon sends it).
  `{"Type":"container","Action":"${action}","Actor":{"ID":"${id}","Attributes":{"name":"${id}"}},"time":${timeNano / 1_000_000_000n},"timeNano":${timeNano}}\n`;

describe('DockerEventWatcher', () => {
  it('replays from the last event after the stream breaks, without delivering anything twice', async () => {
    const fake = new FakeEvents();
    const got: string[] = [];
    const connects: boolean[] = [];
    const w = new DockerEventWatcher({
      docker: fake as unknown as Dockerode,
      log: silentLogger(),
      onEvent: (ev: DockerEvent) => got.push(`${ev.Actor.ID}:${ev.Action}`),
      onConnected: ({ reconnect }) => connects.push(reconnect),
      backoff: { initialMs: 1, maxMs: 5 },
    });
    w.start();
    const t1 = 1_700_000_000_123_456_789n;
    const t2 = 1_700_000_000_123_456_790n; // 1 ns later: a JSON number could not tell them apart
    await eventually(() => fake.streams.length === 1, 2000, 'first stream');
    assert.equal(fake.calls[0]?.since, undefined, 'the first connection asks for new events only');
    fake.streams[0]?.write(line('a', 'start', t1));
    fake.streams[0]?.write(line('b', 'die', t2).slice(0, 20)); // a line split across chunks
    fake.streams[0]?.write(line('b', 'die', t2).slice(20));
    await eventually(() => got.length === 2, 2000, 'two events');
    fake.failNext = 2; // dockerd restarting: two refused connections
    fake.streams[0]?.end();
    await eventually(() => fake.streams.length === 2, 2000, 'reconnected stream');
    assert.equal(fake.calls.length, 4);
    assert.equal(fake.calls[3]?.since, 1_700_000_000, 'replays from the second of the last event');
    // The daemon replays what we saw, plus what we missed (one at the very same nanosecond).
    const s2 = fake.streams[1];
    s2?.write(line('a', 'start', t1));
    s2?.write(line('b', 'die', t2));
    s2?.write(line('c', 'start', t2));
    s2?.write(line('b', 'destroy', t2 + 5n));
    s2?.write('not json\n');
    await eventually(() => got.length === 4, 2000, 'missed events');
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(got, ['a:start', 'b:die', 'c:start', 'b:destroy']);
    assert.deepEqual(connects, [false, true]);
    await w.close();
    assert.equal(w.delivered, 4);
  });

  it('reads the exact nanosecond time from the raw line', () => {
    const ev = parseEventLine(line('x', 'die', 1_700_000_000_999_999_999n).trim());
    assert.equal(ev?.timeNano, 1_700_000_000_999_999_999n);
    assert.equal(parseEventLine('{"Action":1}'), undefined);
  });
});

describe('Coalescer', () => {
  it('runs one at a time and folds triggers during a run into one follow-up run', async () => {
    let runs = 0;
    let active = 0;
    let maxActive = 0;
    const c = new Coalescer(async () => {
      active++;
      maxActive = Math.max(maxActive, active);
      await new Promise((r) => setTimeout(r, 20));
      active--;
      return ++runs;
    });
    const first = c.trigger();
    const during = [c.trigger(), c.trigger(), c.trigger()];
    assert.equal(await first, 1);
    assert.deepEqual(await Promise.all(during), [2, 2, 2]);
    assert.equal(maxActive, 1);
    assert.equal(await c.trigger(), 3);
    await c.idle();
  });

  it('starts the follow-up run even when the current one fails', async () => {
    let n = 0;
    const c = new Coalescer(() => {
      n++;
      if (n === 1) return Promise.reject(new Error('boom'));
      return Promise.resolve(n);
    });
    const a = c.trigger();
    const b = c.trigger();
    await assert.rejects(a, /boom/);
    assert.equal(await b, 2);
  });
});

describe('ReportBook', () => {
  it('queues only changed reports and clears a message once', async () => {
    const book = new ReportBook();
    let notified = 0;
    book.onReports(() => notified++);
    book.update({ id: 'c1', state: 'running', externalId: 'x' });
    book.update({ id: 'c1', state: 'running', externalId: 'x' });
    await Promise.resolve();
    assert.equal(notified, 1);
    assert.deepEqual(book.drain(), [{ id: 'c1', state: 'running', externalId: 'x' }]);
    book.update({ id: 'c1', state: 'running', externalId: 'x' });
    assert.deepEqual(book.drain(), [], 'unchanged after a drain: nothing to send');
    book.update({ id: 'c1', state: 'error', message: 'image missing' });
    book.update({ id: 'c1', state: 'running', externalId: 'x' });
    assert.deepEqual(book.drain(), [{ id: 'c1', state: 'running', externalId: 'x', message: '' }], 'latest only, message cleared');
    book.update({ id: 'c1', state: 'stopped' });
    assert.deepEqual(book.drain(), [{ id: 'c1', state: 'stopped' }]);
  });
});

describe('resolveDockerSocket', () => {
  const log = silentLogger();
  it('prefers the flag, then DOCKER_HOST=unix://, then the default socket if present', () => {
    assert.equal(resolveDockerSocket('/tmp/d.sock', log, { DOCKER_HOST: 'unix:///x.sock' }), '/tmp/d.sock');
    assert.equal(resolveDockerSocket('unix:///tmp/d.sock', log, {}), '/tmp/d.sock');
    assert.equal(resolveDockerSocket(undefined, log, { DOCKER_HOST: 'unix:///run/user/docker.sock' }), '/run/user/docker.sock');
    assert.equal(resolveDockerSocket(undefined, log, {}, (p) => p === DEFAULT_DOCKER_SOCKET), DEFAULT_DOCKER_SOCKET);
    assert.equal(resolveDockerSocket(undefined, log, {}, () => false), undefined);
    assert.throws(() => resolveDockerSocket(undefined, log, { DOCKER_HOST: 'tcp://10.0.0.1:2375' }), /unix:\/\/PATH/);
  });
});

describe('lineSplitter (Docker streaming endpoints)', () => {
  it('gives whole trimmed lines, however the chunks split lines and UTF-8 characters', () => {
    const lines: string[] = [];
    const onData = lineSplitter((l) => lines.push(l));
    const bytes = Buffer.from('{"status":"Pulling … layer"}\n\n  {"id":"é"}\r\n{"tail"', 'utf8');
    // One byte at a time: every multi-byte character is split.
    for (let i = 0; i < bytes.length; i++) onData(bytes.subarray(i, i + 1));
    assert.deepEqual(lines, ['{"status":"Pulling … layer"}', '{"id":"é"}']);
    onData('}\n');
    assert.deepEqual(lines.at(-1), '{"tail"}');
  });
});
