// The Docker runtime (src/agent/runtime) as a controller: a thin adapter over its Capability. Its own
// periodic pass and Docker events are its drift check, so the manager's resync does nothing for it; its
// own status (degraded while pulls keep containers waiting) is the controller's health, reported when
// it changes without a new state.
import type { Controller } from '../controller/controller.js';
import type { DockerRuntimeHandle } from '../runtime/docker-runtime.js';
import { capabilityController } from './adapter.js';
import type { Capability } from './capability.js';

type Health = ReturnType<NonNullable<Controller['health']>>;

export interface RuntimeLike extends Pick<DockerRuntimeHandle, 'capability'> {
  health?(): Health;
  onStatus?(cb: () => void): void;
}

export function runtimeController(handle: RuntimeLike): Controller {
  const ctl = capabilityController(handle.capability as Capability<unknown>, { resync: 'none' });
  return {
    ...ctl,
    ...(handle.health ? { health: () => handle.health?.() } : {}),
    ...(handle.onStatus ? { onHealthChange: (notify: () => void) => handle.onStatus?.(() => notify()) } : {}),
  };
}
