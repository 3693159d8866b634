// The health checks against real servers on loopback: an HTTP and a TCP server that answer, then fail,
// then recover give initializing → healthy → unhealthy → healthy with the thresholds' counts; hostile
// servers (silent, garbage, reset, 404, slow) are failed checks and nothing else; the monitor reports
// through the agent's report channel, merged with the runtime's reports. Bounded: ~10 s in all.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { HealthChecker, type HealthTarget, type HealthTransition } from '../../src/agent/capabilities/health/checker.js';
import { probe } from '../../src/agent/capabilities/health/probe.js';
import { parseRequestLine } from '../../src/agent/capabilities/health/request-line.js';
import { HealthMonitor } from '../../src/agent/capabilities/health/monitor.js';
import { createLogger } from '../../src/common/log.js';
import { Container, Environment, Service } from '../../src/model/resources.js';
import { applyChanges, emptyState, fullDelta } from '../../src/model/state.js';
import type { ContainerReport } from '../../src/model/reports.js';
import { eventually } from '../helpers/wait.js';

const log = createLogger({ level: 'silent' });

function listen(server: net.Server, port = 0): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port));
  });
}

function closeServer(server: net.Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

function target(port: number, over: Partial<HealthTarget> = {}): HealthTarget {
  return {
    id: `c${port}`,
    ip: '127.0.0.1',
    port,
    interval: 100,
    responseTimeout: 300,
    params: { healthyThreshold: 2, unhealthyThreshold: 3 },
    running: true,
    incarnation: 'd1',
    startCount: 1,
    initial: null,
    ...over,
  };
}

/** Results seen by a server, in order ('ok' | 'fail'), to count checks between transitions. */
function timeline(transitions: HealthTransition[]): string[] {
  return transitions.map((t) => `${t.from ?? 'null'}→${t.to}`);
}

test('HTTP check: answers, fails (500), recovers: initializing → healthy → unhealthy → healthy with threshold counts', { timeout: 20_000 }, async () => {
  let mode: 'ok' | 'fail' = 'ok';
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    requests.push(`${req.method} ${req.url} ${req.headers.host}`);
    res.statusCode = mode === 'ok' ? (requests.length % 2 ? 200 : 302) : 500;
    res.end(mode);
  });
  const port = await listen(server);
  const seen: HealthTransition[] = [];
  const served: string[] = [];
  const checker = new HealthChecker({ onTransition: (t) => seen.push({ ...t, detail: `${t.detail} @${served.length}` }) });
  server.on('request', () => served.push(mode));
  try {
    checker.upsert(target(port, { requestLine: 'GET "/healthz" "HTTP/1.0"' }));
    await eventually(() => checker.stateOf(`c${port}`) === 'healthy', 5000, 'healthy');
    mode = 'fail';
    const failAt = served.length;
    await eventually(() => checker.stateOf(`c${port}`) === 'unhealthy', 5000, 'unhealthy');
    const failedChecks = served.length - failAt;
    mode = 'ok';
    await eventually(() => checker.stateOf(`c${port}`) === 'healthy', 5000, 'healthy again');
    assert.deepEqual(timeline(seen), ['null→initializing', 'initializing→healthy', 'healthy→unhealthy', 'unhealthy→healthy']);
    assert.equal(seen[1]?.successes, 2, 'healthy after healthy_threshold (2) successes');
    assert.equal(seen[2]?.failures, 3, 'unhealthy after unhealthy_threshold (3) failures');
    assert.equal(seen[3]?.successes, 2);
    assert.ok(failedChecks >= 3 && failedChecks <= 4, `3 failed checks to turn unhealthy (one more may be in flight): ${failedChecks}`);
    assert.match(requests[0] ?? '', new RegExp(`^GET /healthz 127\\.0\\.0\\.1:${port}$`));
    // Interval: the first transition to unhealthy took about 3 intervals, not much more.
    const t = seen.map((x) => x.at);
    assert.ok((t[2] as number) - (t[1] as number) >= 200, 'at least 2 intervals between healthy and unhealthy');
  } finally {
    await checker.close();
    await closeServer(server);
  }
});

