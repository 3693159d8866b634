// The health state machine (pure, explicit time = a fake clock), the request_line parser, the target
// derivation and the checker's scheduling (fake timers, fake probe): thresholds, (re)initializing
// timeouts, restarts, concurrency bound and jitter, O(change) target updates.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deadlineOf, expire, observe, restartMachine, startMachine, type HealthParams, type Machine } from '../../src/agent/capabilities/health/machine.js';
import { parseRequestLine, requestBytes, RequestLineError } from '../../src/agent/capabilities/health/request-line.js';
import { HealthChecker, type HealthTarget, type HealthTransition, type Timers } from '../../src/agent/capabilities/health/checker.js';
import { TargetSet, targetFor } from '../../src/agent/capabilities/health/targets.js';
import type { ProbeResult, ProbeTarget } from '../../src/agent/capabilities/health/probe.js';
import { emptyState, fullDelta, applyChanges, type EnvState } from '../../src/model/state.js';
import { Container, Environment, Service, type HealthCheck } from '../../src/model/resources.js';

const P: HealthParams = { healthyThreshold: 2, unhealthyThreshold: 3 };

function run(m0: Machine, results: boolean[], p: HealthParams, t0 = 0, step = 1000): { m: Machine; states: string[] } {
  let m = m0;
  const states: string[] = [];
  results.forEach((ok, i) => {
    m = observe(m, ok, t0 + (i + 1) * step, p);
    states.push(m.state);
  });
  return { m, states };
}

test('machine: healthy after healthy_threshold consecutive successes, unhealthy after unhealthy_threshold failures, back again', () => {
  const { states } = run(startMachine(0), [true, true, false, false, true, false, false, false, true, true], P);
  assert.deepEqual(states, [
    'initializing', 'healthy', // 2 successes
    'healthy', 'healthy', // 2 failures < 3
    'healthy', // a success resets the failures
    'healthy', 'healthy', 'unhealthy', // 3 consecutive failures
    'unhealthy', 'healthy', // 2 consecutive successes
  ]);
});

test('machine: counts are consecutive (an interleaved result resets the other count)', () => {
  const { states } = run(startMachine(0), [true, false, true, false, true, true], { healthyThreshold: 2, unhealthyThreshold: 2 });
  assert.deepEqual(states, ['initializing', 'initializing', 'initializing', 'initializing', 'initializing', 'healthy']);
});

test('machine: without initializing_timeout, failures while initializing count (never initializing forever)', () => {
  const { states } = run(startMachine(0), [false, false, false], P);
  assert.deepEqual(states, ['initializing', 'initializing', 'unhealthy']);
});

test('machine: with initializing_timeout it stays initializing until healthy, and is unhealthy once the timeout passed', () => {
  const p = { ...P, initializingTimeout: 10_000 };
  const m0 = startMachine(0);
  assert.equal(deadlineOf(m0, p), 10_000);
  const a = run(m0, [false, false, false, false, false, false, false, false, false], p);
  assert.ok(a.states.every((s) => s === 'initializing'), a.states.join());
  assert.equal(expire(a.m, 9_999, p).state, 'initializing');
  assert.equal(expire(a.m, 10_000, p).state, 'unhealthy');
  assert.equal(observe(a.m, false, 10_001, p).state, 'unhealthy', 'a result after the deadline sees it expired');
  // Healthy in time: the timeout no longer applies.
  const b = run(m0, [false, false, false, true, true], p);
  assert.equal(b.m.state, 'healthy');
  assert.equal(deadlineOf(b.m, p), undefined);
  assert.equal(expire(b.m, 60_000, p).state, 'healthy');
  // Unhealthy after the timeout, healthy again with healthy_threshold successes.
  const c = run(expire(a.m, 10_000, p), [true, true], p, 10_000);
  assert.deepEqual(c.states, ['unhealthy', 'healthy']);
});

