// Environments (the original's "projects") and hosts.
import { randomBytes } from 'node:crypto';
import type { Store, Tx } from '../db/store.js';
import { newUuid, nowIso } from '../db/store.js';
import { EnvironmentNetwork, type Environment, type Host, type Stack } from '../../model/resources.js';
import { ConflictError, SchedulingError, ValidationError } from '../../common/errors.js';
import { parseSubnet } from '../ipam/cidr.js';
import { allocateIp, releaseIp } from '../ipam/allocate.js';
import { loadDeployContext, reconcileService, removeContainerRecord } from './deploy.js';
import { createApiKey, type IssuedKey, type Principal } from '../auth/credentials.js';

export interface EnvironmentInput {
  name: string;
  description?: string;
  network?: Partial<EnvironmentNetwork>;
}

export function createEnvironment(store: Store, input: EnvironmentInput): Environment {
  const network = EnvironmentNetwork.parse({ ...(input.network ?? {}) });
  network.subnet = parseSubnet(network.subnet).cidr;
  network.ipsecPsk ??= randomBytes(16).toString('hex');
  if (store.list('environment').some((e) => e.name === input.name)) {
    throw new ConflictError('NotUnique', `an environment named "${input.name}" already exists`, 'name');
  }
  return store.tx((tx) =>
    tx.put('environment', {
      id: tx.newId('environment'),
      uuid: newUuid(),
      name: input.name,
      description: input.description ?? '',
      state: 'active',
      network,
      created: nowIso(),
    }),
  );
}

export function updateEnvironment(
  store: Store,
  id: string,
  patch: { name?: string; description?: string; network?: Partial<EnvironmentNetwork> },
): Environment {
  return store.tx((tx) => {
    const env = store.mustGet('environment', id);
    if (patch.network?.subnet !== undefined && parseSubnet(patch.network.subnet).cidr !== env.network.subnet) {
      const used = tx.store.db.prepare('SELECT COUNT(*) AS n FROM ip_allocations WHERE env_id = ?').get(id) as { n: number };
      if (used.n > 0) {
        throw new ConflictError('SubnetInUse', `the subnet cannot change while ${used.n} addresses are allocated in it`, 'network.subnet');
      }
    }
    const network = EnvironmentNetwork.parse({ ...env.network, ...(patch.network ?? {}) });
    network.subnet = parseSubnet(network.subnet).cidr;
    return tx.put('environment', {
      ...env,
      ...(patch.name !== undefined ? { name: patch.name } : {}),
      ...(patch.description !== undefined ? { description: patch.description } : {}),
      network,
    });
  });
}

export function deleteEnvironment(store: Store, id: string): void {
  store.mustGet('environment', id);
  const stacks = store.list('stack', { env_id: id });
  const hosts = store.list('host', { env_id: id });
  if (stacks.length || hosts.length) {
    throw new ConflictError(
      'EnvironmentInUse',
      `remove its ${stacks.length} stacks and ${hosts.length} hosts first`,
    );
  }
  store.tx((tx) => {
    for (const t of ['registration_tokens', 'api_keys', 'certificates', 'changes', 'ip_allocations']) {
      tx.store.db.prepare(`DELETE FROM ${t} WHERE env_id = ?`).run(id);
    }
    tx.remove('environment', id);
  });
}

/** The environment used when a request names none: the oldest one, created on first start. */
export function defaultEnvironment(store: Store): Environment {
  const envs = store.list('environment');
  return envs[0] ?? createEnvironment(store, { name: 'Default', description: 'created on first start' });
}

// ---- hosts -----------------------------------------------------------------------------------------

/** IPAM owner of a host's tunnel address (src/agent/capabilities/network/README.md). */
export function hostOwner(hostId: string): string {
  return `host:${hostId}`;
}

/**
 * Gives every host without one its tunnel address (hosts registered before the managed network
 * existed); run at start. One transaction per environment; hosts that have one are not touched.
 */
export function ensureTunnelAddresses(store: Store): number {
  let given = 0;
  for (const env of store.list('environment')) {
    const missing = store.list('host', { env_id: env.id }).filter((h) => !h.tunnelIp);
    if (!missing.length) continue;
    store.tx((tx) => {
      for (const h of missing) {
        tx.put('host', { ...h, tunnelIp: allocateIp(tx, { envId: env.id, subnet: env.network.subnet, owner: hostOwner(h.id) }) });
        given++;
      }
    });
  }
  return given;
}

export interface HostRegistration {
  uuid?: string;
  name?: string;
  hostname: string;
  agentIpAddress: string;
  labels?: Record<string, string>;
  milliCpu?: number;
  memory?: number;
  localStorageMb?: number;
}

/** Creates the host, or updates it when an agent with a known uuid registers again (the caller checked it may). */
function putRegisteredHost(tx: Tx, envId: string, reg: HostRegistration, existing: Host | undefined): Host {
  const env = tx.store.mustGet('environment', envId);
  const id = existing?.id ?? tx.newId('host');
  const host: Host = {
    id,
    uuid: existing?.uuid ?? reg.uuid ?? newUuid(),
    environmentId: envId,
    name: reg.name ?? existing?.name ?? reg.hostname,
    hostname: reg.hostname,
    agentIpAddress: reg.agentIpAddress,
    labels: { ...(existing?.labels ?? {}), ...(reg.labels ?? {}) },
    state: 'active',
    agentState: 'active',
    ...(reg.milliCpu !== undefined ? { milliCpu: reg.milliCpu } : {}),
    ...(reg.memory !== undefined ? { memory: reg.memory } : {}),
    ...(reg.localStorageMb !== undefined ? { localStorageMb: reg.localStorageMb } : {}),
    applied: {},
    tunnelIp: allocateIp(tx, { envId, subnet: env.network.subnet, owner: hostOwner(id) }),
    ...(existing?.certificateRevoked ? { certificateRevoked: true } : {}),
    created: existing?.created ?? nowIso(),
  };
  tx.put('host', host);
  tx.store.db.prepare('INSERT OR IGNORE INTO host_status (host_id) VALUES (?)').run(host.id);
  reconcileAfterHostChange(tx, env.id);
  return host;
}

