// Drives the agent's controllers: one worker per controller, each with its own queue, backoff and
// resync timer, so a failing or slow controller never holds back the others' retries.
//
// - `update(state, delta, host)` hands a new state to every controller in order (metadata and DNS
//   before the runtime, whose containers use them) and resolves once each has made one attempt at it.
//   A state that arrives while a controller runs, or after it failed, is merged (mergeDeltas) with what
//   it has not consumed yet: the next reconcile gets everything since its last success.
// - A failed start or reconcile is retried by itself after an exponential backoff with jitter (a new
//   state retries at once, without resetting the backoff).
// - Every `resyncMs` a controller that is not failing resyncs: `verify()` detects and repairs drift,
//   or, without one, a reconcile with a full delta.
// - Status per controller: ok / degraded (the last attempt failed, the last good artefact is in force,
//   or the controller says so) / failed (nothing in force), with the message, the time and revision of
//   the last success, attempts and consecutive failures; metrics on the agent's registry.
import type { Registry } from 'prom-client';
import type { Logger } from '../../common/log.js';
import { errorMessage } from '../../common/errors.js';
import { fullDelta, mergeDeltas, type EnvState, type StateDelta } from '../../model/state.js';
import type { CapabilityHealth, CapabilityStatus } from '../../model/reports.js';
import { Backoff, type BackoffPolicy } from '../sync/backoff.js';
import type { Controller, HostContext } from './controller.js';
import { controllerMetrics, type ControllerMetrics } from './metrics.js';

export interface ControllerManagerOptions {
  log: Logger;
  registry?: Registry | undefined;
  /** Period of the drift check per controller, ms (default 60 s; 0 turns it off). */
  resyncMs?: number | undefined;
  /** Retry delays after failures (default 500 ms doubling up to 60 s, with jitter). */
  backoff?: BackoffPolicy | undefined;
  /** Called when a controller's status changed (the agent then reports it). */
  onStatus?: (() => void) | undefined;
}

type Phase = 'start' | 'reconcile' | 'resync';

interface Input {
  state: EnvState;
  delta: StateDelta;
  host: HostContext;
}

const HEALTH_VALUE: Record<CapabilityHealth, number> = { ok: 0, degraded: 1, failed: 2 };

class Worker {
  private started = false;
  private everApplied = false;
  private failing = false;
  private stopped = false;
  private pending: Input | undefined;
  /** The latest state handed in (what a resync checks against). */
  private latest: { state: EnvState; host: HostContext } | undefined;
  private running: Promise<void> | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private resyncTimer: NodeJS.Timeout | undefined;
  private resyncDue = false;
  private readonly backoff: Backoff;
  private seq = 0;
  private waiters: { seq: number; resolve: () => void }[] = [];
  // status
  private visible = false;
  private revision = 0;
  private attempts = 0;
  private consecutiveFailures = 0;
  private lastError: string | undefined;
  private lastSuccess: string | undefined;
  private lastSuccessRevision: number | undefined;
  private nextRetryAt: string | undefined;

  constructor(
    readonly ctl: Controller,
    private readonly log: Logger,
    private readonly metrics: ControllerMetrics | undefined,
    private readonly o: { resyncMs: number; backoff: BackoffPolicy; onStatus: () => void },
  ) {
    this.backoff = new Backoff(o.backoff);
  }

  begin(): void {
    if (this.o.resyncMs > 0) this.armResync();
    this.kick();
  }

  /** Queues a state; resolves after the controller's next attempt that includes it (or when it stops). */
  offer(input: Input): Promise<void> {
    if (this.stopped) return Promise.resolve();
    this.pending = this.pending ? { ...input, delta: mergeDeltas(this.pending.delta, input.delta) } : input;
    this.latest = { state: input.state, host: input.host };
    this.revision = Math.max(this.revision, input.state.revision);
    if (this.started && this.ctl.preview) {
      try {
        this.ctl.preview(input.state, input.host);
      } catch (err) {
        this.log.warn({ err: errorMessage(err) }, 'preview failed');
      }
    }
    const seq = ++this.seq;
    const done = new Promise<void>((resolve) => this.waiters.push({ seq, resolve }));
    // A new state is worth an attempt now, even in backoff (the backoff itself is kept).
    this.clearRetry();
    this.kick();
    return done;
  }

  /** Runs a resync now (tests, and `drover agent` on demand). */
  resyncNow(): Promise<void> {
    if (this.stopped || !this.latest) return Promise.resolve();
    this.resyncDue = true;
    const seq = ++this.seq;
    const done = new Promise<void>((resolve) => this.waiters.push({ seq, resolve }));
    this.clearRetry();
    this.kick();
    return done;
  }

