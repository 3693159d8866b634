// Standalone containers, container links, and the state agents report for the containers they run.
import type { Store } from '../db/store.js';
import { newUuid, nowIso } from '../db/store.js';
import { LaunchConfig, type Container, type ContainerLink, type LaunchConfigInput } from '../../model/resources.js';
import { NotFoundError, SchedulingError, ValidationError } from '../../common/errors.js';
import { allocateIp, containerOwner, releaseIp } from '../ipam/allocate.js';
import { constraintsFromLabels } from '../scheduling/constraints.js';
import { placeUnit } from '../scheduling/place.js';
import { removeContainerRecord } from './deploy.js';
import { parseSubnet } from '../ipam/cidr.js';
import type { ContainerReport } from '../../model/reports.js';

export type { ContainerReport };

export interface ContainerInput {
  environmentId: string;
  name: string;
  hostId?: string;
  launchConfig: LaunchConfigInput;
  /** Fail instead of taking another address when the requested one is in use. */
  strictRequestedIp?: boolean;
}

export const CONTAINER_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/;

export function createContainer(store: Store, input: ContainerInput): Container {
  if (!CONTAINER_NAME.test(input.name)) {
    throw new ValidationError('InvalidName', `container name "${input.name}" must be letters, digits, '_', '.', '-'`, 'name');
  }
  const lc = LaunchConfig.parse(input.launchConfig);
  return store.tx((tx) => {
    const env = store.mustGet('environment', input.environmentId);
    const hosts = store.list('host', { env_id: env.id });
    let hostId = input.hostId;
    if (hostId) {
      const h = hosts.find((x) => x.id === hostId);
      if (!h) throw new NotFoundError('host', hostId);
    } else {
      const all = store.list('container', { env_id: env.id });
      const placed = placeUnit(
        hosts.map((h) => ({ id: h.id, name: h.name, labels: h.labels, active: h.state === 'active' })),
        all.map((c) => ({ hostId: c.hostId, name: c.name, labels: c.config.labels, serviceId: c.serviceId })),
        constraintsFromLabels([lc.labels], { stackName: '', serviceName: '' }),
        null,
      );
      if (!placed.ok) throw new SchedulingError(`container "${input.name}": ${placed.reason}`, 'hostId');
      hostId = placed.hostId;
    }
    const id = tx.newId('container');
    const uuid = newUuid();
    const ip =
      lc.networkMode === 'managed'
        ? allocateIp(tx, {
            envId: env.id,
            subnet: env.network.subnet,
            owner: containerOwner(id),
            ...(lc.requestedIpAddress ? { requested: lc.requestedIpAddress } : {}),
            ...(input.strictRequestedIp ? { strict: true } : {}),
          })
        : null;
    const labels: Record<string, string> = { ...lc.labels, 'io.rancher.container.uuid': uuid, 'io.rancher.container.name': input.name };
    if (ip) labels['io.rancher.container.ip'] = `${ip}/${parseSubnet(env.network.subnet).prefix}`;
    return tx.put('container', {
      id,
      uuid,
      environmentId: env.id,
      hostId,
      stackId: null,
      serviceId: null,
      name: input.name,
      launchConfigName: '',
      serviceIndex: null,
      createIndex: 0,
      deploymentUnitUuid: null,
      primaryIpAddress: ip,
      state: 'creating',
      desiredState: 'running',
      generation: 'current',
      exitCode: null,
      externalId: null,
      healthState: null,
      startCount: 0,
      config: { ...lc, labels },
      adopted: false,
      created: nowIso(),
    });
  });
}

export function setContainerDesired(store: Store, id: string, desired: 'running' | 'stopped'): Container {
  return store.tx((tx) => {
    const c = store.mustGet('container', id);
    if (c.serviceId) {
      throw new ValidationError('ServiceContainer', `container ${c.name} belongs to a service: deactivate or scale the service instead`);
    }
    return tx.put('container', { ...c, desiredState: desired });
  });
}

export function removeContainer(store: Store, id: string): void {
  store.tx((tx) => {
    const c = store.mustGet('container', id);
    if (c.serviceId && c.generation === 'current') {
      throw new ValidationError(
        'ServiceContainer',
        `container ${c.name} belongs to a service: scale the service down instead (it would be recreated)`,
      );
    }
    removeContainerRecord(tx, null, c);
    if (!c.serviceId) releaseIp(tx, c.environmentId, containerOwner(c.id));
  });
}

export function createContainerLink(
  store: Store,
  input: { containerId: string; targetContainerId: string; name: string },
): ContainerLink {
  return store.tx((tx) => {
    const c = store.mustGet('container', input.containerId);
    const t = store.mustGet('container', input.targetContainerId);
    if (c.environmentId !== t.environmentId) throw new NotFoundError('container', input.targetContainerId);
    if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(input.name)) {
      throw new ValidationError('InvalidName', `link name "${input.name}" is not a valid DNS label`, 'name');
    }
    return tx.put('containerLink', {
      id: tx.newId('containerLink'),
      environmentId: c.environmentId,
      containerId: c.id,
      targetContainerId: t.id,
      name: input.name,
      created: nowIso(),
    });
  });
}

/**
 * Applies what an agent observed for its containers. Only containers on the reporting host are touched;
 * a change bumps the revision only when something visible changed.
 */
export function applyContainerReports(store: Store, hostId: string, reports: ContainerReport[]): number {
  if (reports.length === 0) return 0;
  return store.tx((tx) => {
    let changed = 0;
    for (const r of reports) {
      const c = store.get('container', r.id);
      if (!c || c.hostId !== hostId) continue;
      const next: Container = {
        ...c,
        state: r.state,
        ...(r.exitCode !== undefined ? { exitCode: r.exitCode } : {}),
        ...(r.externalId !== undefined ? { externalId: r.externalId } : {}),
        ...(r.healthState !== undefined ? { healthState: r.healthState } : {}),
        ...(r.startCount !== undefined ? { startCount: r.startCount } : {}),
        ...(r.message !== undefined ? { transitioningMessage: r.message } : {}),
      };
      if (JSON.stringify(next) !== JSON.stringify(c)) {
        tx.put('container', next);
        changed++;
      }
    }
    return changed;
  });
}
