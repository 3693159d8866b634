// Containers started by hand with `io.rancher.container.network=true`: what the agent sends the control
// plane about them, and joining them to the managed network with the address the server gave.
import type Dockerode from 'dockerode';
import type { AdoptRequest } from '../../model/reports.js';
import { MANAGED_NETWORK } from './create-spec.js';
import { dockerMessage, type InspectedContainer } from './docker-api.js';
import { RuntimeError } from './errors.js';

export class AdoptionError extends RuntimeError {}

export function adoptRequestOf(c: InspectedContainer): AdoptRequest {
  const net = c.NetworkSettings.Networks[MANAGED_NETWORK];
  const ip = net?.IPAMConfig?.IPv4Address || net?.IPAddress || undefined;
  return {
    externalId: c.Id,
    name: c.Name.replace(/^\//, ''),
    image: c.Config.Image,
    labels: c.Config.Labels,
    ...(c.Config.Cmd ? { command: c.Config.Cmd } : {}),
    ...(ip ? { ipAddress: ip } : {}),
    state: c.State.Running ? 'running' : 'stopped',
  };
}

/** Network modes that cannot join another network. */
function isolatedMode(mode: string): boolean {
  return mode === 'host' || mode === 'none' || mode.startsWith('container:');
}

/**
 * Makes sure the container is on the managed network with `ip` (static, so it survives restarts).
 * Returns true when it changed something.
 */
export async function attachToManagedNetwork(docker: Dockerode, c: InspectedContainer, ip: string): Promise<boolean> {
  if (isolatedMode(c.HostConfig.NetworkMode)) {
    throw new AdoptionError(`cannot join the managed network: the container uses network mode "${c.HostConfig.NetworkMode}"`);
  }
  const net = c.NetworkSettings.Networks[MANAGED_NETWORK];
  const has = net?.IPAMConfig?.IPv4Address || net?.IPAddress || '';
  if (net && has === ip) return false;
  const network = docker.getNetwork(MANAGED_NETWORK);
  try {
    if (net) await network.disconnect({ Container: c.Id, Force: true });
    await network.connect({ Container: c.Id, EndpointConfig: { IPAMConfig: { IPv4Address: ip } } });
  } catch (err) {
    throw new AdoptionError(`cannot connect it to the managed network with ${ip}: ${dockerMessage(err)}`);
  }
  return true;
}
