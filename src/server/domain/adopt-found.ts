// Containers an agent found on its host (started by hand with io.rancher.container.network=true),
// reported in `POST /v1/agent/report` as `found`: the control plane adopts each one (a container record
// with an address, idempotent per docker id) and answers per container, so the agent never waits on an
// adoption call in the middle of its work. A refusal (a name docker allows but records do not, an
// address taken) is that container's answer, not the report's failure.
import { DroverError } from '../../common/errors.js';
import type { AdoptRequest, FoundAnswer } from '../../model/reports.js';
import type { Store } from '../db/store.js';
import { adoptContainer } from './containers.js';

export function adoptFound(store: Store, hostId: string, found: AdoptRequest[]): FoundAnswer[] {
  return found.map((req) => {
    try {
      const { container } = adoptContainer(store, hostId, req);
      return { externalId: req.externalId, id: container.id, primaryIpAddress: container.primaryIpAddress };
    } catch (err) {
      if (err instanceof DroverError) return { externalId: req.externalId, error: err.message };
      throw err;
    }
  });
}
