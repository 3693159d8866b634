// The bookkeeping every incremental renderer shares (DNS data, metadata answers): the renderer's index is
// kept with the artefact it built, so that the next update of that artefact can apply a delta in place,
// and anything that index cannot apply falls back to a full build, which is right by construction.
import type { EnvState, StateDelta } from './state.js';

/** Thrown inside an update for a change only a full build handles (the update falls back to one). */
export class NeedsFullRender extends Error {}

/** A renderer's index: what it built from, and how to move on by one delta. */
export interface RenderIndex<A, O> {
  /** The state object the index was built from and follows (updated in place by applyChanges). */
  readonly state: EnvState;
  /** Whether these options are the ones the index was built with. */
  accepts(opts: O): boolean;
  /** Applies a non-full delta to the index and returns the next artefact; throws NeedsFullRender when it cannot. */
  apply(delta: StateDelta): A;
}

export class IncrementalRenderer<A extends object, O> {
  /** How updates went: applied change by change, or built in full (tests and benches read it). */
  readonly counts = { incremental: 0, full: 0 };
  /** The last unexpected error an update fell back from (tests assert there is none). */
  lastError: unknown;
  private readonly indexes = new WeakMap<A, RenderIndex<A, O>>();

  constructor(private readonly create: (state: EnvState, opts: O) => { index: RenderIndex<A, O>; artefact: A }) {}

  /** Builds the artefact in full and keeps its index for the next update. */
  build(state: EnvState, opts: O): A {
    const { index, artefact } = this.create(state, opts);
    this.indexes.set(artefact, index);
    return artefact;
  }

  /**
   * The artefact after `delta` was applied to `state`: in place when `prev` was built here from this very
   * state object with the same options and the delta is not full or environment-wide, else a full build.
   * An index serves one successor only: `prev` is forgotten once updated.
   */
  update(prev: A, state: EnvState, delta: StateDelta, opts: O): A {
    const ix = this.indexes.get(prev);
    if (delta.full || delta.environmentChanged || !ix || ix.state !== state || !ix.accepts(opts)) return this.full(state, opts);
    this.indexes.delete(prev);
    let next: A;
    try {
      next = ix.apply(delta);
    } catch (err) {
      if (!(err instanceof NeedsFullRender)) this.lastError = err;
      return this.full(state, opts);
    }
    this.indexes.set(next, ix);
    this.counts.incremental++;
    return next;
  }

  private full(state: EnvState, opts: O): A {
    this.counts.full++;
    return this.build(state, opts);
  }
}
