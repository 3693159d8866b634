// The controller manager: deltas merged while a reconcile runs or after it failed, retries with backoff
// by themselves, status transitions (failed → ok → degraded → ok), resync through verify(), and the
// metrics on the registry. Real files for the artefact; bound: each test ≤ 10 s.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { ControllerManager } from '../../src/agent/controller/manager.js';
import type { Controller } from '../../src/agent/controller/controller.js';
import { capabilityController } from '../../src/agent/capabilities/adapter.js';
import { FileApplier } from '../../src/agent/capabilities/file-applier.js';
import { emptyState, fullDelta, type EnvState, type StateDelta } from '../../src/model/state.js';
import { silentLogger } from '../../src/common/log.js';
import { eventually } from '../helpers/wait.js';
import { cleanup, tempDir } from '../helpers/server.js';

const host = { hostId: 'h', host: undefined };
const env = { id: '1a1', uuid: 'u', name: 'Default', description: '', state: 'active', network: { subnet: '10.42.0.0/16', dnsScope: 'linked' as const, hostDnsView: false, overlay: 'ipsec' as const, ipsecAuth: 'psk' as const, vxlanVni: 42 }, created: '' };

function st(revision: number): EnvState {
  const s = emptyState(env);
  s.revision = revision;
  return s;
}
const touch = (revision: number, id: string): StateDelta => ({ revision, full: false, touched: [{ kind: 'container', id, op: 'upsert' }], environmentChanged: false });

async function metric(reg: Registry, name: string, labels: Record<string, string>): Promise<number> {
  const m = (await reg.getMetricsAsJSON()).find((x) => x.name === name);
  const v = m?.values.find((x) => Object.entries(labels).every(([k, val]) => x.labels[k] === val));
  return v?.value ?? 0;
}

test('deltas arriving during a reconcile or after a failure are merged into the next one', { timeout: 10_000 }, async () => {
  const got: StateDelta[] = [];
  let release: (() => void) | undefined;
  let failNext = false;
  const ctl: Controller = {
    name: 'rec',
    async reconcile(_s, delta) {
      got.push(delta);
      if (got.length === 1) await new Promise<void>((r) => (release = r));
      if (failNext) {
        failNext = false;
        throw new Error('transient');
      }
    },
  };
  const m = new ControllerManager([ctl], { log: silentLogger(), resyncMs: 0, backoff: { initialMs: 2000, maxMs: 2000 } });
  const first = m.update(st(1), touch(1, 'a'), host);
  await eventually(() => release, 2000, 'first reconcile running');
  const second = m.update(st(2), touch(2, 'b'), host);
  const third = m.update(st(3), touch(3, 'c'), host);
  release?.();
  await Promise.all([first, second, third]);
  assert.deepEqual(got.map((d) => [d.revision, d.touched.map((t) => t.id)]), [[1, ['a']], [3, ['b', 'c']]]);

  // A failed reconcile's delta is not lost: the next state's reconcile gets both (at once, not after the 2 s backoff).
  failNext = true;
  const s4 = await m.update(st(4), touch(4, 'd'), host);
  assert.equal(s4.rec?.state, 'degraded');
  const t0 = Date.now();
  const s5 = await m.update(st(5), touch(5, 'e'), host);
  assert.ok(Date.now() - t0 < 1000, 'a new state is tried at once');
  assert.equal(s5.rec?.state, 'ok');
  assert.deepEqual(got.at(-1)?.touched.map((t) => t.id), ['d', 'e']);
  assert.equal(got.at(-1)?.revision, 5);
  await m.close();
});

test('a failing apply is retried with backoff by itself and succeeds when the cause goes away; status and metrics follow', { timeout: 10_000 }, async () => {
  const dir = tempDir('drover-ctl-');
  const reg = new Registry();
  try {
    const path = join(dir, 'out.conf');
    // The cause: a directory where the file must go.
    mkdirSync(join(path, 'in-the-way'), { recursive: true });
    const cap = capabilityController({ name: 'file', render: (s: EnvState) => `revision ${s.revision}\n`, applier: new FileApplier({ path }) });
    const m = new ControllerManager([cap], { log: silentLogger(), registry: reg, resyncMs: 0, backoff: { initialMs: 40, maxMs: 160 } });
    let s = await m.update(st(1), fullDelta(1), host);
    assert.equal(s.file?.state, 'failed', 'nothing in force yet');
    assert.equal(s.file?.ok, false);
    assert.match(s.file?.error ?? '', /EISDIR|directory/i);
    assert.ok(s.file?.nextRetryAt, 'the next retry is announced');
    await eventually(() => (m.statuses().file?.consecutiveFailures ?? 0) >= 3, 5000, 'retries by themselves');
    assert.ok((await metric(reg, 'drover_agent_controller_errors_total', { controller: 'file', phase: 'reconcile' })) >= 3);
    assert.equal(await metric(reg, 'drover_agent_controller_health', { controller: 'file' }), 2);

    rmSync(path, { recursive: true });
    await eventually(() => m.statuses().file?.state === 'ok', 5000, 'ok once the directory is gone');
    assert.equal(readFileSync(path, 'utf8'), 'revision 1\n');
    s = m.statuses();
    assert.equal(s.file?.consecutiveFailures, 0);
    assert.equal(s.file?.lastSuccessRevision, 1);
    assert.ok(s.file?.lastSuccess);
    assert.equal(s.file?.nextRetryAt, undefined);
    assert.equal(await metric(reg, 'drover_agent_controller_health', { controller: 'file' }), 0);

    // Later failure with the last good in force: degraded, then ok again.
    rmSync(path);
    mkdirSync(join(path, 'again'), { recursive: true });
    s = await m.update(st(2), fullDelta(2), host);
    assert.equal(s.file?.state, 'degraded');
    assert.equal(s.file?.lastSuccessRevision, 1);
    assert.match(s.file?.message ?? '', /last good/);
    rmSync(path, { recursive: true });
    await eventually(() => m.statuses().file?.state === 'ok', 5000, 'ok again');
    assert.equal(readFileSync(path, 'utf8'), 'revision 2\n');
    const durations = (await reg.getMetricsAsJSON()).find((x) => x.name === 'drover_agent_controller_run_duration_seconds');
    const okCount = durations?.values.find((v) => v.labels.controller === 'file' && v.labels.outcome === 'ok' && (v as { metricName?: string }).metricName?.endsWith('_count'));
    assert.ok((okCount?.value ?? 0) >= 2, 'reconcile durations observed');
    await m.close();
  } finally {
    cleanup(dir);
  }
});

