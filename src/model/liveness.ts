// Liveness: the one rule for whether a container is serving — what DNS, metadata and (later) the
// balancer include, and the only observed fact the control plane publishes into the revisioned state.
//
// A container is serving when it is running and, if its service has a health check, healthy. The
// control plane writes a container document's `state` and `healthState` only when this fact or the
// health state changes (src/server/domain/status.ts), so the document is consistent with it; the full
// observed state (start count, exit code, messages) lives in the status store, apart from the spec.

/** The observed facts the rule reads (a Container document, or a status row). */
export interface LivenessFacts {
  state: string;
  healthState: string | null;
}

/** The health states a checked container goes through (reported by the agent's checker). */
export const HEALTH_STATES = ['initializing', 'reinitializing', 'healthy', 'unhealthy'] as const;
export type HealthState = (typeof HEALTH_STATES)[number];

/** Whether the container runs (a stopped, erroring or still-creating one serves nothing). */
export function isRunning(f: Pick<LivenessFacts, 'state'>): boolean {
  return f.state === 'running';
}

/**
 * Serving: running and, when `checked` (its service has a health check), healthy. An unchecked
 * container's health state is ignored.
 */
export function isServing(f: LivenessFacts, checked: boolean): boolean {
  return isRunning(f) && (!checked || f.healthState === 'healthy');
}

/** The health state a container starts in: `initializing` under a health check, else none. */
export function initialHealthState(checked: boolean): HealthState | null {
  return checked ? 'initializing' : null;
}
