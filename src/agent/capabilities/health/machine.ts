// The health state machine of one checked container (pure: every step takes the time it happens at).
//
//   initializing ──healthy_threshold successes──▶ healthy ──unhealthy_threshold failures──▶ unhealthy
//        │                                          ▲                                          │
//        └── initializing_timeout without reaching  └──────── healthy_threshold successes ─────┘
//            healthy (or, without a timeout,
//            unhealthy_threshold failures) ──▶ unhealthy
//
// A restart of the container (its start count grew) moves it to `reinitializing`, which behaves like
// `initializing` with `reinitializing_timeout`. Counts are of consecutive results: a success resets the
// failures and a failure the successes.
import type { HealthState } from '../../../model/liveness.js';

export type { HealthState };

export interface HealthParams {
  healthyThreshold: number;
  unhealthyThreshold: number;
  /** ms an initializing container may take to become healthy; absent: failures count from the start. */
  initializingTimeout?: number | undefined;
  /** The same after a restart. */
  reinitializingTimeout?: number | undefined;
}

export interface Machine {
  readonly state: HealthState;
  readonly successes: number;
  readonly failures: number;
  /** When the current (re)initializing phase began (ms). */
  readonly phaseStart: number;
}

/** A new machine: `initializing`, or the state the container already had (an agent restart keeps it). */
export function startMachine(now: number, from?: HealthState | null): Machine {
  return { state: from ?? 'initializing', successes: 0, failures: 0, phaseStart: now };
}

/** The container restarted: its health must be established again. */
export function restartMachine(now: number): Machine {
  return { state: 'reinitializing', successes: 0, failures: 0, phaseStart: now };
}

function phaseTimeout(m: Machine, p: HealthParams): number | undefined {
  if (m.state === 'initializing') return p.initializingTimeout;
  if (m.state === 'reinitializing') return p.reinitializingTimeout;
  return undefined;
}

/** When the current phase times out (ms), if it can. */
export function deadlineOf(m: Machine, p: HealthParams): number | undefined {
  const t = phaseTimeout(m, p);
  return t === undefined ? undefined : m.phaseStart + t;
}

/** Applies the passing of time: a (re)initializing phase past its timeout becomes unhealthy. */
export function expire(m: Machine, now: number, p: HealthParams): Machine {
  const d = deadlineOf(m, p);
  if (d === undefined || now < d) return m;
  return { state: 'unhealthy', successes: 0, failures: m.failures, phaseStart: m.phaseStart };
}

/** Applies one check result obtained at `now`. */
export function observe(m0: Machine, ok: boolean, now: number, p: HealthParams): Machine {
  const m = expire(m0, now, p);
  if (ok) {
    const successes = m.successes + 1;
    const state: HealthState = m.state !== 'healthy' && successes >= p.healthyThreshold ? 'healthy' : m.state;
    return { state, successes, failures: 0, phaseStart: m.phaseStart };
  }
  const failures = m.failures + 1;
  let state = m.state;
  if (state === 'healthy' && failures >= p.unhealthyThreshold) state = 'unhealthy';
  else if ((state === 'initializing' || state === 'reinitializing') && phaseTimeout(m, p) === undefined && failures >= p.unhealthyThreshold) {
    state = 'unhealthy';
  }
  return { state, successes: 0, failures, phaseStart: m.phaseStart };
}
