// Long-polling requests waiting for a change. Event-driven: nothing runs while nothing changes (one timer
// per waiter for its deadline). When the answers change, every waiter is re-checked once; those whose
// value changed are woken spread over a short window (random slot per waiter, one timer per slot), so
// thousands of clients do not all come back at the same instant.

export type WakeReason = 'changed' | 'timeout' | 'closed' | 'aborted';

export interface WaitQueueOptions {
  /** Upper bound of the window (ms) over which one change's wake-ups are spread. 0 wakes all at once. */
  spreadMs: number;
  /** Window per woken waiter (ms): the window is `min(spreadMs, count × perWakeMs)`. */
  perWakeMs?: number;
}

interface Entry {
  changed: () => boolean;
  resolve: (reason: WakeReason) => void;
  timer: NodeJS.Timeout | undefined;
  done: boolean;
}

export interface Wait {
  readonly promise: Promise<WakeReason>;
  /** Resolves the wait with `aborted` (client went away); no-op once resolved. */
  cancel(): void;
}

export class WaitQueue {
  /** Waiting for a change. */
  private readonly waiting = new Set<Entry>();
  /** Changed, scheduled to be woken in a spread slot. */
  private readonly scheduled = new Set<Entry>();
  private readonly spreadMs: number;
  private readonly perWakeMs: number;

  constructor(opts: WaitQueueOptions) {
    this.spreadMs = Math.max(0, opts.spreadMs);
    this.perWakeMs = opts.perWakeMs ?? 0.005;
  }

  /** Unresolved waits (waiting or scheduled to wake). */
  get size(): number {
    return this.waiting.size + this.scheduled.size;
  }

  /**
   * Waits until `changed()` (evaluated on each recheck) returns true, or `timeoutMs` passes.
   * The caller checks the current value before calling this.
   */
  wait(changed: () => boolean, timeoutMs: number): Wait {
    let entry!: Entry;
    const promise = new Promise<WakeReason>((resolve) => {
      entry = { changed, resolve, timer: undefined, done: false };
    });
    entry.timer = setTimeout(() => this.finish(entry, 'timeout'), timeoutMs);
    this.waiting.add(entry);
    return { promise, cancel: () => this.finish(entry, 'aborted') };
  }

  /** Re-checks every waiter (after a change of the answers); returns how many were scheduled to wake. */
  recheck(): number {
    const woken: Entry[] = [];
    for (const e of this.waiting) {
      let changed: boolean;
      try {
        changed = e.changed();
      } catch {
        changed = true; // let the request path report the problem
      }
      if (changed) woken.push(e);
    }
    if (woken.length === 0) return 0;
    for (const e of woken) {
      this.waiting.delete(e);
      if (e.timer) clearTimeout(e.timer);
      e.timer = undefined;
      this.scheduled.add(e);
    }
    this.spread(woken);
    return woken.length;
  }

  /** Resolves every wait now (shutdown). */
  wakeAll(): void {
    for (const e of [...this.waiting, ...this.scheduled]) this.finish(e, 'closed');
  }

  private spread(woken: Entry[]): void {
    const windowMs = Math.min(this.spreadMs, woken.length * this.perWakeMs);
    const slots = Math.max(1, Math.ceil(windowMs));
    if (slots === 1) {
      setImmediate(() => {
        for (const e of woken) this.finish(e, 'changed');
      });
      return;
    }
    const buckets: Entry[][] = Array.from({ length: slots }, () => []);
    for (const e of woken) (buckets[Math.floor(Math.random() * slots)] as Entry[]).push(e);
    buckets.forEach((bucket, slot) => {
      if (bucket.length === 0) return;
      const run = (): void => {
        for (const e of bucket) this.finish(e, 'changed');
      };
      if (slot === 0) setImmediate(run);
      else setTimeout(run, slot);
    });
  }

  private finish(e: Entry, reason: WakeReason): void {
    if (e.done) return;
    e.done = true;
    if (e.timer) clearTimeout(e.timer);
    e.timer = undefined;
    this.waiting.delete(e);
    this.scheduled.delete(e);
    e.resolve(reason);
  }
}
