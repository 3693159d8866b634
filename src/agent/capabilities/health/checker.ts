// Runs the health checks of a set of targets: one timer per target, at most `maxConcurrent` probes at a
// time (the others wait in a FIFO), the first check of each at a random point of its interval and every
// later one `interval` after the previous one started (±5 % so that they do not fall in step again).
// Targets come and go one at a time (`upsert`/`remove`, O(1) each); a changed target keeps its counts.
// Each state change of a target is handed to `onTransition`.
import type { Logger } from '../../../common/log.js';
import { deadlineOf, expire, observe, restartMachine, startMachine, type HealthParams, type HealthState, type Machine } from './machine.js';
import { probe as tcpOrHttpProbe, type Probe, type ProbeResult } from './probe.js';
import { parseRequestLine, type HttpCheckRequest } from './request-line.js';

/** One container to check, as derived from the state (see targets.ts). */
export interface HealthTarget {
  /** The container record's id. */
  id: string;
  ip: string;
  port: number;
  requestLine?: string | undefined;
  interval: number;
  responseTimeout: number;
  params: HealthParams;
  /** Whether the container runs now (a stopped one is not checked; its state is kept). */
  running: boolean;
  /** The docker container behind the record ('' if not known): a new one starts over as `initializing`. */
  incarnation: string;
  /** Starts of the container as this host observed them (undefined: not yet): growth means a restart. */
  startCount?: number | undefined;
  /** The health state the control plane has for it (where a restarted agent picks up). */
  initial?: HealthState | null | undefined;
}

export interface HealthTransition {
  id: string;
  from: HealthState | null;
  to: HealthState;
  /** Consecutive successes and failures when it happened. */
  successes: number;
  failures: number;
  /** The last check's outcome (or why the state changed without one). */
  detail: string;
  at: number;
}

export interface Timers {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realTimers: Timers = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

export interface HealthCheckerOptions {
  onTransition(t: HealthTransition): void;
  /** Probes in flight at most (default 64). */
  maxConcurrent?: number;
  probe?: Probe;
  timers?: Timers;
  /** [0, 1) (default Math.random). */
  random?: () => number;
  log?: Logger;
}

interface Entry {
  target: HealthTarget;
  http: HttpCheckRequest | undefined;
  /** Why the request line cannot be used (every check fails with it). */
  badRequestLine: string | undefined;
  machine: Machine;
  reported: HealthState | null;
  timer: unknown;
  deadlineTimer: unknown;
  queued: boolean;
  running: AbortController | undefined;
  lastStart: number;
  removed: boolean;
}

export interface CheckerStats {
  targets: number;
  inFlight: number;
  queued: number;
  checks: number;
  failures: number;
}

export class HealthChecker {
  private readonly entries = new Map<string, Entry>();
  private readonly queue: Entry[] = [];
  private queueHead = 0;
  private inFlight = 0;
  private checks = 0;
  private failed = 0;
  private closed = false;
  private readonly pending = new Set<Promise<void>>();
  private readonly max: number;
  private readonly probe: Probe;
  private readonly timers: Timers;
  private readonly random: () => number;

  constructor(private readonly opts: HealthCheckerOptions) {
    this.max = Math.max(1, opts.maxConcurrent ?? 64);
    this.probe = opts.probe ?? tcpOrHttpProbe;
    this.timers = opts.timers ?? realTimers;
    this.random = opts.random ?? Math.random;
  }

  stateOf(id: string): HealthState | undefined {
    return this.entries.get(id)?.machine.state;
  }

  has(id: string): boolean {
    return this.entries.has(id);
  }

  ids(): IterableIterator<string> {
    return this.entries.keys();
  }

  stats(): CheckerStats {
    return { targets: this.entries.size, inFlight: this.inFlight, queued: this.queue.length - this.queueHead, checks: this.checks, failures: this.failed };
  }

  /** Adds a target or brings an existing one up to date (a restart or a new container resets its machine). */
  upsert(t: HealthTarget): void {
    if (this.closed) return;
    const now = this.timers.now();
    const e = this.entries.get(t.id);
    if (!e) {
      const from = t.initial === 'healthy' || t.initial === 'unhealthy' ? t.initial : undefined;
      const entry: Entry = {
        target: t,
        ...parsed(t.requestLine),
        machine: startMachine(now, from),
        reported: t.initial ?? null,
        timer: undefined,
        deadlineTimer: undefined,
        queued: false,
        running: undefined,
        lastStart: 0,
        removed: false,
      };
      this.entries.set(t.id, entry);
      this.emit(entry, 'first seen', now);
      this.armDeadline(entry);
      if (t.running) this.schedule(entry, Math.floor(this.random() * t.interval));
      return;
    }
    const prev = e.target;
    e.target = t;
    if (prev.requestLine !== t.requestLine) Object.assign(e, parsed(t.requestLine));
    if (prev.incarnation !== t.incarnation && prev.incarnation !== '' && t.incarnation !== '') {
      this.reset(e, startMachine(now), 'a new container', now);
    } else if (t.startCount !== undefined && prev.startCount !== undefined && prev.startCount > 0 && t.startCount > prev.startCount) {
      this.reset(e, restartMachine(now), 'restarted', now);
    } else if (!sameParams(prev.params, t.params)) {
      e.machine = expire(e.machine, now, t.params);
      this.emit(e, 'timeout', now);
      this.armDeadline(e);
    }
    if (!t.running) {
      this.unschedule(e);
    } else if (!prev.running || e.timer === undefined) {
      if (!e.running && !e.queued) this.schedule(e, Math.floor(this.random() * t.interval));
    }
  }

