// Standalone containers, container links, and the state agents report for the containers they run.
import type { Store } from '../db/store.js';
import { newUuid, nowIso } from '../db/store.js';
import { LaunchConfig, type Container, type ContainerLink, type LaunchConfigInput } from '../../model/resources.js';
import { NotFoundError, SchedulingError, ValidationError } from '../../common/errors.js';
import { allocateIp, containerOwner } from '../ipam/allocate.js';
import { constraintsFromLabels } from '../scheduling/constraints.js';
import { placeUnit } from '../scheduling/place.js';
import { removeContainerRecord } from './deploy.js';
import { inRange, ipToInt, parseSubnet } from '../ipam/cidr.js';
import type { AdoptRequest, ContainerReport } from '../../model/reports.js';
import { publishPending, recordReports, type StatusPublisher } from './status.js';
import { applyHealthStrategies } from './services.js';

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
 * Applies what an agent observed for its containers, in one transaction: the status store takes it all
 * (no revision); the health strategies of the services whose containers changed health run; and the
 * facts other hosts need (serving, health state) are published — in this transaction without a
 * publisher, else at the end of the publisher's window. Returns how many status rows changed.
 */
export function applyContainerReports(
  store: Store,
  hostId: string,
  reports: ContainerReport[],
  publisher?: StatusPublisher,
): number {
  if (reports.length === 0) return 0;
  const inline = !publisher || publisher.opts.coalesceMs <= 0;
  const out = store.tx((tx) => {
    const o = recordReports(tx, hostId, reports);
    applyHealthStrategies(tx, o.health);
    if (inline && o.pending) publishPending(tx);
    return o;
  });
  if (!inline && out.pending) publisher.schedule();
  return out.changed;
}

// ---- adoption (src/agent/runtime) --------------------------------------------------------------

export const LABEL_ADOPT_STACK = 'io.rancher.stack.name';
export const LABEL_ADOPT_STACK_SERVICE = 'io.rancher.stack_service.name';
export const LABEL_ADOPT_REQUESTED_IP = 'io.rancher.container.requested_ip';

/**
 * A container started by hand on `hostId` with `io.rancher.container.network=true` becomes a record
 * (`adopted: true`) with an address from IPAM (its requested_ip label, else the address it already has
 * on the managed network, when free). Its stack and service come from the io.rancher.stack.name /
 * io.rancher.stack_service.name labels when those name existing ones; otherwise it is standalone.
 * Idempotent: the same docker id on the same host answers the same record.
 */
export function adoptContainer(store: Store, hostId: string, req: AdoptRequest): { container: Container; created: boolean } {
  return store.tx((tx) => {
    const host = store.mustGet('host', hostId);
    const existing = store.list('container', { host_id: hostId }).find((c) => c.externalId === req.externalId);
    if (existing) return { container: existing, created: false };
    const env = store.mustGet('environment', host.environmentId);
    const name = req.name.replace(/^\//, '');
    if (!CONTAINER_NAME.test(name)) {
      throw new ValidationError('InvalidName', `container name "${name}" must be letters, digits, '_', '.', '-'`, 'name');
    }
    const stacks = store.list('stack', { env_id: env.id });
    let stack = stacks.find((st) => st.name === req.labels[LABEL_ADOPT_STACK]);
    let serviceId: string | null = null;
    const stackService = req.labels[LABEL_ADOPT_STACK_SERVICE];
    if (stackService?.includes('/')) {
      const [stackName, serviceName] = stackService.split('/', 2) as [string, string];
      const st = stacks.find((x) => x.name === stackName);
      const svc = st ? store.list('service', { stack_id: st.id }).find((x) => x.name === serviceName) : undefined;
      if (st && svc) {
        stack = st;
        serviceId = svc.id;
      }
    }
    const id = tx.newId('container');
    const uuid = newUuid();
    // An explicit requested_ip is the user's wish (an invalid one is an error, like for scheduled
    // containers); the address it already has is kept only when it is a usable one.
    const subnet = parseSubnet(env.network.subnet);
    const current = req.ipAddress && inRange(subnet, ipToInt(req.ipAddress)) ? req.ipAddress : undefined;
    const requested = req.labels[LABEL_ADOPT_REQUESTED_IP] ?? current;
    const ip = allocateIp(tx, {
      envId: env.id,
      subnet: env.network.subnet,
      owner: containerOwner(id),
      ...(requested ? { requested } : {}),
    });
    const labels: Record<string, string> = {
      ...req.labels,
      'io.rancher.container.uuid': uuid,
      'io.rancher.container.name': name,
      'io.rancher.container.ip': `${ip}/${subnet.prefix}`,
    };
    const config = LaunchConfig.parse({ image: req.image, labels, ...(req.command ? { command: req.command } : {}) });
    const running = req.state === undefined || req.state === 'running';
    const container = tx.put('container', {
      id,
      uuid,
      environmentId: env.id,
      hostId,
      stackId: stack?.id ?? null,
      serviceId,
      name,
      launchConfigName: '',
      serviceIndex: null,
      createIndex: 0,
      deploymentUnitUuid: null,
      primaryIpAddress: ip,
      state: req.state ?? 'running',
      desiredState: running ? 'running' : 'stopped',
      generation: 'current',
      exitCode: null,
      externalId: req.externalId,
      healthState: null,
      startCount: 0,
      config,
      adopted: true,
      created: nowIso(),
    });
    return { container, created: true };
  });
}
