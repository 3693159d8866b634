// Long-polling requests waiting for a change. Event-driven: nothing runs while nothing changes (one timer
// per waiter for its deadline). Waiters are grouped by a key naming their condition (what they watch and
// the value they hold): when the answers change, each group's condition is evaluated once, whatever the
// number of waiters in it, so a recheck costs O(distinct conditions), not O(waiters). The waiters of the
// groups that changed are woken in order, a chunk per event-loop turn (`chunk`), so that the loop keeps
// serving other requests between chunks; or, with `spreadMs` > 0, in random slots over a short window.

export type WakeReason = 'changed' | 'timeout' | 'closed' | 'aborted';

export interface WaitQueueOptions {
  /**
   * Upper bound of the window (ms) over which one change's wake-ups are spread (random slot per waiter,
   * one timer per slot). 0 (the default) wakes them in order, `chunk` per event-loop turn.
   */
  spreadMs?: number;
  /** Window per woken waiter (ms): the window is `min(spreadMs, count × perWakeMs)`. */
  perWakeMs?: number;
  /** Waiters woken per event-loop turn when not spread. Default 256. */
  chunk?: number;
}

export interface ParkOptions {
  /**
   * Waiters with the same key share one condition: `changed` of the first of them is evaluated once per
   * recheck for the whole group. The key must name everything the condition depends on.
   */
  key: string;
  /** Whether the waited-for value has changed (evaluated on each recheck, not before parking). */
  changed: () => boolean;
  timeoutMs: number;
  /** Called once, with why the wait ended. */
  onWake: (reason: WakeReason) => void;
}

export interface Parked {
  /** Ends the wait with `aborted` (client went away); no-op once ended. */
  cancel(): void;
}

export interface Wait {
  readonly promise: Promise<WakeReason>;
  /** Resolves the wait with `aborted` (client went away); no-op once resolved. */
  cancel(): void;
}

const WAITING = 0;
const SCHEDULED = 1;
const DONE = 2;

interface Group {
  readonly key: string;
  readonly changed: () => boolean;
  readonly entries: Set<Entry>;
}

interface Entry {
  readonly group: Group;
  readonly onWake: (reason: WakeReason) => void;
  timer: NodeJS.Timeout | undefined;
  state: typeof WAITING | typeof SCHEDULED | typeof DONE;
}

export class WaitQueue {
  /** Waiting for a change, by condition key. */
  private readonly groups = new Map<string, Group>();
  private waitingCount = 0;
  /** Changed, scheduled to be woken. */
  private readonly scheduled = new Set<Entry>();
  /** Woken in order (when not spread): entries from `head` on are still to be run. */
  private ready: Entry[] = [];
  private head = 0;
  private draining = false;
  private readonly spreadMs: number;
  private readonly perWakeMs: number;
  private readonly chunk: number;
  private seq = 0;

  constructor(opts: WaitQueueOptions = {}) {
    this.spreadMs = Math.max(0, opts.spreadMs ?? 0);
    this.perWakeMs = opts.perWakeMs ?? 0.005;
    this.chunk = Math.max(1, Math.floor(opts.chunk ?? 256));
  }

  /** Unended waits (waiting or scheduled to wake). */
  get size(): number {
    return this.waitingCount + this.scheduled.size;
  }

  /** Distinct conditions waited on (what a recheck evaluates). */
  get conditions(): number {
    return this.groups.size;
  }

  /** Parks a waiter; `onWake` is called once, when its group's condition changed, on timeout or cancel. */
  park(opts: ParkOptions): Parked {
    let g = this.groups.get(opts.key);
    if (g === undefined) {
      g = { key: opts.key, changed: opts.changed, entries: new Set() };
      this.groups.set(opts.key, g);
    }
    const e: Entry = { group: g, onWake: opts.onWake, timer: undefined, state: WAITING };
    e.timer = setTimeout(() => this.finish(e, 'timeout'), opts.timeoutMs);
    g.entries.add(e);
    this.waitingCount++;
    return { cancel: () => this.finish(e, 'aborted') };
  }

  /**
   * Waits until `changed()` (evaluated on each recheck) returns true, or `timeoutMs` passes: a waiter of
   * its own group. The caller checks the current value before calling this.
   */
  wait(changed: () => boolean, timeoutMs: number): Wait {
    let resolve!: (r: WakeReason) => void;
    const promise = new Promise<WakeReason>((r) => (resolve = r));
    const p = this.park({ key: `\u0001${this.seq++}`, changed, timeoutMs, onWake: resolve });
    return { promise, cancel: () => p.cancel() };
  }

  /** Re-checks every condition once (after a change of the answers); returns how many waiters were scheduled. */
  recheck(): number {
    const woken: Entry[] = [];
    for (const g of this.groups.values()) {
      let changed: boolean;
      try {
        changed = g.changed();
      } catch {
        changed = true; // let the request path report the problem
      }
      if (!changed) continue;
      this.groups.delete(g.key);
      for (const e of g.entries) {
        if (e.timer) clearTimeout(e.timer);
        e.timer = undefined;
        e.state = SCHEDULED;
        this.scheduled.add(e);
        woken.push(e);
      }
      this.waitingCount -= g.entries.size;
      g.entries.clear();
    }
    if (woken.length > 0) this.schedule(woken);
    return woken.length;
  }

  /** Ends every wait now (shutdown). */
  wakeAll(): void {
    const all: Entry[] = [];
    for (const g of this.groups.values()) for (const e of g.entries) all.push(e);
    for (const e of this.scheduled) all.push(e);
    for (const e of all) this.finish(e, 'closed');
  }

  private schedule(woken: Entry[]): void {
    const windowMs = Math.min(this.spreadMs, woken.length * this.perWakeMs);
    const slots = Math.max(1, Math.ceil(windowMs));
    if (slots === 1) {
      for (const e of woken) this.ready.push(e);
      if (!this.draining) {
        this.draining = true;
        setImmediate(this.drain);
      }
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

  /** Wakes the next chunk of ready waiters; comes back on the next turn while some are left. */
  private readonly drain = (): void => {
    const end = Math.min(this.ready.length, this.head + this.chunk);
    // Advance first: a throwing onWake must not wake the same waiter twice.
    let i = this.head;
    try {
      while (i < end) this.finish(this.ready[i++] as Entry, 'changed');
    } finally {
      this.head = i;
      if (this.head < this.ready.length) setImmediate(this.drain);
      else {
        this.ready = [];
        this.head = 0;
        this.draining = false;
      }
    }
  };

  private finish(e: Entry, reason: WakeReason): void {
    if (e.state === DONE) return;
    if (e.state === WAITING) {
      const g = e.group;
      g.entries.delete(e);
      this.waitingCount--;
      if (g.entries.size === 0 && this.groups.get(g.key) === g) this.groups.delete(g.key);
    } else this.scheduled.delete(e);
    e.state = DONE;
    if (e.timer) clearTimeout(e.timer);
    e.timer = undefined;
    e.onWake(reason);
  }
}