test('TCP check: listening, refused (server closed), listening again on the same port', { timeout: 20_000 }, async () => {
  let server = net.createServer((s) => s.end());
  const port = await listen(server);
  const seen: HealthTransition[] = [];
  const checker = new HealthChecker({ onTransition: (t) => seen.push(t) });
  try {
    checker.upsert(target(port, { params: { healthyThreshold: 1, unhealthyThreshold: 2 } }));
    await eventually(() => checker.stateOf(`c${port}`) === 'healthy', 5000, 'healthy');
    await closeServer(server);
    await eventually(() => checker.stateOf(`c${port}`) === 'unhealthy', 5000, 'unhealthy after refusals');
    assert.match(seen.at(-1)?.detail ?? '', /ECONNREFUSED/);
    server = net.createServer((s) => s.end());
    await listen(server, port);
    await eventually(() => checker.stateOf(`c${port}`) === 'healthy', 5000, 'healthy again');
    assert.deepEqual(timeline(seen), ['null→initializing', 'initializing→healthy', 'healthy→unhealthy', 'unhealthy→healthy']);
    assert.deepEqual(checker.stats().inFlight <= 1, true);
  } finally {
    await checker.close();
    await closeServer(server).catch(() => undefined);
  }
});

test('hostile servers are failed checks with a reason; the prober stays bounded by its timeout', { timeout: 20_000 }, async () => {
  const sockets = new Set<net.Socket>();
  const mk = (onConn: (s: net.Socket) => void) => {
    const s = net.createServer((c) => {
      sockets.add(c);
      c.on('error', () => undefined);
      onConn(c);
    });
    return s;
  };
  const silent = mk(() => undefined);
  const garbage = mk((c) => c.end('\u0000\u0001 not http at all\r\n'));
  const reset = mk((c) => c.resetAndDestroy());
  const notFound = mk((c) => c.end('HTTP/1.1 404 Not Found\r\n\r\n'));
  const endless = mk((c) => c.write('HTTP/1.1 200'.padEnd(4000, 'x')));
  const redirect = mk((c) => c.end('HTTP/1.0 301 Moved\r\nLocation: /x\r\n\r\n'));
  const servers = [silent, garbage, reset, notFound, endless, redirect];
  const ports = await Promise.all(servers.map((s) => listen(s)));
  const http10 = parseRequestLine('GET / HTTP/1.0');
  try {
    const [pSilent, pGarbage, pReset, pNotFound, pEndless, pRedirect] = ports as [number, number, number, number, number, number];
    const t0 = Date.now();
    const r = await Promise.all([
      probe({ ip: '127.0.0.1', port: pSilent, http: http10, timeoutMs: 300 }),
      probe({ ip: '127.0.0.1', port: pGarbage, http: http10, timeoutMs: 300 }),
      probe({ ip: '127.0.0.1', port: pReset, http: http10, timeoutMs: 300 }),
      probe({ ip: '127.0.0.1', port: pNotFound, http: http10, timeoutMs: 300 }),
      probe({ ip: '127.0.0.1', port: pEndless, http: http10, timeoutMs: 300 }),
      probe({ ip: '127.0.0.1', port: pRedirect, http: http10, timeoutMs: 300 }),
      probe({ ip: '127.0.0.1', port: pSilent, timeoutMs: 300 }),
      probe({ ip: '127.0.0.2', port: 1, timeoutMs: 300 }),
    ]);
    assert.ok(Date.now() - t0 < 1500, 'every probe ended within its timeout');
    const [rSilent, rGarbage, rReset, rNotFound, rEndless, rRedirect, rTcpSilent, rRefused] = r;
    assert.deepEqual(rSilent, { ok: false, detail: 'no response within 300 ms' });
    assert.equal(rGarbage?.ok, false);
    assert.match(rGarbage?.detail ?? '', /not an HTTP status line/);
    assert.equal(rReset?.ok, false);
    assert.equal(rNotFound?.ok, false);
    assert.match(rNotFound?.detail ?? '', /404/);
    assert.equal(rEndless?.ok, false);
    assert.match(rEndless?.detail ?? '', /no status line in the first 1024 bytes/);
    assert.equal(rRedirect?.ok, true, '3xx is healthy');
    assert.equal(rTcpSilent?.ok, true, 'TCP: accepted is healthy even if it says nothing');
    assert.deepEqual(rRefused, { ok: false, detail: 'ECONNREFUSED' });
    const ac = new AbortController();
    const cancelled = probe({ ip: '127.0.0.1', port: pSilent, http: http10, timeoutMs: 10_000 }, ac.signal);
    ac.abort();
    assert.deepEqual(await cancelled, { ok: false, detail: 'cancelled' });
  } finally {
    for (const s of sockets) s.destroy();
    await Promise.all(servers.map(closeServer));
  }
});

