// A controller keeps one capability of the host (DNS, metadata, the container runtime, next the network
// and the balancer) in line with the environment state, the way Cilium's pkg/controller and kube-proxy's
// proxier do: explicit start/stop, a reconcile that gets the state with what changed since its last
// success, retries with backoff on failure, and a periodic resync that detects drift and repairs it.
// The manager (manager.ts) drives them and keeps their status; a controller only does the work.
import type { EnvState, StateDelta } from '../../model/state.js';
import type { CapabilityHealth } from '../../model/reports.js';
import type { HostContext } from '../capabilities/capability.js';

export type { HostContext };

export interface Controller {
  readonly name: string;
  /**
   * Acquires what the controller holds (binds its sockets, opens its handles). Runs before the first
   * reconcile; when it throws it is retried with backoff and no reconcile runs until it succeeded.
   */
  start?(): Promise<void>;
  /**
   * Brings what the controller manages in line with `state`. `delta` is what changed since the state of
   * its last successful reconcile (deltas that arrived while it ran or after it failed are merged; a full
   * delta means "everything"). Throws when the state could not be put in place: the last good one must
   * stay in force, and the manager retries with backoff.
   */
  reconcile(state: EnvState, delta: StateDelta, host: HostContext): Promise<void>;
  /**
   * Called as soon as a state arrives, also while a reconcile runs (reconciles are one at a time and some
   * take seconds): for quick, idempotent steps that must not wait behind one — the balancer takes targets
   * that are gone out of service at once, before their containers' drain ends. What it starts is its own:
   * it must not throw, and the reconcile of the same state still follows.
   */
  preview?(state: EnvState, host: HostContext): void;
  /**
   * The periodic resync: checks that what is in force is still what the last reconcile put there and
   * repairs it. Resolves with a description of what was repaired (undefined: nothing had drifted);
   * throws when it could not repair. Without it the resync is a reconcile with a full delta.
   */
  verify?(state: EnvState, host: HostContext): Promise<string | undefined>;
  /** The controller's own view of its health beyond its last reconcile (e.g. behind on a slow pull). */
  health?(): { state: Exclude<CapabilityHealth, 'ok'>; message: string } | undefined;
  /** Registers the manager's callback for changes of `health()` that come without a new state. */
  onHealthChange?(notify: () => void): void;
  /** Releases what the controller holds; after it, nothing of it runs. */
  stop?(): Promise<void>;
}