test('machine: a restart is reinitializing, under reinitializing_timeout', () => {
  const p = { ...P, initializingTimeout: 1000, reinitializingTimeout: 5000 };
  const r = restartMachine(20_000);
  assert.equal(r.state, 'reinitializing');
  assert.equal(deadlineOf(r, p), 25_000);
  assert.equal(expire(r, 24_999, p).state, 'reinitializing');
  assert.equal(expire(r, 25_000, p).state, 'unhealthy');
  assert.equal(run(r, [true, true], p, 20_000).m.state, 'healthy');
  // No reinitializing_timeout: failures count as when initializing without one.
  assert.deepEqual(run(restartMachine(0), [false, false, false], P).states, ['reinitializing', 'reinitializing', 'unhealthy']);
});

test('machine: a restarted agent keeps the state the control plane has', () => {
  const m = startMachine(0, 'healthy');
  assert.equal(m.state, 'healthy');
  assert.deepEqual(run(m, [false, false, false], P).states, ['healthy', 'healthy', 'unhealthy']);
});

test('request_line: HAProxy httpchk forms, quotes, escapes, headers; bad ones named', () => {
  assert.deepEqual(parseRequestLine('GET /healthz HTTP/1.0'), { method: 'GET', uri: '/healthz', version: 'HTTP/1.0', headers: [] });
  assert.deepEqual(parseRequestLine('GET "/healthcheck" "HTTP/1.0"'), { method: 'GET', uri: '/healthcheck', version: 'HTTP/1.0', headers: [] });
  assert.deepEqual(parseRequestLine('/ping'), { method: 'OPTIONS', uri: '/ping', version: 'HTTP/1.0', headers: [] });
  assert.deepEqual(parseRequestLine('HEAD /'), { method: 'HEAD', uri: '/', version: 'HTTP/1.0', headers: [] });
  assert.deepEqual(parseRequestLine('GET / HTTP/1.1\\r\\nHost:\\ www.example.com'), {
    method: 'GET',
    uri: '/',
    version: 'HTTP/1.1',
    headers: ['Host: www.example.com'],
  });
  const bytes = requestBytes(parseRequestLine('GET /x HTTP/1.1'), '10.42.0.5', 8080).toString('latin1');
  assert.equal(bytes, 'GET /x HTTP/1.1\r\nHost: 10.42.0.5:8080\r\nConnection: close\r\n\r\n');
  for (const bad of ['', '   ', 'GET / HTTP/2', 'G(T / HTTP/1.0', 'GET "/x', 'GET / HTTP/1.0 extra', 'GET / HTTP/1.0\\r\\nnot-a-header', 'x'.repeat(5000)]) {
    assert.throws(() => parseRequestLine(bad), RequestLineError, JSON.stringify(bad.slice(0, 40)));
  }
  // Linear: a long run of escapes and quotes parses quickly.
  const t0 = performance.now();
  assert.throws(() => parseRequestLine(`GET /${'"'.repeat(2001)}`), RequestLineError);
  assert.equal(parseRequestLine(`GET /${'\\"'.repeat(1000)}`).uri, `/${'"'.repeat(1000)}`);
  parseRequestLine(`GET /${'a'.repeat(4000)}`);
  assert.ok(performance.now() - t0 < 200);
});

// ---- targets ---------------------------------------------------------------------------------------

const ENV = Environment.parse({ id: '1a1', uuid: 'env-uuid', name: 'Default', state: 'active', network: {}, created: '2026-01-01T00:00:00Z' });

function svc(id: string, hc?: Partial<HealthCheck>): Service {
  return Service.parse({
    id,
    uuid: `u-${id}`,
    environmentId: ENV.id,
    stackId: '1st1',
    name: `s${id}`,
    kind: 'service',
    state: 'active',
    scale: 1,
    launchConfig: { image: 'x' },
    ...(hc ? { healthCheck: { port: 80, ...hc } } : {}),
    created: '2026-01-01T00:00:00Z',
  });
}

function ctr(id: string, serviceId: string | null, over: Partial<Container> = {}): Container {
  return Container.parse({
    id,
    uuid: `u-${id}`,
    environmentId: ENV.id,
    hostId: '1h1',
    stackId: '1st1',
    serviceId,
    name: `c${id}`,
    serviceIndex: 1,
    deploymentUnitUuid: null,
    primaryIpAddress: `10.42.0.${id.length}`,
    state: 'running',
    desiredState: 'running',
    healthState: 'initializing',
    config: { image: 'x' },
    created: '2026-01-01T00:00:00Z',
    ...over,
  });
}

