// The Docker runtime (src/agent/runtime) as a controller: a thin adapter over its Capability. Its own
// periodic pass and Docker events are its drift check, so the manager's resync does nothing for it.
import type { Controller } from '../controller/controller.js';
import type { DockerRuntimeHandle } from '../runtime/docker-runtime.js';
import { capabilityController } from './adapter.js';
import type { Capability } from './capability.js';

export function runtimeController(handle: Pick<DockerRuntimeHandle, 'capability'>): Controller {
  return capabilityController(handle.capability as Capability<unknown>, { resync: 'none' });
}
