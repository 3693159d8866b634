// The agent's persisted state: a change costs O(change) bytes (appended to the log, the snapshot is not
// rewritten), the log is compacted into a snapshot once it outgrows it, loading replays snapshot + log and
// ignores a torn last line, and the state.json of agents before the log is read as the snapshot.
// Real files; bound ≤ 5 s.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { StateStore, PersistError } from '../../src/agent/sync/state-file.js';
import { applyChanges, emptyState, snapshotOf, type Change, type EnvState } from '../../src/model/state.js';
import { cleanup, tempDir } from '../helpers/server.js';

const env = { id: '1a1', uuid: 'u', name: 'Default', description: '', state: 'active', network: { subnet: '10.42.0.0/16', dnsScope: 'linked' as const, hostDnsView: false, overlay: 'ipsec' as const, ipsecAuth: 'psk' as const, vxlanVni: 42 }, created: '' };

function stack(i: number): Change {
  return {
    op: 'upsert',
    kind: 'stack',
    id: `1st${i}`,
    data: { id: `1st${i}`, uuid: `s${i}`, environmentId: '1a1', name: `stack-${i}`, description: '', state: 'active', dockerCompose: '', rancherCompose: '', answers: {}, system: false, created: '' },
  };
}

function bigState(n: number): EnvState {
  const s = emptyState(env);
  applyChanges(s, 1, Array.from({ length: n }, (_, i) => stack(i)));
  return s;
}

test('a change appends O(change) bytes; the snapshot is not rewritten until the log outgrows it', async () => {
  const dir = tempDir('drover-store-');
  try {
    const path = join(dir, 'state.json');
    const store = new StateStore({ path, minCompactBytes: 1024 });
    const s = bigState(2000);
    await store.persist(s, { replaced: true });
    const snapBytes = statSync(path).size;
    const snapMtime = statSync(path).mtimeMs;
    assert.ok(snapBytes > 300_000, `snapshot of 2000 stacks: ${snapBytes} bytes`);
    // One change: a line of a few hundred bytes.
    const one = [stack(5000)];
    applyChanges(s, 2, one);
    await store.persist(s, { replaced: false, changes: one });
    const logBytes = statSync(store.logPath).size;
    assert.ok(logBytes < 600, `one change costs ${logBytes} bytes, not the ${snapBytes} of the whole state`);
    assert.equal(statSync(path).mtimeMs, snapMtime, 'snapshot untouched');
    for (let r = 3; r < 20; r++) {
      const c = [stack(5000 + r)];
      applyChanges(s, r, c);
      await store.persist(s, { replaced: false, changes: c });
    }
    assert.equal(statSync(path).size, snapBytes, 'still the first snapshot');
    const loaded = await new StateStore({ path }).load();
    assert.equal(loaded?.state.revision, 19);
    assert.equal(loaded?.replayed, 18);
    assert.equal(loaded?.state.stacks.size, 2018);
    assert.deepEqual(snapshotOf(loaded.state), snapshotOf(s));
  } finally {
    cleanup(dir);
  }
});

test('compaction: once the log is larger than the snapshot it becomes a new snapshot', async () => {
  const dir = tempDir('drover-store-');
  try {
    const path = join(dir, 'state.json');
    const store = new StateStore({ path, minCompactBytes: 0 });
    const s = bigState(1);
    await store.persist(s, { replaced: true });
    let compacted = false;
    for (let r = 2; r < 30 && !compacted; r++) {
      const c = [stack(r)];
      applyChanges(s, r, c);
      await store.persist(s, { replaced: false, changes: c });
      compacted = store.logSize === 0;
    }
    assert.ok(compacted, 'the log was folded into a snapshot');
    const loaded = await new StateStore({ path }).load();
    assert.deepEqual(snapshotOf(loaded?.state ?? emptyState(env)), snapshotOf(s));
    assert.equal(loaded?.state.revision, s.revision);
  } finally {
    cleanup(dir);
  }
});

test('loading ignores a torn last line, then compacts before appending again', async () => {
  const dir = tempDir('drover-store-');
  try {
    const path = join(dir, 'state.json');
    const store = new StateStore({ path });
    const s = bigState(3);
    await store.persist(s, { replaced: true });
    const c = [stack(10)];
    applyChanges(s, 2, c);
    await store.persist(s, { replaced: false, changes: c });
    // A crash in the middle of the next append.
    const torn = JSON.stringify({ revision: 3, changes: [stack(11)] });
    appendFileSync(store.logPath, torn.slice(0, torn.length / 2));
    const again = new StateStore({ path });
    const loaded = await again.load();
    assert.equal(loaded?.torn, true);
    assert.equal(loaded?.state.revision, 2, 'the consistent state before the torn line');
    assert.equal(loaded?.state.stacks.has('1st11'), false);
    assert.equal(loaded?.state.stacks.has('1st10'), true);
    // The next persist writes a snapshot (no append behind a torn line).
    const st = loaded.state;
    const c3 = [stack(12)];
    applyChanges(st, 3, c3);
    await again.persist(st, { replaced: false, changes: c3 });
    const reread = await new StateStore({ path }).load();
    assert.equal(reread?.torn, false);
    assert.equal(reread?.state.revision, 3);
    assert.equal(reread?.state.stacks.has('1st12'), true);
  } finally {
    cleanup(dir);
  }
});

test('the state.json of agents before the log is read as the snapshot', async () => {
  const dir = tempDir('drover-store-');
  try {
    const path = join(dir, 'state.json');
    const s = bigState(4);
    s.revision = 41;
    // Exactly what the previous agent wrote (saveState): {format: 1, revision, snapshot}, no log beside it.
    writeFileSync(path, JSON.stringify({ format: 1, revision: s.revision, snapshot: snapshotOf(s) }));
    const store = new StateStore({ path });
    const loaded = await store.load();
    assert.equal(loaded?.state.revision, 41);
    assert.equal(loaded?.state.stacks.size, 4);
    const c = [stack(99)];
    applyChanges(loaded.state, 42, c);
    await store.persist(loaded.state, { replaced: false, changes: c });
    assert.equal((await new StateStore({ path }).load())?.state.revision, 42);
    assert.equal(JSON.parse(readFileSync(path, 'utf8')).format, 1);
  } finally {
    cleanup(dir);
  }
});

test('a write that fails is a PersistError naming the path', async () => {
  const dir = tempDir('drover-store-');
  try {
    const path = join(dir, 'state.json');
    const store = new StateStore({ path });
    const s = bigState(1);
    await store.persist(s, { replaced: true });
    mkdirSync(join(store.logPath, 'x'), { recursive: true });
    const c = [stack(2)];
    applyChanges(s, 2, c);
    await assert.rejects(store.persist(s, { replaced: false, changes: c }), (err: unknown) => err instanceof PersistError && err.message.includes(store.logPath));
  } finally {
    cleanup(dir);
  }
});
