// Environment-state documents for unit and integration tests: a container and a service with every
// field set to a plain default (override any with `o`).
import { LaunchConfig, type Container, type Service } from '../../src/model/resources.js';
import { emptyState, type EnvState } from '../../src/model/state.js';

export function container(id: string, serviceId: string | null, hostId: string, ip: string | null, o: Partial<Container> = {}): Container {
  return {
    id,
    uuid: `u-${id}`,
    environmentId: '1a1',
    hostId,
    stackId: '1st1',
    serviceId,
    name: id,
    launchConfigName: '',
    serviceIndex: 1,
    createIndex: 0,
    deploymentUnitUuid: null,
    primaryIpAddress: ip,
    state: 'running',
    desiredState: 'running',
    generation: 'current',
    exitCode: null,
    externalId: null,
    healthState: null,
    startCount: 1,
    config: LaunchConfig.parse({ image: 'nginx' }),
    adopted: false,
    created: '2026-01-01T00:00:00Z',
    ...o,
  };
}

export function service(id: string, name: string, o: Partial<Service> = {}): Service {
  return {
    id,
    uuid: `u-${id}`,
    environmentId: '1a1',
    stackId: '1st1',
    name,
    kind: 'service',
    state: 'active',
    scale: 1,
    global: false,
    secondaryLaunchConfigs: [],
    metadata: {},
    externalIpAddresses: [],
    createIndex: 0,
    system: false,
    created: '2026-01-01T00:00:00Z',
    ...o,
  };
}

/** An environment (1a1) with one stack (1st1, "web") and nothing else. */
export function env(): EnvState {
  const st = emptyState({
    id: '1a1',
    uuid: 'u',
    name: 'Default',
    description: '',
    state: 'active',
    network: { subnet: '10.42.0.0/16', dnsScope: 'linked', hostDnsView: false, overlay: 'ipsec', ipsecAuth: 'psk', vxlanVni: 42 },
    created: '',
  });
  st.stacks.set('1st1', { id: '1st1', uuid: 'u-st', environmentId: '1a1', name: 'web', description: '', state: 'active', dockerCompose: '', rancherCompose: '', answers: {}, system: false, created: '' });
  return st;
}

/** Adds services and containers to `st`. */
export function put(st: EnvState, ...xs: (Service | Container)[]): void {
  for (const x of xs) {
    if ('kind' in x) st.services.set(x.id, x);
    else st.containers.set(x.id, x);
  }
}
