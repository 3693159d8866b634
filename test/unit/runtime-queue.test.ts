// The runtime reconciler's queues without a daemon: the per-container work queue (one run in flight per
// key, a global bound, coalescing, backoff per key that events respect and new desired state overrides)
// the pull queue (one pull per image shared by its waiters, a bound of its own) and the backoff rule they
// share with the controllers. Bound: ~2 s.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { KeyedQueue } from '../../src/agent/runtime/work-queue.js';
import { PullQueue } from '../../src/agent/runtime/pull-queue.js';
import { Backoff, backoffDelayMs } from '../../src/agent/sync/backoff.js';
import { eventually } from '../helpers/server.js';

/** A promise the test resolves by hand. */
function gate(): { p: Promise<void>; open: () => void } {
  let open = () => undefined as void;
  const p = new Promise<void>((r) => (open = r));
  return { p, open };
}

describe('KeyedQueue', () => {
  it('runs different keys in parallel up to the bound, and one key never twice at once', async () => {
    const gates = new Map<string, ReturnType<typeof gate>>();
    let inFlight = 0;
    let maxInFlight = 0;
    const perKey = new Map<string, number>();
    let maxPerKey = 0;
    const q = new KeyedQueue({
      concurrency: 3,
      run: async (k) => {
        inFlight++;
        perKey.set(k, (perKey.get(k) ?? 0) + 1);
        maxInFlight = Math.max(maxInFlight, inFlight);
        maxPerKey = Math.max(maxPerKey, perKey.get(k) ?? 0);
        const g = gate();
        gates.set(k, g);
        await g.p;
        perKey.set(k, (perKey.get(k) ?? 0) - 1);
        inFlight--;
      },
    });
    for (const k of ['a', 'b', 'c', 'd', 'e']) q.enqueue(k);
    q.enqueue('a'); // while a runs: coalesced into one more run after it
    q.enqueue('a');
    await eventually(() => q.stats().running === 3, 1000, 'three running');
    assert.deepEqual(q.stats().queued, 2);
    gates.get('a')?.open();
    await eventually(() => q.stats().runs === 4, 1000, 'd started');
    for (let i = 0; i < 20 && q.stats().runs < 8; i++) {
      for (const g of gates.values()) g.open();
      await new Promise((r) => setTimeout(r, 5));
    }
    for (const g of gates.values()) g.open();
    await q.settled();
    assert.equal(maxInFlight, 3, 'the bound holds and is used');
    assert.equal(maxPerKey, 1, 'never two runs of one key at once');
    assert.equal(q.stats().runs, 6, 'five keys, and a once more for the key enqueued while it ran');
    assert.equal(q.stats().peak, 3);
  });

  it('retries a failing key with backoff; poke (events) respects the backoff, enqueue (new desired state) overrides it', async () => {
    const at: number[] = [];
    let failUntil = 3;
    const errors: number[] = [];
    const q = new KeyedQueue({
      concurrency: 2,
      backoff: { initialMs: 40, maxMs: 160 },
      run: () => {
        at.push(Date.now());
        if (at.length <= failUntil) return Promise.reject(new Error('docker said no'));
        return Promise.resolve();
      },
      onError: (_k, _e, retryIn) => errors.push(retryIn),
    });
    q.enqueue('x');
    await eventually(() => at.length === 4, 2000, 'three failures then a success');
    await q.settled();
    assert.deepEqual(errors, [40, 80, 160]);
    assert.equal(q.failuresOf('x'), 0, 'reset by the success');
    for (let i = 1; i < at.length; i++) assert.ok((at[i] as number) - (at[i - 1] as number) >= (errors[i - 1] as number) - 5, `retry ${i} waited its backoff`);

    // poke during a backoff does not run it early; enqueue does.
    failUntil = 6;
    q.enqueue('x'); // fails (5th run), retry in 40 ms
    await eventually(() => at.length === 5, 1000, 'fifth run');
    q.poke('x');
    q.poke('x');
    await new Promise((r) => setTimeout(r, 15));
    assert.equal(at.length, 5, 'poke waited for the backoff');
    assert.equal(q.stats().scheduled, 1);
    q.enqueue('x');
    await eventually(() => at.length === 6, 1000, 'enqueue ran it now (it fails again)');
    await eventually(() => at.length === 7, 1000, 'and the retry after it succeeds');
    await q.settled();
    await q.close();
  });

  it('runs a key again later when its run asks for it (crash-loop delay), and close cancels it', async () => {
    let runs = 0;
    const q = new KeyedQueue({
      concurrency: 1,
      run: () => {
        runs++;
        return Promise.resolve(runs === 1 ? 30 : undefined);
      },
    });
    q.enqueue('k');
    await eventually(() => runs === 2, 1000, 'ran again after 30 ms');
    q.enqueue('k', 50);
    await q.close();
    await new Promise((r) => setTimeout(r, 80));
    assert.equal(runs, 2, 'nothing runs after close');
  });
});

