import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { LruCache } from '../../src/metadata/cache.js';
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

  it('spreads many wake-ups over the window, and wakeAll resolves everything', async () => {
    const q = new WaitQueue({ spreadMs: 20, perWakeMs: 0.01 });
    const woken: number[] = [];
    const t0 = performance.now();
    const waits = Array.from({ length: 2000 }, () => q.wait(() => true, 10_000));
    for (const w of waits) void w.promise.then(() => woken.push(performance.now() - t0));
    assert.equal(q.recheck(), 2000);
    // Scheduled, not yet resolved: still counted.
    assert.equal(q.size, 2000);
    await Promise.all(waits.map((w) => w.promise));
    assert.equal(woken.length, 2000);
    const spread = Math.max(...woken) - Math.min(...woken);
    assert.ok(spread >= 10, `wake-ups spread over ${spread.toFixed(1)} ms`);

    const more = Array.from({ length: 10 }, () => q.wait(() => false, 10_000));
    q.wakeAll();
    assert.deepEqual(await Promise.all(more.map((w) => w.promise)), Array(10).fill('closed'));
    assert.equal(q.size, 0);
  });

  it('wakes a single waiter at once', async () => {
    const q = new WaitQueue({ spreadMs: 50 });
    const w = q.wait(() => true, 10_000);
    const t0 = performance.now();
    q.recheck();
    await w.promise;
    assert.ok(performance.now() - t0 < 20);
  });
});

describe('LruCache', () => {
  const v = (size: number): { size: number } => ({ size });

  it('evicts the least recently used entry beyond the entry or byte bound', () => {
    const c = new LruCache<{ size: number }>(2, 100);
    c.set('a', v(10));
    c.set('b', v(10));
    assert.ok(c.get('a')); // a is now the most recent
    c.set('c', v(10));
    assert.equal(c.get('b'), undefined);
    assert.ok(c.get('a'));
    assert.ok(c.get('c'));
    c.set('d', v(45));
    assert.equal(c.size, 2);
    assert.equal(c.byteSize, 55);
    c.set('e', v(60)); // more than half the budget: not cached
    assert.equal(c.get('e'), undefined);
    c.clear();
    assert.equal(c.size, 0);
    assert.equal(c.byteSize, 0);
  });
});