test('monitor: state → targets → checks → reports merged with the runtime\'s through the report channel', { timeout: 20_000 }, async () => {
  let mode: 'ok' | 'fail' = 'ok';
  const server = http.createServer((_req, res) => {
    res.statusCode = mode === 'ok' ? 200 : 503;
    res.end();
  });
  const port = await listen(server);
  const env = Environment.parse({ id: '1a1', uuid: 'e', name: 'Default', state: 'active', network: {}, created: '2026-01-01T00:00:00Z' });
  const svc = Service.parse({
    id: '1s1', uuid: 'us', environmentId: '1a1', stackId: '1st1', name: 'web', kind: 'service', state: 'active', scale: 1,
    launchConfig: { image: 'x' },
    healthCheck: { port, interval: 100, responseTimeout: 300, healthyThreshold: 2, unhealthyThreshold: 2, requestLine: 'GET / HTTP/1.0' },
    created: '2026-01-01T00:00:00Z',
  });
  const ctr = Container.parse({
    id: '1i1', uuid: 'uc', environmentId: '1a1', hostId: '1h1', stackId: '1st1', serviceId: '1s1', name: 'web-1', serviceIndex: 1,
    deploymentUnitUuid: null, primaryIpAddress: '127.0.0.1', state: 'running', desiredState: 'running', healthState: 'initializing',
    config: { image: 'x' }, created: '2026-01-01T00:00:00Z',
  });
  const st = emptyState(env);
  st.services.set(svc.id, svc);
  st.containers.set(ctr.id, ctr);
  st.revision = 1;
  // A runtime that reports the container running (start count 1), then a restart (2).
  const runtimeQueue: ContainerReport[] = [{ id: '1i1', state: 'running', startCount: 1, externalId: 'dock1', exitCode: null }];
  let runtimeCb: (() => void) | undefined;
  const monitor = new HealthMonitor({ log });
  const source = monitor.wrap({
    drainReports: () => runtimeQueue.splice(0),
    onReports: (cb) => (runtimeCb = cb),
  });
  let notified = 0;
  source.onReports(() => notified++);
  const sent: ContainerReport[] = [];
  const drain = () => sent.push(...source.drainReports());
  try {
    await monitor.reconcile(st, fullDelta(1), { hostId: '1h1', host: undefined });
    drain();
    assert.deepEqual([...sent], [{ id: '1i1', state: 'running', startCount: 1, externalId: 'dock1', exitCode: null }], 'the runtime report passes through');
    await eventually(() => monitor.stateOf('1i1') === 'healthy', 5000, 'healthy');
    assert.ok(notified > 0, 'the agent is told a report waits');
    drain();
    assert.deepEqual({ ...sent.at(-1) }, { id: '1i1', state: 'running', startCount: 1, externalId: 'dock1', exitCode: null, healthState: 'healthy' }, 'health on top of the last runtime report');
    mode = 'fail';
    await eventually(() => monitor.stateOf('1i1') === 'unhealthy', 5000, 'unhealthy');
    drain();
    assert.equal(sent.at(-1)?.healthState, 'unhealthy');
    mode = 'ok';
    await eventually(() => monitor.stateOf('1i1') === 'healthy', 5000, 'healthy again');
    drain();
    // The runtime restarts it: reinitializing in the same batch as the runtime's report.
    runtimeQueue.push({ id: '1i1', state: 'running', startCount: 2, externalId: 'dock1', exitCode: 0 });
    runtimeCb?.();
    drain();
    assert.deepEqual({ ...sent.at(-1) }, { id: '1i1', state: 'running', startCount: 2, externalId: 'dock1', exitCode: 0, healthState: 'reinitializing' });
    await eventually(() => monitor.stateOf('1i1') === 'healthy', 5000, 'healthy after the restart');
    drain();
    assert.deepEqual(sent.map((r) => r.healthState ?? '-'), ['-', 'healthy', 'unhealthy', 'healthy', 'reinitializing', 'healthy']);
    // The service loses its check: no more checks, nothing more reported.
    const d = applyChanges(st, 2, [{ op: 'upsert', kind: 'service', id: '1s1', data: { ...svc, healthCheck: undefined } }]);
    await monitor.reconcile(st, d, { hostId: '1h1', host: undefined });
    assert.equal(monitor.stats().targets, 0);
    assert.equal(monitor.stateOf('1i1'), undefined);
  } finally {
    await monitor.stop();
    await closeServer(server);
  }
});