  status(): CapabilityStatus | undefined {
    if (!this.visible) return undefined;
    let health: CapabilityHealth;
    let message: string | undefined;
    if (!this.started) {
      health = 'failed';
      message = `not started: ${this.lastError ?? 'starting'}`;
    } else if (this.failing) {
      health = this.everApplied ? 'degraded' : 'failed';
      message = this.everApplied ? `${this.lastError ?? 'failed'} (the last good state stays in force)` : this.lastError;
    } else if (!this.everApplied) {
      health = 'failed';
      message = 'nothing applied yet';
    } else {
      health = 'ok';
    }
    const own = this.ctl.health?.();
    if (own && HEALTH_VALUE[own.state] > HEALTH_VALUE[health]) {
      health = own.state;
      message = message ? `${message}; ${own.message}` : own.message;
    }
    this.metrics?.health.set({ controller: this.ctl.name }, HEALTH_VALUE[health]);
    return {
      revision: this.revision,
      ok: health === 'ok',
      ...(health !== 'ok' && this.lastError !== undefined && (this.failing || !this.started) ? { error: this.lastError } : {}),
      state: health,
      ...(message !== undefined ? { message } : {}),
      ...(this.lastSuccess !== undefined ? { lastSuccess: this.lastSuccess } : {}),
      ...(this.lastSuccessRevision !== undefined ? { lastSuccessRevision: this.lastSuccessRevision } : {}),
      attempts: this.attempts,
      consecutiveFailures: this.consecutiveFailures,
      ...(this.failing && this.nextRetryAt !== undefined ? { nextRetryAt: this.nextRetryAt } : {}),
    };
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.clearRetry();
    if (this.resyncTimer) clearTimeout(this.resyncTimer);
    await this.running;
    this.release(Infinity);
    try {
      await this.ctl.stop?.();
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, 'stop failed');
    }
  }

  private kick(): void {
    if (this.running || this.stopped) return;
    this.running = this.drive().finally(() => {
      this.running = undefined;
      // Work that arrived during the last step of the pass (after its last check) is picked up here.
      if (!this.stopped && !this.retryTimer && this.started && (this.pending || this.resyncDue)) this.kick();
    });
  }

  private async drive(): Promise<void> {
    while (!this.stopped) {
      if (!this.started) {
        const start = this.ctl.start?.bind(this.ctl);
        if (start && !(await this.attempt('start', start, undefined))) return this.release(this.seq);
        this.started = true;
        this.lastError = undefined;
        continue;
      }
      const input = this.pending;
      if (input) {
        const seq = this.seq;
        this.pending = undefined;
        const ok = await this.attempt('reconcile', () => this.ctl.reconcile(input.state, input.delta, input.host), input.state.revision);
        if (!ok) {
          // Not consumed: the retry (or the next state) gets it merged with whatever came meanwhile.
          const arrived = this.queued();
          this.pending = arrived ? { ...arrived, delta: mergeDeltas(input.delta, arrived.delta) } : input;
          const newer = arrived !== undefined;
          this.release(seq);
          if (!newer) return;
          // A newer state arrived during the failed attempt: it is worth an attempt now.
          this.clearRetry();
        } else this.release(seq);
        continue;
      }
      if (this.resyncDue && this.latest) {
        this.resyncDue = false;
        const seq = this.seq;
        const { state, host } = this.latest;
        const ok = await this.attempt('resync', () => this.resync(state, host), state.revision);
        this.release(seq);
        if (!ok) {
          this.resyncDue = true;
          if (!this.queued()) return;
          this.clearRetry();
        }
        continue;
      }
      this.release(this.seq);
      return;
    }
    this.release(Infinity);
  }

  /** What is queued now (read after an await: another state may have arrived meanwhile). */
  private queued(): Input | undefined {
    return this.pending;
  }

  private async resync(state: EnvState, host: HostContext): Promise<void> {
    if (!this.ctl.verify) {
      await this.ctl.reconcile(state, fullDelta(state.revision), host);
      return;
    }
    const repaired = await this.ctl.verify(state, host);
    if (repaired !== undefined) {
      this.metrics?.repairs.inc({ controller: this.ctl.name });
      this.log.warn({ repaired }, 'resync found drift and repaired it');
    }
  }

  /** One run with its bookkeeping; false when it failed (a retry is then scheduled). */
  private async attempt(phase: Phase, fn: () => Promise<void>, revision: number | undefined): Promise<boolean> {
    const t0 = process.hrtime.bigint();
    this.attempts++;
    this.visible = this.visible || phase !== 'start';
    try {
      await fn();
    } catch (err) {
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      this.metrics?.duration.observe({ controller: this.ctl.name, phase, outcome: 'error' }, seconds);
      this.metrics?.errors.inc({ controller: this.ctl.name, phase });
      this.consecutiveFailures++;
      this.failing = true;
      this.visible = true;
      this.lastError = phase === 'reconcile' ? errorMessage(err) : `${phase} failed: ${errorMessage(err)}`;
      const delay = this.backoff.nextDelayMs();
      this.nextRetryAt = new Date(Date.now() + delay).toISOString();
      this.log.warn(
        { err: this.lastError, phase, revision, consecutiveFailures: this.consecutiveFailures, retryInMs: Math.round(delay) },
        this.everApplied ? `${phase} failed; the last good state stays in force, retrying` : `${phase} failed; retrying`,
      );
      this.scheduleRetry(delay);
      this.status(); // refreshes the health gauge
      this.o.onStatus();
      return false;
    }
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    this.metrics?.duration.observe({ controller: this.ctl.name, phase, outcome: 'ok' }, seconds);
    const recovered = this.failing;
    this.failing = false;
    this.consecutiveFailures = 0;
    this.nextRetryAt = undefined;
    this.backoff.reset();
    if (phase !== 'start') {
      this.everApplied = true;
      this.lastError = undefined;
      this.lastSuccess = new Date().toISOString();
      if (revision !== undefined) this.lastSuccessRevision = revision;
    }
    if (recovered) this.log.info({ phase, revision }, 'recovered');
    else if (phase === 'reconcile') this.log.debug({ revision, ms: Math.round(seconds * 1000) }, 'reconciled');
    this.status(); // refreshes the health gauge
    this.o.onStatus();
    return true;
  }

  private scheduleRetry(delayMs: number): void {
    this.clearRetry();
    if (this.stopped) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.kick();
    }, delayMs);
    this.retryTimer.unref();
  }

  private clearRetry(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
  }

  private armResync(): void {
    // A little jitter, so the controllers of many agents do not resync in step.
    const ms = this.o.resyncMs * (0.9 + Math.random() * 0.2);
    this.resyncTimer = setTimeout(() => {
      this.resyncTimer = undefined;
      if (this.stopped) return;
      if (!this.failing && this.started && this.latest && this.everApplied) {
        this.resyncDue = true;
        this.kick();
      }
      this.armResync();
    }, ms);
    this.resyncTimer.unref();
  }

  private release(upTo: number): void {
    if (this.waiters.length === 0) return;
    const keep: typeof this.waiters = [];
    for (const w of this.waiters) {
      if (w.seq <= upTo) w.resolve();
      else keep.push(w);
    }
    this.waiters = keep;
  }
}

