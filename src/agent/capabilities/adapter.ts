// A Capability{render, applier} as a controller: reconcile = render, compare with the last artefact
// applied, apply when it differs (or when the last attempt failed: the applier may have half-done it);
// resync = the applier's verify (or applying the last good artefact again, appliers being idempotent).
import { errorMessage } from '../../common/errors.js';
import type { Controller } from '../controller/controller.js';
import type { Capability } from './capability.js';

export class RenderError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'RenderError';
  }
}

export interface CapabilityControllerOptions {
  /**
   * `reapply` (default): a resync without a verify() applies the last good artefact again;
   * `none`: the capability has its own drift check (the runtime's periodic pass), a resync is a no-op.
   */
  resync?: 'reapply' | 'none';
}

export function capabilityController<A>(cap: Capability<A>, opts: CapabilityControllerOptions = {}): Controller {
  const same = cap.same ?? ((a: A, b: A) => JSON.stringify(a) === JSON.stringify(b));
  let lastGood: { artefact: A } | undefined;
  let dirty = false;
  return {
    name: cap.name,
    async reconcile(state, _delta, host) {
      let artefact: A;
      try {
        artefact = cap.render(state, host);
      } catch (err) {
        throw new RenderError(`render failed: ${errorMessage(err)}`, { cause: err });
      }
      if (lastGood && !dirty && same(lastGood.artefact, artefact)) return;
      dirty = true;
      await cap.applier.apply(artefact);
      lastGood = { artefact };
      dirty = false;
    },
    async verify() {
      if (!lastGood || opts.resync === 'none') return undefined;
      if (cap.applier.verify) return cap.applier.verify(lastGood.artefact);
      await cap.applier.apply(lastGood.artefact);
      return undefined;
    },
    async stop() {
      await cap.applier.close?.();
    },
  };
}
