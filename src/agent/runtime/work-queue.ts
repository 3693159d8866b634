// Per-key work with a global bound: each key (a container) has at most one run in flight; a key
// enqueued while it runs runs once more after it (coalesced); at most `concurrency` keys run at once.
// A run that throws is retried with exponential backoff per key (reset by a success); a run may also
// ask to be run again later (a crash-loop delay) by returning a delay in milliseconds.
import { backoffDelayMs, type BackoffPolicy } from '../sync/backoff.js';

export interface KeyedQueueOptions {
  concurrency: number;
  run: (key: string) => Promise<number | void>;
  /** Called with each failure (after the retry is scheduled). */
  onError?: (key: string, err: unknown, retryInMs: number) => void;
  /** Called after each run that did not throw. */
  onDone?: (key: string) => void;
  backoff?: BackoffPolicy;
}

export interface KeyedQueueStats {
  /** Keys running now. */
  running: number;
  /** Keys waiting for a slot. */
  queued: number;
  /** Keys with a retry or a later run scheduled. */
  scheduled: number;
  /** The most keys that ran at once since the queue was made. */
  peak: number;
  /** Runs started since the queue was made. */
  runs: number;
}

export class KeyedQueue {
  private readonly ready: string[] = [];
  private readonly inReady = new Set<string>();
  private readonly running = new Set<string>();
  /** Enqueued while running: runs again right after. */
  private readonly dirty = new Set<string>();
  private readonly timers = new Map<string, { at: number; t: NodeJS.Timeout }>();
  private readonly failures = new Map<string, number>();
  private idleWaiters: (() => void)[] = [];
  private peak = 0;
  private runs = 0;
  private closed = false;
  private readonly backoff: BackoffPolicy;

  constructor(private readonly o: KeyedQueueOptions) {
    if (!(o.concurrency >= 1)) throw new RangeError('concurrency must be at least 1');
    this.backoff = o.backoff ?? { initialMs: 1000, maxMs: 60_000 };
  }

  /** Runs `key` as soon as a slot is free (or `delayMs` from now; an earlier scheduled run wins). */
  enqueue(key: string, delayMs = 0): void {
    if (this.closed) return;
    if (delayMs > 0) {
      const at = Date.now() + delayMs;
      const prev = this.timers.get(key);
      if (prev && prev.at <= at) return;
      if (prev) clearTimeout(prev.t);
      const t = setTimeout(() => {
        this.timers.delete(key);
        this.enqueue(key);
      }, delayMs);
      t.unref();
      this.timers.set(key, { at, t });
      return;
    }
    const timer = this.timers.get(key);
    if (timer) {
      clearTimeout(timer.t);
      this.timers.delete(key);
    }
    if (this.running.has(key)) {
      this.dirty.add(key);
      return;
    }
    if (this.inReady.has(key)) return;
    this.inReady.add(key);
    this.ready.push(key);
    this.pump();
  }

  /** Like enqueue, unless a retry or later run is already scheduled (events and resyncs respect backoff). */
  poke(key: string): void {
    if (this.timers.has(key)) return;
    this.enqueue(key);
  }

  /** Drops a key's pending work and its failure count (a running run finishes). */
  forget(key: string): void {
    const timer = this.timers.get(key);
    if (timer) clearTimeout(timer.t);
    this.timers.delete(key);
    this.dirty.delete(key);
    this.failures.delete(key);
    if (this.inReady.delete(key)) this.ready.splice(this.ready.indexOf(key), 1);
  }

  /** Consecutive failures of a key (0 after a success). */
  failuresOf(key: string): number {
    return this.failures.get(key) ?? 0;
  }

  isBusy(key: string): boolean {
    return this.running.has(key) || this.inReady.has(key);
  }

  stats(): KeyedQueueStats {
    return { running: this.running.size, queued: this.ready.length, scheduled: this.timers.size, peak: this.peak, runs: this.runs };
  }

  /** Resolves when nothing runs and nothing waits for a slot (scheduled retries do not count). */
  settled(): Promise<void> {
    if (this.running.size === 0 && this.ready.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Stops scheduling; resolves once the running keys finished. */
  async close(): Promise<void> {
    this.closed = true;
    for (const { t } of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    this.ready.length = 0;
    this.inReady.clear();
    this.dirty.clear();
    await this.settled();
  }

  private pump(): void {
    while (this.running.size < this.o.concurrency && this.ready.length > 0) {
      const key = this.ready.shift() as string;
      this.inReady.delete(key);
      this.running.add(key);
      this.runs++;
      this.peak = Math.max(this.peak, this.running.size);
      void this.runOne(key);
    }
    if (this.running.size === 0 && this.ready.length === 0 && this.idleWaiters.length) {
      const ws = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of ws) w();
    }
  }

  private async runOne(key: string): Promise<void> {
    let later: number | void = undefined;
    let failed = false;
    try {
      later = await this.o.run(key);
      this.failures.delete(key);
    } catch (err) {
      failed = true;
      const n = (this.failures.get(key) ?? 0) + 1;
      this.failures.set(key, n);
      const delay = backoffDelayMs(this.backoff, n);
      this.running.delete(key);
      this.dirty.delete(key); // news during a failing run waits for the retry (poke respects it)
      this.enqueue(key, delay);
      try {
        this.o.onError?.(key, err, delay);
      } catch {
        /* a listener's failure is not the run's */
      }
    }
    if (!failed) {
      this.running.delete(key);
      if (this.dirty.delete(key)) this.enqueue(key);
      else if (typeof later === 'number' && later > 0) this.enqueue(key, later);
      try {
        this.o.onDone?.(key);
      } catch {
        /* as above */
      }
    }
    this.pump();
  }
}
