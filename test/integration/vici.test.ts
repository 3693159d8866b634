// The VICI client and charon.ts against a real charon (root; skipped otherwise), in a fresh network
// namespace: start, the commands the applier uses (typed), charon's errors as ViciCommandError, events,
// adoption of a running charon by a second Charon (same PID, nothing restarted), the watcher restarting a
// SIGKILLed charon, and stop.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { silentLogger } from '../../src/common/log.js';
import { Charon, procInfo } from '../../src/agent/capabilities/network/ipsec/charon.js';
import { Vici, ViciClient, ViciCommandError } from '../../src/agent/capabilities/network/ipsec/vici/client.js';
import type { ViciMessage } from '../../src/agent/capabilities/network/ipsec/vici/codec.js';

const isRoot = process.getuid?.() === 0;
const skip = !isRoot ? 'needs root (network namespaces, charon)' : !existsSync('/usr/lib/ipsec/charon') ? 'charon is not installed' : false;
const NS = `dt${randomBytes(3).toString('hex')}-vici`;
const dir = mkdtempSync(join(tmpdir(), 'drover-vici-'));
const started: Charon[] = [];
const pids = new Set<number>();

const waitFor = async <T>(what: string, ms: number, fn: () => Promise<T | undefined> | T | undefined): Promise<T> => {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
};

