// The balancer applier against the real HAProxy (2.6, master-worker): routing by host and path with
// round-robin, endpoint churn through the runtime API without a reload, a refused custom config that
// leaves the running one serving, zero failed requests across reloads (and, for reference, the same
// load against a plain `haproxy -sf` restart, printed, not asserted), and a killed HAProxy restarted
// with the last good config. Everything listens on 127.0.0.1 high ports; backends are node http servers.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { silentLogger } from '../../src/common/log.js';
import { renderHaproxy, type BalancerInput, type BalancerRule } from '../../src/agent/capabilities/balancer/render.js';
import { createHaproxyApplier, HaproxyConfigError, parseShowProc, type HaproxyApplier } from '../../src/agent/capabilities/balancer/apply.js';
import { freePort } from '../helpers/ports.js';

const HAPROXY = '/usr/sbin/haproxy';
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

interface Backend {
  name: string;
  port: number;
  server: Server;
}

async function backend(name: string): Promise<Backend> {
  const server = createServer((_req, res) => {
    res.setHeader('connection', 'close');
    res.end(name);
  });
  server.keepAliveTimeout = 1;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { name, port: (server.address() as AddressInfo).port, server };
}

/** One request on a new connection; resolves with the body, rejects on any error or non-200. */
function get(port: number, host: string, path = '/', timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false, headers: { host, connection: 'close' }, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`HTTP ${res.statusCode}: ${body.slice(0, 80)}`))));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

/** A client opening a new connection per request at a steady rate until stopped. */
function load(port: number, host: string, perTick = 5, tickMs = 10) {
  let ok = 0;
  const failures: string[] = [];
  const inflight = new Set<Promise<void>>();
  const started = Date.now();
  const timer = setInterval(() => {
    for (let i = 0; i < perTick; i++) {
      const p = get(port, host).then(
        () => void ok++,
        (err: Error) => void failures.push(err.message),
      );
      inflight.add(p);
      void p.finally(() => inflight.delete(p));
    }
  }, tickMs);
  return {
    async stop() {
      clearInterval(timer);
      await Promise.all([...inflight]);
      const secs = (Date.now() - started) / 1000;
      return { ok, failures, rate: Math.round((ok + failures.length) / secs) };
    },
  };
}

const skip = !existsSync(HAPROXY) ? `${HAPROXY} is not installed` : false;