function stateWith(services: Service[], containers: Container[]): EnvState {
  const st = emptyState(ENV);
  for (const s of services) st.services.set(s.id, s);
  for (const c of containers) st.containers.set(c.id, c);
  st.revision = 1;
  return st;
}

test('targets: only this host\'s listed, primary, addressed containers of checked services', () => {
  const checked = svc('1s1', { port: 8080, requestLine: 'GET / HTTP/1.0', interval: 500, initializingTimeout: 9000 });
  const plain = svc('1s2');
  const t = targetFor(ctr('1i1', '1s1'), checked, '1h1');
  assert.ok(t);
  assert.equal(t.port, 8080);
  assert.equal(t.interval, 500);
  assert.equal(t.params.initializingTimeout, 9000);
  assert.equal(t.running, true);
  assert.equal(t.initial, 'initializing');
  assert.equal(targetFor(ctr('1i1', '1s1'), checked, '1h2'), undefined, 'another host');
  assert.equal(targetFor(ctr('1i1', '1s2'), plain, '1h1'), undefined, 'no health check');
  assert.equal(targetFor(ctr('1i1', '1s1', { launchConfigName: 'side' }), checked, '1h1'), undefined, 'sidekick');
  assert.equal(targetFor(ctr('1i1', '1s1', { primaryIpAddress: null }), checked, '1h1'), undefined, 'no address');
  assert.equal(targetFor(ctr('1i1', '1s1', { desiredState: 'removed' }), checked, '1h1'), undefined, 'being removed');
  assert.equal(targetFor(ctr('1i1', '1s1', { generation: 'previous' }), checked, '1h1'), undefined, 'rollback copy');
  assert.equal(targetFor(ctr('1i1', '1s1', { state: 'stopped' }), checked, '1h1')?.running, false, 'stopped: kept, not checked');
  assert.equal(targetFor(ctr('1i1', '1s1', { state: 'stopped' }), checked, '1h1', { state: 'running', startCount: 2, externalId: 'd1' })?.running, true, 'the runtime knows better');
});

test('targets: updates touch only what the delta names (a service change re-derives its containers on this host)', () => {
  const s1 = svc('1s1', { port: 80 });
  const s2 = svc('1s2');
  const many = Array.from({ length: 200 }, (_, i) => ctr(`1i${i + 10}`, i % 2 ? '1s1' : '1s2'));
  const other = ctr('1i9', '1s1', { hostId: '1h2' });
  const st = stateWith([s1, s2], [...many, other]);
  const set = new TargetSet();
  const first = set.update(st, fullDelta(1), '1h1');
  assert.equal(first.upserts.length, 100);
  assert.equal(first.removes.length, 0);
  // Nothing relevant changed: nothing to do.
  const none = applyChanges(st, 2, [{ op: 'upsert', kind: 'container', id: other.id, data: { ...other, name: 'renamed' } }]);
  assert.deepEqual(set.update(st, none, '1h1'), { upserts: [], removes: [] });
  // s2 gains a check: its 100 containers become targets.
  const d2 = applyChanges(st, 3, [{ op: 'upsert', kind: 'service', id: '1s2', data: { ...s2, healthCheck: { port: 81 } } }]);
  const ch2 = set.update(st, d2, '1h1');
  assert.equal(ch2.upserts.length, 100);
  assert.ok(ch2.upserts.every((t) => t.port === 81));
  assert.equal(set.size, 200);
  // One container removed, one stopped by the runtime.
  const d3 = applyChanges(st, 4, [{ op: 'remove', kind: 'container', id: '1i10' }]);
  assert.deepEqual(set.update(st, d3, '1h1'), { upserts: [], removes: ['1i10'] });
  const ob = set.observe(st, '1i11', { state: 'stopped', startCount: 1, externalId: 'd' });
  assert.equal(ob.upserts.length, 1);
  assert.equal(ob.upserts[0]?.running, false);
  // s1 loses its check.
  const d4 = applyChanges(st, 5, [{ op: 'upsert', kind: 'service', id: '1s1', data: { ...s1, healthCheck: undefined } }]);
  assert.equal(set.update(st, d4, '1h1').removes.length, 100);
  assert.equal(set.size, 99);
});

