// The capabilities a production agent runs, in order. Each later issue adds its own here.
import type { Logger } from '../../common/log.js';
import type { Capability } from './capability.js';

export interface CapabilityDeps {
  log: Logger;
}

export function agentCapabilities(_deps: CapabilityDeps): Capability<unknown>[] {
  return [];
}