  remove(id: string): void {
    const e = this.entries.get(id);
    if (!e) return;
    this.entries.delete(id);
    e.removed = true;
    this.unschedule(e);
    this.timers.clearTimeout(e.deadlineTimer);
    e.running?.abort();
  }

  /** Stops every timer and probe; resolves when the probes in flight have ended. */
  async close(): Promise<void> {
    this.closed = true;
    for (const id of [...this.entries.keys()]) this.remove(id);
    await Promise.all([...this.pending]);
  }

  private reset(e: Entry, m: Machine, detail: string, now: number): void {
    e.machine = m;
    this.emit(e, detail, now);
    this.armDeadline(e);
  }

  private emit(e: Entry, detail: string, now: number): void {
    const to = e.machine.state;
    if (to === e.reported) return;
    const from = e.reported;
    e.reported = to;
    this.opts.onTransition({ id: e.target.id, from, to, successes: e.machine.successes, failures: e.machine.failures, detail, at: now });
  }

  private armDeadline(e: Entry): void {
    this.timers.clearTimeout(e.deadlineTimer);
    e.deadlineTimer = undefined;
    const d = deadlineOf(e.machine, e.target.params);
    if (d === undefined) return;
    const now = this.timers.now();
    e.deadlineTimer = this.timers.setTimeout(() => {
      e.deadlineTimer = undefined;
      if (e.removed) return;
      const at = this.timers.now();
      e.machine = expire(e.machine, at, e.target.params);
      this.emit(e, `not healthy within ${e.machine.state === 'unhealthy' ? 'the (re)initializing timeout' : 'its timeout yet'}`, at);
      if (e.machine.state !== 'unhealthy') this.armDeadline(e);
    }, Math.max(0, d - now));
  }

  private schedule(e: Entry, delayMs: number): void {
    this.timers.clearTimeout(e.timer);
    e.timer = this.timers.setTimeout(() => {
      e.timer = undefined;
      this.due(e);
    }, Math.max(0, delayMs));
  }

  private unschedule(e: Entry): void {
    this.timers.clearTimeout(e.timer);
    e.timer = undefined;
  }

  private due(e: Entry): void {
    if (e.removed || !e.target.running || e.running || e.queued) return;
    if (this.inFlight < this.max) {
      this.start(e);
      return;
    }
    e.queued = true;
    this.queue.push(e);
  }

  private start(e: Entry): void {
    const t = e.target;
    const ac = new AbortController();
    e.running = ac;
    this.inFlight++;
    e.lastStart = this.timers.now();
    const run = (e.badRequestLine !== undefined
      ? Promise.resolve<ProbeResult>({ ok: false, detail: e.badRequestLine })
      : this.probe({ ip: t.ip, port: t.port, http: e.http, timeoutMs: t.responseTimeout }, ac.signal)
    )
      .catch((err: unknown): ProbeResult => ({ ok: false, detail: `probe error: ${String(err)}` }))
      .then((r) => this.finished(e, ac, r));
    this.pending.add(run);
    void run.finally(() => this.pending.delete(run));
  }

  private finished(e: Entry, ac: AbortController, r: ProbeResult): void {
    this.inFlight--;
    if (e.running === ac) e.running = undefined;
    this.next();
    if (e.removed || ac.signal.aborted) return;
    this.checks++;
    if (!r.ok) this.failed++;
    const now = this.timers.now();
    const before = e.machine.state;
    e.machine = observe(e.machine, r.ok, now, e.target.params);
    if (e.machine.state !== before) {
      if (!r.ok && e.machine.state === 'unhealthy') this.opts.log?.info({ container: e.target.id, detail: r.detail }, 'health check: unhealthy');
      this.armDeadline(e);
    }
    this.emit(e, r.detail, now);
    if (e.target.running) {
      const jitter = 1 + (this.random() - 0.5) * 0.1;
      this.schedule(e, e.lastStart + e.target.interval * jitter - now);
    }
  }

  /** Starts the next waiting check, if any. */
  private next(): void {
    while (this.inFlight < this.max && this.queueHead < this.queue.length) {
      const e = this.queue[this.queueHead++] as Entry;
      e.queued = false;
      if (!e.removed && e.target.running && !e.running) this.start(e);
    }
    if (this.queueHead > 1024 && this.queueHead * 2 > this.queue.length) {
      this.queue.splice(0, this.queueHead);
      this.queueHead = 0;
    }
  }
}

function parsed(requestLine: string | undefined): { http: HttpCheckRequest | undefined; badRequestLine: string | undefined } {
  if (requestLine === undefined) return { http: undefined, badRequestLine: undefined };
  try {
    return { http: parseRequestLine(requestLine), badRequestLine: undefined };
  } catch (err) {
    return { http: undefined, badRequestLine: err instanceof Error ? err.message : String(err) };
  }
}

function sameParams(a: HealthParams, b: HealthParams): boolean {
  return (
    a.healthyThreshold === b.healthyThreshold &&
    a.unhealthyThreshold === b.unhealthyThreshold &&
    a.initializingTimeout === b.initializingTimeout &&
    a.reinitializingTimeout === b.reinitializingTimeout
  );
}
