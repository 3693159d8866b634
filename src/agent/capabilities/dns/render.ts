// The DNS capability's renderer (pure): the state, what changed since the previous render and this host
// → the DnsData the server answers from. `previous` and `delta` are there for incremental updates (a
// change touching a few resources updates the name tables of those only); `delta.full` or no previous
// artefact means a full build.
import type { EnvState, StateDelta } from '../../../model/state.js';
import type { DnsData } from '../../../dns/data.js';
import { buildDnsData, updateDnsData } from '../../../dns/view.js';
import type { HostContext } from '../capability.js';

export interface DnsRenderOptions {
  /** TTL of local answers in seconds (default 1). */
  ttl?: number | undefined;
}

export function renderDns(
  previous: DnsData | undefined,
  state: EnvState,
  delta: StateDelta,
  host: HostContext,
  opts: DnsRenderOptions = {},
): DnsData {
  const o = { hostId: host.hostId, ...(opts.ttl !== undefined ? { ttl: opts.ttl } : {}) };
  // O(change): the name tables of what the delta touched (full build on delta.full and when it must).
  return previous === undefined ? buildDnsData(state, o) : updateDnsData(previous, state, delta, o);
}