export class ControllerManager {
  private readonly workers: Worker[];
  private started = false;

  constructor(controllers: readonly Controller[], opts: ControllerManagerOptions) {
    const names = new Set<string>();
    for (const c of controllers) {
      if (names.has(c.name)) throw new Error(`two controllers are named "${c.name}"`);
      names.add(c.name);
    }
    const metrics = opts.registry ? controllerMetrics(opts.registry) : undefined;
    const o = {
      resyncMs: opts.resyncMs ?? 60_000,
      backoff: opts.backoff ?? { initialMs: 500, maxMs: 60_000 },
      onStatus: opts.onStatus ?? (() => undefined),
    };
    this.workers = controllers.map((c) => new Worker(c, opts.log.child({ controller: c.name }), metrics, o));
    for (const c of controllers) c.onHealthChange?.(o.onStatus);
  }

  /** Starts every controller (binds its sockets); a failing start is retried in the background. */
  start(): void {
    if (this.started) return;
    this.started = true;
    for (const w of this.workers) w.begin();
  }

  /** Hands a state to every controller in order; resolves with their statuses once each attempted it. */
  async update(state: EnvState, delta: StateDelta, host: HostContext): Promise<Record<string, CapabilityStatus>> {
    this.start();
    for (const w of this.workers) await w.offer({ state, delta, host });
    return this.statuses();
  }

  /** Resyncs every controller now; resolves with their statuses. */
  async resync(): Promise<Record<string, CapabilityStatus>> {
    await Promise.all(this.workers.map((w) => w.resyncNow()));
    return this.statuses();
  }

  statuses(): Record<string, CapabilityStatus> {
    const out: Record<string, CapabilityStatus> = {};
    for (const w of this.workers) {
      const s = w.status();
      if (s) out[w.ctl.name] = s;
    }
    return out;
  }

  async close(): Promise<void> {
    for (const w of this.workers) await w.stop();
  }
}
