// The metadata capability's renderer (pure): the state, what changed since the previous render and this
// host → the answers trees the server serves. `previous` and `delta` are there for incremental updates
// (client trees of the touched containers only); `delta.full` or no previous artefact means a full build.
import type { EnvState, StateDelta } from '../../../model/state.js';
import type { Answers } from '../../../metadata/answers.js';
import { buildMetadataAnswers, updateMetadataAnswers } from '../../../metadata/tree.js';
import type { HostContext } from '../capability.js';

export function renderMetadata(previous: Answers | undefined, state: EnvState, delta: StateDelta, host: HostContext): Answers {
  const o = { hostId: host.hostId, tokenKey: host.metadataTokenKey };
  // O(change): the objects of what the delta touched, this host's trees (full build on delta.full and when it must).
  return previous === undefined ? buildMetadataAnswers(state, o) : updateMetadataAnswers(previous, state, delta, o);
}