test('targets: the runtime\'s report that comes before the health controller has the state still counts', () => {
  // The runtime can start a container (and report it running) from a state the health controller has not
  // been handed yet; the document itself says running only once the container serves (healthy).
  const s1 = svc('1s1', { port: 80 });
  const st = stateWith([s1], []);
  const set = new TargetSet();
  assert.deepEqual(set.observe(undefined, '1i1', { state: 'running', startCount: 1, externalId: 'd1' }), { upserts: [], removes: [] });
  set.update(st, fullDelta(1), '1h1');
  assert.deepEqual(set.observe(st, '1i2', { state: 'running', startCount: 1, externalId: 'd2' }), { upserts: [], removes: [] }, 'not in the state yet');
  const d = applyChanges(st, 2, [
    { op: 'upsert', kind: 'container', id: '1i1', data: ctr('1i1', '1s1', { state: 'starting' }) },
    { op: 'upsert', kind: 'container', id: '1i2', data: ctr('1i2', '1s1', { state: 'starting' }) },
  ]);
  const ch = set.update(st, d, '1h1');
  assert.deepEqual(ch.upserts.map((t) => [t.id, t.running, t.incarnation]), [['1i1', true, 'd1'], ['1i2', true, 'd2']]);
  // Removed from the state: the observation goes with it.
  set.update(st, applyChanges(st, 3, [{ op: 'remove', kind: 'container', id: '1i1' }]), '1h1');
  set.update(st, applyChanges(st, 4, [{ op: 'upsert', kind: 'container', id: '1i1', data: ctr('1i1', '1s1', { state: 'starting' }) }]), '1h1');
  assert.equal(set.get('1i1')?.running, false);
});

// ---- checker scheduling (fake timers, fake probe) ----------------------------------------------

class FakeTimers implements Timers {
  t = 0;
  private seq = 0;
  private readonly due = new Map<number, { at: number; fn: () => void }>();
  now = () => this.t;
  setTimeout = (fn: () => void, ms: number) => {
    const h = ++this.seq;
    this.due.set(h, { at: this.t + ms, fn });
    return h;
  };
  clearTimeout = (h: unknown) => {
    this.due.delete(h as number);
  };
  get size(): number {
    return this.due.size;
  }
  /** Runs every timer due up to `to`, in time order, letting promise callbacks run between them. */
  async advance(to: number): Promise<void> {
    for (;;) {
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const e of this.due) if (!next || e[1].at < next[1].at || (e[1].at === next[1].at && e[0] < next[0])) next = e;
      if (!next || next[1].at > to) break;
      this.due.delete(next[0]);
      this.t = next[1].at;
      next[1].fn();
      for (let i = 0; i < 5; i++) await Promise.resolve();
    }
    this.t = to;
    for (let i = 0; i < 5; i++) await Promise.resolve();
  }
}

function target(id: string, over: Partial<HealthTarget> = {}): HealthTarget {
  return {
    id,
    ip: '127.0.0.1',
    port: 1,
    interval: 1000,
    responseTimeout: 500,
    params: { healthyThreshold: 2, unhealthyThreshold: 3 },
    running: true,
    incarnation: 'd1',
    startCount: 1,
    initial: 'initializing',
    ...over,
  };
}

