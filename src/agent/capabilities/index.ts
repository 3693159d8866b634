// The capabilities a production agent runs, in order.
import type { Registry } from 'prom-client';
import type { Logger } from '../../common/log.js';
import type { Capability } from './capability.js';
import type { DockerRuntimeHandle } from '../runtime/docker-runtime.js';
import { metadataCapability } from './metadata/controller.js';
import { dnsCapability } from './dns/controller.js';

export interface CapabilityDeps {
  log: Logger;
  registry?: Registry;
  /** HOST:PORT for rancher-metadata; '' turns it off. */
  metadataListen?: string;
  /** HOST:PORT for DNS; '' turns it off. */
  dnsListen?: string;
  /** The Docker runtime (src/agent/runtime), when a docker socket is configured. */
  dockerRuntime?: DockerRuntimeHandle | undefined;
}

export function agentCapabilities(deps: CapabilityDeps): Capability<unknown>[] {
  const reg = deps.registry ? { registry: deps.registry } : {};
  return [
    ...(deps.metadataListen ? [metadataCapability({ log: deps.log, listen: deps.metadataListen, ...reg }) as Capability<unknown>] : []),
    ...(deps.dnsListen ? [dnsCapability({ log: deps.log, listen: deps.dnsListen, ...reg }) as Capability<unknown>] : []),
    // ---- docker runtime (src/agent/runtime): runs this host's scheduled containers. Keep it last, so the
    // metadata/DNS the containers use is in place before they start.
    ...(deps.dockerRuntime ? [deps.dockerRuntime.capability as Capability<unknown>] : []),
  ];
}
