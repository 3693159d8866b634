// A capability turns the environment state into one artefact and puts it in place:
//   render (pure: state + this host → artefact) → compare with the last applied → apply.
// It runs as a controller (src/agent/controller) through capabilityController (adapter.ts), which adds
// the retries with backoff, the periodic resync (verify) and the status.
// Appliers validate before they swap, swap atomically and keep the last good artefact: a failed apply
// leaves the previous artefact in force and is reported; the next state change (or a retry) tries again.
import type { EnvState } from '../../model/state.js';
import type { Host } from '../../model/resources.js';

export interface HostContext {
  hostId: string;
  host: Host | undefined;
  /** Key of the metadata service tokens, from the control plane (undefined until it sent one). */
  metadataTokenKey?: string | undefined;
}

export interface Applier<A> {
  /** Puts the artefact in place; must be idempotent and must leave the previous one on failure. */
  apply(artefact: A): Promise<void>;
  /**
   * The resync: checks that `artefact` (the last one applied) is still what is in force and restores it
   * if not; resolves with what was repaired (undefined: nothing had drifted). Without it, a resync
   * applies the last artefact again (appliers are idempotent).
   */
  verify?(artefact: A): Promise<string | undefined>;
  /** Releases what the applier holds (listeners, processes) on shutdown. */
  close?(): Promise<void>;
}

export interface Capability<A> {
  name: string;
  render(state: EnvState, host: HostContext): A;
  /** Equality of artefacts; defaults to comparing their JSON text. */
  same?(a: A, b: A): boolean;
  applier: Applier<A>;
}

export type { CapabilityStatus } from '../../model/reports.js';