test('checker: transitions with a fake clock and probe; restart → reinitializing; timeouts fire without results', async () => {
  const timers = new FakeTimers();
  const ok = new Map<string, boolean>();
  const seen: HealthTransition[] = [];
  const checker = new HealthChecker({
    timers,
    random: () => 0.5,
    probe: (t: ProbeTarget) => Promise.resolve<ProbeResult>({ ok: ok.get(String(t.port)) ?? false, detail: 'fake' }),
    onTransition: (t) => seen.push(t),
  });
  ok.set('1', true);
  checker.upsert(target('a', { port: 1 }));
  // A never-answering target with an initializing timeout of 5 s: unhealthy at 5 s.
  checker.upsert(target('b', { port: 2, params: { healthyThreshold: 2, unhealthyThreshold: 3, initializingTimeout: 5000 } }));
  await timers.advance(2_000);
  assert.equal(checker.stateOf('a'), 'healthy', 'two successes (at ~0.5 s and ~1.5 s)');
  assert.equal(checker.stateOf('b'), 'initializing');
  await timers.advance(5_000);
  assert.equal(checker.stateOf('b'), 'unhealthy', 'initializing timeout');
  ok.set('1', false);
  await timers.advance(9_000);
  assert.equal(checker.stateOf('a'), 'unhealthy');
  ok.set('1', true);
  await timers.advance(12_000);
  assert.equal(checker.stateOf('a'), 'healthy');
  // A restart (start count grew): reinitializing, then healthy again.
  checker.upsert(target('a', { port: 1, startCount: 2 }));
  assert.equal(checker.stateOf('a'), 'reinitializing');
  await timers.advance(15_000);
  assert.equal(checker.stateOf('a'), 'healthy');
  // A new docker container behind the record starts over.
  checker.upsert(target('a', { port: 1, startCount: 2, incarnation: 'd2' }));
  assert.equal(checker.stateOf('a'), 'initializing');
  // Stopped: no more checks (no timers for it), state kept.
  checker.upsert(target('a', { port: 1, startCount: 2, incarnation: 'd2', running: false }));
  checker.remove('b');
  assert.equal(timers.size, 0, 'no timer left for a stopped and a removed target');
  const a = seen.filter((t) => t.id === 'a').map((t) => t.to);
  assert.deepEqual(a, ['healthy', 'unhealthy', 'healthy', 'reinitializing', 'healthy', 'initializing']);
  assert.deepEqual(seen.filter((t) => t.id === 'b').map((t) => t.to), ['unhealthy']);
  await checker.close();
});

test('checker: at most maxConcurrent probes in flight, first checks spread over the interval', async () => {
  const timers = new FakeTimers();
  let inFlight = 0;
  let maxSeen = 0;
  const starts: number[] = [];
  const releases: (() => void)[] = [];
  let rnd = 0;
  const checker = new HealthChecker({
    timers,
    maxConcurrent: 10,
    random: () => ((rnd = (rnd * 9301 + 49297) % 233280) / 233280),
    probe: () => {
      inFlight++;
      maxSeen = Math.max(maxSeen, inFlight);
      starts.push(timers.now());
      return new Promise<ProbeResult>((resolve) =>
        releases.push(() => {
          inFlight--;
          resolve({ ok: true, detail: 'ok' });
        }),
      );
    },
    onTransition: () => undefined,
  });
  for (let i = 0; i < 1000; i++) checker.upsert(target(`c${i}`, { initial: 'healthy', interval: 10_000 }));
  // Release probes as they come, in rounds, over two intervals.
  for (let t = 0; t <= 20_000; t += 100) {
    await timers.advance(t);
    assert.ok(checker.stats().inFlight <= 10);
    while (releases.length) releases.shift()?.();
    for (let i = 0; i < 5; i++) await Promise.resolve();
  }
  assert.equal(maxSeen, 10, 'the bound is reached and never passed');
  const firstRound = starts.slice(0, 1000);
  const buckets = new Array<number>(10).fill(0);
  for (const s of firstRound) buckets[Math.min(9, Math.floor(s / 1000))]!++;
  assert.ok(buckets.every((b) => b > 40 && b < 200), `first checks spread over the 10 s interval: ${buckets.join(',')}`);
  assert.ok(starts.length >= 1900, `about two checks per target in two intervals: ${starts.length}`);
  const closing = checker.close();
  while (releases.length) releases.shift()?.();
  await closing;
  assert.equal(timers.size, 0);
});
