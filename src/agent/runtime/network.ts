// The managed network (report §3.3, option C): a user-defined bridge `drover` on the environment subnet,
// gateway = its first address, bridge device `drover0`, no masquerading (cross-host traffic keeps its
// source address), and proxy ARP without delay on the bridge, because containers get the /16 mask and
// ARP for remote container addresses.
import { writeFile } from 'node:fs/promises';
import { execa } from 'execa';
import type Dockerode from 'dockerode';
import type { Logger } from '../../common/log.js';
import { errorMessage } from '../../common/errors.js';
import { parseSubnet } from '../../model/cidr.js';
import { InspectedNetwork, dockerMessage, dockerStatus } from './docker-api.js';
import { ManagedNetworkError } from './errors.js';
import { MANAGED_NETWORK } from './create-spec.js';

export const BRIDGE_NAME = 'drover0';

export const BRIDGE_SYSCTLS: [string, string][] = [
  [`net.ipv4.conf.${BRIDGE_NAME}.proxy_arp`, '1'],
  [`net.ipv4.neigh.${BRIDGE_NAME}.proxy_delay`, '0'],
];

/** Writes one sysctl; `netns` (a netns file such as /run/netns/h1) when dockerd runs in another netns. */
export async function writeSysctl(key: string, value: string, netns?: string): Promise<void> {
  if (netns) {
    await execa('nsenter', [`--net=${netns}`, 'sysctl', '-qw', `${key}=${value}`]);
    return;
  }
  await writeFile(`/proc/sys/${key.replaceAll('.', '/')}`, value);
}

export interface EnsureNetworkOptions {
  docker: Dockerode;
  subnet: string;
  log: Logger;
  netns?: string;
  /** MTU of the containers' interfaces (the overlay's, see capabilities/network); absent: Docker's default. */
  mtu?: number | undefined;
}

const MTU_OPTION = 'com.docker.network.driver.mtu';

/** Creates the network when absent; checks an existing one matches the environment subnet. */
export async function ensureManagedNetwork(o: EnsureNetworkOptions): Promise<void> {
  const subnet = parseSubnet(o.subnet);
  const existing = await inspectNetwork(o.docker);
  if (existing) {
    const cfg = existing.IPAM?.Config?.[0];
    const mtuHad = existing.Options?.[MTU_OPTION];
    const mtuDiffers = o.mtu !== undefined && mtuHad !== String(o.mtu);
    if (existing.Driver !== 'bridge' || cfg?.Subnet !== subnet.cidr || mtuDiffers) {
      const attached = Object.keys(existing.Containers ?? {}).length;
      if (attached > 0 && existing.Driver === 'bridge' && cfg?.Subnet === subnet.cidr) {
        // Only the MTU differs: containers keep working (large packets across hosts may not); the network
        // is recreated with the right MTU once nothing is attached.
        o.log.warn(
          { had: mtuHad ?? '(docker default)', want: o.mtu, attached },
          `docker network "${MANAGED_NETWORK}" has another MTU than the overlay needs; it is recreated when no container is attached`,
        );
        await applySysctls(o);
        return;
      }
      if (attached > 0) {
        throw new ManagedNetworkError(
          `docker network "${MANAGED_NETWORK}" is ${existing.Driver} ${cfg?.Subnet ?? '(no subnet)'} but the environment subnet is ${subnet.cidr}, ` +
            `and ${attached} container(s) are attached: remove them (or the network) and drover recreates it`,
        );
      }
      o.log.warn({ had: cfg?.Subnet, want: subnet.cidr, mtuHad, mtu: o.mtu }, 'recreating the managed network for the environment subnet and MTU');
      await o.docker.getNetwork(existing.Id).remove();
    } else {
      await applySysctls(o);
      return;
    }
  }
  try {
    await o.docker.createNetwork({
      Name: MANAGED_NETWORK,
      CheckDuplicate: true,
      Driver: 'bridge',
      IPAM: { Driver: 'default', Config: [{ Subnet: subnet.cidr, Gateway: subnet.gateway }] },
      Options: {
        'com.docker.network.bridge.name': BRIDGE_NAME,
        'com.docker.network.bridge.enable_ip_masquerade': 'false',
        ...(o.mtu !== undefined ? { [MTU_OPTION]: String(o.mtu) } : {}),
      },
      Labels: { 'io.drover.network': 'managed' },
    });
    o.log.info({ subnet: subnet.cidr, gateway: subnet.gateway, bridge: BRIDGE_NAME }, 'created the managed docker network');
    if (o.mtu !== undefined) o.log.info({ mtu: o.mtu }, 'managed docker network MTU');
  } catch (err) {
    // Another agent process (or a concurrent pass) may have created it meanwhile.
    if (dockerStatus(err) !== 409) {
      throw new ManagedNetworkError(`cannot create docker network "${MANAGED_NETWORK}" (${subnet.cidr}): ${dockerMessage(err)}`);
    }
  }
  await applySysctls(o);
}

async function inspectNetwork(docker: Dockerode): Promise<InspectedNetwork | undefined> {
  try {
    return InspectedNetwork.parse(await docker.getNetwork(MANAGED_NETWORK).inspect());
  } catch (err) {
    if (dockerStatus(err) === 404) return undefined;
    throw err;
  }
}

/** Best effort: a host without these only loses cross-host reachability on /16 masks (logged). */
async function applySysctls(o: EnsureNetworkOptions): Promise<void> {
  for (const [key, value] of BRIDGE_SYSCTLS) {
    try {
      await writeSysctl(key, value, o.netns);
    } catch (err) {
      o.log.warn(
        { sysctl: key, value, netns: o.netns, err: errorMessage(err) },
        'could not set a bridge sysctl; containers may not reach remote container addresses on the /16',
      );
    }
  }
}
