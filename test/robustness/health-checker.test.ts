// The health checker under load and hostile targets: 1,000 checks at once on loopback — a third answer
// HTTP 200, a third accept and never answer (each costs a full response_timeout), a third refuse — with
// at most 24 probes in flight (fewer than the silent ones need, so that checks wait in the queue). Asserts: the bound holds at every sample, every answering target becomes
// healthy and every other one unhealthy, the event loop keeps turning (longest gap), RSS stays within
// 64 MiB of the start, no socket is left open after close, and a valid check right after still works.
// Bounded: ~8 s.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { readdirSync } from 'node:fs';
import { HealthChecker, type HealthTarget } from '../../src/agent/capabilities/health/checker.js';
import { eventually } from '../helpers/wait.js';

const N = 999;
const MAX = 24;

function listen(server: net.Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port));
  });
}

const openFds = () => readdirSync('/proc/self/fd').length;

test('1,000 health checks at once against answering, silent and refusing servers', { timeout: 30_000 }, async () => {
  const good = http.createServer((_req, res) => res.end('ok'));
  good.keepAliveTimeout = 0;
  const held = new Set<net.Socket>();
  const silent = net.createServer((s) => {
    held.add(s);
    s.on('error', () => undefined);
    s.on('close', () => held.delete(s));
  });
  const goodPort = await listen(good);
  const silentPort = await listen(silent);
  const refusing = net.createServer();
  const refusedPort = await listen(refusing);
  await new Promise<void>((r) => refusing.close(() => r()));
  const fds0 = openFds();
  const rss0 = process.memoryUsage().rss;
  const checker = new HealthChecker({ maxConcurrent: MAX, onTransition: () => undefined });
  const kind = (i: number) => (i % 3 === 0 ? 'good' : i % 3 === 1 ? 'silent' : 'refused');
  const port = { good: goodPort, silent: silentPort, refused: refusedPort };
  let maxInFlight = 0;
  let maxQueued = 0;
  let maxGap = 0;
  let last = performance.now();
  const sampler = setInterval(() => {
    const now = performance.now();
    maxGap = Math.max(maxGap, now - last);
    last = now;
    maxInFlight = Math.max(maxInFlight, checker.stats().inFlight);
    maxQueued = Math.max(maxQueued, checker.stats().queued);
  }, 10);
  try {
    for (let i = 0; i < N; i++) {
      const t: HealthTarget = {
        id: `c${i}`,
        ip: '127.0.0.1',
        port: port[kind(i)],
        requestLine: 'GET /healthz HTTP/1.0',
        interval: 2000,
        responseTimeout: 200,
        params: { healthyThreshold: 2, unhealthyThreshold: 2 },
        running: true,
        incarnation: 'd',
        startCount: 1,
        initial: 'initializing',
      };
      checker.upsert(t);
    }
    await eventually(
      () => {
        for (let i = 0; i < N; i++) {
          const s = checker.stateOf(`c${i}`);
          if (s !== (kind(i) === 'good' ? 'healthy' : 'unhealthy')) return false;
        }
        return true;
      },
      20_000,
      'every target in its final state',
      100,
    );
    const st = checker.stats();
    assert.ok(maxInFlight <= MAX, `at most ${MAX} in flight (saw ${maxInFlight})`);
    assert.ok(maxInFlight >= MAX / 2, `the bound is used (saw ${maxInFlight})`);
    assert.ok(maxQueued > 0 && maxQueued <= N, `checks waited in the queue, each at most once (max ${maxQueued})`);
    assert.ok(st.checks >= 2 * N, `at least two checks each: ${st.checks}`);
    assert.ok(maxGap < 500, `the event loop keeps turning (longest gap ${maxGap.toFixed(0)} ms)`);
    const rssGrowth = (process.memoryUsage().rss - rss0) / 2 ** 20;
    assert.ok(rssGrowth < 64, `RSS growth ${rssGrowth.toFixed(1)} MiB`);
    console.log(`1k checks: ${st.checks} checks, ${st.failures} failed, max in flight ${maxInFlight}, max queued ${maxQueued}, longest loop gap ${maxGap.toFixed(0)} ms, RSS +${rssGrowth.toFixed(1)} MiB`);
  } finally {
    clearInterval(sampler);
    await checker.close();
  }
  // Nothing left open by the checker (the servers' own accepted sockets closed first).
  for (const s of held) s.destroy();
  await eventually(() => openFds() <= fds0 + 2, 5000, `sockets closed (fds ${openFds()} vs ${fds0} before)`);
  // Alive and working: a valid check right after.
  const after = new HealthChecker({ onTransition: () => undefined });
  after.upsert({ id: 'x', ip: '127.0.0.1', port: goodPort, requestLine: 'GET / HTTP/1.0', interval: 50, responseTimeout: 500, params: { healthyThreshold: 1, unhealthyThreshold: 1 }, running: true, incarnation: 'd', startCount: 1, initial: null });
  await eventually(() => after.stateOf('x') === 'healthy', 5000, 'a valid check after the load');
  await after.close();
  await new Promise<void>((r) => good.close(() => r()));
  await new Promise<void>((r) => silent.close(() => r()));
});
