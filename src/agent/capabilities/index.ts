// The controllers a production agent runs, in order (each capability in a folder of its own).
import type { Registry } from 'prom-client';
import type { Logger } from '../../common/log.js';
import type { Controller } from '../controller/controller.js';
import type { DockerRuntimeHandle } from '../runtime/docker-runtime.js';
import { metadataController } from './metadata/controller.js';
import { dnsController } from './dns/controller.js';
import { runtimeController } from './runtime.js';
import type { HealthMonitor } from './health/monitor.js';

export interface CapabilityDeps {
  log: Logger;
  registry?: Registry;
  /** HOST:PORT for rancher-metadata; '' turns it off. */
  metadataListen?: string;
  /** HOST:PORT for DNS; '' turns it off. */
  dnsListen?: string;
  /** The Docker runtime (src/agent/runtime), when a docker socket is configured. */
  dockerRuntime?: DockerRuntimeHandle | undefined;
  /** The health checks of this host's containers (health/); its `wrap` is the agent's report source. */
  health?: HealthMonitor | undefined;
  /** The managed network of this host (network/), when it runs. */
  network?: Controller | undefined;
  /** The balancers of this host (balancer/): HAProxy per balancer container scheduled here. */
  balancer?: Controller | undefined;
}

export function agentCapabilities(deps: CapabilityDeps): Controller[] {
  const reg = deps.registry ? { registry: deps.registry } : {};
  return [
    ...(deps.metadataListen ? [metadataController({ log: deps.log, listen: deps.metadataListen, ...reg })] : []),
    ...(deps.dnsListen ? [dnsController({ log: deps.log, listen: deps.dnsListen, ...reg })] : []),
    // The managed network (network/): before the runtime, so the overlay and the published ports are in
    // place when containers start; it waits for the host's tunnel address on its own.
    ...(deps.network ? [deps.network] : []),
    // The balancers (balancer/): after the network (their managed addresses are routed and their
    // published ports DNATed by it), before the runtime.
    ...(deps.balancer ? [deps.balancer] : []),
    // ---- docker runtime (src/agent/runtime): runs this host's scheduled containers. Keep it last, so the
    // metadata/DNS the containers use is in place before they start.
    ...(deps.dockerRuntime ? [runtimeController(deps.dockerRuntime)] : []),
    ...(deps.health ? [deps.health] : []),
  ];
}