describe('vici against a real charon', { skip, timeout: 120_000 }, () => {
  let charon: Charon;
  let restarts = 0;

  before(async () => {
    await execa('ip', ['netns', 'add', NS]);
    await execa('ip', ['-n', NS, 'link', 'set', 'lo', 'up']);
    await execa('ip', ['-n', NS, 'addr', 'add', '192.0.2.50/32', 'dev', 'lo']);
    charon = new Charon({
      log: silentLogger(),
      dir,
      netns: NS,
      pollMs: 200,
      onRestart: () => {
        restarts++;
        return Promise.resolve();
      },
    });
    started.push(charon);
  });

  after(async () => {
    for (const c of started) await c.stop().catch(() => undefined);
    for (const pid of pids) {
      if (procInfo(pid)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
    await execa('ip', ['netns', 'del', NS], { reject: false });
    rmSync(dir, { recursive: true, force: true });
  });

  it('starts charon in the namespace and answers version', async () => {
    const s = await charon.start();
    pids.add(s.pid);
    assert.equal(s.adopted, false);
    assert.match(s.reason, /kernel|libipsec|forced/);
    assert.equal(procInfo(s.pid)?.comm, 'charon');
    const v = await charon.vici.version();
    assert.equal(v.daemon, 'charon');
    assert.match(v.version, /^\d+\.\d+/);
    // the private /run: charon's pidfile is in our dir
    assert.ok(existsSync(join(dir, 'run', 'charon.pid')));
  });

  it('loads, lists and unloads a connection and a shared secret', async () => {
    await charon.vici.loadShared({ id: 'drover-psk-x', type: 'IKE', data: 'a-test-secret-0123456789', owners: ['192.0.2.50', '192.0.2.51'] });
    assert.deepEqual(await charon.vici.getShared(), ['drover-psk-x']);
    await charon.vici.loadConn({
      'drover-x': {
        version: '2',
        local_addrs: ['192.0.2.50'],
        remote_addrs: ['192.0.2.51'],
        encap: 'yes',
        proposals: ['aes128gcm16-prfsha256-modp2048', 'aes128-sha1-modp2048'],
        local: { auth: 'psk', id: '192.0.2.50' },
        remote: { auth: 'psk', id: '192.0.2.51' },
        children: { 'drover-x': { mode: 'tunnel', local_ts: ['10.42.255.1/32'], remote_ts: ['10.42.255.2/32'], esp_proposals: ['aes128gcm16-modp2048'], start_action: 'none' } },
      },
    });
    assert.deepEqual(await charon.vici.getConns(), ['drover-x']);
    const conns = await charon.vici.listConns();
    const x = conns['drover-x'];
    assert.ok(x && typeof x === 'object' && !Array.isArray(x), 'list-conns has drover-x');
    assert.deepEqual(x.remote_addrs, ['192.0.2.51']);
    assert.deepEqual(await charon.vici.listSas(), []);
    await charon.vici.unloadConn('drover-x');
    assert.deepEqual(await charon.vici.getConns(), []);
    await charon.vici.unloadShared('drover-psk-x');
    assert.deepEqual(await charon.vici.getShared(), []);
  });

  it("reports charon's refusals as ViciCommandError with its message", async () => {
    await assert.rejects(charon.vici.unloadConn('nope'), (e: unknown) => e instanceof ViciCommandError && /nope|not found/i.test(e.errmsg));
    await assert.rejects(charon.vici.client.call('no-such-command'), (e: unknown) => e instanceof ViciCommandError && /unknown command/.test(e.message));
    await assert.rejects(
      charon.vici.loadConn({ bad: { version: '2', proposals: ['no-such-algorithm'] } }),
      (e: unknown) => e instanceof ViciCommandError && e.command === 'load-conn',
    );
    // the connection is still usable after the errors
    assert.equal((await charon.vici.version()).daemon, 'charon');
  });

  it('delivers subscribed events (log) and stays sequential meanwhile', async () => {
    const got: string[] = [];
    charon.vici.client.on('event', (name: string) => got.push(name));
    await charon.vici.client.subscribe('log');
    // a command makes charon log (load-shared logs "loaded IKE shared key")
    await charon.vici.loadShared({ id: 'ev', type: 'IKE', data: 'a-test-secret-0123456789', owners: [] });
    await waitFor('a log event', 5000, () => (got.includes('log') ? true : undefined));
    await charon.vici.client.unsubscribe('log');
    await charon.vici.unloadShared('ev');
  });

  it('a second Charon on the same directory adopts the running one', async () => {
    const pid = charon.pid;
    await charon.detach();
    const again = new Charon({ log: silentLogger(), dir, netns: NS, pollMs: 200, onRestart: () => Promise.resolve(void restarts++) });
    started.push(again);
    const s = await again.start();
    assert.equal(s.adopted, true);
    assert.equal(s.pid, pid);
    assert.match(s.reason, /adopted/);
    assert.equal((await again.vici.version()).daemon, 'charon');
    charon = again;
  });

  it('restarts charon when it is SIGKILLed and calls onRestart', async () => {
    const pid = charon.pid as number;
    const before = restarts;
    process.kill(pid, 'SIGKILL');
    const t0 = Date.now();
    await waitFor('onRestart', 20_000, () => (restarts > before ? true : undefined));
    const now = charon.pid as number;
    pids.add(now);
    assert.notEqual(now, pid);
    assert.equal(procInfo(now)?.comm, 'charon');
    assert.equal((await charon.vici.version()).daemon, 'charon');
    console.log(`charon restarted ${Date.now() - t0} ms after SIGKILL`);
  });

  it('a subscription made on a fresh connection delivers each event once', async () => {
    const c = new ViciClient({ socketPath: charon.socketPath });
    try {
      const lines: string[] = [];
      c.on('event', (name: string, m: ViciMessage) => {
        if (name === 'log' && typeof m.msg === 'string') lines.push(m.msg);
      });
      // not connected yet: the connection opened here registers the subscription itself
      await c.subscribe('log');
      await new Vici(c).loadShared({ id: 'once', type: 'IKE', data: 'a-test-secret-0123456789', owners: [] });
      await waitFor('the log line', 5000, () => (lines.some((l) => l.includes("'once'")) ? true : undefined));
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(lines.filter((l) => l.includes("'once'")).length, 1, lines.join('\n'));
      await new Vici(c).unloadShared('once');
    } finally {
      c.close();
    }
  });

  it('stop ends charon and removes its socket', async () => {
    const pid = charon.pid as number;
    await charon.stop();
    const st = procInfo(pid);
    assert.ok(!st || st.state === 'Z', `charon ${pid} is gone (${st?.state})`);
    assert.ok(!existsSync(join(dir, 'run', 'charon.vici')));
  });

  it('a charon started by an agent process (own mount namespace by unshare) outlives it and is adopted', async () => {
    const d2 = join(dir, 'agent');
    const src = (m: string) => new URL(`../../src/${m}`, import.meta.url).pathname;
    // the agent runs in the host's namespace itself here: no netns option, so charon.ts uses unshare
    const r = await execa(
      'ip',
      ['netns', 'exec', NS, process.execPath, '--import', 'tsx', '--input-type=module', '-e', `
        const { Charon } = await import(${JSON.stringify(src('agent/capabilities/network/ipsec/charon.ts'))});
        const { silentLogger } = await import(${JSON.stringify(src('common/log.ts'))});
        const c = new Charon({ log: silentLogger(), dir: ${JSON.stringify(d2)} });
        const s = await c.start();
        await c.detach();
        console.log(JSON.stringify(s));`],
      { timeout: 60_000 },
    );
    const first = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { pid?: number; adopted?: boolean };
    assert.equal(first.adopted, false);
    assert.ok(first.pid);
    pids.add(first.pid);
    assert.equal(procInfo(first.pid)?.comm, 'charon', 'charon still runs after the agent process exited');
    const c = new Charon({ log: silentLogger(), dir: d2, netns: NS });
    started.push(c);
    const s = await c.start();
    assert.equal(s.adopted, true);
    assert.equal(s.pid, first.pid);
    await c.stop();
  });
});