describe('balancer applier with a real HAProxy', { skip }, () => {
  let dir = '';
  let applier: HaproxyApplier;
  let port = 0;
  let healthPort = 0;
  const b: Record<string, Backend> = {};

  const target = (n: string) => ({ name: n, ip: '127.0.0.1', port: b[n]?.port ?? 0, local: true });
  const rules = (aTargets: string[], extra: BalancerRule[] = []): BalancerRule[] => [
    { sourcePort: port, protocol: 'http', hostname: 'a.test', path: '/one', targets: aTargets.map(target) },
    { sourcePort: port, protocol: 'http', hostname: 'b.test', targets: [target('b1')] },
    { sourcePort: port, protocol: 'http', targets: [target('c1')] },
    ...extra,
  ];
  const input = (r: BalancerRule[], over: Partial<BalancerInput> = {}): BalancerInput => ({
    name: 'web',
    rules: r,
    statsSocket: applier.statsSocket,
    bindAddresses: ['127.0.0.1'],
    healthPort,
    previousSlots: applier.slots(),
    ...over,
  });
  const workers = async () => parseShowProc(await applier.command('show proc', { master: true }));

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dt-balancer-'));
    for (const n of ['a1', 'a2', 'a3', 'b1', 'c1']) b[n] = await backend(n);
    port = await freePort();
    healthPort = await freePort();
    applier = createHaproxyApplier({ log: silentLogger(), dir, haproxyBin: HAPROXY, restartBackoff: { initialMs: 200, maxMs: 2000 } });
  });

  after(async () => {
    await applier?.close();
    for (const x of Object.values(b)) x.server.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('routes by host and path, round-robin over the rule’s targets', async () => {
    await applier.apply(renderHaproxy(input(rules(['a1', 'a2']))));
    assert.equal(applier.status().state, 'ok');
    const seq = [];
    for (let i = 0; i < 4; i++) seq.push(await get(port, 'a.test', '/one/x'));
    assert.deepEqual(new Set(seq.slice(0, 2)), new Set(['a1', 'a2']), 'the first 2 requests hit 2 distinct targets');
    assert.deepEqual(seq.slice(2), seq.slice(0, 2), 'then the same order again');
    assert.equal(await get(port, 'b.test', '/one'), 'b1');
    assert.equal(await get(port, 'a.test:' + port, '/two'), 'c1', 'a.test without /one goes to the default');
    assert.equal(await get(port, 'other.test'), 'c1');
  });

  it('endpoint change: through the runtime API, no reload, traffic goes to the new endpoint', async () => {
    const before = await workers();
    const st0 = applier.status();
    await applier.apply(renderHaproxy(input(rules(['a3']))));
    const afterInfo = await workers();
    assert.deepEqual(afterInfo?.workers, before?.workers, 'same worker');
    assert.equal(afterInfo?.reloads, before?.reloads, 'master reload counter unchanged');
    assert.equal(applier.status().reloads, st0.reloads);
    assert.equal(applier.status().runtimeUpdates, st0.runtimeUpdates + 1);
    for (let i = 0; i < 4; i++) assert.equal(await get(port, 'a.test', '/one'), 'a3');
    // and back to two
    await applier.apply(renderHaproxy(input(rules(['a1', 'a3']))));
    const seen = new Set<string>();
    for (let i = 0; i < 4; i++) seen.add(await get(port, 'a.test', '/one'));
    assert.deepEqual(seen, new Set(['a1', 'a3']));
    assert.deepEqual((await workers())?.workers, before?.workers);
  });

  it('a refused custom config keeps the running one and reports HAProxy’s message', async () => {
    const before = await workers();
    await assert.rejects(
      applier.apply(renderHaproxy(input(rules(['a1', 'a3']), { customConfig: 'defaults\n    bogus-keyword 1\n' }))),
      (err: unknown) => {
        assert.ok(err instanceof HaproxyConfigError, String(err));
        assert.match(err.haproxyMessage, /unknown keyword 'bogus-keyword'/);
        assert.match(err.haproxyMessage, /line \d+: bogus-keyword 1/);
        assert.doesNotMatch(err.haproxyMessage, /NOTICE|Fatal errors/);
        return true;
      },
    );
    assert.equal(applier.status().state, 'degraded');
    assert.match(applier.status().message ?? '', /bogus-keyword/);
    assert.deepEqual((await workers())?.workers, before?.workers, 'not reloaded');
    assert.equal(await get(port, 'b.test'), 'b1', 'the previous config keeps serving');
    await applier.apply(renderHaproxy(input(rules(['a1', 'a3']))));
    assert.equal(applier.status().state, 'ok', 'the next good config clears it (no change: nothing to reload)');
  });

  it('a target that is gone leaves the running config before the new one is checked and reloaded', async () => {
    // The new render removes a3 AND changes the skeleton with a config HAProxy refuses: the reload never
    // comes, yet a3 gets no more requests (taken out through the runtime API first).
    await applier.apply(renderHaproxy(input(rules(['a1', 'a3']))));
    await assert.rejects(applier.apply(renderHaproxy(input(rules(['a1']), { customConfig: 'defaults\n    bogus-keyword 1\n' }))), HaproxyConfigError);
    const seen = new Set<string>();
    for (let i = 0; i < 6; i++) seen.add(await get(port, 'a.test', '/one'));
    assert.deepEqual(seen, new Set(['a1']), 'a3 is out although the new config was refused');
    await applier.apply(renderHaproxy(input(rules(['a1', 'a3']))));
    const back = new Set<string>();
    for (let i = 0; i < 6; i++) back.add(await get(port, 'a.test', '/one'));
    assert.deepEqual(back, new Set(['a1', 'a3']), 'and back in when it returns');
  });

  it('takeOutGone: a target removed while a reload runs is out of the old worker at once and of the new one when it comes up', async () => {
    await applier.applyAt(renderHaproxy(input(rules(['a1', 'a3']))), 10);
    // Revision 11 changes the skeleton (a reload); revision 12, arriving while it runs, drops a3.
    const extra: BalancerRule = { sourcePort: port, protocol: 'http', path: '/takeout', targets: [target('c1')] };
    const reloading = applier.applyAt(renderHaproxy(input(rules(['a1', 'a3'], [extra]))), 11);
    await applier.takeOutGone(renderHaproxy(input(rules(['a1'], [extra]))), 12);
    const early = new Set<string>();
    for (let i = 0; i < 6; i++) early.add(await get(port, 'a.test', '/one'));
    assert.deepEqual(early, new Set(['a1']), 'a3 out of the running worker before the reload finished');
    await reloading;
    const late = new Set<string>();
    for (let i = 0; i < 6; i++) late.add(await get(port, 'a.test', '/one'));
    assert.deepEqual(late, new Set(['a1']), 'the worker the reload brought up (configured from revision 11) does not serve a3 either');
    // An older revision's render changes nothing; the apply of revision 12 itself keeps a3 out.
    await applier.takeOutGone(renderHaproxy(input(rules([], [extra]))), 11);
    await applier.applyAt(renderHaproxy(input(rules(['a1'], [extra]))), 12);
    const now = new Set<string>();
    for (let i = 0; i < 6; i++) now.add(await get(port, 'a.test', '/one'));
    assert.deepEqual(now, new Set(['a1']));
    await applier.applyAt(renderHaproxy(input(rules(['a1', 'a3']))), 13);
  });

  it('zero-drop: 0 failed requests across 20 reloads (new connection per request)', async () => {
    const reloads0 = applier.status().reloads;
    const l = load(port, 'b.test');
    await sleep(300);
    for (let i = 0; i < 20; i++) {
      // A rule that changes each time: a new backend, so a reload.
      const extra: BalancerRule = { sourcePort: port, protocol: 'http', path: `/r${i}`, targets: [target('c1')] };
      await applier.apply(renderHaproxy(input(rules(['a1', 'a3'], [extra]))));
      await sleep(100);
    }
    await sleep(300);
    const r = await l.stop();
    console.log(`# master-worker with listener hand-over: ${r.ok} ok, ${r.failures.length} failed, ~${r.rate} req/s, ${applier.status().reloads - reloads0} reloads`);
    assert.equal(applier.status().reloads - reloads0, 20);
    assert.deepEqual(r.failures, [], 'no request failed');
    assert.ok(r.ok > 100, `enough requests ran (${r.ok})`);
  });

  it('reference: a plain `haproxy -sf <oldpid>` restart (printed, not asserted)', async () => {
    const refDir = await mkdtemp(join(tmpdir(), 'dt-balancer-ref-'));
    const refPort = await freePort();
    const cfg = join(refDir, 'haproxy.cfg');
    const text = renderHaproxy({ name: 'ref', rules: [{ sourcePort: refPort, protocol: 'http', targets: [target('b1')] }], statsSocket: join(refDir, 'admin.sock'), bindAddresses: ['127.0.0.1'], healthPort: await freePort() })
      .config.replace(' expose-fd listeners', '');
    await writeFile(cfg, text);
    const procs: ResultPromise[] = [];
    const spawn = (sf?: number) => {
      const p = execa(HAPROXY, ['-f', cfg, ...(sf ? ['-sf', String(sf)] : [])], { reject: false, stdin: 'ignore', stdout: 'ignore', stderr: 'ignore' });
      procs.push(p);
      return p;
    };
    try {
      let cur = spawn();
      for (let i = 0; i < 50; i++) {
        if (await get(refPort, 'x').then(() => true, () => false)) break;
        await sleep(100);
      }
      const l = load(refPort, 'x');
      await sleep(300);
      for (let i = 0; i < 20; i++) {
        cur = spawn(cur.pid);
        await sleep(250);
      }
      await sleep(300);
      const r = await l.stop();
      console.log(`# reference plain -sf restart: ${r.ok} ok, ${r.failures.length} failed, ~${r.rate} req/s, 20 restarts${r.failures.length ? ` (e.g. ${r.failures[0]})` : ''}`);
    } finally {
      for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGTERM');
      await Promise.all(procs);
      await rm(refDir, { recursive: true, force: true });
    }
  });

  it('HAProxy killed: restarted with the last good config', async () => {
    const pid = applier.status().masterPid;
    assert.ok(pid);
    const restarts = applier.status().restarts;
    process.kill(pid, 'SIGKILL');
    let up = false;
    for (let i = 0; i < 100 && !up; i++) {
      await sleep(100);
      const s = applier.status();
      up = s.restarts > restarts && s.state === 'ok' && s.masterPid !== pid;
    }
    assert.ok(up, `restarted: ${JSON.stringify(applier.status())}`);
    // The last good config: the rules of the last apply (path /r19 and the a1+a3 targets).
    for (let i = 0; i < 50; i++) {
      if (await get(port, 'b.test').then(() => true, () => false)) break;
      await sleep(100);
    }
    assert.equal(await get(port, 'b.test'), 'b1');
    const seen = new Set<string>();
    for (let i = 0; i < 4; i++) seen.add(await get(port, 'a.test', '/one'));
    assert.deepEqual(seen, new Set(['a1', 'a3']));
  });
});