export interface AgentRegistration {
  host: Host;
  /** The host's one agent credential (any earlier one is gone). */
  key: IssuedKey;
}

/**
 * An agent joins with a registration token (checked by the caller): a new host, or, for a `uuid` that
 * is already registered, that host again — but only when the request is authenticated as that host
 * (its current agent key, HTTP basic). A registration token alone cannot take over a host: anyone with
 * a token can see the hosts' uuids. An agent that lost its identity registers without a uuid and
 * becomes a new host (the old record stays, inactive in practice, until removed). Host, status row and
 * credential are written in one transaction.
 */
export function registerAgent(store: Store, envId: string, reg: HostRegistration, caller: Principal | undefined): AgentRegistration {
  return store.tx((tx) => {
    store.mustGet('environment', envId);
    const existing = reg.uuid ? store.list('host', { uuid: reg.uuid })[0] : undefined;
    if (existing && existing.environmentId !== envId) {
      throw new ConflictError('HostInOtherEnvironment', `host ${reg.uuid} is registered in another environment`, 'uuid');
    }
    if (existing && !(caller?.role === 'agent' && caller.hostId === existing.id)) {
      throw new ConflictError(
        'HostAlreadyRegistered',
        `host ${existing.uuid} is already registered; registering it again needs its current agent credentials (HTTP basic with the ` +
          'access key and secret issued at registration). An agent that lost them registers without a uuid, as a new host ' +
          `(remove the old one with DELETE /v1/hosts/${existing.id})`,
        'uuid',
      );
    }
    if (!existing && caller?.role === 'agent') {
      throw new ConflictError('AlreadyRegistered', 'these agent credentials belong to a registered host: register again with its uuid, or without credentials as a new host', 'uuid');
    }
    const host = putRegisteredHost(tx, envId, reg, existing);
    // One credential per host: a re-registering agent replaces its old key.
    tx.store.db.prepare("DELETE FROM api_keys WHERE role = 'agent' AND host_id = ?").run(host.id);
    const key = createApiKey(store, { name: `agent ${host.name}`, role: 'agent', envId, hostId: host.id });
    return { host, key };
  });
}

export function updateHost(store: Store, id: string, patch: { name?: string; labels?: Record<string, string> }): Host {
  return store.tx((tx) => {
    const h = store.mustGet('host', id);
    if (patch.labels) {
      for (const k of Object.keys(patch.labels)) {
        if (!k) throw new ValidationError('InvalidLabel', 'label keys must not be empty', 'labels');
      }
    }
    const host = tx.put('host', {
      ...h,
      ...(patch.name !== undefined ? { name: patch.name } : {}),
      ...(patch.labels !== undefined ? { labels: patch.labels } : {}),
    });
    reconcileAfterHostChange(tx, h.environmentId);
    return host;
  });
}

export function setHostActive(store: Store, id: string, active: boolean): Host {
  return store.tx((tx) => {
    const h = store.mustGet('host', id);
    const host = tx.put('host', { ...h, state: active ? 'active' : 'inactive' });
    reconcileAfterHostChange(tx, h.environmentId);
    return host;
  });
}

/** Removes a host and the records of the containers it ran (their service slots are refilled elsewhere). */
export function removeHost(store: Store, id: string): void {
  store.tx((tx) => {
    const h = store.mustGet('host', id);
    for (const c of store.list('container', { host_id: id })) removeContainerRecord(tx, null, c);
    tx.store.db.prepare('DELETE FROM api_keys WHERE host_id = ?').run(id);
    releaseIp(tx, h.environmentId, hostOwner(id));
    tx.remove('host', id);
    reconcileAfterHostChange(tx, h.environmentId);
  });
}

/**
 * After any change of the hosts (join, labels, activation, removal): every service of the environment
 * is reconciled — global services follow their eligible hosts, units waiting for a host or left without
 * one are placed. A unit that still fits no host keeps waiting instead of failing the host change.
 */
function reconcileAfterHostChange(tx: Tx, envId: string): void {
  const env = tx.store.mustGet('environment', envId);
  const stacks = tx.store.list('stack', { env_id: envId });
  if (stacks.length === 0) return;
  // One context (hosts, containers and their placement counts) for the whole environment.
  const ctx = loadDeployContext(tx, env, stacks[0] as Stack);
  for (const stack of stacks) {
    ctx.stack = stack;
    for (const s of tx.store.list('service', { stack_id: stack.id })) {
      try {
        reconcileService(tx, ctx, s);
      } catch (err) {
        // A unit that fits no host, or no longer fits the environment's container budget, keeps waiting.
        if (!(err instanceof SchedulingError) && !(err instanceof ValidationError && err.code === 'TooManyContainers')) throw err;
      }
    }
  }
}