describe('backoff (one rule for the queue, the passes, the controllers and the watch loop)', () => {
  it('doubles from initialMs per consecutive failure up to maxMs; Backoff draws from [cap/2, cap] and resets', () => {
    const policy = { initialMs: 100, maxMs: 400 };
    assert.deepEqual([1, 2, 3, 4, 60].map((n) => backoffDelayMs(policy, n)), [100, 200, 400, 400, 400]);
    const b = new Backoff(policy);
    const caps = [100, 200, 400, 400];
    for (const cap of caps) {
      const d = b.nextDelayMs();
      assert.ok(d >= cap / 2 && d <= cap, `${d} in [${cap / 2}, ${cap}]`);
    }
    b.reset();
    assert.ok(b.nextDelayMs() <= 100, 'back to the first delay');
  });
});

describe('PullQueue', () => {
  it('pulls each image once for all its waiters, at most `concurrency` at once, and tells every waiter the outcome', async () => {
    const pulling = new Map<string, ReturnType<typeof gate>>();
    const started: string[] = [];
    const done: { image: string; waiters: string[]; error: string | undefined }[] = [];
    const q = new PullQueue({
      concurrency: 2,
      pull: async (image) => {
        started.push(image);
        const g = gate();
        pulling.set(image, g);
        await g.p;
        if (image === 'bad:1') throw new Error('manifest unknown');
      },
      onDone: (image, waiters, error) => done.push({ image, waiters: waiters.sort(), error }),
      errorMessage: (e) => (e instanceof Error ? e.message : String(e)),
    });
    q.request('busybox:latest', 'c1');
    q.request('busybox:latest', 'c2');
    q.request('bad:1', 'c3');
    q.request('nginx:1', 'c4');
    q.request('busybox:latest', 'c5');
    assert.deepEqual(started, ['busybox:latest', 'bad:1'], 'two at once, one per image');
    assert.deepEqual(
      q.pending().map((p) => [p.image, p.state, p.waiters.length]),
      [
        ['busybox:latest', 'pulling', 3],
        ['bad:1', 'pulling', 1],
        ['nginx:1', 'queued', 1],
      ],
    );
    q.withdraw('c5'); // removed meanwhile: the pull goes on for the others
    assert.equal(q.isWaiting('c5'), false);
    pulling.get('bad:1')?.open();
    await eventually(() => started.length === 3, 1000, 'nginx started when a slot freed');
    pulling.get('busybox:latest')?.open();
    pulling.get('nginx:1')?.open();
    await eventually(() => done.length === 3, 1000, 'all done');
    assert.deepEqual(done.find((d) => d.image === 'busybox:latest'), { image: 'busybox:latest', waiters: ['c1', 'c2'], error: undefined });
    assert.deepEqual(done.find((d) => d.image === 'bad:1'), { image: 'bad:1', waiters: ['c3'], error: 'manifest unknown' });
    assert.deepEqual(q.pending(), []);
  });
});