test('a failing start is retried, and no reconcile runs before it succeeded', { timeout: 10_000 }, async () => {
  let starts = 0;
  const reconciled: number[] = [];
  const ctl: Controller = {
    name: 'sock',
    start() {
      starts++;
      return starts < 3 ? Promise.reject(new Error('EADDRINUSE')) : Promise.resolve();
    },
    reconcile(s) {
      reconciled.push(s.revision);
      return Promise.resolve();
    },
  };
  const m = new ControllerManager([ctl], { log: silentLogger(), resyncMs: 0, backoff: { initialMs: 30, maxMs: 60 } });
  m.start();
  const s = await m.update(st(7), fullDelta(7), host);
  assert.equal(s.sock?.state, 'failed');
  assert.match(s.sock?.message ?? '', /not started: start failed: EADDRINUSE/);
  await eventually(() => m.statuses().sock?.state === 'ok', 5000, 'started and reconciled');
  assert.equal(starts, 3);
  assert.deepEqual(reconciled, [7]);
  await m.close();
});

test('resync: verify() finds drift and repairs it; a file applier restores a deleted or changed file', { timeout: 10_000 }, async () => {
  const dir = tempDir('drover-ctl-');
  const reg = new Registry();
  try {
    const path = join(dir, 'out.conf');
    let swaps = 0;
    const cap = capabilityController({
      name: 'file',
      render: () => 'good\n',
      applier: new FileApplier({ path, afterSwap: () => Promise.resolve(void swaps++) }),
    });
    const m = new ControllerManager([cap], { log: silentLogger(), registry: reg, resyncMs: 0 });
    await m.update(st(1), fullDelta(1), host);
    await m.resync();
    assert.equal(await metric(reg, 'drover_agent_controller_drift_repairs_total', { controller: 'file' }), 0, 'nothing drifted');
    rmSync(path);
    await m.resync();
    assert.equal(readFileSync(path, 'utf8'), 'good\n');
    writeFileSync(path, 'tampered\n');
    await m.resync();
    assert.equal(readFileSync(path, 'utf8'), 'good\n');
    assert.equal(await metric(reg, 'drover_agent_controller_drift_repairs_total', { controller: 'file' }), 2);
    assert.equal(swaps, 3, 'the reload hook runs after each restore');
    await m.close();
  } finally {
    cleanup(dir);
  }
});

test('preview sees every state as it arrives, also while a reconcile runs; a throwing preview changes nothing', { timeout: 10_000 }, async () => {
  const previews: number[] = [];
  const reconciled: number[] = [];
  let release: (() => void) | undefined;
  const ctl: Controller = {
    name: 'pre',
    async reconcile(s) {
      reconciled.push(s.revision);
      if (s.revision === 1) await new Promise<void>((r) => (release = r));
    },
    preview(s) {
      previews.push(s.revision);
      if (s.revision === 3) throw new Error('preview bug');
    },
  };
  const m = new ControllerManager([ctl], { log: silentLogger(), resyncMs: 0, backoff: { initialMs: 2000, maxMs: 2000 } });
  const first = m.update(st(1), touch(1, 'a'), host);
  await eventually(() => release, 2000, 'first reconcile running');
  const second = m.update(st(2), touch(2, 'b'), host);
  const third = m.update(st(3), touch(3, 'c'), host);
  assert.deepEqual(reconciled, [1], 'revision 1 still reconciling');
  assert.ok(previews.includes(2) && previews.includes(3), `revisions 2 and 3 previewed before it ended: ${JSON.stringify(previews)}`);
  release?.();
  const s = await Promise.all([first, second, third]);
  assert.deepEqual(reconciled, [1, 3]);
  assert.equal(s[2].pre?.state, 'ok');
  await m.close();
});
