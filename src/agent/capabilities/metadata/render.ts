// The metadata capability's renderer (pure): the state, what changed since the previous render and this
// host → the answers trees the server serves. `previous` and `delta` are there for incremental updates
// (client trees of the touched containers only); `delta.full` or no previous artefact means a full build.
import type { EnvState, StateDelta } from '../../../model/state.js';
import type { Answers } from '../../../metadata/answers.js';
import { buildMetadataAnswers } from '../../../metadata/tree.js';
import type { HostContext } from '../capability.js';

export function renderMetadata(previous: Answers | undefined, state: EnvState, delta: StateDelta, host: HostContext): Answers {
  void previous;
  void delta;
  return buildMetadataAnswers(state, { hostId: host.hostId, tokenKey: host.metadataTokenKey });
}
