import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ENTRY_OVERHEAD, LruCache } from '../../src/metadata/cache.js';
import { WaitQueue } from '../../src/metadata/waiters.js';

describe('WaitQueue', () => {
  it('wakes only the waiters whose condition holds, and only on recheck', async () => {
    const q = new WaitQueue({ spreadMs: 0 });
    let value = 1;
    const a = q.wait(() => value !== 1, 10_000);
    const b = q.wait(() => value === 99, 10_000);
    assert.equal(q.size, 2);
    value = 2; // no recheck yet: nothing happens by itself
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(q.size, 2);
    assert.equal(q.recheck(), 1);
    assert.equal(await a.promise, 'changed');
    assert.equal(q.size, 1);
    b.cancel();
    assert.equal(await b.promise, 'aborted');
    assert.equal(q.size, 0);
  });

  it('times out', async () => {
    const q = new WaitQueue({ spreadMs: 0 });
    const t0 = Date.now();
    assert.equal(await q.wait(() => false, 50).promise, 'timeout');
    assert.ok(Date.now() - t0 >= 45);
    assert.equal(q.size, 0);
  });

  it('spreads many wake-ups over later turns, and wakeAll resolves everything', async () => {
    const q = new WaitQueue({ spreadMs: 200, perWakeMs: 0.1 });
    let resolved = 0;
    const waits = Array.from({ length: 2000 }, () => q.wait(() => true, 10_000));
    for (const w of waits) void w.promise.then(() => resolved++);
    assert.equal(q.recheck(), 2000);
    // Scheduled, not yet resolved: still counted.
    assert.equal(q.size, 2000);
    await new Promise((r) => setImmediate(r));
    await Promise.resolve();
    // Slot 0 ran on the first turn; the other slots (timers up to 199 ms later) not yet.
    assert.ok(resolved > 0 && resolved < 2000, `${resolved} woken on the first turn`);
    await Promise.all(waits.map((w) => w.promise));
    assert.equal(resolved, 2000);

    const more = Array.from({ length: 10 }, () => q.wait(() => false, 10_000));
    q.wakeAll();
    assert.deepEqual(await Promise.all(more.map((w) => w.promise)), Array(10).fill('closed'));
    assert.equal(q.size, 0);
  });

  it('wakes a single waiter on the next turn, without a spread timer', async () => {
    const q = new WaitQueue({ spreadMs: 50 });
    let done = false;
    const w = q.wait(() => true, 10_000);
    void w.promise.then(() => (done = true));
    q.recheck();
    await new Promise((r) => setImmediate(r));
    await Promise.resolve();
    assert.equal(done, true);
  });
});

describe('LruCache', () => {
  const v = (size: number): { size: number } => ({ size });
  // Every entry costs its value, two bytes per key character and ENTRY_OVERHEAD.
  const cost = (key: string, size: number): number => size + 2 * key.length + ENTRY_OVERHEAD;

  it('evicts the least recently used entry beyond the entry or byte bound', () => {
    const budget = 2 * cost('a', 200);
    const c = new LruCache<{ size: number }>(2, budget);
    c.set('a', v(10));
    c.set('b', v(10));
    assert.ok(c.get('a')); // a is now the most recent
    c.set('c', v(10));
    assert.equal(c.get('b'), undefined);
    assert.ok(c.get('a'));
    assert.ok(c.get('c'));
    c.set('d', v(200));
    assert.equal(c.size, 2);
    assert.equal(c.byteSize, cost('c', 10) + cost('d', 200));
    c.set('e', v(budget)); // more than half the budget: not cached
    assert.equal(c.get('e'), undefined);
    c.clear();
    assert.equal(c.size, 0);
    assert.equal(c.byteSize, 0);
  });
});
